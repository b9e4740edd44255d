r"""Built-in semantic-segmentation metrics, per batch and over stacks of batches.

Call shapes (as everywhere in ``task="segmentation"``): ``pred`` logits ``(B, C, H, W)`` float, ``target`` class
indices ``(B, H, W)`` int64 in ``0..C-1`` or ``ignore_index`` (255 by default, as VOC and Cityscapes mark unlabelled
pixels). Binary segmentation is either ``C = 2`` or one logit per pixel, ``(B, 1, H, W)`` with ``{0, 1}`` targets
(foreground where the logit is > 0). A stack of batches ``(N, B, C, H, W)`` / ``(N, B, H, W)`` gives one value per
batch, ``(N,)``. The predicted label of a pixel is its arg-max class (the first maximum on ties).

Every metric pools its counts over the batch's pixels (all images together, as a benchmark's mIoU is computed over a
whole data set), except :func:`per_image_miou`, which averages each image's own mIoU, and MONAI's :func:`surface_dice`
and :func:`hd95`, which average over (image, class) pairs. Pixels whose target is ``ignore_index`` are not counted
anywhere: not in intersections, unions, areas or boundaries (to draw contours, the boundary metrics take them as one
more label in both maps, whatever is predicted there). Higher is better for all of them except :func:`hd95` (a
distance, in pixels).

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

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from .._checks import check_finite, check_float_tensor, check_int, check_int_tensor, check_nonnegative
from .._optional import require
from .base import BatchMetric

__all__ = [
    "BUILTINS",
    "IGNORE_INDEX",
    "boundary_f1",
    "boundary_iou",
    "check_segmentation",
    "dice",
    "hd95",
    "miou",
    "per_image_miou",
    "pixel_accuracy",
    "segmentation_labels",
    "surface_dice",
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
    # ``max(dim).indices``, not ``argmax``: the same first maximum on ties (both documented so), and on CPU over the
    # class dimension of (B, C, H, W) logits about 2.5x faster
    return pred.max(dim=logits_dim).indices


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


#: Largest confusion matrices (groups x C x C bins) :func:`_areas` builds; above, it counts per class instead.
_CONFUSION_BINS = 1 << 22


def _class_counts(labels: torch.Tensor, mask: torch.Tensor, groups: int, c: int) -> torch.Tensor:
    """Count of pixels of each class per group: ``labels`` ``(G, ...)`` under ``mask`` -> ``(G, c)`` float64."""
    offsets = (torch.arange(groups, device=labels.device) * c).view(-1, *([1] * (labels.dim() - 1)))
    index = (labels + offsets)[mask]
    return torch.bincount(index, minlength=groups * c).view(groups, c).to(torch.float64)


def _areas(lab: _Labels, groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per group (of images) and class: intersection, predicted area, target area, over scored pixels.

    From one confusion matrix per group (one pass over the pixels) while those stay small; else three counts."""
    c = lab.num_classes
    p = lab.pred.reshape(groups, -1)
    t = lab.target.reshape(groups, -1)
    scored = t >= 0
    if groups * c * c <= _CONFUSION_BINS:
        offsets = (torch.arange(groups, device=p.device) * (c * c)).view(-1, 1)
        index = (offsets + t * c + p)[scored]
        confusion = torch.bincount(index, minlength=groups * c * c).view(groups, c, c).to(torch.float64)
        return confusion.diagonal(dim1=1, dim2=2), confusion.sum(dim=1), confusion.sum(dim=2)
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


def _label_edges(labels: torch.Tensor) -> torch.Tensor:
    """Pixels with an 8-neighbour of another label: ``(M, H, W)`` -> bool. The image's border is not an edge."""
    x = labels.unsqueeze(1).to(torch.float32)  # labels < 2**24 are exact
    high = F.max_pool2d(x, 3, stride=1, padding=1)  # max_pool2d pads with -inf: outside pixels are never neighbours
    low = -F.max_pool2d(-x, 3, stride=1, padding=1)
    return (high != low).squeeze(1)


