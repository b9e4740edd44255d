"""The measurement every correlation benchmark shares: learn a surrogate per built-in metric of a task, then score
it and the task's baseline loss on a *fresh* set of held-out G_R batches (generator seed ``10_000 + seed``, one
the learner never draws from).

Each row holds Spearman and Kendall between the negated loss and the metric (turned higher-is-better), the
learning time and ``metric_share``, the learner's time spent in the metric over its whole learning time
(``report.metric_seconds / report.learn_seconds``). Used by ``correlation_table.py`` (every family in one run)
and by the per-family ``correlation_<family>.py`` scripts.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch

import metricloss as ml
from metricloss.evaluation import agreement
from metricloss.tasks import get_task

HELDOUT = 512


def correlation_rows(task_name: str, task_kwargs: dict[str, Any], settings: dict[str, Any], *, seed: int = 0,
                     heldout: int = HELDOUT, metrics: Sequence[str] | None = None,
                     net: dict[str, Any] | None = None, verbose: bool = False) -> list[dict]:
    """One row per built-in metric of ``task_name`` (or per name in ``metrics``).

    ``settings`` are passed to :func:`metricloss.learn` (``batch_size`` also sets the held-out batch size; the
    task's default otherwise); ``net`` overrides the surrogate net's configuration and is recorded in the row.
    """
    task = get_task(task_name, **task_kwargs)
    settings = dict(settings)
    batch_size = settings.pop("batch_size", task.default_batch_size)
    pred, target = task.random_batches(heldout, batch_size, torch.Generator().manual_seed(10_000 + seed))
    baseline_losses = task.baseline(pred, target)
    extra = {} if net is None else {"net": {**task.default_net_config(), **net}}
    out = []
    for name, metric in task.metrics.items():
        if metrics is not None and name not in metrics:
            continue
        sur = ml.learn(name, task=task_name, seed=seed, progress=False, batch_size=batch_size, **extra, **settings,
                       **task_kwargs)
        values = metric.evaluate(pred, target)
        base = agreement(baseline_losses, values, metric.higher_is_better)
        ours = agreement(sur.batch_losses(pred, target), values, metric.higher_is_better)
        rep = sur.report
        row = {
            "task": task_name, "metric": name, "baseline": task.baseline_name,
            "baseline_spearman": base["spearman"], "baseline_kendall": base["kendall"],
            "spearman": ours["spearman"], "kendall": ours["kendall"],
            "learn_seconds": rep.learn_seconds, "metric_share": rep.metric_seconds / rep.learn_seconds,
            "steps": rep.steps, "batch_size": batch_size, "heldout": heldout,
        }
        if net is not None:
            row["net"] = net.get("kind", "custom")
        out.append(row)
        if verbose:
            print(markdown(out[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    return out


def markdown(table: list[dict]) -> str:
    """The rows as a markdown table; a ``net`` column appears when any row names its net."""
    with_net = any("net" in r for r in table)
    head = ("| task | metric |" + (" surrogate net |" if with_net else "") + " baseline | baseline Spearman "
            "| baseline Kendall | surrogate Spearman | surrogate Kendall | above baseline | learn s | metric share |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in table:
        above = "yes" if r["spearman"] > r["baseline_spearman"] and r["kendall"] > r["baseline_kendall"] else "**no**"
        lines.append(f"| {r['task']} | {r['metric']} |" + (f" {r.get('net', '')} |" if with_net else "")
                     + f" {r['baseline']} | {r['baseline_spearman']:.4f} | {r['baseline_kendall']:.4f} "
                     f"| {r['spearman']:.4f} | {r['kendall']:.4f} | {above} | {r['learn_seconds']:.1f} "
                     f"| {r['metric_share']:.3f} |")
    return "\n".join(lines)
