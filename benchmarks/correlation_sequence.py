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
import sys
from typing import Any

import torch

import metricloss as ml
from metricloss.evaluation import agreement
from metricloss.tasks import get_task
from metricloss.tasks import sequence as _sequence  # noqa: F401  (registers task="sequence")

SHAPE = {"vocab_size": 32, "max_length": 24}
#: Learning settings shared by this benchmark, the downstream one and the zoo script.
LEARN: dict[str, Any] = {"batches_per_step": 32, "steps": 400, "eval_every": 25, "patience": 4,
                         "validation_batches": 128, "gradient_probe": 0}
HELDOUT = 512


def rows(seed: int = 0, heldout: int = HELDOUT, metrics: list[str] | None = None, verbose: bool = False,
         **overrides: Any) -> list[dict]:
    """One row per built-in metric (or per name in ``metrics``), measured on ``heldout`` fresh G_R batches."""
    task = get_task("sequence", **SHAPE)
    settings = {**LEARN, **overrides}
    batch_size = settings.pop("batch_size", task.default_batch_size)
    pred, target = task.random_batches(heldout, batch_size, torch.Generator().manual_seed(10_000 + seed))
    out = []
    for name, metric in task.metrics.items():
        if metrics is not None and name not in metrics:
            continue
        sur = ml.learn(name, task="sequence", seed=seed, progress=False, batch_size=batch_size, **settings, **SHAPE)
        values = metric.evaluate(pred, target)
        base = agreement(task.baseline(pred, target), values, metric.higher_is_better)
        ours = agreement(sur.batch_losses(pred, target), values, metric.higher_is_better)
        rep = sur.report
        out.append({
            "task": "sequence", "metric": name, "baseline": task.baseline_name,
            "baseline_spearman": base["spearman"], "baseline_kendall": base["kendall"],
            "spearman": ours["spearman"], "kendall": ours["kendall"],
            "learn_seconds": rep.learn_seconds, "metric_share": rep.metric_seconds / rep.learn_seconds,
        })
        if verbose:
            print(markdown(out[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
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
    parser.add_argument("--metrics", nargs="*", default=None, help="a subset of the built-in metrics")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = rows(args.seed, metrics=args.metrics, verbose=True)
    cfg = get_task("sequence", **SHAPE)
    print(f"task sequence {SHAPE}, batch {cfg.default_batch_size}, {HELDOUT} fresh held-out G_R batches, seed "
          f"{args.seed}, {torch.get_num_threads()} thread(s) on a shared machine\n")
    print(markdown(table))
