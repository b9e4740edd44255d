r"""Built-in semantic-segmentation metrics, per batch and over stacks of batches.

Call shapes (as everywhere in ``task="segmentation"``): ``pred`` logits ``(B, C, H, W)`` float, ``target`` class
indices ``(B, H, W)`` int64 in ``0..C-1`` or ``ignore_index`` (255 by default, as VOC and Cityscapes mark unlabelled
pixels). Binary segmentation is either ``C = 2`` or one logit per pixel, ``(B, 1, H, W)`` with ``{0, 1}`` targets
(foreground where the logit is > 0). A stack of batches ``(N, B, C, H, W)`` / ``(N, B, H, W)`` gives one value per
batch, ``(N,)``. The predicted label of a pixel is its arg-max class (the first maximum on ties).

Every metric pools its counts over the batch's pixels (all images together, as a benchmark's mIoU is computed over a
whole data set), except :func:`per_image_miou`, which averages each image's own mIoU. Pixels whose target is
``ignore_index`` count nowhere: not in intersections, unions, areas or boundaries. Higher is better for all of them
except :func:`hd95` (a distance, in pixels).

With :math:`I_c`, :math:`P_c`, :math:`T_c` the batch's counts of pixels (target not ignored) labelled :math:`c` in both
prediction and target, in the prediction, in the target, and :math:`K` the classes with :math:`P_c + T_c > 0`
(a class absent from both prediction and target is skipped: it has no IoU):

.. math:: \mathrm{mIoU} = \frac{1}{|K|}\sum_{c \in K} \frac{I_c}{P_c + T_c - I_c}, \qquad
          \mathrm{Dice} = \frac{1}{|K'|}\sum_{c \in K'} \frac{2 I_c}{P_c + T_c}, \qquad
          \mathrm{PA} = \frac{\sum_c I_c}{\sum_c T_c},

with :math:`K' = K` minus the background class 0 when ``include_background=False`` (the default for binary
segmentation: Dice of the foreground, as medical imaging reports it). These are torchmetrics'
``MulticlassJaccardIndex(average="macro", ignore_index=255)`` and
``DiceScore(average="macro", aggregation_level="global", input_format="index")`` (the tests check both).

Boundary metrics (:func:`boundary_f1`, :func:`boundary_iou`) compare outlines and use the Chebyshev (chessboard)
distance, that is square windows, so that they run as max-filters on label maps in time linear in the pixels whatever
the number of classes; :func:`surface_dice` and :func:`hd95` are MONAI's (Euclidean distances; ``pip install
'metricloss[segmentation]'``).

A batch that has nothing to score for a class-averaged metric (no class in :math:`K'`, no boundary pixel at all) is
perfect by convention: 1.0 (0.0 for :func:`hd95`), as an empty prediction of an empty foreground is correct.

Example:
    >>> import torch
    >>> from metricloss.metrics.segmentation import miou, pixel_accuracy
    >>> target = torch.tensor([[[0, 0, 1, 1]]])                        # one image, 1 x 4 pixels
    >>> logits = torch.nn.functional.one_hot(torch.tensor([[[0, 1, 1, 1]]]), 2).permute(0, 3, 1, 2).float()
    >>> round(float(miou(logits, target)), 4), float(pixel_accuracy(logits, target))  # IoUs 1/2 and 2/3
    (0.5833, 0.75)

References:
    Csurka et al., *What is a good evaluation measure for semantic segmentation?*, BMVC 2013 (boundary F1).
    Cheng et al., *Boundary IoU: improving object-centric image segmentation evaluation*, CVPR 2021.
    Nikolov et al., *Clinically applicable segmentation of head and neck anatomy for radiotherapy*, JMIR 2021
    (surface Dice).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._checks import check_finite, check_float_tensor, check_int_tensor
from .base import BatchMetric

__all__ = [
    "BUILTINS",
    "IGNORE_INDEX",
    "check_segmentation",
    "dice",
    "miou",
    "per_image_miou",
    "pixel_accuracy",
    "segmentation_labels",
]

#: The default label of pixels that are not scored (VOC's and Cityscapes' 255).
IGNORE_INDEX = 255


def check_segmentation(
    pred: object,
    target: object,
    *,
    num_classes: int | None = None,
    ignore_index: int | None = IGNORE_INDEX,
    stacked: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate segmentation inputs; raise an error that names the argument, what was expected and the fix.

    Nothing is resized or clipped: a prediction whose spatial size differs from the target's is an error (resize the
    logits to the label map, e.g. ``F.interpolate(logits, size=target.shape[-2:], mode="bilinear")``, before the
    metric or the loss).

    Args:
        pred: logits ``(B, C, H, W)`` (``(N, B, C, H, W)`` when ``stacked``), floating-point, without NaN or
            ``+inf``; ``C = 1`` is binary (one logit per pixel). A stack may hold ``-inf`` (absent classes).
        target: class indices ``(B, H, W)`` (``(N, B, H, W)``), integer, each in ``0..C-1`` (``{0, 1}`` when
            ``C = 1``) or ``ignore_index``; every batch must hold at least one pixel that is not ignored.
        num_classes: the required ``C``, when given (a binary ``(B, 1, H, W)`` prediction has ``C = 1``).
        ignore_index: the label of unscored pixels, or ``None`` when every pixel is scored.
        stacked: ``True``: a stack is required; ``False``: one batch; ``None``: either (told apart by the number of
            dimensions).

    Returns:
        ``(pred, target)``, unchanged.

    Example:
        >>> import torch
        >>> check_segmentation(torch.randn(2, 3, 8, 8), torch.zeros(2, 4, 4, dtype=torch.long))
        Traceback (most recent call last):
        ...
        ValueError: `pred` and `target` must have the same spatial size (H, W): `pred` (2, 3, 8, 8) is 8 x 8 but \
`target` (2, 4, 4) is 4 x 4; nothing is resized for you: resize the logits to the label map first, e.g. \
`F.interpolate(pred, size=target.shape[-2:], mode="bilinear")`
    """
    pred = check_float_tensor(pred, "pred", finite=False)
    target = check_int_tensor(target, "target")
    dims = {None: (4, 5), False: (4,), True: (5,)}[stacked]
    if pred.dim() not in dims:
        want = " or ".join({4: "(B, C, H, W)", 5: "(N, B, C, H, W)"}[d] for d in dims)
        raise ValueError(f"`pred` must be logits of shape {want}, got {tuple(pred.shape)}")
    lead = pred.dim() - 4
    c, h, w = pred.shape[-3:]
    if num_classes is not None and c != num_classes:
        raise ValueError(
            f"`pred` must hold C = num_classes = {num_classes} logits per pixel (dimension {lead + 1}), got shape "
            f"{tuple(pred.shape)}"
        )
    if target.dim() != pred.dim() - 1:
        want_t = "(N, B, H, W)" if lead else "(B, H, W)"
        raise ValueError(
            f"`target` must be class indices of shape {want_t} (one per pixel of `pred` {tuple(pred.shape)}), got "
            f"{tuple(target.shape)}"
        )
    if tuple(target.shape[-2:]) != (h, w):
        raise ValueError(
            f"`pred` and `target` must have the same spatial size (H, W): `pred` {tuple(pred.shape)} is {h} x {w} "
            f"but `target` {tuple(target.shape)} is {target.shape[-2]} x {target.shape[-1]}; nothing is resized for "
            "you: resize the logits to the label map first, e.g. "
            '`F.interpolate(pred, size=target.shape[-2:], mode="bilinear")`'
        )
    if tuple(target.shape[:-2]) != tuple(pred.shape[:-3]):
        raise ValueError(
            f"`target` must have shape {(*pred.shape[:-3], h, w)} (one class index per pixel of `pred`), got "
            f"{tuple(target.shape)}"
        )
    if pred.shape[-4] < 1 or c < 1 or h < 1 or w < 1:
        raise ValueError(f"`pred` has an empty dimension: shape {tuple(pred.shape)}")
    if not bool(torch.isfinite(pred.sum())):
        if bool(torch.isnan(pred).any()):
            raise ValueError("`pred` contains NaN logits; expected finite numbers (check the model for a diverged "
                             "step or a division by zero)")
        check_finite(pred.masked_fill(pred == float("-inf"), 0.0) if lead else pred, "pred")
    classes = max(c, 2)
    scored = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    values = target[scored]
    if values.numel():
        low, high = torch.stack(torch.aminmax(values)).tolist()
        if low < 0 or high >= classes:
            bad = low if low < 0 else high
            valid = "{0, 1} (binary: `pred` has one logit per pixel)" if c == 1 else f"0..{classes - 1}"
            also = f" or ignore_index = {ignore_index}" if ignore_index is not None else ""
            raise ValueError(
                f"`target` holds the class index {bad}, outside {valid}{also}; check `num_classes` and "
                "`ignore_index` (pass the label your data uses for unlabelled pixels)"
            )
    per_batch = scored.flatten(-3).any(dim=-1)
    if not bool(per_batch.all()):
        where = f" (batch {int((~per_batch).nonzero()[0, 0])} of the stack)" if lead else ""
        raise ValueError(
            f"`target` is all ignore_index = {ignore_index}{where}: no pixel to score; drop such batches (or images) "
            "before computing a metric or a loss"
        )
    return pred, target


