"""ReLoss Table 11 on digits: a surrogate learned once before training against alternate training.

    .venv/bin/python benchmarks/alternate_training.py [--seeds 5] [--threads 1]

Protocol (fixed before the run, not tuned): G_M is the demo's (an MLP trained with cross-entropy on scikit-learn's
digits, seed 0, outputs of ~25 checkpoints on the training set); one accuracy surrogate is learned from it with
the library's default settings (seed 0). For training seeds t = 0 .. N-1 the demo's digits MLP (64 hidden units,
30 epochs, Adam 1e-3, batch 128; ``torch.manual_seed(1000 + t)``, batch order seed 1000 + t, as in
``ablations.py``) is trained with (1) CE, (2) CE + the fixed surrogate, (3) CE + a ``SurrogateRefresher`` started
from that same surrogate and refreshed after every epoch with 10 learning steps on the current model's
training-set outputs (otherwise default settings: 128 batches ranked per step, 64 bootstrap batches of current
outputs, half of each step from G_R). 10 steps, not 25: a step costs ~0.2 s on one thread, so 25 steps x 30
epochs x 5 seeds alone would take ~12 min. The refresher alone without CE is left out for the same cost reason.
Reported: test accuracy mean ± std, the mean paired difference to CE (same training seed) with seeds
better / tied / worse, wall time per row and, for (3), the share of it spent refreshing. Then, for training seed
0 of (3): Spearman with batch accuracy of CE, the fixed surrogate and the final refreshed surrogate on held-out
batches of that model's test-set outputs at epochs 1, 2, 4, 8, 16, 30 (32 batches of 128 per epoch), and on the
demo's held-out batches of the CE checkpoints' test-set outputs (``heldout_batches(..., 8, seed=2)``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import metricloss as ml
from common import demo_outputs, machine_line
from common import mean_std as ms
from metricloss import datasets, demo, training
from metricloss.evaluation import agreement
from metricloss.metrics.classification import accuracy

REFRESH_STEPS = 10
MARK_EPOCHS = (1, 2, 4, 8, 16, 30)


def train(split: datasets.Split, loss_fn: training.LossFn, seed: int,
          on_epoch: Callable[[int, torch.nn.Module], None] | None = None) -> tuple[float, float]:
    """Test accuracy and wall seconds of the demo's digits MLP trained with ``loss_fn`` (training seed ``seed``)."""
    cfg = demo.SETTINGS["digits"]
    t0 = time.perf_counter()
    torch.manual_seed(1000 + seed)
    model = training.mlp(split.x_train.shape[1], split.num_classes, cfg["hidden"])
    training.fit(model, split.x_train, split.y_train, loss_fn, epochs=cfg["epochs"], batch_size=demo.BATCH,
                 lr=1e-3, seed=1000 + seed, on_epoch=on_epoch)
    return float(accuracy(training.predict(model, split.x_test), split.y_test)), time.perf_counter() - t0


def tally(diffs: list[float]) -> str:
    """``"better / tied / worse"`` counts of paired differences."""
    return f"{sum(d > 0 for d in diffs)} / {sum(d == 0 for d in diffs)} / {sum(d < 0 for d in diffs)}"


