"""Rank correlation with each built-in sequence metric: the learned surrogate against token cross-entropy.

For every built-in metric of ``task="sequence"`` (BLEU, chrF, edit distance, token F1, ROUGE-L) a surrogate is
learned from G_R, then it and the baseline are scored on a *fresh* held-out set of G_R batches (a generator seed
the learner never used): Spearman and Kendall between the negated loss and the metric (turned higher-is-better).
``metric_share`` is the learner's time spent in the metric over its whole learning time
(``report.metric_seconds / report.learn_seconds``).

Run (about 6 minutes on 2 busy CPU cores)::

    .venv/bin/python benchmarks/correlation_sequence.py
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from heldout_correlation import HELDOUT, correlation_rows, markdown
from metricloss.tasks import get_task

SHAPE = {"vocab_size": 32, "max_length": 24}
#: Learning settings shared by this benchmark, the downstream one and the zoo script.
LEARN: dict[str, Any] = {"batches_per_step": 32, "steps": 400, "eval_every": 25, "patience": 4,
                         "validation_batches": 128, "gradient_probe": 0}


def rows(seed: int = 0, heldout: int = HELDOUT, metrics: list[str] | None = None, verbose: bool = False,
         **overrides: Any) -> list[dict]:
    """One row per built-in metric (or per name in ``metrics``), measured on ``heldout`` fresh G_R batches."""
    return correlation_rows("sequence", SHAPE, {**LEARN, **overrides}, seed=seed, heldout=heldout, metrics=metrics,
                            verbose=verbose)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--metrics", nargs="*", default=None, help="a subset of the built-in metrics")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = rows(args.seed, metrics=args.metrics, verbose=True)
    cfg = get_task("sequence", **SHAPE)
    print(f"task sequence {SHAPE}, batch {cfg.default_batch_size}, {HELDOUT} fresh held-out G_R batches, seed "
          f"{args.seed}, {torch.get_num_threads()} thread(s) on a shared machine\n")
    print(markdown(table))
