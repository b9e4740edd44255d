"""Which per-sample inputs should the classification surrogate see?

    .venv/bin/python benchmarks/classification_features.py [--seeds 3] [--threads 2]

For scikit-learn's digits and MNIST-5k, an MLP is trained once with cross-entropy (seed 0) keeping ~25
checkpoints, exactly as ``metricloss demo`` does; the checkpoints' training-set outputs are G_M. For each seed
``s`` and each feature set, an accuracy surrogate is learned with ``learn(..., seed=s, net={"features": ...})``
(all other settings default) and scored, like the demo's Table-1 analog, by Spearman and Kendall against batch
accuracy on held-out batches of the checkpoints' *test-set* outputs (``heldout_batches(..., seed=100 + s)``),
beside cross-entropy on the same batches. Mean ± std over seeds.
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
from metricloss import demo
from metricloss.evaluation import agreement
from metricloss.metrics.classification import accuracy

FEATURES = (["target_prob"], ["target_prob", "margin"], ["margin"])
NOTES = {"target_prob": " (paper)", "target_prob+margin": " (current default)"}




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="learn seeds per feature set")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    args = parser.parse_args()
    seeds = args.seeds
    torch.set_num_threads(args.threads)
    print(machine_line() + " (at start)", flush=True)
    t_all = time.perf_counter()
    lines = ["| data set | loss | held-out Spearman | held-out Kendall | learn time (s) | steps (best step) |",
             "| --- | --- | --- | --- | --- | --- |"]
    winners = []
    for name in ("digits", "mnist_5k"):
        split, outputs, test_out = demo_outputs(name)
        heldout = []
        for s in range(seeds):
            pred, target = demo.heldout_batches(test_out, split.y_test, per_checkpoint=8, seed=100 + s)
            ce = F.cross_entropy(pred.flatten(0, 1), target.flatten(), reduction="none").view(target.shape).mean(1)
            heldout.append((pred, target, accuracy(pred, target), ce))
        n_batches = heldout[0][0].shape[0]
        ce_rows = [agreement(ce, acc, True) for _, _, acc, ce in heldout]
        lines.append(f"| {name} | cross-entropy | {ms([r['spearman'] for r in ce_rows])} "
                     f"| {ms([r['kendall'] for r in ce_rows])} | – | – |")
        means = {}
        for feats in FEATURES:
            key = "+".join(feats)
            sp, kt, secs, steps = [], [], [], []
            for s in range(seeds):
                sur = ml.learn("accuracy", num_classes=split.num_classes, outputs=outputs, seed=s, progress=False,
                               net={"features": feats, "hidden": 128, "depth": 3})
                pred, target, acc, _ = heldout[s]
                r = agreement(sur.batch_losses(pred, target), acc, True)
                sp.append(r["spearman"])
                kt.append(r["kendall"])
                secs.append(sur.report.learn_seconds)
                steps.append(f"{sur.report.steps} ({sur.report.best_step})")
                print(f"  [{name}] {key} seed {s}: Spearman {r['spearman']:.4f} Kendall {r['kendall']:.4f} "
                      f"learn {sur.report.learn_seconds:.1f} s", flush=True)
            means[key] = (statistics.mean(sp), statistics.mean(kt))
            lines.append(f"| {name} | surrogate: {key}{NOTES.get(key, '')} | {ms(sp)} | {ms(kt)} "
                         f"| {ms(secs, 1)} | {', '.join(steps)} |")
        best = max(means, key=lambda k: means[k])
        winners.append(f"{name}: highest mean held-out Spearman: {best} ({means[best][0]:.4f}; "
                       + ", ".join(f"{k} {v[0]:.4f}" for k, v in means.items() if k != best)
                       + f"; cross-entropy {statistics.mean(r['spearman'] for r in ce_rows):.4f}) "
                       f"on {n_batches} held-out batches of 128")
    print()
    print(f"Accuracy surrogates, {seeds} seeds (learn seed s, held-out batch seed 100 + s); default learn settings.")
    print()
    print("\n".join(lines))
    print()
    for w in winners:
        print(w)
    print(f"\ntotal time {time.perf_counter() - t_all:.0f} s")
    print(machine_line() + " (at end)")


if __name__ == "__main__":
    main()
