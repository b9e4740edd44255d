"""Leaf: how segmentation logits and label maps are handed to other libraries' metric objects.

MONAI's metrics (``DiceMetric``, ``MeanIoU``, ``SurfaceDiceMetric``, ``HausdorffDistanceMetric``, ...) and
torchmetrics' segmentation metrics (``torchmetrics.segmentation.MeanIoU``, ``DiceScore``, ...) take one-hot masks or
label maps, not logits. :func:`monai_batch_fn` and :func:`torchmetrics_segmentation_inputs` convert metricloss'
call shapes (logits ``(B, C, H, W)`` or ``(B, 1, H, W)``, class indices ``(B, H, W)``) to theirs: the predicted
label is the arg-max class (``logit > 0`` for one logit per pixel) and a target pixel outside ``0..C-1`` (the
task's ``ignore_index``) becomes an all-zero row in *both* one-hot masks, MONAI's own convention for ignored pixels
(its ``ignore_index`` set to a value that is not a class masks exactly those rows).

This module imports nothing from metricloss (``metrics/base.py`` and ``metrics/segmentation.py`` both use it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["is_monai_metric", "monai_batch_fn", "segmentation_one_hot", "torchmetrics_segmentation_inputs"]

#: MONAI metric classes by direction, for objects that do not say it themselves (MONAI's do not).
MONAI_HIGHER_IS_BETTER = {
    "DiceMetric": True,
    "DiceHelper": True,
    "MeanIoU": True,
    "GeneralizedDiceScore": True,
    "SurfaceDiceMetric": True,
    "ConfusionMatrixMetric": True,
    "FBetaScore": True,
    "PanopticQualityMetric": True,
    "HausdorffDistanceMetric": False,
    "SurfaceDistanceMetric": False,
    "AbsoluteVolumeDifferenceMetric": False,
}


def segmentation_one_hot(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot masks ``(B, K, H, W)`` float of the predicted labels and of the targets, ``K = max(C, 2)``.

    A target outside ``0..K-1`` (an ignored pixel) is an all-zero row in both masks.

    Example:
        >>> yp, yt = segmentation_one_hot(torch.tensor([[[[0.5, -1.0]]]]), torch.tensor([[[1, 255]]]))
        >>> yp.tolist(), yt.tolist()
        ([[[[0.0, 0.0]], [[1.0, 0.0]]]], [[[[0.0, 0.0]], [[1.0, 0.0]]]])
    """
    c = pred.shape[1]
    k = max(c, 2)
    labels = (pred.squeeze(1) > 0).long() if c == 1 else pred.argmax(dim=1)
    target = target.long()
    scored = (target >= 0) & (target < k)
    yp = F.one_hot(labels, k).movedim(-1, 1).to(torch.float32)
    yt = F.one_hot(target.where(scored, 0), k).movedim(-1, 1).to(torch.float32)
    mask = scored.unsqueeze(1).to(torch.float32)
    return yp * mask, yt * mask


def is_monai_metric(obj: object) -> bool:
    """Whether ``obj`` is a MONAI metric object (checked by module, so MONAI need not be importable)."""
    return type(obj).__module__.startswith("monai.metrics") and hasattr(obj, "aggregate")


def monai_batch_fn(obj: Any) -> Callable[[torch.Tensor, torch.Tensor], Any]:
    """``fn(pred, target)`` for one batch: ``obj`` reset, called on the one-hot masks, aggregated, reset again.

    ``aggregate()`` reduces by the object's own ``reduction`` (MONAI's default: the mean over images and classes,
    skipping NaN); when it returns ``(value, not_nans)`` (``get_not_nans=True``) the value is taken.
    """

    def fn(pred: torch.Tensor, target: torch.Tensor) -> Any:
        yp, yt = segmentation_one_hot(pred, target)
        obj.reset()
        obj(y_pred=yp, y=yt)
        value = obj.aggregate()
        obj.reset()
        if isinstance(value, list | tuple):
            value = value[0]
        return value

    return fn


def torchmetrics_segmentation_inputs(obj: Any, pred: torch.Tensor, target: torch.Tensor) -> tuple[Any, Any]:
    """The inputs a ``torchmetrics.segmentation`` object expects for its ``input_format``.

    ``"index"``: label maps (ignored pixels, if any, are passed through: these metrics have no ``ignore_index``);
    ``"one-hot"``: both one-hot (:func:`segmentation_one_hot`); ``"mixed"``: one-hot prediction and label map.
    """
    fmt = getattr(obj, "input_format", "one-hot")
    if fmt == "index":
        labels = (pred.squeeze(1) > 0).long() if pred.shape[1] == 1 else pred.argmax(dim=1)
        return labels, target.long()
    yp, yt = segmentation_one_hot(pred, target)
    if fmt == "mixed":
        return yp.long(), target.long()
    return yp.long(), yt.long()
