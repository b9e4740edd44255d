"""Rank correlation with each built-in set metric: the learned DeepSets surrogate against binary cross-entropy.

For every built-in metric of ``task="set"`` (F1, average precision, AUROC, MCC, balanced accuracy) a surrogate is
learned from G_R, then it and the baseline are scored on a *fresh* held-out set of G_R batches (a generator seed
the learner never used): Spearman and Kendall between the negated loss and the metric. ``metric_share`` is the
learner's time spent in the metric over its whole learning time (``report.metric_seconds / report.learn_seconds``).

Run (binary scores by default; ``--num-labels 4`` for macro-averaged multi-label batches)::

    .venv/bin/python benchmarks/correlation_set.py
    .venv/bin/python benchmarks/correlation_set.py --num-labels 4
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


def rows(seed: int = 0, num_labels: int | None = None, heldout: int = HELDOUT, **overrides: Any) -> list[dict]:
    """One row per built-in metric, measured on ``heldout`` fresh G_R batches."""
    return correlation_rows("set", {"num_labels": num_labels}, {**LEARN, **overrides}, seed=seed, heldout=heldout)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-labels", type=int, default=None, help="labels per sample (default: binary scores)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = rows(args.seed, args.num_labels)
    task = get_task("set", num_labels=args.num_labels)
    print(f"task set (num_labels={args.num_labels}), batch {task.default_batch_size}, {HELDOUT} fresh held-out G_R "
          f"batches, seed {args.seed}, {torch.get_num_threads()} thread(s) on a shared, busy machine\n")
    print(markdown(table))
