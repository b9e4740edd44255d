r"""Hand-made segmentation losses: the baselines a learned surrogate of mIoU, Dice or boundary F1 is compared with.

Every loss here takes metricloss' segmentation call shapes, logits ``(B, C, H, W)`` (or ``(B, 1, H, W)``, binary)
and class indices ``(B, H, W)`` with ``ignore_index`` (255), checks them with
:func:`metricloss.metrics.segmentation.check_segmentation`, ignores the pixels labelled ``ignore_index``, and returns
a scalar to minimise.

Written here, from their papers:

- :class:`SoftDiceLoss` / :func:`soft_dice_loss`: one minus the soft Dice of the softmax probabilities, per class,
  pooled over the batch (Milletari et al. 2016's V-Net loss).
- :class:`LovaszSoftmaxLoss` / :func:`lovasz_softmax`: the Lovász extension of the Jaccard loss (Berman et al. 2018),
  the tight convex surrogate of 1 - IoU that its authors fine-tune with.

Wrapped from MONAI (``pip install 'metricloss[segmentation]'``; each one takes the keyword arguments of MONAI's
class): :class:`MonaiDiceLoss`, :class:`MonaiDiceCELoss`, :class:`MonaiFocalLoss`, :class:`MonaiTverskyLoss`. The
softmax (or, for one logit per pixel, the sigmoid) and the one-hot encoding of the targets are set for you.

Example:
    >>> import torch
    >>> from metricloss.references.segmentation import lovasz_softmax, soft_dice_loss
    >>> target = torch.tensor([[[0, 1], [1, 255]]])
    >>> logits = torch.tensor([[[[4.0, -4.0], [-4.0, 0.0]], [[-4.0, 4.0], [4.0, 0.0]]]])  # right on every pixel
    >>> round(float(lovasz_softmax(logits, target)), 4), round(float(soft_dice_loss(logits, target)), 4)
    (0.0003, 0.0002)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_positive
from .._optional import require
from ..metrics.segmentation import IGNORE_INDEX, check_segmentation

__all__ = [
    "REFERENCES",
    "LovaszSoftmaxLoss",
    "MonaiDiceCELoss",
    "MonaiDiceLoss",
    "MonaiFocalLoss",
    "MonaiTverskyLoss",
    "SoftDiceLoss",
    "lovasz_grad",
    "lovasz_softmax",
    "soft_dice_loss",
]


def _probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities ``(B, K, H, W)``: softmax, or ``[1 - sigmoid, sigmoid]`` for one logit per pixel."""
    if logits.shape[1] == 1:
        fg = torch.sigmoid(logits)
        return torch.cat([1 - fg, fg], dim=1)
    return torch.softmax(logits, dim=1)