def _sliding_max(x: torch.Tensor, k: int) -> torch.Tensor:
    """Maximum over each window of ``k`` along the last dimension ('valid' windows: ``L -> L - k + 1``).

    van Herk / Gil-Werman: prefix and suffix maxima within blocks of ``k``, so three passes whatever ``k``.
    """
    if k == 1:
        return x
    length = x.shape[-1]
    blocks = -(-length // k)
    x = F.pad(x, (0, blocks * k - length), value=float("-inf")).unflatten(-1, (blocks, k))
    prefix = x.cummax(dim=-1).values.flatten(-2)
    suffix = x.flip(-1).cummax(dim=-1).values.flip(-1).flatten(-2)
    n = length - k + 1
    return torch.maximum(suffix[..., :n], prefix[..., k - 1 : k - 1 + n])


#: Up to this radius a square max-filter is two 1-D max-pools (their cost grows with the window, but they beat the
#: running maximum's three passes there); above it, :func:`_sliding_max`, whose cost does not grow.
_POOL_RADIUS = 6


def _square_max(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Maximum over the ``(2r+1) x (2r+1)`` square around each pixel of ``x`` ``(M, H + 2r, W + 2r)`` (padded):
    ``(M, H, W)``. Separable: a maximum along the rows, then along the columns."""
    k = 2 * radius + 1
    if radius <= _POOL_RADIUS:
        x = x.unsqueeze(1)
        return F.max_pool2d(F.max_pool2d(x, (1, k), stride=1), (k, 1), stride=1).squeeze(1)
    return _sliding_max(_sliding_max(x, k).transpose(-1, -2), k).transpose(-1, -2)


def _contour_band(labels: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels within Chebyshev distance ``width`` of a pixel of another label or of the outside of the image.

    That is, pixel :math:`p` of class :math:`c` is in the band of its class's mask: ``G \\ erode(G, width)`` with the
    image zero-padded (Cheng et al.'s ``mask_to_boundary``). ``(M, H, W)`` int64 -> bool.
    """
    x = F.pad(labels.to(torch.float32), (width,) * 4, value=-2.0)  # outside: a label no pixel has
    return _square_max(x, width) != -_square_max(-x, width)


def _boundary_hits(
    source: torch.Tensor, other: torch.Tensor, on_source: torch.Tensor, on_other: torch.Tensor, radius: int
) -> torch.Tensor:
    """For each pixel of ``on_source`` (its label in ``source``): is there a pixel of ``on_other`` with the same label
    in ``other`` within Chebyshev distance ``radius``? Returns bool over the pixels of ``on_source`` (in the order of
    ``on_source.nonzero()``). Only the boundary pixels are visited, once per offset."""
    h, w = source.shape[-2:]
    padded = F.pad(other.masked_fill(~on_other, -3), (radius,) * 4, value=-3)  # -3: no label
    flat = padded.flatten()
    idx = on_source.nonzero()
    labels = source[on_source]
    stride_m, stride_y = (h + 2 * radius) * (w + 2 * radius), w + 2 * radius
    base = idx[:, 0] * stride_m + (idx[:, 1] + radius) * stride_y + (idx[:, 2] + radius)
    hit = torch.zeros(labels.shape, dtype=torch.bool, device=source.device)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            hit |= flat[base + dy * stride_y + dx] == labels
    return hit


def boundary_f1(
    pred: torch.Tensor, target: torch.Tensor, ignore_index: int | None = IGNORE_INDEX, tolerance: int = 2
) -> torch.Tensor:
    r"""Boundary F1 (Csurka et al. 2013's BF score) per class, averaged over classes, counts pooled over the batch.

    The boundary of a label map is the set of pixels with a neighbour (of the 8) of another label (the image's border
    is not a boundary); a boundary pixel belongs to its own class. A predicted boundary pixel of class :math:`c`
    *matches* when a target boundary pixel of class :math:`c` lies within ``tolerance`` pixels (Chebyshev distance:
    a square window), and the other way round. With :math:`\hat B_c`, :math:`B_c` the batch's predicted and target
    boundary pixels of class :math:`c` on scored pixels,

    .. math:: P_c = \frac{|\{\hat b \in \hat B_c \text{ matched}\}|}{|\hat B_c|},\quad
              R_c = \frac{|\{b \in B_c \text{ matched}\}|}{|B_c|},\quad
              \mathrm{BF} = \frac{1}{|K|}\sum_{c \in K} \frac{2 P_c R_c}{P_c + R_c},

    over the classes :math:`K` with a boundary pixel in the prediction or the target (a class outlined in only one
    of them scores 0). Ignored pixels are one more label in *both* maps (whatever is predicted there), so the
    contours along an ignored band (VOC's object borders) are compared in both, the prediction under ignored pixels
    does not matter, and boundary pixels on ignored pixels do not count. A batch without any boundary pixel scores
    1.0. Cost:
    :math:`(2\,\mathrm{tolerance} + 1)^2` look-ups per boundary pixel, whatever the number of classes.

    Args:
        pred, target, ignore_index: as :func:`miou`.
        tolerance: matching distance in pixels (default 2), ``>= 0``.

    Example:
        >>> target = torch.zeros(1, 6, 6, dtype=torch.long)
        >>> target[0, :, 3:] = 1                        # a vertical edge between columns 2 and 3
        >>> labels = torch.zeros(1, 6, 6, dtype=torch.long)
        >>> labels[0, :, 4:] = 1                        # predicted one column to the right
        >>> logits = torch.nn.functional.one_hot(labels, 2).permute(0, 3, 1, 2).float()
        >>> float(boundary_f1(logits, target, tolerance=1)), float(boundary_f1(logits, target, tolerance=0))
        (1.0, 0.0)
    """
    radius = check_int(tolerance, "tolerance", minimum=0)
    lab = _labels(pred, target, ignore_index)
    scored = lab.target >= 0
    pred_map = lab.pred.where(scored, -1)  # ignored pixels: one more label, in both maps
    on_pred = _label_edges(pred_map) & scored
    on_target = _label_edges(lab.target) & scored
    pred_hits = _boundary_hits(pred_map, lab.target, on_pred, on_target, radius)
    target_hits = _boundary_hits(lab.target, pred_map, on_target, on_pred, radius)
    images = lab.pred.shape[0] // lab.batches
    c = lab.num_classes

    def per_class(on: torch.Tensor, labels: torch.Tensor, hits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = on.nonzero()[:, 0] // images
        index = batch * c + labels[on]
        size = lab.batches * c
        total = torch.bincount(index, minlength=size).view(lab.batches, c).to(torch.float64)
        matched = torch.bincount(index[hits], minlength=size).view(lab.batches, c).to(torch.float64)
        return matched, total

    pred_matched, pred_total = per_class(on_pred, pred_map, pred_hits)
    target_matched, target_total = per_class(on_target, lab.target, target_hits)
    precision = pred_matched / pred_total.clamp_min(1)
    recall = target_matched / target_total.clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-300)
    return _out(_mean_over(f1, (pred_total + target_total) > 0, 1.0), lab.single)


def boundary_iou(
    pred: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int | None = IGNORE_INDEX,
    dilation_ratio: float = 0.02,
    dilation: int | None = None,
) -> torch.Tensor:
    r"""Boundary IoU (Cheng et al. 2021) per class, averaged over classes, counts pooled over the batch.

    For a mask :math:`G`, its boundary region :math:`G_d` is the set of pixels of :math:`G` within distance
    :math:`d` of a pixel outside :math:`G` (the image zero-padded, so the image's border counts as a contour, as in
    the authors' code; Chebyshev distance, as their iterated 3 x 3 erosion). For class :math:`c` with target mask
    :math:`G^c` and predicted mask :math:`P^c`, over the batch's scored pixels,

    .. math:: \mathrm{BIoU} = \frac{1}{|K|}\sum_{c \in K} \frac{|G^c_d \cap P^c_d|}{|G^c_d \cup P^c_d|}

    over the classes :math:`K` whose union is not empty (1.0 when none is). Ignored pixels are one more label in
    both maps (as in :func:`boundary_f1`) and are not counted. :math:`d` = ``dilation`` pixels, or by default
    ``round(dilation_ratio * image diagonal)`` (at least 1), the authors' 2 %. Cost linear in the pixels whatever
    :math:`d` and the number of classes (max-filters of the label maps, van Herk's running maximum for wide bands).

    Args:
        pred, target, ignore_index: as :func:`miou`.
        dilation_ratio: :math:`d` as a fraction of the image diagonal (default 0.02).
        dilation: :math:`d` in pixels (``>= 1``); overrides ``dilation_ratio``.

    Example:
        >>> target = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> target[0, 2:6, 2:6] = 1                     # a 4 x 4 square
        >>> logits = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float()
        >>> float(boundary_iou(logits, target, dilation=1))
        1.0
    """
    lab = _labels(pred, target, ignore_index)
    h, w = lab.pred.shape[-2:]
    if dilation is None:
        ratio = check_nonnegative(dilation_ratio, "dilation_ratio")
        width = max(1, round(ratio * math.hypot(h, w)))
    else:
        width = check_int(dilation, "dilation", minimum=1)
    scored = lab.target >= 0
    band_pred = _contour_band(lab.pred.where(scored, -1), width) & scored  # ignored: one more label in both
    band_target = _contour_band(lab.target, width) & scored
    groups = lab.batches
    c = lab.num_classes
    p = lab.pred.reshape(groups, -1)
    t = lab.target.reshape(groups, -1)
    bp = band_pred.reshape(groups, -1)
    bt = band_target.reshape(groups, -1)
    inter = _class_counts(t, bp & bt & (p == t), groups, c)
    union = _class_counts(p, bp, groups, c) + _class_counts(t, bt, groups, c) - inter
    return _out(_mean_over(inter / union.clamp_min(1), union > 0, 1.0), lab.single)


def _monai_scores(
    name: str,
    pred: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int | None,
    include_background: bool,
    compute: Callable[[Any, torch.Tensor, torch.Tensor, bool], torch.Tensor],
) -> tuple[torch.Tensor, _Labels, torch.Tensor, torch.Tensor]:
    """MONAI's per-(image, class) values on the one-hot masks ``(M, K)``, the labels, and for each entry whether the
    class occurs in the prediction or the target, and in both."""
    metrics_module = require("monai.metrics", "segmentation", f"`{name}`")
    lab = _labels(pred, target, ignore_index)
    c = lab.num_classes
    yp = F.one_hot(lab.pred, c).movedim(-1, 1).to(torch.float32)
    scored = (lab.target >= 0).unsqueeze(1)
    yt = F.one_hot(lab.target.clamp_min(0), c).movedim(-1, 1).to(torch.float32) * scored
    yp = yp * scored
    with warnings.catch_warnings():  # MONAI warns for every empty mask; the caller decides what empty means
        warnings.simplefilter("ignore")
        values = compute(metrics_module, yp, yt, include_background).to(torch.float64).cpu()
    first = 0 if include_background else 1
    in_pred = yp[:, first:].flatten(2).any(dim=2).cpu()
    in_target = yt[:, first:].flatten(2).any(dim=2).cpu()
    return values, lab, in_pred | in_target, in_pred & in_target


def surface_dice(
    pred: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int | None = IGNORE_INDEX,
    tolerance: float = 2.0,
    include_background: bool = False,
) -> torch.Tensor:
    r"""Normalised surface Dice (Nikolov et al. 2021) at ``tolerance`` pixels, MONAI's ``compute_surface_dice``.

    For each image and class, the fraction of the predicted and target contour pixels that lie within ``tolerance``
    (Euclidean) of the other's contour; averaged over the (image, class) pairs where the class occurs in the
    prediction or the target (MONAI's ``reduction="mean"``), background excluded unless ``include_background``.
    Ignored pixels are removed from both masks (MONAI's ``ignore_index``). A batch with no such pair scores 1.0.
    Needs MONAI and SciPy: ``pip install 'metricloss[segmentation]'``.

    Args:
        pred, target, ignore_index: as :func:`miou`.
        tolerance: in pixels (default 2.0).
        include_background: count class 0.

    Example:
        >>> target = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> target[0, 2:6, 2:6] = 1
        >>> logits = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float()
        >>> float(surface_dice(logits, target))
        1.0
    """
    tol = check_nonnegative(tolerance, "tolerance")

    def compute(monai_metrics, yp, yt, background):
        k = yp.shape[1] - (0 if background else 1)
        return monai_metrics.compute_surface_dice(yp, yt, [tol] * k, include_background=background)

    values, lab, counted, _ = _monai_scores("surface_dice", pred, target, ignore_index, include_background, compute)
    values = torch.where(counted, torch.nan_to_num(values, nan=0.0), 0.0)
    per_batch = values.view(lab.batches, -1)
    return _out(_mean_over(per_batch, counted.view(lab.batches, -1), 1.0), lab.single)


def hd95(
    pred: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int | None = IGNORE_INDEX,
    include_background: bool = False,
) -> torch.Tensor:
    r"""95th-percentile Hausdorff distance in pixels (lower is better), MONAI's ``compute_hausdorff_distance``.

    For each image and class, the 95th percentile of the (Euclidean) distances from each contour pixel of the
    prediction to the target's contour and back; averaged over the (image, class) pairs where the class occurs in
    the prediction or the target, background excluded unless ``include_background``. A class present in only one of
    them has no distance: it scores the image diagonal (the largest distance in the image), so that missing an
    object is never better than outlining it badly. Ignored pixels are removed from both masks. A batch with no such
    pair scores 0.0. Needs MONAI and SciPy: ``pip install 'metricloss[segmentation]'``.

    Args:
        pred, target, ignore_index: as :func:`miou`.
        include_background: count class 0.

    Example:
        >>> target = torch.zeros(1, 8, 8, dtype=torch.long)
        >>> target[0, 2:6, 2:6] = 1
        >>> logits = torch.nn.functional.one_hot(target.roll(1, dims=2), 2).permute(0, 3, 1, 2).float()
        >>> float(hd95(logits, target))                # the square shifted by one pixel
        1.0
    """

    def compute(monai_metrics, yp, yt, background):
        return monai_metrics.compute_hausdorff_distance(yp, yt, include_background=background, percentile=95)

    values, lab, counted, both = _monai_scores("hd95", pred, target, ignore_index, include_background, compute)
    h, w = lab.pred.shape[-2:]
    values = torch.where(both, values, math.hypot(h, w))
    values = torch.where(counted, values, 0.0)
    per_batch = values.view(lab.batches, -1)
    return _out(_mean_over(per_batch, counted.view(lab.batches, -1), 0.0), lab.single)


BUILTINS: dict[str, BatchMetric] = {
    "miou": BatchMetric("miou", miou, True, miou),
    "per_image_miou": BatchMetric("per_image_miou", per_image_miou, True, per_image_miou),
    "dice": BatchMetric("dice", dice, True, dice),
    "pixel_accuracy": BatchMetric("pixel_accuracy", pixel_accuracy, True, pixel_accuracy),
    "boundary_f1": BatchMetric("boundary_f1", boundary_f1, True, boundary_f1),
    "boundary_iou": BatchMetric("boundary_iou", boundary_iou, True, boundary_iou),
    "surface_dice": BatchMetric("surface_dice", surface_dice, True, surface_dice),
    "hd95": BatchMetric("hd95", hd95, False, hd95),
}
