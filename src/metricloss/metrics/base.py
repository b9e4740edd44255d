"""The metric adapter: one object that evaluates a batch metric, knows its direction, and checks its output.

A *metric* in metricloss scores one batch: ``metric(pred, target) -> float`` with the task's call shapes
(see :mod:`metricloss.tasks`). :func:`as_metric` turns a built-in name, a plain callable, a torchmetrics
metric object or a MONAI metric object into a :class:`BatchMetric`; learners only ever talk to
:class:`BatchMetric`. (``Metric`` is the old name of :class:`BatchMetric`, kept as an alias; it was renamed so as
not to read as torchmetrics' ``Metric``.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._adapters import MONAI_HIGHER_IS_BETTER, is_monai_metric, monai_batch_fn, torchmetrics_segmentation_inputs

__all__ = ["BatchMetric", "Metric", "MetricError", "as_metric"]

BatchFn = Callable[[torch.Tensor, torch.Tensor], Any]
StackedFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class MetricError(ValueError):
    """The user's metric raised, or returned something that is not one finite number."""


@dataclass(frozen=True)
class BatchMetric:
    """A batch metric with its direction (not a torchmetrics ``Metric``: it holds no state between batches).

    Attributes:
        name: shown in reports and stored with surrogates.
        fn: ``fn(pred, target)`` on one batch, returning a number (float, 0-d or 1-element tensor).
        higher_is_better: direction of ``fn``.
        stacked: optional vectorised form over a stack of batches, ``(N, B, ...) -> (N,)``; used when
            present, and must agree with ``fn``.
    """

    name: str
    fn: BatchFn
    higher_is_better: bool = True
    stacked: StackedFn | None = field(default=None, compare=False)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> float:
        with torch.no_grad():
            try:
                value = self.fn(pred, target)
            except Exception as err:  # the user's code: say whose error it is
                raise MetricError(f"metric {self.name!r} raised {type(err).__name__}: {err}") from err
        return _to_float(value, self.name)

    def evaluate(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Metric of each batch of a stack ``(N, B, ...)``, as a float64 tensor ``(N,)``."""
        if self.stacked is not None:
            with torch.no_grad():
                values = self.stacked(pred, target).to(torch.float64)
            if not bool(torch.isfinite(values).all()):
                raise MetricError(f"metric {self.name!r} returned a non-finite value")
            return values
        return torch.tensor([self(p, t) for p, t in zip(pred, target, strict=True)], dtype=torch.float64)

    def oriented(self, values: torch.Tensor) -> torch.Tensor:
        """Values turned so that higher is better."""
        return values if self.higher_is_better else -values


#: The old name of :class:`BatchMetric` (an alias: ``isinstance`` and every use are the same).
Metric = BatchMetric


def _to_float(value: Any, name: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise MetricError(
                f"metric {name!r} must return one number per batch, got a tensor of shape {tuple(value.shape)}"
            )
        value = value.item()
    elif isinstance(value, np.ndarray | np.generic):  # numpy: judged like a tensor (one element, any shape)
        if value.size != 1:
            raise MetricError(
                f"metric {name!r} must return one number per batch, got an array of shape {value.shape}"
            )
        value = value.item()
    if isinstance(value, str | bytes):
        raise MetricError(f"metric {name!r} must return a number, got {type(value).__name__}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise MetricError(f"metric {name!r} must return a number, got {type(value).__name__}") from None
    if not math.isfinite(v):
        raise MetricError(f"metric {name!r} returned a non-finite value ({v}) ")
    return v


#: torchmetrics packages whose metrics take integer labels as targets.
_INTEGER_TARGET_MODULES = ("torchmetrics.classification", "torchmetrics.retrieval")


def _wrap_torchmetrics(obj: Any, higher_is_better: bool | None) -> BatchMetric:
    hib = obj.higher_is_better if higher_is_better is None else higher_is_better
    if hib is None:
        raise ValueError(
            f"torchmetrics metric {type(obj).__name__} does not say whether higher is better; "
            "pass `higher_is_better=`"
        )

    integer_target = type(obj).__module__.startswith(_INTEGER_TARGET_MODULES)
    segmentation = type(obj).__module__.startswith("torchmetrics.segmentation")

    def fn(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if segmentation:  # they take label maps or one-hot masks, not logits
            pred, target = torchmetrics_segmentation_inputs(obj, pred, target)
        elif integer_target and target.is_floating_point() and bool((target == target.round()).all()):
            # torchmetrics' classification and retrieval metrics refuse float labels; the set task (and BCE-style
            # data) carries {0, 1} as floats, so integral float targets are handed over as int64.
            target = target.long()
        obj.reset()
        value = obj(pred, target)
        obj.reset()
        return value

    return BatchMetric(type(obj).__name__, fn, bool(hib))


def _wrap_monai(obj: Any, higher_is_better: bool | None) -> BatchMetric:
    name = type(obj).__name__
    hib = MONAI_HIGHER_IS_BETTER.get(name) if higher_is_better is None else higher_is_better
    if hib is None:
        raise ValueError(f"MONAI metric {name} is not one metricloss knows the direction of; pass `higher_is_better=`")
    return BatchMetric(name, monai_batch_fn(obj), bool(hib))


def as_metric(
    metric: Any, higher_is_better: bool | None = None, builtins: dict[str, BatchMetric] | None = None
) -> BatchMetric:
    """Adapt ``metric`` to a :class:`BatchMetric`.

    Args:
        metric: a :class:`BatchMetric`; a built-in name (a key of ``builtins``); a torchmetrics ``Metric``
            object (its own ``higher_is_better`` is used); a MONAI metric object such as ``DiceMetric`` or
            ``HausdorffDistanceMetric`` (segmentation: it receives one-hot masks of the arg-max labels and of the
            targets, ignored pixels all-zero in both, and ``aggregate()``'s value; the direction of MONAI's own
            metrics is known); or any callable ``metric(pred, target)``
            returning one number per batch (higher is better unless ``higher_is_better=False``).
        higher_is_better: overrides the direction.
        builtins: the task's built-in metrics, for names.
    """
    if isinstance(metric, BatchMetric):
        if higher_is_better is None or higher_is_better == metric.higher_is_better:
            return metric
        return BatchMetric(metric.name, metric.fn, higher_is_better, metric.stacked)
    if isinstance(metric, str):
        builtins = builtins or {}
        if metric not in builtins:
            known = ", ".join(sorted(builtins)) or "none"
            raise ValueError(f"`metric`: unknown built-in metric {metric!r} for this task; known: {known}")
        return as_metric(builtins[metric], higher_is_better)
    try:
        import torchmetrics
    except ImportError:  # pragma: no cover - torchmetrics is a dependency
        torchmetrics = None
    if torchmetrics is not None and isinstance(metric, torchmetrics.Metric):
        return _wrap_torchmetrics(metric, higher_is_better)
    if is_monai_metric(metric):
        return _wrap_monai(metric, higher_is_better)
    if callable(metric):
        name = getattr(metric, "__name__", type(metric).__name__)
        return BatchMetric(name, metric, True if higher_is_better is None else bool(higher_is_better))
    raise TypeError(
        "`metric` must be a built-in metric name, a callable metric(pred, target) -> float, "
        f"or a torchmetrics Metric object; got {type(metric).__name__}"
    )