def _scored_one_hot(target: torch.Tensor, k: int, ignore_index: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot targets ``(B, K, H, W)`` (zero on ignored pixels) and the mask of scored pixels ``(B, 1, H, W)``."""
    scored = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    one_hot = F.one_hot(target.where(scored, 0).long(), k).movedim(-1, 1)
    mask = scored.unsqueeze(1)
    return one_hot * mask, mask


def soft_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int | None = IGNORE_INDEX,
    include_background: bool | None = None,
    smooth: float = 1.0,
) -> torch.Tensor:
    r"""One minus the soft Dice of the class probabilities, per class over the batch's scored pixels, averaged.

    .. math:: \mathcal L = 1 - \frac{1}{|K|}\sum_{c \in K}
              \frac{2 \sum_i p_{ic} y_{ic} + s}{\sum_i p_{ic} + \sum_i y_{ic} + s}

    with :math:`p` the softmax probabilities (``[1 - \sigma, \sigma]`` for one logit per pixel), :math:`y` the
    one-hot targets, :math:`i` over the batch's pixels not labelled ``ignore_index``, :math:`K` all classes but
    the background when ``include_background`` is false (default: false for binary segmentation, ``C <= 2``, as
    :func:`metricloss.metrics.segmentation.dice`), and the smoothing :math:`s` (1.0) keeping a class absent from
    the batch finite (its term then pushes its probabilities to 0).

    Example:
        >>> logits = torch.tensor([[[[3.0, -3.0]]]])            # binary: p = [0.95, 0.05]
        >>> round(float(soft_dice_loss(logits, torch.tensor([[[1, 0]]]), smooth=0.0)), 4)
        0.0474
    """
    logits, target = check_segmentation(logits, target, ignore_index=ignore_index)
    s = check_positive(smooth, "smooth") if smooth else 0.0
    p = _probabilities(logits)
    k = p.shape[1]
    y, mask = _scored_one_hot(target, k, ignore_index)
    p = p * mask
    dims = (0, 2, 3)
    inter = (p * y).sum(dims)
    total = p.sum(dims) + y.sum(dims)
    dice = (2 * inter + s) / (total + s).clamp_min(torch.finfo(p.dtype).tiny)
    background = k > 2 if include_background is None else bool(include_background)
    return 1 - (dice if background else dice[1:]).mean()


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    r"""Gradient of the Lovász extension of the Jaccard loss for errors sorted in decreasing order.

    With :math:`g` the ground truth (1 for the class) of the pixels sorted by decreasing error, taking the first
    :math:`i` pixels as mispredicted gives :math:`\mathrm{FN}_i = \sum_{j \le i} g_j` and
    :math:`\mathrm{FP}_i = \sum_{j \le i} (1 - g_j)`, so a Jaccard loss
    :math:`\Delta_i = 1 - (|g| - \mathrm{FN}_i) / (|g| + \mathrm{FP}_i)`; the extension's weights are its increments
    :math:`\Delta_i - \Delta_{i-1}` (:math:`\Delta_0 = 0`). ``(..., P) -> (..., P)``, along the last dimension.

    Example:
        >>> lovasz_grad(torch.tensor([1.0, 0.0, 1.0]))          # |g| = 2: Delta = 1/2, 2/3, 1
        tensor([0.5000, 0.1667, 0.3333])
    """
    total = gt_sorted.sum(dim=-1, keepdim=True)
    fn = gt_sorted.cumsum(dim=-1)
    fp = (1 - gt_sorted).cumsum(dim=-1)
    jaccard = 1 - (total - fn) / (total + fp)
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)


def lovasz_softmax(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int | None = IGNORE_INDEX,
    classes: str = "present",
    per_image: bool = False,
) -> torch.Tensor:
    r"""Lovász-softmax loss (Berman et al. 2018): the Lovász extension of the Jaccard loss, averaged over classes.

    For class :math:`c`, the pixel errors :math:`m_i = |y_{ic} - p_{ic}|` (softmax probabilities :math:`p`) sorted
    in decreasing order :math:`\pi` are weighted by the increments of the Jaccard loss of the growing sets of
    mispredicted pixels (:func:`lovasz_grad`):

    .. math:: \overline{\Delta_{J_c}}(m) = \sum_i m_{\pi_i}\,
              \big(\Delta_{J_c}(\{\pi_1, \dots, \pi_i\}) - \Delta_{J_c}(\{\pi_1, \dots, \pi_{i-1}\})\big).

    It is piecewise linear in :math:`m`, convex, and on one-hot predictions equals :math:`1 - \mathrm{IoU}_c`.
    Pixels labelled ``ignore_index`` are dropped. One logit per pixel is handled as two classes,
    ``[1 - sigmoid, sigmoid]`` (the paper's binary variant, the Lovász hinge on margins, is not this).

    Args:
        logits: ``(B, C, H, W)`` or ``(B, 1, H, W)``.
        target: ``(B, H, W)`` class indices or ``ignore_index``.
        ignore_index: label of pixels not scored, or ``None``.
        classes: ``"present"`` (default, as the authors): average over the classes present in the target (of the
            batch, or of the image with ``per_image``); ``"all"``: over every class (an absent class then costs its
            largest probability).
        per_image: the loss of each image, averaged over images (images without scored pixels left out), instead
            of one loss over the batch's pixels.

    Example:
        >>> logits = torch.zeros(1, 2, 1, 2)                    # p = 1/2 everywhere
        >>> float(lovasz_softmax(logits, torch.tensor([[[0, 1]]])))
        0.5
    """
    logits, target = check_segmentation(logits, target, ignore_index=ignore_index)
    check_choice(classes, "classes", ("present", "all"))
    p = _probabilities(logits)
    if per_image:
        losses = [_lovasz_flat(pi, ti, ignore_index, classes) for pi, ti in zip(p, target, strict=True)]
        kept = [v for v in losses if v is not None]
        return torch.stack(kept).mean()
    loss = _lovasz_flat(p.movedim(1, 0).flatten(1).T, target.flatten(), ignore_index, classes)
    assert loss is not None  # check_segmentation refuses a batch without a scored pixel
    return loss


#: Elements (classes x pixels) sorted at once by :func:`lovasz_softmax`; more classes are taken in chunks.
_LOVASZ_CHUNK = 1 << 24


def _lovasz_flat(p: torch.Tensor, target: torch.Tensor, ignore_index: int | None, classes: str) -> torch.Tensor | None:
    """``p`` ``(P, K)`` probabilities (or ``(K, H, W)``: one image), ``target`` ``(P,)`` (or ``(H, W)``)."""
    if p.dim() == 3:
        p, target = p.flatten(1).T, target.flatten()
    if ignore_index is not None:
        keep = target != ignore_index
        p, target = p[keep], target[keep]
    if not target.numel():
        return None
    k = p.shape[1]
    fg = F.one_hot(target.long(), k).T.to(p.dtype)  # (K, P)
    wanted = fg.any(dim=1) if classes == "present" else torch.ones(k, dtype=torch.bool, device=p.device)
    picked = wanted.nonzero().squeeze(1)
    step = max(1, _LOVASZ_CHUNK // max(1, target.numel()))
    terms = []
    for chunk in picked.split(step):  # every class's errors sorted at once, in chunks of classes
        errors = (fg[chunk] - p.T[chunk]).abs()
        errors_sorted, order = torch.sort(errors, dim=1, descending=True)
        terms.append((errors_sorted * lovasz_grad(fg[chunk].gather(1, order))).sum(dim=1))
    return torch.cat(terms).mean()


class SoftDiceLoss(nn.Module):
    """:func:`soft_dice_loss` as a module (its keyword arguments fixed at construction)."""

    def __init__(self, ignore_index: int | None = IGNORE_INDEX, include_background: bool | None = None,
                 smooth: float = 1.0) -> None:
        super().__init__()
        self.ignore_index, self.include_background, self.smooth = ignore_index, include_background, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_dice_loss(logits, target, self.ignore_index, self.include_background, self.smooth)


class LovaszSoftmaxLoss(nn.Module):
    """:func:`lovasz_softmax` as a module (its keyword arguments fixed at construction)."""

    def __init__(self, ignore_index: int | None = IGNORE_INDEX, classes: str = "present",
                 per_image: bool = False) -> None:
        super().__init__()
        check_choice(classes, "classes", ("present", "all"))
        self.ignore_index, self.classes, self.per_image = ignore_index, classes, per_image

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return lovasz_softmax(logits, target, self.ignore_index, self.classes, self.per_image)


class _MonaiLoss(nn.Module):
    """A MONAI loss taking label maps with ``ignore_index``: softmax + one-hot for ``C > 1``, sigmoid for ``C = 1``."""

    monai_name = ""

    def __init__(self, ignore_index: int | None = IGNORE_INDEX, **kwargs: Any) -> None:
        super().__init__()
        losses = require("monai.losses", "segmentation", f"the MONAI baseline {self.monai_name}")
        cls = getattr(losses, self.monai_name)
        self.ignore_index = ignore_index
        self.multi = cls(**self._multi_kwargs(), ignore_index=ignore_index, **kwargs)
        self.binary = cls(**self._binary_kwargs(), ignore_index=ignore_index, **kwargs)

    def _multi_kwargs(self) -> dict[str, Any]:
        return {"softmax": True, "to_onehot_y": True}

    def _binary_kwargs(self) -> dict[str, Any]:
        return {"sigmoid": True}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = check_segmentation(logits, target, ignore_index=self.ignore_index)
        loss = self.binary if logits.shape[1] == 1 else self.multi
        return loss(logits, target.unsqueeze(1).long())


class MonaiDiceLoss(_MonaiLoss):
    """MONAI's ``DiceLoss`` (per image and class by default, its ``batch=False``) with its ``ignore_index``.

    Example:
        >>> loss = MonaiDiceLoss(include_background=False)                   # doctest: +SKIP
        >>> loss(torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8)))   # doctest: +SKIP
    """

    monai_name = "DiceLoss"


class MonaiTverskyLoss(_MonaiLoss):
    """MONAI's ``TverskyLoss`` (``alpha`` weighs false positives, ``beta`` false negatives) with its
    ``ignore_index``."""

    monai_name = "TverskyLoss"


class MonaiFocalLoss(_MonaiLoss):
    """MONAI's ``FocalLoss`` (``gamma`` 2) on the softmax probabilities (``use_softmax=True``; the sigmoid for one
    logit per pixel), with its ``ignore_index``: the mean over the scored pixels."""

    monai_name = "FocalLoss"

    def _multi_kwargs(self) -> dict[str, Any]:
        return {"use_softmax": True, "to_onehot_y": True}

    def _binary_kwargs(self) -> dict[str, Any]:
        return {"use_softmax": False}


class MonaiDiceCELoss(nn.Module):
    """MONAI's ``DiceCELoss``: ``lambda_dice`` x Dice loss + ``lambda_ce`` x cross-entropy.

    MONAI's class has no ``ignore_index``, so this is the same sum built from MONAI's ``DiceLoss`` with its
    ``ignore_index`` and PyTorch's cross-entropy with ``ignore_index`` (binary cross-entropy on the scored pixels for
    one logit per pixel); without ignored pixels it equals ``monai.losses.DiceCELoss`` (the tests check it).
    """

    def __init__(self, ignore_index: int | None = IGNORE_INDEX, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                 **dice_kwargs: Any) -> None:
        super().__init__()
        self.dice = MonaiDiceLoss(ignore_index=ignore_index, **dice_kwargs)
        self.ignore_index, self.lambda_dice, self.lambda_ce = ignore_index, float(lambda_dice), float(lambda_ce)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = check_segmentation(logits, target, ignore_index=self.ignore_index)
        dice = self.dice(logits, target)
        if logits.shape[1] == 1:
            keep = target != self.ignore_index if self.ignore_index is not None else torch.ones_like(target).bool()
            ce = F.binary_cross_entropy_with_logits(logits[:, 0][keep], target[keep].to(logits.dtype))
        else:
            ce = F.cross_entropy(logits, target.long(), ignore_index=-100 if self.ignore_index is None
                                 else self.ignore_index)
        return self.lambda_dice * dice + self.lambda_ce * ce


#: The hand-made segmentation losses by name, each a constructor of a loss module ``loss(logits, target)``
#: (``ignore_index=`` and the loss's own keywords): what benchmarks and reports compare a surrogate with.
REFERENCES: dict[str, type[nn.Module]] = {
    "soft_dice": SoftDiceLoss,
    "lovasz_softmax": LovaszSoftmaxLoss,
    "monai_dice": MonaiDiceLoss,
    "monai_dice_ce": MonaiDiceCELoss,
    "monai_focal": MonaiFocalLoss,
    "monai_tversky": MonaiTverskyLoss,
}
