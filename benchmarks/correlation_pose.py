"""Rank correlation with PCK / PCKh of the learned pose surrogates (both nets) and of MSE, on held-out batches.

For each built-in pose metric and each surrogate net (``"embedding"``: the paper's, heatmaps embedded by a
shared encoder and compared by MSE in the embedding; ``"weighted"``: the authors' code, a sigmoid-weighted
per-keypoint MSE), learns a surrogate with ``metricloss.learn`` (library defaults: 128 batches per step,
batches of 8, K = 8 keypoints on 16×16 heatmaps, σ = 2; at most ``STEPS`` steps) and measures Spearman and
Kendall between the negated loss and the metric on a *fresh* held-out set of 512 G_R batches drawn from an
unseen seed, beside the MSE baseline on the same batches. Reproduce with::

    .venv/bin/python benchmarks/correlation_pose.py            # about 10-15 minutes on 2 busy cores

Rows carry the keys ``task, metric, baseline, baseline_spearman, baseline_kendall, spearman, kendall,
learn_seconds, metric_share`` (``metric_share`` = the learner's time in the metric / its total time) and
``net``, the surrogate net.
"""

from __future__ import annotations

import sys

import torch

import metricloss as ml
from metricloss.evaluation import agreement
from metricloss.tasks import pose  # noqa: F401  (registers task="pose")
from metricloss.tasks.base import get_task

TASK = {"num_keypoints": 8, "heatmap_size": (16, 16)}
STEPS = 300
HELDOUT = 512
NETS = ("embedding", "weighted")


def rows(seed: int = 0, nets: tuple[str, ...] = NETS, steps: int = STEPS) -> list[dict]:
    task = get_task("pose", **TASK)
    pred, target = task.random_batches(HELDOUT, task.default_batch_size,
                                       torch.Generator().manual_seed(10_000 + seed))
    base_losses = task.baseline(pred, target)
    out = []
    for metric in task.metrics:
        values = task.metrics[metric].evaluate(pred, target)
        base = agreement(base_losses, values, True)
        for kind in nets:
            net = {**task.default_net_config(), "kind": kind}
            sur = ml.learn(metric, task="pose", net=net, steps=steps, seed=seed, progress=False, gradient_probe=0,
                           **TASK)
            ours = agreement(sur.batch_losses(pred, target), values, True)
            rep = sur.report
            out.append({
                "task": "pose", "metric": metric, "net": kind, "baseline": task.baseline_name,
                "baseline_spearman": base["spearman"], "baseline_kendall": base["kendall"],
                "spearman": ours["spearman"], "kendall": ours["kendall"],
                "learn_seconds": rep.learn_seconds, "metric_share": rep.metric_seconds / rep.learn_seconds,
            })
    return out


def markdown(table: list[dict]) -> str:
    lines = ["| task | metric | surrogate net | baseline | baseline Spearman / Kendall | surrogate Spearman / Kendall "
             "| learn s | metric share |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in table:
        lines.append(f"| {r['task']} | {r['metric']} | {r['net']} | {r['baseline']} | {r['baseline_spearman']:.4f} / "
                     f"{r['baseline_kendall']:.4f} | {r['spearman']:.4f} / {r['kendall']:.4f} | "
                     f"{r['learn_seconds']:.1f} | {r['metric_share']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    torch.set_num_threads(2)
    print(markdown(rows(int(sys.argv[1]) if len(sys.argv) > 1 else 0)))