class _Labels(NamedTuple):
    pred: torch.Tensor  # (M, H, W) int64, M = N * B images
    target: torch.Tensor  # (M, H, W) int64, ignore pixels hold -1
    num_classes: int  # 2 for a binary (C = 1) prediction
    batches: int  # N (1 for one batch)
    single: bool  # one batch (the result is a scalar)


def segmentation_labels(pred: torch.Tensor, logits_dim: int = -3) -> torch.Tensor:
    """Predicted label of each pixel: arg-max over classes, or ``logit > 0`` for one logit per pixel.

    ``(..., C, H, W) -> (..., H, W)``, int64.

    Example:
        >>> segmentation_labels(torch.tensor([[[[0.5, -1.0]]]]))  # (1, 1, 1, 2): binary
        tensor([[[1, 0]]])
    """
    if pred.shape[logits_dim] == 1:
        return (pred.squeeze(logits_dim) > 0).long()
    return pred.argmax(dim=logits_dim)


def _labels(pred: torch.Tensor, target: torch.Tensor, ignore_index: int | None) -> _Labels:
    pred, target = check_segmentation(pred, target, ignore_index=ignore_index)
    single = pred.dim() == 4
    c = pred.shape[-3]
    p = segmentation_labels(pred)
    t = target.long()
    if ignore_index is not None:
        t = t.masked_fill(t == ignore_index, -1)
    n = 1 if single else pred.shape[0]
    h, w = pred.shape[-2:]
    return _Labels(p.reshape(-1, h, w), t.reshape(-1, h, w), max(c, 2), n, single)


