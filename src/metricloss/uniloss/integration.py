"""UniLoss's public builder: :func:`build_uniloss` makes a :class:`UniLoss` for a metric on a task and measures it.

Nothing is learned: the loss is built from the metric's refactoring, then measured like every surrogate
(:func:`metricloss.evaluation.measure`), by Spearman and Kendall between its negated loss and the metric over
held-out batches (the task's random batches G_R, or model outputs passed as ``outputs=``), beside the task's
baseline loss on the same batches.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from typing import Any

import torch

from .._checks import check_int
from ..anchored.builder import METRIC_REFACTORINGS, heldout_batches, refactoring_for, setup
from ..evaluation import measure
from ..tasks.base import Task
from .module import OPTIONS, UniLoss

__all__ = ["METRIC_REFACTORINGS", "build_uniloss", "learn_uniloss", "refactoring_for"]


def build_uniloss(
    metric: Any,
    task: str | Task = "classification",
    *,
    outputs: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    batch_size: int | None = None,
    validation_batches: int = 256,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    **task_kwargs: Any,
) -> UniLoss:
    """Build a :class:`UniLoss` for ``metric`` on ``task`` and measure its agreement with the metric.

    Args:
        metric: a metric name with a built-in refactoring (``"accuracy"``, ``"average_precision"``, ``"pck"``) or a
            :class:`~metricloss.uniloss.Refactoring`.
        task: the task family whose random batches, metric and baseline are used for the report (and the loss's
            ``task``).
        outputs: optional held-out ``(pred, target)`` batches of real model outputs; the first
            ``validation_batches`` are used for the report instead of random batches.
        batch_size: samples per held-out batch (default: the task's).
        validation_batches: held-out batches measured (at most this many with ``outputs``), >= 2.
        seed: seeds the held-out batches and the loss's anchors.
        options: UniLoss options (:data:`~metricloss.uniloss.OPTIONS`) and refactoring arguments, e.g.
            ``{"fraction": 0.2}`` or ``{"alpha": 0.05}``.
        **task_kwargs: the task's shape arguments (``num_classes=10``); ``num_classes`` also reaches the accuracy
            refactoring.

    Returns:
        A :class:`UniLoss` whose ``report`` holds Spearman / Kendall on the held-out batches beside the baseline's.

    Example:
        >>> import metricloss as ml
        >>> loss_fn = ml.build_uniloss("accuracy", num_classes=10, validation_batches=16, batch_size=32)
        >>> loss_fn.report.method, loss_fn.report.n_validation_batches, loss_fn.task.name
        ('uniloss', 16, 'classification')
    """
    t0 = time.perf_counter()
    s = setup(metric, task, options, OPTIONS, batch_size, seed, task_kwargs)
    validation_batches = check_int(validation_batches, "validation_batches", 2)
    loss_fn = UniLoss(s.refactoring, seed=s.seed, task=s.task, **s.options)
    pred, target, validation = heldout_batches(s, outputs, validation_batches, torch.Generator().manual_seed(seed),
                                               shuffle=False)
    loss_fn.report = measure(loss_fn, s.task, s.metric, (pred, target), method="uniloss", validation=validation,
                             settings=loss_fn.config(), started=t0, real_outputs=outputs is not None)
    return loss_fn


def learn_uniloss(metric: Any, task: str | Task = "classification", *, uniloss: dict[str, Any] | None = None,
                  **kwargs: Any) -> UniLoss:
    """Deprecated name of :func:`build_uniloss` (nothing is learned), whose ``uniloss=`` is now ``options=``."""
    warnings.warn("learn_uniloss is deprecated: use metricloss.build_uniloss (its `uniloss=` is now `options=`)",
                  DeprecationWarning, stacklevel=2)
    return build_uniloss(metric, task, options=uniloss, **kwargs)