def batch_ce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each batch in ``pred`` (batches x samples x classes)."""
    return F.cross_entropy(pred.flatten(0, 1), target.flatten(), reduction="none").view(target.shape).mean(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="MLP training seeds (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line() + " (at start)", flush=True)
    t_all = time.perf_counter()

    split, outputs, test_out = demo_outputs("digits")
    sur = ml.learn("accuracy", num_classes=split.num_classes, outputs=outputs, seed=0, progress=False)
    print(f"  surrogate learned in {sur.report.learn_seconds:.1f} s ({sur.report.steps} steps, best "
          f"{sur.report.best_step})", flush=True)

    results: dict[str, tuple[list[float], list[float]]] = {}
    for name, loss_fn in (("CE", F.cross_entropy),
                          ("CE + fixed surrogate", lambda z, y: F.cross_entropy(z, y) + sur(z, y))):
        runs = [train(split, loss_fn, t) for t in range(args.seeds)]
        results[name] = ([a for a, _ in runs], [s for _, s in runs])
        print(f"  {name}: {results[name][0]}", flush=True)

    accs, secs, refresh_secs, final, kept = [], [], [], None, []
    for t in range(args.seeds):
        ref = training.SurrogateRefresher(sur, "accuracy", split.x_train, split.y_train, steps=REFRESH_STEPS)
        spent = [0.0]

        def on_epoch(epoch: int, model: torch.nn.Module, ref=ref, spent=spent, t=t) -> None:
            if t == 0 and epoch in MARK_EPOCHS:
                kept.append(training.predict(model, split.x_test))
            t0 = time.perf_counter()
            ref.on_epoch(epoch, model)
            spent[0] += time.perf_counter() - t0

        a, s = train(split, lambda z, y, ref=ref: F.cross_entropy(z, y) + ref(z, y), t, on_epoch)
        accs.append(a)
        secs.append(s)
        refresh_secs.append(spent[0])
        final = ref.surrogate if t == 0 else final
        print(f"  CE + refreshed seed {t}: {a:.4f} ({s:.0f} s, refresh {spent[0]:.0f} s)", flush=True)
    results[f"CE + refreshed surrogate ({REFRESH_STEPS} steps/epoch)"] = (accs, secs)

    ce = results["CE"][0]
    print(f"\nDigits, {args.seeds} training seeds; test set {split.x_test.shape[0]} samples; one surrogate learned "
          f"once (seed 0, default settings); refresh: {REFRESH_STEPS} steps after each of 30 epochs.\n")
    print("| training loss | test accuracy | paired Δ vs CE (points) | better / tied / worse | wall time / run (s) |")
    print("| --- | --- | --- | --- | --- |")
    for name, (acc, sec) in results.items():
        d = [round(a - c, 12) for a, c in zip(acc, ce, strict=True)]
        counts = "–" if name == "CE" else tally(d)
        delta = "–" if name == "CE" else f"{100 * statistics.mean(d):+.2f}"
        print(f"| {name} | {ms(acc)} | {delta} | {counts} | {ms(sec, 1)} |")
    share = sum(refresh_secs) / sum(secs)
    diff = [round(r - f, 12) for r, f in zip(accs, results["CE + fixed surrogate"][0], strict=True)]
    print(f"\nRefreshing took {100 * share:.0f}% of the refreshed rows' wall time. Paired Δ refreshed vs fixed: "
          f"{100 * statistics.mean(diff):+.2f} points (better / tied / worse {tally(diff)}).\n")

    own = demo.heldout_batches(kept, split.y_test, per_checkpoint=32, seed=3)
    gm = demo.heldout_batches(test_out, split.y_test, per_checkpoint=8, seed=2)
    print(f"Spearman with batch accuracy (seed 0): on {own[0].shape[0]} batches of the refreshed run's test outputs "
          f"at epochs {', '.join(map(str, MARK_EPOCHS))}; on {gm[0].shape[0]} batches of the CE checkpoints' "
          "test outputs (G_M, as in the demo).\n")
    print("| loss | Spearman, refreshed run's outputs | Spearman, CE checkpoints' outputs |")
    print("| --- | --- | --- |")
    for name, batch_loss in (("cross-entropy", batch_ce), ("fixed surrogate", sur.batch_losses),
                             ("final refreshed surrogate", final.batch_losses)):
        row = [agreement(batch_loss(p, y), accuracy(p, y), True)["spearman"] for p, y in (own, gm)]
        print(f"| {name} | {row[0]:.4f} | {row[1]:.4f} |")
    print(f"\ntotal time {time.perf_counter() - t_all:.0f} s")
    print(machine_line() + " (at end)")


if __name__ == "__main__":
    main()
