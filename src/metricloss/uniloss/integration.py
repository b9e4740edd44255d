"""UniLoss behind the learner's interface: ``learn_uniloss(metric, task, ...)``, the future
``metricloss.learn(..., method="uniloss")``.

Nothing is learned: the loss is built from the metric's refactoring, then measured like every surrogate, by
Spearman and Kendall between its negated loss and the metric over held-out batches (the task's random
batches G_R, or model outputs passed as ``outputs=``), beside the task's baseline loss on the same batches.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import torch

from ..evaluation import agreement, stack_batches
from ..metrics.base import Metric, as_metric
from ..report import Report
from ..tasks.base import Task, get_task
from .module import OPTIONS, UniLoss
from .refactorings import REFACTORINGS, Refactoring

__all__ = ["METRIC_REFACTORINGS", "learn_uniloss", "refactoring_for"]

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
    name = metric.name if isinstance(metric, Metric) else metric
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


def learn_uniloss(
    metric: Any,
    task: str | Task = "classification",
    *,
    outputs: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    batch_size: int | None = None,
    validation_batches: int = 256,
    seed: int = 0,
    uniloss: dict[str, Any] | None = None,
    **task_kwargs: Any,
) -> UniLoss:
    """Build a :class:`UniLoss` for ``metric`` on ``task`` and measure its agreement with the metric.

    Args:
        metric: a metric name with a built-in refactoring (``"accuracy"``, ``"average_precision"``, ``"pck"``) or a
            :class:`~metricloss.uniloss.Refactoring`.
        task: the task family whose random batches, metric and baseline are used for the report.
        outputs: optional held-out ``(pred, target)`` batches of real model outputs; used for the report instead of
            random batches.
        batch_size: samples per held-out batch (default: the task's).
        validation_batches: held-out batches measured (at most this many with ``outputs``).
        seed: seeds the held-out batches and the loss's anchors.
        uniloss: UniLoss options and refactoring arguments, e.g. ``{"fraction": 0.2}`` or ``{"alpha": 0.05}``.
        **task_kwargs: the task's shape arguments (``num_classes=10``); ``num_classes`` also reaches the accuracy
            refactoring.

    Returns:
        A :class:`UniLoss` whose ``report`` holds Spearman / Kendall on the held-out batches beside the baseline's.

    Example:
        >>> from metricloss.uniloss import learn_uniloss
        >>> loss_fn = learn_uniloss("accuracy", num_classes=10, validation_batches=16, batch_size=32)
        >>> loss_fn.report.method, loss_fn.report.n_validation_batches
        ('uniloss', 16)
    """
    t0 = time.perf_counter()
    task_obj = get_task(task, **task_kwargs)
    options = dict(uniloss or {})
    ref_kwargs = {k: options.pop(k) for k in list(options) if k not in OPTIONS}
    if isinstance(metric, str | Metric) and METRIC_REFACTORINGS.get(getattr(metric, "name", metric)) == "accuracy":
        ref_kwargs.setdefault("num_classes", task_kwargs.get("num_classes"))
    refactoring = refactoring_for(metric, **ref_kwargs)
    loss_fn = UniLoss(refactoring, seed=seed, **options)

    if isinstance(metric, Refactoring) or (isinstance(metric, str) and metric not in task_obj.metrics):
        met = Metric(refactoring.name, refactoring.metric, refactoring.higher_is_better)
    else:
        met = as_metric(metric, None, task_obj.metrics)
    batch_size = int(batch_size if batch_size is not None else task_obj.default_batch_size)
    if outputs is not None:
        pred, target = stack_batches(outputs, batch_size, task_obj)
        pred, target = pred[:validation_batches], target[:validation_batches]
        validation = "held-out model outputs"
    else:
        pred, target = task_obj.random_batches(validation_batches, batch_size, torch.Generator().manual_seed(seed))
        validation = "random batches (G_R)"
    t_metric = time.perf_counter()
    values = met.evaluate(pred, target)
    metric_seconds = time.perf_counter() - t_metric
    ours = agreement(loss_fn.batch_losses(pred, target), values, met.higher_is_better)
    with torch.no_grad():
        base = agreement(task_obj.baseline(pred, target), values, met.higher_is_better)
    loss_fn.report = Report.from_agreement(
        task_obj, met, "uniloss", ours, base,
        validation=validation,
        n_validation_batches=int(pred.shape[0]),
        batch_size=batch_size,
        settings=loss_fn.config(),
        learn_seconds=time.perf_counter() - t0,
        metric_seconds=metric_seconds,
    )
    return loss_fn

