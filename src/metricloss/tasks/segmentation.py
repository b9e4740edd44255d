r"""Semantic segmentation scored over a batch's pixels (mIoU, Dice, boundary metrics): logits ``(B, C, H, W)``, class
indices ``(B, H, W)``.

Call shapes: ``pred`` is per-pixel logits ``(B, C, H, W)``, any ``C >= 2`` and any ``H x W``; ``target`` is class
indices ``(B, H, W)`` in ``[0, C)``, int64, with ``ignore_index`` (default 255, as VOC and Cityscapes use) where a
pixel is not labelled. Binary segmentation is ``C = 2``, or one logit per pixel ``(B, 1, H, W)`` with ``{0, 1}``
targets, read as the two logits ``(0, z)`` (foreground probability :math:`\sigma(z)`). Stacks add a leading ``N``
and every network returns ``(N,)``. Nothing is resized: a ``target`` whose ``H x W`` differs from ``pred``'s is an
error.

**Surrogate** (:class:`SegmentationNet`, ours; the classification batch net's structure on pixel statistics). With
:math:`p = \mathrm{softmax}(t z)` per pixel (``sharpness`` :math:`t`), :math:`Y` the one-hot targets and only the
batch's non-ignored pixels counted (:math:`n` of them), per class :math:`c`:

- at full resolution the soft confusion counts :math:`I_c = \sum p_c Y_c`, :math:`P_c = \sum p_c`,
  :math:`T_c = \sum Y_c` and from them the shares :math:`I_c/n`, :math:`(P_c - I_c)/n`, :math:`(T_c - I_c)/n`,
  :math:`T_c/n`, soft recall, precision, Dice and IoU (denominators floored at one pixel), the indicator
  :math:`[T_c > 0]` and the log-share :math:`\log(T_c/n)` (scaled to ``[0, 1]``);
- at each pooling factor :math:`f` of ``scales`` (default 4, 8, 16; larger for images above ``4 * grid`` pixels
  a side, so the first pooled map has at most ``grid`` = 64 pixels a side), on the block averages :math:`q_c` of
  :math:`p_c` and :math:`t_c` of :math:`Y_c`: the Tanimoto overlap :math:`\sum q t / \sum(q^2 + t^2 - qt)`, and in
  the boundary bands of the target :math:`b^t` and of the prediction :math:`b^p` (per pooled pixel, the absolute
  differences to its four neighbours summed: 0 inside flat regions), the band-weighted recall
  :math:`\sum bqt / \sum bt`, precision :math:`\sum bqt / \sum bq` and IoU; the boundaries' agreement
  :math:`\sum b^p b^t / \sum b^p` and :math:`\sum b^p b^t / \sum b^t`; and the band masses relative to the class's
  mass (denominators floored at one block).

Every statistic is a ratio of sums over pixels whose denominator is at least one pixel (or block), so its derivative
in any pixel's probabilities is bounded, and the vector of its derivatives has norm at most a constant whatever
``B``, ``H``, ``W`` (:func:`segmentation_statistics`). A shared ELU MLP :math:`\psi` maps each class's statistics
to a vector; the classes present in the targets are averaged, the others (absent from the targets) are summed as
their departure from an empty class, :math:`\psi(s_c) - \psi(0)`, over the number of present classes (as mIoU counts
each falsely predicted class once); an MLP :math:`\rho` maps the two to the loss,

.. math:: L = \rho\Big(\frac{1}{|\mathcal P|}\sum_{c \in \mathcal P}\psi(s_c),\
          \frac{1}{|\mathcal P|}\sum_{c \notin \mathcal P}\big(\psi(s_c) - \psi(0)\big)\Big),
          \qquad \mathcal P = \{c : T_c > 0\}.

A class with no target pixel and no predicted mass contributes exactly nothing, so the net serves any ``C`` (2 to
150 and beyond) and any ``H x W`` without a weight that depends on either. Its cost is linear in ``B C H W``: one
softmax at full resolution, one gather and one average-pooling pass; everything else runs on the maps pooled by
``scales[0]`` and smaller (no sorting, no pairwise terms).

The baseline is pixel cross-entropy averaged over the batch's non-ignored pixels.

**G_R** (:meth:`SegmentationTask.random_batches`) draws scenes: "stuff" regions from thresholded smooth noise at two
scales, then 0 to 16 objects (ellipses, rectangles and wobbly blobs, sizes log-uniform from 1.5 % to 45 % of the
image side, painted in order), classes from a Zipf prior over a random class order (exponent 0.3 to 2.2 per batch:
long-tailed frequencies, many classes absent at large ``C``), and in about half the batches ignore regions
(VOC-style bands 1 to 3 pixels wide along the object boundaries, or Cityscapes-style unlabelled blobs). The
prediction redraws the same scene with the errors real segmenters make, all scaled by a per-batch error level
:math:`e \sim U(0, 1)`: objects shifted and resized (boundary shifts), small objects missed (more often the smaller
they are), objects grown until neighbours merge, classes confused (per batch, each class with a partner), spurious
objects, stuff boundaries moved; its one-hot map is blurred (down- and up-sampling), disturbed by smooth per-class
noise, which flips pixels near boundaries, and scaled by a temperature log-uniform in ``[0.3, 12]`` (under- and
over-confidence). mIoU spreads over about ``[0.05, 1]``. All randomness comes from the ``generator`` argument, and
images are rendered a few at a time (:data:`GEN_ELEMENTS`), so memory stays bounded at ``1024 x 2048``.
:meth:`SegmentationTask.relabel` makes new label maps for real outputs (G_M's half of the pool with ``outputs=``): the
model's prediction with its boundaries moved where it is unsure and objects it missed painted in.

Example:
    >>> import torch
    >>> from metricloss.tasks.segmentation import SegmentationTask
    >>> task = SegmentationTask(num_classes=5, image_size=(32, 32))
    >>> pred, target = task.random_batches(3, 2, torch.Generator().manual_seed(0))
    >>> pred.shape, target.shape
    (torch.Size([3, 2, 5, 32, 32]), torch.Size([3, 2, 32, 32]))
    >>> net = task.build_net(**task.default_net_config())
    >>> net(pred, target).shape
    torch.Size([3])
    >>> net(torch.randn(1, 2, 21, 48, 40), torch.randint(0, 21, (1, 2, 48, 40))).shape  # any C, any H x W
    torch.Size([1])
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int, check_positive
from ..metrics.base import BatchMetric, Metric
from ..metrics.segmentation import BUILTINS, IGNORE_INDEX, check_segmentation, segmentation_labels
from ._nets import mlp
from .base import Task, capped_steps, register_task

__all__ = ["FULL_FEATURES", "SCALE_FEATURES", "SegmentationNet", "SegmentationTask", "builtins",
           "pixel_cross_entropy", "segmentation_statistics"]

#: Per-class statistics at full resolution (see :func:`segmentation_statistics`).
FULL_FEATURES = ("tp", "fp", "fn", "support", "recall", "precision", "dice", "iou", "present", "log_support")
#: Per-class statistics at each pooling factor.
SCALE_FEATURES = ("tanimoto", "tband_recall", "tband_precision", "tband_iou", "pband_recall", "pband_precision",
                  "pband_iou", "boundary_precision", "boundary_recall", "tband_mass", "pband_mass")
#: The log-share feature's floor: :math:`\log(T_c / n)` is clamped at this and scaled to ``[0, 1]``.
LOG_SHARE_FLOOR = -14.0
#: The default net pools images whose longer side exceeds 4 x 64 = 256 pixels by larger factors, so that its first
#: pooled map has at most this many pixels a side (at 512 x 512 the factors 8, 16, 32; at 1024 x 2048, 32, 64, 128).
DEFAULT_GRID = 64
#: Logits G_R renders at once (bounds its temporaries; at least one image at a time).
GEN_ELEMENTS = 1 << 23
#: Logits in one learning step's default batches (sets :attr:`SegmentationTask.default_batches_per_step`).
STEP_ELEMENTS = 1 << 24
#: Logits a run learns from in all by default (:attr:`SegmentationTask.default_steps`): 150 steps of 24 batches of
#: 8 images at C = 21, 64 x 64.
LEARN_ELEMENTS = 150 * 24 * 8 * 21 * 64 * 64


# ----- the baseline --------------------------------------------------------------------------------------------


def pixel_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    r"""Cross-entropy over the non-ignored pixels of each batch (all its images together): ``(..., B, C, H, W)``,
    ``(..., B, H, W) -> (...)``.

    ``C = 1`` is binary (logits ``(0, z)``, i.e. binary cross-entropy with logits). A batch without labelled pixels
    gives 0.

    Example:
        >>> z = torch.zeros(1, 4, 2, 2)
        >>> y = torch.tensor([[[0, 1], [255, 3]]])
        >>> round(float(pixel_cross_entropy(z, y)), 4) == round(math.log(4), 4)
        True
    """
    lead, (c, h, w) = logits.shape[:-4], logits.shape[-3:]
    z = _two_class(logits.reshape(-1, c, h, w))
    y = target.reshape(-1, h, w)
    ce = F.cross_entropy(z, y, ignore_index=ignore_index, reduction="none")  # (M, H, W), 0 at ignored pixels
    count = (y != ignore_index).reshape(*lead, -1).sum(dim=-1).clamp_min(1)
    return ce.reshape(*lead, -1).sum(dim=-1) / count


def _two_class(z: torch.Tensor) -> torch.Tensor:
    """Logits ``(M, C, H, W)`` as they are, or one binary logit ``(M, 1, H, W)`` as the two ``(0, z)``."""
    return torch.cat([torch.zeros_like(z), z], dim=1) if z.shape[1] == 1 else z


# ----- the surrogate -----------------------------------------------------------------------------------------------


def _pad_to(x: torch.Tensor, f: int) -> torch.Tensor:
    """``x`` ``(M, C, H, W)`` padded with zeros at the bottom and right to a multiple of ``f``."""
    h, w = x.shape[-2:]
    ph, pw = -h % f, -w % f
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


def _pool(x: torch.Tensor, f: int) -> torch.Tensor:
    """Block means over ``f x f`` blocks (zero-padded to a multiple of ``f``)."""
    return x if f == 1 else F.avg_pool2d(_pad_to(x, f), f)


def _band(x: torch.Tensor) -> torch.Tensor:
    """Boundary band of maps ``x`` ``(M, C, h, w)``: per pixel, the absolute differences to its four neighbours
    summed (0 inside flat regions; 1 on each side of a straight edge between two blocks of 0 and 1). Cheaper than a
    dilation minus an erosion by max-pooling (on 2 cores, 1.6 ms against 35 ms forward and backward at
    ``(2, 42, 64, 64)``), and like it a band of about two pooled pixels around each boundary."""
    dh = (x[..., 1:] - x[..., :-1]).abs()
    dv = (x[..., 1:, :] - x[..., :-1, :]).abs()
    band = torch.zeros_like(x)
    band[..., 1:] += dh
    band[..., :-1] += dh
    band[..., 1:, :] += dv
    band[..., :-1, :] += dv
    return band


def _ratio(num: torch.Tensor, den: torch.Tensor, floor: float) -> torch.Tensor:
    return num / den.clamp_min(floor)


def _group_sum(x: torch.Tensor, groups: int) -> torch.Tensor:
    """``(..., M, C, h, w)`` summed over space and over the images of each of ``groups`` batches:
    ``(..., groups, C)``."""
    lead, (m, c) = x.shape[:-4], x.shape[-4:-2]
    return x.reshape(*lead, groups, m // groups, c, -1).sum(dim=(-3, -1))


def _target_blocks(y: torch.Tensor, valid: torch.Tensor, c: int, f: int, dtype: torch.dtype) -> torch.Tensor:
    """The one-hot targets ``(M, H, W)`` averaged over ``f x f`` blocks, ``(M, C, ceil(H/f), ceil(W/f))``, without
    building the one-hot map at full resolution (one counting pass; ignored pixels are counted in a spare bin)."""
    m, h, w = y.shape
    hf, wf = -(-h // f), -(-w // f)
    rows = torch.arange(h, device=y.device) // f
    cols = torch.arange(w, device=y.device) // f
    index = ((torch.arange(m, device=y.device).view(m, 1, 1) * c + y) * hf + rows.view(1, h, 1)) * wf + cols
    size = m * c * hf * wf
    if not bool(valid.all()):
        index = torch.where(valid, index, size)
    counts = torch.bincount(index.flatten(), minlength=size + 1)[:size]
    return counts.view(m, c, hf, wf).to(dtype) / (f * f)


class _PooledSoftmax(torch.autograd.Function):
    r"""The full-resolution part of :func:`segmentation_statistics` in one function: from logits ``z`` ``(M, C, H, W)``
    the probabilities :math:`p = \mathrm{softmax}(t z)` (0 at ignored pixels), their ``f x f`` block means ``q``
    ``(M, C, ceil(H/f), ceil(W/f))`` (zero-padded) and the probability of each pixel's target class ``py``
    ``(M, H, W)``.

    The backward is written out: with :math:`A` the upstream gradient in :math:`p` (``gq / f^2`` on each block's
    pixels, plus ``gpy`` at the target class), :math:`\partial/\partial z = t\,(p \odot A - p\,\langle p,
    A\rangle)`: one product, one channel sum, one ``addcmul`` and a scatter at the targets over the full-resolution
    maps, where autograd's composite (mask product, pooling, gather, softmax) allocates and walks them about twice as
    often. When the backward is itself differentiated (``create_graph=True``: learning's gradient penalty) it is
    computed with differentiable operations instead.
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, y: torch.Tensor, valid: torch.Tensor | None, f: int,
                sharpness: float) -> tuple[torch.Tensor, torch.Tensor]:
        p = (z * sharpness if sharpness != 1 else z).softmax(dim=1)
        if valid is not None:
            p.mul_(valid.unsqueeze(1))
        py = p.gather(1, y.unsqueeze(1)).squeeze(1)
        ctx.set_materialize_grads(False)  # no full-size zeros for an output the caller does not use
        ctx.save_for_backward(z, y, valid, p, py)
        ctx.f, ctx.sharpness = f, sharpness
        return _pool(p, f), py

    @staticmethod
    def backward(ctx: Any, gq: torch.Tensor | None, gpy: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        z, y, valid, p, py = ctx.saved_tensors
        f, t = ctx.f, ctx.sharpness
        m, c, h, w = p.shape
        if gq is None and gpy is None:
            return None, None, None, None, None
        if gq is None:
            gq = torch.zeros(m, c, -(-h // f), -(-w // f), dtype=p.dtype, device=p.device)
        if gpy is None:
            gpy = torch.zeros_like(py)
        if torch.is_grad_enabled():  # create_graph: differentiable ops, so the gradient has a gradient
            pd = (z * t).softmax(dim=1)
            if valid is not None:
                pd = pd * valid.unsqueeze(1)
            up = gq.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)[..., :h, :w] / (f * f)
            a = up.scatter_add(1, y.unsqueeze(1), gpy.unsqueeze(1))
            return t * (pd * a - pd * (pd * a).sum(dim=1, keepdim=True)), None, None, None, None
        gp = F.interpolate(gq / (f * f), scale_factor=f, mode="nearest") if f > 1 else gq.clone()
        gp = gp[..., :h, :w].mul_(p)
        pg = (py * gpy).unsqueeze(1)
        s = gp.sum(dim=1, keepdim=True).add_(pg)
        grad = gp.addcmul_(p, s, value=-1).scatter_add_(1, y.unsqueeze(1), pg)
        return (grad.mul_(t) if t != 1 else grad), None, None, None, None


def _scaled(scales: tuple[int, ...], side: int, grid: int | None) -> tuple[int, ...]:
    """``scales`` times the least power of two that brings the first pooled map to at most ``grid`` pixels a side
    (``None``: as given)."""
    if grid is None or -(-side // scales[0]) <= grid:
        return scales
    k = 2 ** math.ceil(math.log2(side / (grid * scales[0])))
    return tuple(f * k for f in scales)


def segmentation_statistics(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                            scales: Sequence[int] = (4, 8, 16), sharpness: float = 1.0,
                            grid: int | None = None) -> torch.Tensor:
    r"""Per-class statistics ``(..., C, F)`` of a batch's soft prediction against its targets, over the whole
    batch's non-ignored pixels: logits ``(..., B, C, H, W)``, targets ``(..., B, H, W)``.

    ``F = len(FULL_FEATURES) + len(scales) * len(SCALE_FEATURES)`` (see the module docstring for each). ``scales``
    are pooling factors, each a multiple of the one before (at least one); with ``grid``, images whose longer side
    exceeds ``grid * scales[0]`` pixels have every factor multiplied by the least power of two that brings the first
    pooled map to at most ``grid`` pixels a side (the pooled part's cost then stays bounded, and the bands measure
    boundaries in units of the image size there). ``C = 1`` is binary (two classes).
    Differentiable in ``logits``; every feature is a ratio whose denominator is at least one pixel (or one pooled
    block), so its gradient is bounded whatever the batch and image size. At full resolution it costs one softmax,
    one gather, one scatter-add and one average pooling of the probabilities (and one product with the mask of
    labelled pixels when some are ignored); the rest runs on the pooled maps.

    Example:
        >>> y = torch.zeros(1, 2, 16, 16, dtype=torch.long)
        >>> y[:, :, 4:12, 4:12] = 1
        >>> perfect = 50.0 * F.one_hot(y, 2).permute(0, 1, 4, 2, 3).float()
        >>> s = segmentation_statistics(perfect, y, scales=(4,))
        >>> s.shape, [round(float(v), 3) for v in s[0, 1, 4:8]]  # recall, precision, Dice, IoU of class 1
        (torch.Size([1, 2, 21]), [1.0, 1.0, 1.0, 1.0])
    """
    scales = _check_scales(scales)
    lead, (b, c, h, w) = logits.shape[:-4], logits.shape[-4:]
    scales = _scaled(scales, max(h, w), grid)
    groups = math.prod(lead) if lead else 1
    z = _two_class(logits.reshape(-1, c, h, w))
    c = z.shape[1]
    y = target.reshape(-1, h, w)
    valid = y != ignore_index
    all_valid = bool(valid.all())
    yc = y if all_valid else torch.where(valid, y, 0)
    f0 = scales[0]
    q, py = _PooledSoftmax.apply(z, yc, None if all_valid else valid.to(z.dtype), f0, float(sharpness))
    # The soft intersection of each class over the batch (py is 0 at ignored pixels).
    gid = torch.arange(y.shape[0], device=y.device).view(-1, 1, 1) // b
    cell = (gid * c + yc).flatten()
    inter = torch.zeros(groups * c, dtype=q.dtype, device=q.device).index_add(0, cell, py.flatten()).view(groups, c)
    t = _target_blocks(yc, valid, c, f0, q.dtype)
    mass, support = _group_sum(torch.stack([q, t]), groups) * (f0 * f0)
    n = support.sum(dim=-1, keepdim=True).clamp_min(1.0)
    union = mass + support - inter
    feats = [inter / n, (mass - inter) / n, (support - inter) / n, support / n, _ratio(inter, support, 1.0),
             _ratio(inter, mass, 1.0), _ratio(2 * inter, mass + support, 1.0), _ratio(inter, union, 1.0),
             (support > 0).to(q.dtype),
             ((support / n).clamp_min(math.exp(LOG_SHARE_FLOOR)).log() - LOG_SHARE_FLOOR) / -LOG_SHARE_FLOOR]
    previous, sums = f0, []
    for f in scales:
        if f != previous:
            q, t = _pool(q, f // previous), _pool(t, f // previous)
            previous = f
        sums.append(_scale_sums(q, t, groups))
    scaled = _scale_features(torch.stack(sums, dim=-2)).flatten(-2)  # (groups, C, scales * features)
    return torch.cat([torch.stack(feats, dim=-1), scaled], dim=-1).view(*lead, c, -1)


#: Rows and columns of the products :func:`_scale_sums` takes: weights (bands, q, t) times values (q, t, qt, bands).
_ROWS, _COLS = ("bt", "bp", "q", "t"), ("q", "t", "qt", "bt", "bp")


def _scale_sums(q: torch.Tensor, t: torch.Tensor, groups: int) -> torch.Tensor:
    """The sums the :data:`SCALE_FEATURES` read, of pooled predictions ``q`` and targets ``t`` ``(M, C, h, w)`` over
    each batch: ``(groups, C, 25)``, every product of a row of :data:`_ROWS` with a column of :data:`_COLS` then the
    plain sums of the columns. One batched matrix product per scale instead of a product and a sum per statistic
    (few, large operations: at these sizes their number, not their size, is what costs)."""
    m, c = q.shape[:2]
    bands = _band(torch.cat([t, q], dim=1))
    bt, bp = bands[:, :c], bands[:, c:]
    left = torch.stack([bt, bp, q, t], dim=2).flatten(3)  # (M, C, 4, S)
    right = torch.stack([q, t, q * t, bt, bp], dim=2).flatten(3)  # (M, C, 5, S)
    sums = torch.cat([(left @ right.transpose(-1, -2)).flatten(2), right.sum(dim=-1)], dim=-1)
    return sums.view(groups, m // groups, c, -1).sum(dim=1)


def _scale_features(sums: torch.Tensor) -> torch.Tensor:
    """The :data:`SCALE_FEATURES` ``(..., len(SCALE_FEATURES))`` from :func:`_scale_sums`' sums ``(..., 25)``, all
    scales at once (denominators floored at one block)."""

    def at(row: str, col: str) -> torch.Tensor:
        return sums[..., _ROWS.index(row) * len(_COLS) + _COLS.index(col)]

    def plain(col: str) -> torch.Tensor:
        return sums[..., len(_ROWS) * len(_COLS) + _COLS.index(col)]

    s_qt, s_q, s_t, s_bt, s_bp = plain("qt"), plain("q"), plain("t"), plain("bt"), plain("bp")
    i_t, p_t, t_t = at("bt", "qt"), at("bt", "q"), at("bt", "t")
    i_p, p_p, t_p = at("bp", "qt"), at("bp", "q"), at("bp", "t")
    both = at("bp", "bt")
    num = torch.stack([s_qt, i_t, i_t, i_t, i_p, i_p, i_p, both, both, s_bt, s_bp], dim=-1)
    den = torch.stack([at("q", "q") + at("t", "t") - s_qt, t_t, p_t, p_t + t_t - i_t, t_p, p_p, p_p + t_p - i_p,
                       s_bp, s_bt, s_t, s_q], dim=-1)
    return num / den.clamp_min(1.0)


def _check_scales(scales: object) -> tuple[int, ...]:
    ok = isinstance(scales, Sequence) and not isinstance(scales, str)
    ok = ok and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in scales)  # type: ignore
    ok = ok and all(b % a == 0 and b > a for a, b in itertools.pairwise(scales))  # type: ignore
    if not ok:
        raise ValueError(f"`scales` must be increasing pooling factors >= 1, each a multiple of the one before (e.g. "
                         f"[4, 8, 16]), got {scales!r}")
    return tuple(int(s) for s in scales)  # type: ignore[union-attr]


class SegmentationNet(nn.Module):
    r"""Surrogate network of ``task="segmentation"``: ``net(logits (N, B, C, H, W), target (N, B, H, W)) -> (N,)``.

    Per-class statistics (:func:`segmentation_statistics`) through a shared MLP :math:`\psi`, pooled over the classes
    present in the targets and, as departures from an empty class, over the absent ones, then an MLP :math:`\rho`
    (formula in the module docstring). Serves any ``C`` and any ``H x W``.

    Args:
        ignore_index: the target value of unlabelled pixels.
        scales: pooling factors of the band statistics (each a multiple of the one before).
        sharpness: multiplier of the logits in the softmax (above 1 the soft counts follow the arg-max's more closely).
        class_hidden: width of :math:`\psi` (and of :math:`\rho`'s hidden layer).
        class_depth: layers of :math:`\psi`.
        grid: the largest side, in pooled pixels, of the first pooled map: larger images pool by larger factors
            (:func:`segmentation_statistics`); ``None``: the factors as given at every size.

    Example:
        >>> net = SegmentationNet(scales=(2, 4), class_hidden=8)
        >>> net(torch.randn(3, 2, 4, 16, 16), torch.randint(0, 4, (3, 2, 16, 16))).shape
        torch.Size([3])
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX, scales: Sequence[int] = (4, 8, 16), sharpness: float = 1.0,
                 class_hidden: int = 64, class_depth: int = 2, grid: int | None = DEFAULT_GRID) -> None:
        super().__init__()
        self.grid = None if grid is None else check_int(grid, "grid", 2)
        self.ignore_index = check_int(ignore_index, "ignore_index")
        self.scales = _check_scales(scales)
        self.sharpness = check_positive(sharpness, "sharpness")
        check_int(class_hidden, "class_hidden", 1)
        check_int(class_depth, "class_depth", 1)
        width = len(FULL_FEATURES) + len(self.scales) * len(SCALE_FEATURES)
        self.psi = nn.Sequential(mlp(width, class_hidden, class_depth - 1, class_hidden), nn.ELU())
        self.rho = mlp(2 * class_hidden, class_hidden, 1, 1)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        stats = segmentation_statistics(logits, target, self.ignore_index, self.scales, self.sharpness, self.grid)
        stats = stats.to(self.rho[0].weight.dtype)
        h = self.psi(stats)
        empty = self.psi(torch.zeros_like(stats[..., :1, :]))
        present = stats[..., FULL_FEATURES.index("present"):FULL_FEATURES.index("present") + 1]
        count = present.sum(dim=-2).clamp_min(1.0)
        pooled_present = (h * present).sum(dim=-2) / count
        pooled_absent = ((h - empty) * (1 - present)).sum(dim=-2) / count
        return self.rho(torch.cat([pooled_present, pooled_absent], dim=-1)).squeeze(-1)


# ----- G_R ------------------------------------------------------------------------------------------------------

#: Object slots per image of G_R (a per-batch density decides how many are used) and spurious objects per image.
MAX_OBJECTS, MAX_SPURIOUS = 16, 4


def _uniform(shape: tuple[int, ...], lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def _log_uniform(shape: tuple[int, ...], lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.exp(_uniform(shape, math.log(lo), math.log(hi), g))


def _smooth_field(m: int, k: int, size: tuple[int, int], cells: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``k`` smooth random fields per image ``(m, k, H, W)``: Gaussian noise on a coarse grid of ``cells`` cells
    along the longer side (per image), bilinearly upsampled; about unit variance. Images with the same number of
    cells are upsampled together."""
    h, w = size
    top = int(cells.max())
    grid = torch.randn(m, k, top + 1, top + 1, generator=g)
    out = torch.empty(m, k, h, w)
    for n in cells.unique().tolist():
        idx = (cells == n).nonzero().squeeze(1)
        gh, gw = max(2, round(n * h / max(h, w)) + 1), max(2, round(n * w / max(h, w)) + 1)
        out[idx] = F.interpolate(grid[idx, :, :gh, :gw], size=(h, w), mode="bilinear", align_corners=True)
    return out


def _argmax3(x: torch.Tensor) -> torch.Tensor:
    """``x.argmax(dim=1)`` for three channels ``(m, 3, H, W)`` by comparisons (the strided arg-max kernel is slow)."""
    one = x[:, 1] > x[:, 0]
    return torch.where(x[:, 2] > torch.maximum(x[:, 0], x[:, 1]), 2, one.long())


def _shape_score(params: torch.Tensor, size: tuple[int, int], wobble: torch.Tensor) -> torch.Tensor:
    """Inside-ness of one object per image, ``(m, H, W)``, > 0 inside: ``params`` ``(m, 7)`` holds the centre (x, y)
    and radii (rx, ry) in units of the longer side, the angle, the kind (0 ellipse, 1 rectangle, 2 blob) and the
    threshold; ``wobble`` ``(m, H, W)`` a smooth field that makes blobs' outlines irregular."""
    h, w = size
    s = float(max(h, w))
    x = (torch.arange(w, dtype=torch.float32) + 0.5) / s
    yy = (torch.arange(h, dtype=torch.float32) + 0.5) / s
    cx, cy, rx, ry, angle, kind, thr = (params[:, i].view(-1, 1, 1) for i in range(7))
    dx, dy = x.view(1, 1, w) - cx, yy.view(1, h, 1) - cy
    cos, sin = angle.cos(), angle.sin()
    u = (dx * cos + dy * sin) / rx
    v = (dy * cos - dx * sin) / ry
    ellipse = u.square() + v.square()
    rect = torch.maximum(u.abs(), v.abs()).square()
    dist = torch.where(kind == 1, rect, ellipse)
    score = 1 - dist + torch.where(kind == 2, 0.35 * wobble, torch.zeros(()))
    return score - thr


def builtins(ignore_index: int = IGNORE_INDEX) -> dict[str, Metric]:
    """The built-in metrics (:mod:`metricloss.metrics.segmentation`) with ``ignore_index``: the shared ``BUILTINS``
    for 255, else the same functions bound to the task's value."""
    if ignore_index == IGNORE_INDEX:
        return BUILTINS
    return {name: BatchMetric(name, bound, m.higher_is_better, bound)
            for name, m in BUILTINS.items() for bound in [functools.partial(m.fn, ignore_index=ignore_index)]}


def _check_size(image_size: object) -> tuple[int, int]:
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    ok = isinstance(image_size, Sequence) and not isinstance(image_size, str) and len(image_size) == 2
    ok = ok and all(isinstance(s, int) and not isinstance(s, bool) and s >= 8 for s in image_size)  # type: ignore
    if not ok:
        raise ValueError(f"`image_size` must be (H, W), two integers >= 8 (or one for a square), got {image_size!r}")
    return int(image_size[0]), int(image_size[1])  # type: ignore[index]


@register_task
class SegmentationTask(Task):
    """``task="segmentation"``: per-pixel logits ``(B, C, H, W)`` and int64 class indices ``(B, H, W)`` with
    ``ignore_index``.

    Args:
        num_classes: C, the classes of the logits (>= 2), or 1 for binary segmentation with one logit per pixel and
            ``{0, 1}`` targets. Calls accept any C of the same kind (the default net is size-agnostic).
        image_size: ``(H, W)`` (an int for a square) of the batches G_R draws (default 64 x 64). Calls accept any
            size.
        ignore_index: the target value of unlabelled pixels (default 255); it must not be a class index.
    """

    name = "segmentation"
    baseline_name = "cross-entropy"
    default_metric = "miou"
    default_batch_size = 8
    #: G_R batches drawn up front (at most what the memory budget's pool share holds: 256 at C = 21, 64 x 64).
    default_pool_size = 256

    def __init__(self, num_classes: int, image_size: Sequence[int] | int = (64, 64),
                 ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = check_int(num_classes, "num_classes", 1)
        self.image_size = _check_size(image_size)
        self.ignore_index = check_int(ignore_index, "ignore_index")
        if 0 <= ignore_index < max(num_classes, 2):
            raise ValueError(f"`ignore_index` = {ignore_index} is a class index (num_classes = {num_classes}); pass "
                             "a value outside [0, num_classes), such as 255 or -100")

    def config(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "image_size": list(self.image_size),
                "ignore_index": self.ignore_index}

    def _batch_elements(self, batch_size: int) -> int:
        return batch_size * self.num_classes * self.image_size[0] * self.image_size[1]

    @property
    def default_batches_per_step(self) -> int:  # type: ignore[override]
        """N: as many default batches as hold :data:`STEP_ELEMENTS` logits, from 8 to 64 (24 at C = 21, 64 x 64)."""
        return max(8, min(64, STEP_ELEMENTS // self._batch_elements(self.default_batch_size)))

    @property
    def default_steps(self) -> int:  # type: ignore[override]
        """The default step bound: all steps' default batches together hold at most :data:`LEARN_ELEMENTS` logits
        (150 steps at C = 21, 64 x 64; the floor of 50 from about 128 x 128 up; :func:`capped_steps`)."""
        return capped_steps(self.default_batches_per_step * self._batch_elements(self.default_batch_size),
                            LEARN_ELEMENTS)

    @property
    def metrics(self) -> dict[str, Metric]:
        return builtins(self.ignore_index)

    def check(self, pred: torch.Tensor, target: torch.Tensor, *, stacked: bool = False) -> None:
        check_segmentation(pred, target, ignore_index=self.ignore_index, stacked=stacked)

    def batch_nbytes(self, batch_size: int) -> int:
        """Bytes of one stored batch: float32 logits ``(B, C, H, W)`` and int64 targets ``(B, H, W)``."""
        h, w = self.image_size
        return batch_size * h * w * (4 * self.num_classes + 8)

    def baseline(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return pixel_cross_entropy(pred, target, self.ignore_index)

    def default_net_config(self) -> dict[str, Any]:
        return {"scales": [4, 8, 16], "sharpness": 1.0, "class_hidden": 64, "class_depth": 2, "grid": DEFAULT_GRID}

    def build_net(self, **net_config: Any) -> nn.Module:
        if "ignore_index" in net_config:
            raise TypeError("`ignore_index` is a task argument (SegmentationTask(ignore_index=...)), not a network "
                            "setting")
        return SegmentationNet(ignore_index=self.ignore_index, **net_config)

    # ----- G_R -----------------------------------------------------------------------------------------------

    def random_batches(
        self, n: int, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """G_R: ``n`` batches of scenes and predictions with a segmenter's errors (module docstring), rendered a few
        images at a time (at most :data:`GEN_ELEMENTS` logits, at least one image) into the returned stacks."""
        h, w = self.image_size
        c = max(self.num_classes, 2)
        g = generator
        scene = self._draw_scenes(n, batch_size, c, g)
        pred = torch.empty(n * batch_size, self.num_classes, h, w)
        target = torch.empty(n * batch_size, h, w, dtype=torch.long)
        chunk = max(1, GEN_ELEMENTS // (c * h * w))
        for start in range(0, n * batch_size, chunk):
            stop = min(n * batch_size, start + chunk)
            logits, labels = self._render(scene, start, stop, c, g)
            pred[start:stop] = logits[:, 1:] - logits[:, :1] if self.num_classes == 1 else logits
            target[start:stop] = labels
        return pred.view(n, batch_size, self.num_classes, h, w), target.view(n, batch_size, h, w)

    def relabel(
        self, pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Real logits, new label maps: the model's own prediction with its boundaries moved where it is unsure
        (its logits plus smooth noise, at a per-batch error level) and objects it missed painted in (0 to 6 per image,
        classes drawn from the prediction's own); the ignored pixels of ``target`` stay ignored."""
        g = generator
        n, b = target.shape[:2]
        h, w = target.shape[-2:]
        m = n * b
        z = pred.reshape(m, *pred.shape[-3:]).to(torch.float32)
        e = torch.rand(n, generator=g).pow(1.5).repeat_interleave(b)
        spread = z.flatten(1).std(dim=1).clamp_min(1e-6) * e * _uniform((m,), 0.0, 2.0, g)
        cells = torch.randint(3, 13, (m,), generator=g)
        labels = torch.empty(m, h, w, dtype=torch.long)
        for i in range(0, m, max(1, GEN_ELEMENTS // max(z[0].numel(), 1))):
            j = min(m, i + max(1, GEN_ELEMENTS // max(z[0].numel(), 1)))
            noisy = z[i:j] + spread[i:j].view(-1, 1, 1, 1) * _smooth_field(j - i, z.shape[1], (h, w), cells[i:j], g)
            labels[i:j] = segmentation_labels(noisy)
        # Missed objects: ellipses and blobs of a class the model predicts elsewhere in the batch.
        wobble = _smooth_field(m, 1, (h, w), torch.randint(6, 17, (m,), generator=g), g)[:, 0]
        count = (e * 6 * torch.rand(m, generator=g)).round().long()
        side = max(h, w)
        for k in range(6):
            there = (k < count).view(-1, 1, 1)
            radius = _log_uniform((m,), 0.015, 0.25, g)
            params = torch.stack([_uniform((m,), 0.0, w / side, g), _uniform((m,), 0.0, h / side, g), radius,
                                  radius * _log_uniform((m,), 0.5, 2.0, g), _uniform((m,), 0.0, math.pi, g),
                                  torch.randint(0, 3, (m,), generator=g).float(), torch.zeros(m)], dim=-1)
            pick = torch.randint(0, h * w, (m, 1), generator=g)
            cls = labels.flatten(1).gather(1, pick).view(-1, 1, 1)  # a class present in the image
            other = labels.flatten(1).gather(1, torch.randint(0, h * w, (m, 1), generator=g)).view(-1, 1, 1)
            inside = (_shape_score(params, (h, w), wobble) > 0) & there
            labels = torch.where(inside, torch.where(torch.rand(m, 1, 1, generator=g) < 0.5, cls, other), labels)
        labels = labels.view(target.shape)
        return pred, torch.where(target == self.ignore_index, target, labels)

    def few_errors(self, pred: torch.Tensor, target: torch.Tensor, errors: torch.Tensor,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The late-training regime of :mod:`metricloss.learning.regimes` for label maps: each batch's targets set to
        its predicted labels, then ``errors[i]`` regions (an ellipse, rectangle or blob of 1.5 % to 15 % of the image
        side, in a random image of the batch) given another class: an error of a segmenter is a region, not a
        pixel. Ignored pixels stay ignored."""
        g = generator
        n, b = target.shape[:2]
        h, w = target.shape[-2:]
        c = max(pred.shape[-3], 2)
        labels = segmentation_labels(pred).clone()
        side = max(h, w)
        rows = torch.arange(n)
        for k in range(int(errors.max()) if errors.numel() else 0):
            there = (k < errors).view(-1, 1, 1)
            image = torch.randint(0, b, (n,), generator=g)
            radius = _log_uniform((n,), 0.015, 0.15, g)
            other_radius = (radius * _log_uniform((n,), 0.5, 2.0, g)).clamp_min(1.0 / side)  # at least a pixel
            params = torch.stack([_uniform((n,), 0.0, w / side, g), _uniform((n,), 0.0, h / side, g),
                                  radius.clamp_min(1.0 / side), other_radius, _uniform((n,), 0.0, math.pi, g),
                                  torch.randint(0, 3, (n,), generator=g).float(), torch.zeros(n)], dim=-1)
            wobble = _smooth_field(n, 1, (h, w), torch.randint(6, 17, (n,), generator=g), g)[:, 0]
            inside = (_shape_score(params, (h, w), wobble) > 0) & there
            current = labels[rows, image]
            other = (current + torch.randint(1, c, (n, 1, 1), generator=g)) % c
            labels[rows, image] = torch.where(inside, other, current)
        return pred, torch.where(target == self.ignore_index, target, labels)

    def _draw_scenes(self, n: int, b: int, c: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Every random number of the scenes that is not a per-pixel draw: per batch (its error level and the
        parameters of its errors) and per image (classes, object geometry), repeated per image where per batch."""
        m = n * b
        per = lambda x: x.repeat_interleave(b, dim=0)  # noqa: E731  per batch -> per image
        e = torch.rand(n, generator=g).pow(1.5)  # more batches with few errors, where trained models are
        # Long-tailed class frequencies: Zipf over a random class order, exponent per batch.
        order = torch.rand(n, c, generator=g).argsort(dim=-1).float()
        prior = (order + 1).pow(-_uniform((n, 1), 0.3, 2.2, g))
        prior = per(prior / prior.sum(dim=-1, keepdim=True))
        stuff_cls = torch.multinomial(prior, 3, replacement=True, generator=g)
        obj_cls = torch.multinomial(prior, MAX_OBJECTS + MAX_SPURIOUS, replacement=True, generator=g)
        # Confusions: each class with a partner (a random permutation per batch), swapped with probability p_conf.
        partner = per(torch.rand(n, c, generator=g).argsort(dim=-1))
        ee = per(e)
        p_conf = ee * _uniform((m,), 0.0, 0.5, g)
        conf = torch.rand(m, MAX_OBJECTS + MAX_SPURIOUS, generator=g) < p_conf.unsqueeze(1)
        obj_pred_cls = torch.where(conf, partner.gather(1, obj_cls), obj_cls)
        stuff_conf = torch.rand(m, 3, generator=g) < p_conf.unsqueeze(1) * 0.5
        stuff_pred_cls = torch.where(stuff_conf, partner.gather(1, stuff_cls), stuff_cls)
        # Objects: how many (per-batch density), where, how large (log-uniform: many small ones), which shape.
        density = per(torch.randint(0, MAX_OBJECTS + 1, (n,), generator=g))
        exists = torch.arange(MAX_OBJECTS).view(1, -1) < torch.randint(0, MAX_OBJECTS + 1, (m, 1), generator=g)
        exists &= torch.arange(MAX_OBJECTS).view(1, -1) < density.view(-1, 1)
        k = MAX_OBJECTS
        h, w = self.image_size
        s = max(h, w)
        radius = _log_uniform((m, k), 0.015, 0.45, g)
        aspect = _log_uniform((m, k), 0.4, 2.5, g).sqrt()
        params = torch.stack([_uniform((m, k), 0.0, w / s, g), _uniform((m, k), 0.0, h / s, g), radius * aspect,
                              radius / aspect, _uniform((m, k), 0.0, math.pi, g),
                              torch.randint(0, 3, (m, k), generator=g).float(), torch.zeros(m, k)], dim=-1)
        # The prediction's geometry: shifted, resized, grown (neighbours merge) or shrunk, by the error level.
        e2 = ee.view(-1, 1)
        shift = e2 * _uniform((m, 1), 0.0, 0.6, g) * radius * torch.randn(m, k, 2, generator=g).permute(2, 0, 1)
        resize = torch.exp(e2 * 0.3 * torch.randn(m, k, generator=g))
        grow = e2 * _uniform((m, 1), -0.4, 0.8, g) * (torch.rand(m, 1, generator=g) < 0.5)
        pred_params = params.clone()
        pred_params[..., 0] += shift[0]
        pred_params[..., 1] += shift[1]
        pred_params[..., 2] *= resize
        pred_params[..., 3] *= resize
        pred_params[..., 6] = -grow
        # Missed objects, more often the smaller they are.
        p_miss = e2 * _uniform((m, 1), 0.0, 1.0, g)
        missed = torch.rand(m, k, generator=g) < p_miss * torch.exp(-radius / 0.08)
        # Spurious objects in the prediction only.
        ks = MAX_SPURIOUS
        spurious = torch.rand(m, ks, generator=g) < e2 * 0.5
        s_radius = _log_uniform((m, ks), 0.015, 0.2, g)
        spur_params = torch.stack([_uniform((m, ks), 0.0, w / s, g), _uniform((m, ks), 0.0, h / s, g), s_radius,
                                   s_radius * _log_uniform((m, ks), 0.5, 2.0, g), _uniform((m, ks), 0.0, math.pi, g),
                                   torch.randint(0, 3, (m, ks), generator=g).float(), torch.zeros(m, ks)], dim=-1)
        # Ignore regions: none (half), VOC-style bands along object boundaries, unlabelled blobs, or both.
        mode = per(torch.multinomial(torch.tensor([0.5, 0.25, 0.15, 0.1]), n, replacement=True, generator=g))
        band_width = per(torch.randint(1, 4, (n,), generator=g))
        blob = torch.stack([_uniform((m,), 0.0, w / s, g), _uniform((m,), 0.0, h / s, g),
                            _log_uniform((m,), 0.05, 0.3, g), _log_uniform((m,), 0.05, 0.3, g),
                            _uniform((m,), 0.0, math.pi, g), torch.full((m,), 2.0), torch.zeros(m)], dim=-1)
        # The prediction's logits: blur, smooth per-class noise, pixel noise, class bias, temperature.
        blur = per(torch.multinomial(torch.tensor([0.4, 0.25, 0.2, 0.15]), n, replacement=True, generator=g))
        blur = torch.where(per(e) < 0.15, torch.zeros_like(blur), blur)
        return {
            "e": ee, "stuff_cls": stuff_cls, "stuff_pred_cls": stuff_pred_cls,
            "stuff_count": torch.randint(1, 4, (m,), generator=g),
            "stuff_cells": torch.randint(2, 7, (m,), generator=g),
            "wobble_cells": torch.randint(6, 17, (m,), generator=g),
            "noise_cells": torch.randint(3, 13, (m,), generator=g),
            "stuff_shift": ee * _uniform((m,), 0.0, 1.2, g),
            "obj_cls": obj_cls[:, :k], "obj_pred_cls": obj_pred_cls[:, :k], "exists": exists, "params": params,
            "pred_params": pred_params, "missed": missed, "spur_cls": obj_pred_cls[:, k:], "spurious": spurious,
            "spur_params": spur_params, "ignore_mode": mode, "band_width": band_width, "blob": blob,
            "blur": 2 ** blur, "field_amp": ee * _uniform((m,), 0.1, 1.2, g),
            "pixel_amp": ee * _log_uniform((m,), 0.01, 1.0, g),
            "bias": (ee * 0.4).view(-1, 1) * torch.randn(m, c, generator=g),
            "temperature": per(_log_uniform((n,), 0.3, 12.0, g)),
        }

    def _render(self, scene: dict[str, torch.Tensor], start: int, stop: int, c: int,
                g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(m, C, H, W)`` (two classes for binary) and targets ``(m, H, W)`` of images ``start:stop``."""
        sc = {key: value[start:stop] for key, value in scene.items()}
        m = stop - start
        size = self.image_size
        h, w = size
        # Stuff: the arg-max of up to three smooth fields at two scales; the prediction's boundaries moved by a
        # further field.
        fields = _smooth_field(m, 3, size, sc["stuff_cells"], g) + 0.3 * _smooth_field(m, 3, size,
                                                                                           2 * sc["stuff_cells"], g)
        unused = (torch.arange(3).view(1, 3) >= sc["stuff_count"].view(-1, 1)).view(m, 3, 1, 1)
        fields = fields.masked_fill(unused, float("-inf"))
        target = sc["stuff_cls"].gather(1, _argmax3(fields).flatten(1)).view(m, h, w)
        moved = fields + sc["stuff_shift"].view(-1, 1, 1, 1) * _smooth_field(m, 3, size, sc["stuff_cells"], g)
        label = sc["stuff_pred_cls"].gather(1, _argmax3(moved).flatten(1)).view(m, h, w)
        del fields, moved
        wobble = _smooth_field(m, 1, size, sc["wobble_cells"], g)[:, 0]
        for k in range(MAX_OBJECTS):
            there = sc["exists"][:, k].view(-1, 1, 1)
            inside = (_shape_score(sc["params"][:, k], size, wobble) > 0) & there
            target = torch.where(inside, sc["obj_cls"][:, k].view(-1, 1, 1), target)
            kept = there & ~sc["missed"][:, k].view(-1, 1, 1)
            drawn = (_shape_score(sc["pred_params"][:, k], size, wobble) > 0) & kept
            label = torch.where(drawn, sc["obj_pred_cls"][:, k].view(-1, 1, 1), label)
        for k in range(MAX_SPURIOUS):
            drawn = (_shape_score(sc["spur_params"][:, k], size, wobble) > 0) & sc["spurious"][:, k].view(-1, 1, 1)
            label = torch.where(drawn, sc["spur_cls"][:, k].view(-1, 1, 1), label)
        target = self._ignore_regions(target, sc, wobble)
        return self._logits(label, sc, c, g), target

    def _ignore_regions(self, target: torch.Tensor, sc: dict[str, torch.Tensor], wobble: torch.Tensor) -> torch.Tensor:
        """Ignore bands along the label boundaries and unlabelled blobs, by each image's mode; an image that would be
        all ignore keeps its labels."""
        mode = sc["ignore_mode"].view(-1, 1, 1)
        edge = torch.zeros_like(target, dtype=torch.bool)
        edge[:, :, 1:] |= target[:, :, 1:] != target[:, :, :-1]
        edge[:, 1:, :] |= target[:, 1:, :] != target[:, :-1, :]
        ignore = torch.zeros_like(edge)
        for width in (1, 2, 3):
            pick = (sc["band_width"] == width) & ((sc["ignore_mode"] == 1) | (sc["ignore_mode"] == 3))
            if bool(pick.any()):
                band = F.max_pool2d(edge[pick].unsqueeze(1).float(), 2 * width - 1, 1, width - 1)[:, 0] > 0
                ignore[pick] = band
        blobs = (_shape_score(sc["blob"], self.image_size, wobble) > 0) & ((mode == 2) | (mode == 3))
        ignore |= blobs
        ignore &= ~ignore.flatten(1).all(dim=1).view(-1, 1, 1)
        return target.masked_fill(ignore, self.ignore_index)

    def _logits(self, label: torch.Tensor, sc: dict[str, torch.Tensor], c: int, g: torch.Generator) -> torch.Tensor:
        """Logits whose arg-max is about ``label`` ``(m, H, W)``: its one-hot map blurred (block means at the
        image's blur factor, upsampled), plus smooth per-class noise, pixel noise and a class bias, times the
        temperature."""
        m, (h, w) = label.shape[0], self.image_size
        logits = _smooth_field(m, c, self.image_size, sc["noise_cells"], g) * sc["field_amp"].view(-1, 1, 1, 1)
        # Pixel noise, uniform with unit variance (cheaper to draw than Gaussian noise, as good here).
        noise = torch.rand(m, c, h, w, generator=g).sub_(0.5).mul_(math.sqrt(12.0))
        logits += noise.mul_(sc["pixel_amp"].view(-1, 1, 1, 1))
        logits += sc["bias"].view(m, c, 1, 1)
        sharp = sc["blur"] == 1
        if bool(sharp.any()):
            idx = sharp.nonzero().squeeze(1)
            logits[idx] = logits[idx].scatter_add(1, label[idx].unsqueeze(1), torch.ones(idx.numel(), 1, h, w))
        for f in (2, 4, 8):
            idx = (sc["blur"] == f).nonzero().squeeze(1)
            if idx.numel():
                blocks = _target_blocks(label[idx], torch.ones_like(label[idx], dtype=torch.bool), c, f, torch.float32)
                soft = F.interpolate(blocks, scale_factor=f, mode="bilinear", align_corners=False)[..., :h, :w]
                logits[idx] += soft
        return logits.mul_(sc["temperature"].view(-1, 1, 1, 1))
