"""Batch-level metrics, one module per task family, and the adapter that accepts names, callables and torchmetrics
objects.

Every family is exported the same way: its module (``metrics.classification``, ``metrics.ordinal``,
``metrics.set``, ``metrics.pose``, ``metrics.sequence``, ``metrics.segmentation``, each with ``BUILTINS``, the
metrics its task knows by name) and its metric functions at this level (``metrics.accuracy``, ``metrics.mae``,
``metrics.f1``, ``metrics.pck``, ``metrics.bleu``, ``metrics.miou``, ...), except the names two families share:
balanced accuracy and MCC exist for classification (multi-class) and for sets (binary / multi-label), so they are
reached through their family,
``metrics.classification.mcc`` and ``metrics.set.mcc``. :class:`BatchMetric` is a metric with its direction;
``Metric``, its old name, still works but warns.

Example:
    >>> import torch
    >>> from metricloss import metrics
    >>> logits, target = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    >>> float(metrics.accuracy(logits, target)), sorted(metrics.FAMILIES)
    (0.5, ['classification', 'ordinal', 'pose', 'segmentation', 'sequence', 'set'])
"""

import warnings
from typing import Any

from . import classification, ordinal, pose, segmentation, sequence, set
from .base import BatchMetric, MetricError, as_metric
from .classification import accuracy, cohen_kappa, macro_f1, top_k_accuracy
from .ordinal import mae, quadratic_kappa, within1_accuracy
from .pose import pck, pckh, percentage_correct_keypoints, percentage_correct_keypoints_head
from .segmentation import boundary_f1, boundary_iou, dice, hd95, miou, per_image_miou, pixel_accuracy, surface_dice
from .sequence import bleu, chrf, edit_distance, rouge_l, token_f1
from .set import auroc, average_precision, f1

#: Each family's built-in metrics by name (the ``BUILTINS`` of its module).
FAMILIES: dict[str, dict[str, BatchMetric]] = {
    "classification": classification.BUILTINS,
    "ordinal": ordinal.BUILTINS,
    "set": set.BUILTINS,
    "pose": pose.BUILTINS,
    "sequence": sequence.BUILTINS,
    "segmentation": segmentation.BUILTINS,
}

__all__ = [
    "FAMILIES",
    "BatchMetric",
    "MetricError",
    "accuracy",
    "as_metric",
    "auroc",
    "average_precision",
    "bleu",
    "boundary_f1",
    "boundary_iou",
    "chrf",
    "classification",
    "cohen_kappa",
    "dice",
    "edit_distance",
    "f1",
    "hd95",
    "macro_f1",
    "mae",
    "miou",
    "ordinal",
    "pck",
    "pckh",
    "per_image_miou",
    "percentage_correct_keypoints",
    "percentage_correct_keypoints_head",
    "pixel_accuracy",
    "pose",
    "quadratic_kappa",
    "rouge_l",
    "segmentation",
    "sequence",
    "set",
    "surface_dice",
    "token_f1",
    "top_k_accuracy",
    "within1_accuracy",
]


def __getattr__(name: str) -> Any:
    if name == "Metric":
        warnings.warn("metricloss.metrics.Metric is deprecated: it is now BatchMetric (torchmetrics has a "
                      "different Metric)", DeprecationWarning, stacklevel=2)
        return BatchMetric
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
