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

from heldout_correlation import HELDOUT, correlation_rows, markdown
from metricloss.tasks import get_task

#: Learning settings shared by this benchmark, the downstream one and the zoo script.
LEARN: dict[str, Any] = {"batches_per_step": 64, "steps": 300, "eval_every": 25, "patience": 4,
                         "validation_batches": 128, "pool_size": 1024, "gradient_probe": 0}


def rows(seed: int = 0, num_classes: int = 5, heldout: int = HELDOUT, **overrides: Any) -> list[dict]:
    """One row per built-in metric, measured on ``heldout`` fresh G_R batches."""
    return correlation_rows("ordinal", {"num_classes": num_classes}, {**LEARN, **overrides}, seed=seed,
                            heldout=heldout)


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
