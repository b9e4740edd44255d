"""Tables 8 and 12 of ReLoss, on digits: learning objective (rank correlation vs approximation) x gradient penalty.

    .venv/bin/python benchmarks/ablations.py [--seeds 3] [--steps N] [--train-seeds 1]

G_M is the demo's: an MLP trained once with cross-entropy on scikit-learn's digits (seed 0), outputs of ~25
checkpoints. For each objective (``spearman`` = ReLoss, ``kendall``, ``l2`` / ``l1`` = approximation, Grabocka
et al.) and penalty (10, the paper's lambda, and 0), an accuracy surrogate is learned per seed ``s`` (default
settings; ``--steps`` caps the steps to shorten the run) and measured two ways:

- rank correlation with batch accuracy on held-out batches of the checkpoints' test-set outputs
  (``heldout_batches(..., seed=100 + s)``), mean ± std over learn seeds (Tables 8/12, left columns);
- test accuracy of the demo's MLP trained with ``CE + surrogate`` (30 epochs, Adam 1e-3, batch 128): the surrogate
  of learn seed ``s`` trains the MLP with training seed ``s`` (``--train-seeds T``: seeds ``s*T`` to ``s*T+T-1``),
  mean ± std over all those runs; "paired" is the mean difference to plain CE trained with the same training
  seeds (same initialisation and batch order).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import metricloss as ml
from common import demo_outputs, machine_line
from common import mean_std as ms
from metricloss import datasets, demo, training
from metricloss.evaluation import agreement
from metricloss.metrics.classification import accuracy

CONFIGS = [(obj, pen) for obj in ("spearman", "kendall", "l2", "l1") for pen in (10.0, 0.0)]
LABELS = {"spearman": "ReLoss (Spearman)", "kendall": "Kendall", "l2": "approximation L2", "l1": "approximation L1"}




def train_accuracy(split: datasets.Split, loss_fn, seed: int) -> float:
    cfg = demo.SETTINGS["digits"]
    torch.manual_seed(1000 + seed)
    model = training.mlp(split.x_train.shape[1], split.num_classes, cfg["hidden"])
    training.fit(model, split.x_train, split.y_train, loss_fn, epochs=cfg["epochs"], batch_size=demo.BATCH,
                 lr=1e-3, seed=1000 + seed)
    return float(accuracy(training.predict(model, split.x_test), split.y_test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="learn seeds per configuration")
    parser.add_argument("--steps", type=int, default=None,
                        help="step cap of each learn run (default: the library's, with early stopping)")
    parser.add_argument("--train-seeds", type=int, default=1,
                        help="MLP training seeds per learned surrogate (surrogate s trains seeds s*T .. s*T+T-1)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line() + " (at start)", flush=True)
    t_all = time.perf_counter()

    split, outputs, test_out = demo_outputs("digits")
    heldout = []
    for s in range(args.seeds):
        pred, target = demo.heldout_batches(test_out, split.y_test, per_checkpoint=8, seed=100 + s)
        heldout.append((pred, target, accuracy(pred, target)))

    ce_corr = [agreement(F.cross_entropy(p.flatten(0, 1), t.flatten(), reduction="none").view(t.shape).mean(1),
                         a, True) for p, t, a in heldout]
    per = args.train_seeds
    ce_acc = [train_accuracy(split, F.cross_entropy, t) for t in range(args.seeds * per)]
    print(f"  cross-entropy: test accuracy {ms(ce_acc)}", flush=True)
    rows = [f"| cross-entropy | – | {ms([r['spearman'] for r in ce_corr])} | {ms([r['kendall'] for r in ce_corr])} "
            f"| {ms(ce_acc)} | – | – | – |"]
    for obj, pen in CONFIGS:
        sp, kt, accs, diffs, secs, steps = [], [], [], [], [], []
        for s in range(args.seeds):
            sur = ml.learn("accuracy", num_classes=split.num_classes, outputs=outputs, objective=obj, penalty=pen,
                           steps=args.steps, seed=s, progress=False)
            pred, target, acc = heldout[s]
            r = agreement(sur.batch_losses(pred, target), acc, True)
            sp.append(r["spearman"])
            kt.append(r["kendall"])
            secs.append(sur.report.learn_seconds)
            steps.append(f"{sur.report.steps} ({sur.report.best_step})")
            for t in range(s * per, (s + 1) * per):
                a = train_accuracy(split, lambda z, y, sur=sur: F.cross_entropy(z, y) + sur(z, y), t)
                accs.append(a)
                diffs.append(a - ce_acc[t])
            print(f"  {obj} penalty {pen:g} seed {s}: Spearman {r['spearman']:.4f} Kendall {r['kendall']:.4f} "
                  f"test acc {accs[-per:]} learn {sur.report.learn_seconds:.1f} s", flush=True)
        rows.append(f"| CE + {LABELS[obj]} | {pen:g} | {ms(sp)} | {ms(kt)} | {ms(accs)} "
                    f"| {100 * statistics.mean(diffs):+.2f} | {ms(secs, 1)} | {', '.join(steps)} |")

    n_batches = heldout[0][0].shape[0]
    print()
    cap = "the library's default step cap and early stopping" if args.steps is None else f"a cap of {args.steps} steps"
    print(f"Digits; {args.seeds} learn seeds, each learn run with {cap} (default learn settings "
          f"otherwise); {per} MLP training seed(s) "
          f"per surrogate (CE: the same {args.seeds * per} training seeds); {n_batches} held-out test-output "
          f"batches of 128 per seed; test set "
          f"{split.x_test.shape[0]} samples.")
    print()
    print("| loss (training) | penalty λ | held-out Spearman | held-out Kendall | MLP test accuracy "
          "| paired Δ vs CE (points) | learn time (s) | steps (best step) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print(f"\ntotal time {time.perf_counter() - t_all:.0f} s")
    print(machine_line() + " (at end)")


if __name__ == "__main__":
    main()
