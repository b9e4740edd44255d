"""Rank correlation with each built-in ordinal metric: the learned surrogate against cross-entropy.

For every built-in metric of ``task="ordinal"`` (MAE, within-one accuracy, quadratic kappa) a surrogate is
learned from G_R, then it and the baseline are scored on a *fresh* held-out set of G_R batches (a generator seed
the learner never used): Spearman and Kendall between the negated loss and the metric. ``metric_share`` is the
learner's time spent in the metric over its whole learning time (``report.metric_seconds / report.learn_seconds``).

Run (K = 5 ordered classes by default, as the downstream benchmark)::

    .venv/bin/python benchmarks/correlation_ordinal.py
    .venv/bin/python benchmarks/correlation_ordinal.py --num-classes 10
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

import metricloss as ml
from metricloss.evaluation import agreement
from metricloss.tasks import get_task
from metricloss.tasks import ordinal as _ordinal  # noqa: F401  (registers task="ordinal")

#: Learning settings shared by this benchmark, the downstream one and the zoo script.
LEARN: dict[str, Any] = {"batches_per_step": 64, "steps": 300, "eval_every": 25, "patience": 4,
                         "validation_batches": 128, "pool_size": 1024, "gradient_probe": 0}
HELDOUT = 512


def rows(seed: int = 0, num_classes: int = 5, heldout: int = HELDOUT, **overrides: Any) -> list[dict]:
    """One row per built-in metric, measured on ``heldout`` fresh G_R batches."""
    task = get_task("ordinal", num_classes=num_classes)
    settings = {**LEARN, **overrides}
    batch_size = settings.pop("batch_size", task.default_batch_size)
    pred, target = task.random_batches(heldout, batch_size, torch.Generator().manual_seed(10_000 + seed))
    out = []
    for name, metric in task.metrics.items():
        sur = ml.learn(name, task="ordinal", num_classes=num_classes, seed=seed, progress=False,
                       batch_size=batch_size, **settings)
        values = metric.evaluate(pred, target)
        base = agreement(task.baseline(pred, target), values, metric.higher_is_better)
        ours = agreement(sur.batch_losses(pred, target), values, metric.higher_is_better)
        rep = sur.report
        out.append({
            "task": "ordinal", "metric": name, "baseline": task.baseline_name,
            "baseline_spearman": base["spearman"], "baseline_kendall": base["kendall"],
            "spearman": ours["spearman"], "kendall": ours["kendall"],
            "learn_seconds": rep.learn_seconds, "metric_share": rep.metric_seconds / rep.learn_seconds,
        })
    return out


def markdown(table: list[dict]) -> str:
    head = ("| metric | baseline | baseline Spearman | baseline Kendall | surrogate Spearman | surrogate Kendall "
            "| learn s | metric share |")
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in table:
        lines.append(f"| {r['metric']} | {r['baseline']} | {r['baseline_spearman']:.4f} | {r['baseline_kendall']:.4f} "
                     f"| {r['spearman']:.4f} | {r['kendall']:.4f} | {r['learn_seconds']:.1f} "
                     f"| {r['metric_share']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-classes", type=int, default=5, help="ordered classes K (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = rows(args.seed, args.num_classes)
    task = get_task("ordinal", num_classes=args.num_classes)
    print(f"task ordinal (num_classes={args.num_classes}), batch {task.default_batch_size}, {HELDOUT} fresh held-out "
          f"G_R batches, seed {args.seed}, {torch.get_num_threads()} thread(s) on a shared, busy machine\n")
    print(markdown(table))
