"""Downstream accuracy: CE against CE + surrogate (plain sum) against ``ml.combine(CE, surrogate, "auto")``.

    .venv/bin/python benchmarks/downstream_combine.py [--data digits] [--seeds 10] [--threads 1]

Protocol (fixed before the first run, not tuned afterwards): G_M is the demo's for the data set (its MLP trained
with cross-entropy, seed 0, outputs of ~25 checkpoints on the training set; ``common.demo_outputs``). One accuracy
surrogate is learned from it with the library's default settings (seed 0), as in ``alternate_training.py``. For
training seeds t = 0 .. N-1 the demo's MLP (digits: 64 hidden units, 30 epochs; MNIST-5k: 128, 12; Adam 1e-3,
batch 128, ``torch.manual_seed(1000 + t)``, batch order seed 1000 + t) is trained with

1. CE;
2. CE + surrogate, the plain sum (the README's former usage);
3. ``ml.combine(F.cross_entropy, sur)`` with every default (``weight="auto"``, ratio 0.5, momentum 0.9, no
   warm-up), a fresh module per run (the table in ``docs/results.md`` predates combine's verdict gate, today's
   default: a surrogate whose held-out real-output Spearman is not above CE's now makes this arm exactly CE);
4. with ``--ratios 2 8`` (an ablation declared after the default's first run on both data sets, before any run of
   it): ``ml.combine(F.cross_entropy, sur, ratio=r)`` for each listed r, otherwise as 3.

Reported: test accuracy mean ± std; the paired difference to CE (same training seed) as mean ± standard error
in points, seeds better / tied / worse and the paired t-test p-value; "significantly worse" means a mean below
minus one standard error (issue 15's bar). Diagnostics for each row: the ratio ‖∇ sur‖ / ‖∇ CE‖ of the gradients
with respect to the logits at the end of training (mean over the training set in batches of 128, all seeds),
and for row 3 the final auto weight. Wall time per run is reported with the machine load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from scipy import stats

import metricloss as ml
from common import demo_outputs, machine_line
from common import mean_std as ms
from metricloss import datasets, demo, training
from metricloss.combine import prediction_gradient_norms
from metricloss.metrics.classification import accuracy


def train(split: datasets.Split, loss_fn: training.LossFn, seed: int) -> tuple[torch.nn.Module, float, float]:
    """The demo's MLP trained with ``loss_fn`` (training seed ``seed``): model, test accuracy, wall seconds."""
    cfg = demo.SETTINGS[split.name]
    t0 = time.perf_counter()
    torch.manual_seed(1000 + seed)
    model = training.mlp(split.x_train.shape[1], split.num_classes, cfg["hidden"])
    training.fit(model, split.x_train, split.y_train, loss_fn, epochs=cfg["epochs"], batch_size=demo.BATCH,
                 lr=1e-3, seed=1000 + seed)
    acc = float(accuracy(training.predict(model, split.x_test), split.y_test))
    return model, acc, time.perf_counter() - t0


def norm_ratio(model: torch.nn.Module, split: datasets.Split, sur: ml.Surrogate) -> float:
    """Mean over training-set batches of 128 of ‖∇_logits sur‖ / ‖∇_logits CE‖ for the trained model."""
    model.eval()
    ratios = []
    n = split.x_train.shape[0] // demo.BATCH * demo.BATCH
    for idx in torch.arange(n).split(demo.BATCH):
        logits = model(split.x_train[idx])
        y = split.y_train[idx]
        gb, gs = prediction_gradient_norms(F.cross_entropy(logits, y), sur(logits, y), logits)
        ratios.append(gs / gb)
    return statistics.mean(ratios)


def tally(diffs: list[float]) -> str:
    return f"{sum(d > 0 for d in diffs)} / {sum(d == 0 for d in diffs)} / {sum(d < 0 for d in diffs)}"


def paired(acc: list[float], ce: list[float]) -> tuple[str, str, str]:
    """Paired Δ vs CE in points (mean ± standard error), better / tied / worse, t-test p."""
    d = [round(a - c, 12) for a, c in zip(acc, ce, strict=True)]
    se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else 0.0
    p = stats.ttest_rel(acc, ce).pvalue if se > 0 else float("nan")
    flag = " (significantly worse)" if statistics.mean(d) < -se else ""
    return f"{100 * statistics.mean(d):+.2f} ± {100 * se:.2f}{flag}", tally(d), f"{p:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits", choices=sorted(demo.SETTINGS), help="data set (digits)")
    parser.add_argument("--seeds", type=int, default=10, help="MLP training seeds (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--ratios", type=float, nargs="*", default=[], help="extra combine ratios (ablation)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line() + " (at start)", flush=True)
    t_all = time.perf_counter()

    split, outputs, _ = demo_outputs(args.data)
    sur = ml.learn("accuracy", num_classes=split.num_classes, outputs=outputs, seed=0, progress=False)
    print(f"  surrogate learned in {sur.report.learn_seconds:.1f} s ({sur.report.steps} steps); held-out Spearman "
          f"{sur.report.spearman:.4f} (CE {sur.report.baseline_spearman:.4f})", flush=True)

    arms = {
        "CE": lambda: F.cross_entropy,
        "CE + surrogate (plain sum)": lambda: (lambda z, y: F.cross_entropy(z, y) + sur(z, y)),
        'combine(CE, surrogate, "auto")': lambda: ml.combine(F.cross_entropy, sur),
    }
    for r in args.ratios:
        arms[f'combine(..., "auto", ratio={r:g})'] = lambda r=r: ml.combine(F.cross_entropy, sur, ratio=r)
    rows: dict[str, dict[str, list[float]]] = {}
    for name, make in arms.items():
        row = rows[name] = {"acc": [], "sec": [], "ratio": [], "weight": []}
        for t in range(args.seeds):
            loss_fn = make()
            model, acc, sec = train(split, loss_fn, t)
            row["acc"].append(acc)
            row["sec"].append(sec)
            row["ratio"].append(norm_ratio(model, split, sur))
            if isinstance(loss_fn, ml.CombinedLoss):
                row["weight"].append(loss_fn.weight)
        print(f"  {name}: {[round(a, 4) for a in row['acc']]}", flush=True)

    ce = rows["CE"]["acc"]
    print(f"\n{split.name}, {args.seeds} training seeds; test set {split.x_test.shape[0]} samples; one surrogate "
          "learned once from the CE checkpoints' outputs (seed 0, default settings).\n")
    print("| training loss | test accuracy | paired Δ vs CE (points, mean ± s.e.) | better / tied / worse | "
          "paired t-test p | ‖∇sur‖/‖∇CE‖ at the end | final auto weight | wall time / run (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, row in rows.items():
        delta, counts, p = ("–", "–", "–") if name == "CE" else paired(row["acc"], ce)
        weight = ms(row["weight"], 3) if row["weight"] else "–"
        print(f"| {name} | {ms(row['acc'])} | {delta} | {counts} | {p} | {ms(row['ratio'], 2)} | {weight} | "
              f"{ms(row['sec'], 1)} |")
    d = [round(a - b, 12) for a, b in zip(rows['combine(CE, surrogate, "auto")']["acc"],
                                          rows["CE + surrogate (plain sum)"]["acc"], strict=True)]
    print(f"\ncombine vs plain sum, paired: {100 * statistics.mean(d):+.2f} points (better / tied / worse "
          f"{tally(d)}).")
    print(f"total time {time.perf_counter() - t_all:.0f} s")
    print(machine_line() + " (at end)")


if __name__ == "__main__":
    main()
