"""What the builders of the anchored losses share: the refactoring of a metric, its :class:`BatchMetric`, the task,
the checked arguments and the held-out batches (:func:`metricloss.build_uniloss`,
:func:`metricloss.fit_nonparametric`)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from .._checks import check_int
from ..evaluation import stack_batches
from ..metrics.base import BatchMetric, as_metric
from ..tasks.base import Task, get_task
from .refactorings import REFACTORINGS, Refactoring

__all__ = ["METRIC_REFACTORINGS", "AnchoredSetup", "heldout_batches", "refactoring_for", "setup"]

#: Metric names (as tasks name their built-in metrics) that have a built-in refactoring.
METRIC_REFACTORINGS: dict[str, str] = {
    "accuracy": "accuracy",
    "average_precision": "average_precision",
    "ap": "average_precision",
    "pck": "pck",
}


def refactoring_for(metric: Any, **kwargs: Any) -> Refactoring:
    """The refactoring of ``metric``: a :class:`Refactoring` as is, or a metric name with a built-in one.

    Example:
        >>> refactoring_for("accuracy", num_classes=10)
        Accuracy(num_classes=10)
    """
    if isinstance(metric, Refactoring):
        if kwargs:
            raise TypeError(f"`metric` is already a Refactoring; unexpected arguments {sorted(kwargs)}")
        return metric
    name = metric.name if isinstance(metric, BatchMetric) else metric
    if isinstance(name, str) and name in METRIC_REFACTORINGS:
        cls = REFACTORINGS[METRIC_REFACTORINGS[name]]
        try:
            return cls(**kwargs)
        except TypeError as err:
            raise TypeError(f"refactoring {cls.name!r}: {err}") from None
    raise ValueError(
        f"UniLoss needs the metric refactored into comparisons f and a function g of their signs; built-in for "
        f"{', '.join(map(repr, sorted(METRIC_REFACTORINGS)))}. Got {name!r}: pass "
        "metricloss.uniloss.FunctionRefactoring(f, g) (or a Refactoring subclass) as `metric`"
    )


@dataclass
class AnchoredSetup:
    """The resolved arguments of a builder: ``options`` are the loss's own (refactoring arguments removed)."""

    task: Task
    refactoring: Refactoring
    metric: BatchMetric
    options: dict[str, Any]
    batch_size: int
    seed: int


def setup(metric: Any, task: str | Task, options: dict[str, Any] | None, option_names: Collection[str],
          batch_size: int | None, seed: Any, task_kwargs: dict[str, Any]) -> AnchoredSetup:
    """Resolve a builder's arguments: the task, the metric's refactoring (``options`` that are not in
    ``option_names`` go to its constructor; ``num_classes`` reaches the accuracy refactoring), the metric the report
    is measured with, and the checked ``batch_size`` and ``seed``."""
    task_obj = get_task(task, **task_kwargs)
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"`options` must be a dict of loss options and refactoring arguments, got {options!r}")
    opts = dict(options or {})
    ref_kwargs = {k: opts.pop(k) for k in list(opts) if k not in option_names}
    if isinstance(metric, str | BatchMetric) and METRIC_REFACTORINGS.get(getattr(metric, "name", metric)) == "accuracy":
        ref_kwargs.setdefault("num_classes", task_kwargs.get("num_classes"))
    refactoring = refactoring_for(metric, **ref_kwargs)
    if isinstance(metric, Refactoring) or (isinstance(metric, str) and metric not in task_obj.metrics):
        met = BatchMetric(refactoring.name, refactoring.metric, refactoring.higher_is_better)
    else:
        met = as_metric(metric, None, task_obj.metrics)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an integer, got {seed!r}")
    size = check_int(batch_size if batch_size is not None else task_obj.default_batch_size, "batch_size", 1)
    return AnchoredSetup(task_obj, refactoring, met, opts, size, seed)


def heldout_batches(
    s: AnchoredSetup,
    outputs: Iterable[tuple[torch.Tensor, torch.Tensor]] | None,
    count: int,
    generator: torch.Generator,
    *,
    shuffle: bool,
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``count`` held-out batches and what they are: model outputs cut into batches (the first ``count``, or
    ``count`` drawn by ``generator`` with ``shuffle``), or the task's random batches G_R."""
    if outputs is None:
        pred, target = s.task.random_batches(count, s.batch_size, generator)
        return pred, target, "random batches (G_R)"
    pred, target = stack_batches(outputs, s.batch_size, s.task)
    keep = torch.randperm(pred.shape[0], generator=generator)[:count] if shuffle else slice(0, count)
    return pred[keep], target[keep], "held-out model outputs"