def _out(values: torch.Tensor, single: bool) -> torch.Tensor:
    values = values.to(torch.float64)
    return values[0] if single else values


def _class_counts(labels: torch.Tensor, mask: torch.Tensor, groups: int, c: int) -> torch.Tensor:
    """Count of pixels of each class per group: ``labels`` ``(G, ...)`` under ``mask`` -> ``(G, c)`` float64."""
    offsets = (torch.arange(groups, device=labels.device) * c).view(-1, *([1] * (labels.dim() - 1)))
    index = (labels + offsets)[mask]
    return torch.bincount(index, minlength=groups * c).view(groups, c).to(torch.float64)


def _areas(lab: _Labels, groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per group (of images) and class: intersection, predicted area, target area, over scored pixels."""
    c = lab.num_classes
    p = lab.pred.reshape(groups, -1)
    t = lab.target.reshape(groups, -1)
    scored = t >= 0
    return (
        _class_counts(t, scored & (p == t), groups, c),
        _class_counts(p, scored, groups, c),
        _class_counts(t, scored, groups, c),
    )


def _mean_over(values: torch.Tensor, counted: torch.Tensor, empty: float) -> torch.Tensor:
    """Mean of ``values`` over the entries ``counted`` along the last dimension; ``empty`` where none is."""
    num = (values * counted).sum(dim=-1)
    den = counted.sum(dim=-1).to(values.dtype)
    return torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, empty))


def miou(pred: torch.Tensor, target: torch.Tensor, ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    r"""Mean intersection over union of one batch, its counts pooled over the batch's pixels.

    .. math:: \mathrm{mIoU} = \frac{1}{|K|}\sum_{c \in K} \frac{I_c}{P_c + T_c - I_c}, \quad K = \{c : P_c + T_c > 0\}

    (see the module's notation). Classes absent from both prediction and target are skipped, ignored pixels are
    excluded: torchmetrics' ``MulticlassJaccardIndex(num_classes=C, average="macro", ignore_index=255)``.

    Args:
        pred: logits ``(B, C, H, W)`` (or ``(B, 1, H, W)``, binary), or a stack ``(N, B, C, H, W)``.
        target: class indices ``(B, H, W)`` (``(N, B, H, W)``).
        ignore_index: label of pixels not scored (``None``: every pixel is scored).

    Returns:
        float64 scalar in [0, 1] (``(N,)`` for a stack).

    Example:
        >>> logits = torch.zeros(1, 3, 2, 2)
        >>> logits[0, 1, 0] = 1.0                     # predicts class 1 on the top row, 0 below
        >>> target = torch.tensor([[[1, 1], [0, 255]]])
        >>> float(miou(logits, target))               # class 0: 1/1, class 1: 2/2; class 2 absent
        1.0
    """
    lab = _labels(pred, target, ignore_index)
    inter, p_area, t_area = _areas(lab, lab.batches)
    union = p_area + t_area - inter
    return _out(_mean_over(inter / union.clamp_min(1), union > 0, 1.0), lab.single)


def per_image_miou(
    pred: torch.Tensor, target: torch.Tensor, ignore_index: int | None = IGNORE_INDEX
) -> torch.Tensor:
    r"""Mean over the batch's images of each image's mIoU (:func:`miou` of a batch of one image).

    An image whose pixels are all ignored is left out of the mean. Small objects weigh more than in :func:`miou`,
    which pools their pixels with the whole batch's. Same shapes as :func:`miou`.

    Example:
        >>> logits = torch.zeros(2, 2, 1, 2)
        >>> logits[0, 1, 0, 1] = 1.0                  # image 0: [0, 1]; image 1: [0, 0]
        >>> target = torch.tensor([[[0, 1]], [[0, 1]]])
        >>> float(per_image_miou(logits, target))     # image 0: 1.0, image 1: (1/2 + 0) / 2
        0.625
    """
    lab = _labels(pred, target, ignore_index)
    images = lab.pred.shape[0]
    inter, p_area, t_area = _areas(lab, images)
    union = p_area + t_area - inter
    per_image = _mean_over(inter / union.clamp_min(1), union > 0, 1.0).view(lab.batches, -1)
    scored = (lab.target >= 0).flatten(1).any(dim=1).view(lab.batches, -1)
    return _out(_mean_over(per_image, scored, 1.0), lab.single)


def dice(
    pred: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int | None = IGNORE_INDEX,
    include_background: bool | None = None,
) -> torch.Tensor:
    r"""Dice score (F1 of the pixels) averaged over classes, its counts pooled over the batch's pixels.

    .. math:: \mathrm{Dice} = \frac{1}{|K'|}\sum_{c \in K'} \frac{2 I_c}{P_c + T_c},
              \quad K' = \{c : P_c + T_c > 0\} \setminus (\{0\} \text{ unless include\_background})

    torchmetrics' ``DiceScore(num_classes=C, include_background=..., average="macro", aggregation_level="global",
    input_format="index")`` on the scored pixels.

    Args:
        pred, target, ignore_index: as :func:`miou`.
        include_background: count class 0. ``None`` (default): ``False`` for binary segmentation (``C = 1`` or
            ``C = 2``: the Dice of the foreground) and ``True`` for ``C > 2``.

    Returns:
        float64 scalar in [0, 1] (``(N,)`` for a stack); 1.0 when no class of :math:`K'` occurs (an empty
        foreground predicted empty).

    Example:
        >>> logits = torch.tensor([[[[-1.0, 2.0, 3.0, -2.0]]]])   # binary, one logit per pixel: [0, 1, 1, 0]
        >>> float(dice(logits, torch.tensor([[[0, 1, 0, 0]]])))  # 2 * 1 / (2 + 1)
        0.6666666666666666
    """
    lab = _labels(pred, target, ignore_index)
    inter, p_area, t_area = _areas(lab, lab.batches)
    total = p_area + t_area
    counted = total > 0
    background = lab.num_classes > 2 if include_background is None else bool(include_background)
    if not background:
        counted[:, 0] = False
    return _out(_mean_over(2 * inter / total.clamp_min(1), counted, 1.0), lab.single)


def pixel_accuracy(pred: torch.Tensor, target: torch.Tensor, ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    r"""Fraction of the batch's scored pixels whose predicted label is the target: :math:`\sum_c I_c / \sum_c T_c`.

    Same shapes as :func:`miou`.

    Example:
        >>> logits = torch.zeros(1, 2, 1, 3)                     # predicts class 0 everywhere
        >>> float(pixel_accuracy(logits, torch.tensor([[[0, 1, 255]]])))
        0.5
    """
    lab = _labels(pred, target, ignore_index)
    p = lab.pred.reshape(lab.batches, -1)
    t = lab.target.reshape(lab.batches, -1)
    scored = t >= 0
    correct = (scored & (p == t)).sum(dim=1).to(torch.float64)
    return _out(correct / scored.sum(dim=1).to(torch.float64), lab.single)


BUILTINS: dict[str, BatchMetric] = {
    "miou": BatchMetric("miou", miou, True, miou),
    "per_image_miou": BatchMetric("per_image_miou", per_image_miou, True, per_image_miou),
    "dice": BatchMetric("dice", dice, True, dice),
    "pixel_accuracy": BatchMetric("pixel_accuracy", pixel_accuracy, True, pixel_accuracy),
}
