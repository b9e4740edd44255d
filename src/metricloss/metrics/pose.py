r"""Built-in keypoint metrics on heatmaps: PCK@α and the PCKh-style variant, per batch and over stacks.

Call shapes (as everywhere in ``task="pose"``): ``heatmaps`` ``(B, K, H, W)`` float, one heatmap per
keypoint; ``keypoints`` ``(B, K, 3)`` float holding ``x`` (column), ``y`` (row) in heatmap pixel coordinates
(pixel centres at integers) and the COCO visibility flag ``v`` (0 = not labelled, 1 = labelled but hidden,
2 = visible). A keypoint *counts* when ``v > 0``. Stacks of batches ``(N, B, K, H, W)`` / ``(N, B, K, 3)``
give one value per batch, ``(N,)``.

The predicted location of keypoint :math:`k` of sample :math:`b` is the arg-max pixel
:math:`\hat p_{bk} = (\hat x, \hat y)` of its heatmap (the first maximum in row-major order on ties), and
:math:`d_{bk} = \lVert \hat p_{bk} - p_{bk} \rVert_2` its distance to the target.

**PCK@α** (Yang & Ramanan, 2013) counts a keypoint as correct when :math:`d_{bk} \le \alpha \max(H, W)`:

.. math:: \mathrm{PCK}_\alpha = \frac{\sum_{b,k} [v_{bk} > 0]\,[d_{bk} \le \alpha \max(H, W)]}
                                     {\sum_{b,k} [v_{bk} > 0]}.

We normalise by the heatmap size because a batch of heatmaps carries no person boxes (COCO-style PCK
normalises by the box size; on a tight crop the two agree up to the crop's aspect). α = 0.05 by default,
the ReLoss paper's PCK@0.05.

**PCKh@α** (Andriluka et al., 2014, MPII) uses a per-sample reference length instead: the distance between
two designated keypoints :math:`(i, j)` of the *target* (MPII uses the head segment; here the first two
keypoints unless the task says otherwise), :math:`d_{bk} \le \alpha \lVert p_{bi} - p_{bj} \rVert_2`, with
α = 0.5 as in PCKh@0.5. A sample whose reference keypoints are not both labelled has no reference length
and none of its keypoints is counted (as MPII skips samples without a head box).

A batch in which no keypoint counts has no PCK; both metrics then return ``empty`` (0.0 by default, like
torchmetrics' ``zero_division``), so that a batch without labels never looks better than a labelled one.

Example:
    >>> import torch
    >>> from metricloss.metrics.pose import percentage_correct_keypoints
    >>> heatmaps = torch.zeros(1, 2, 16, 16)
    >>> heatmaps[0, 0, 5, 3] = 1.0   # keypoint 0 predicted at x = 3, y = 5
    >>> heatmaps[0, 1, 9, 9] = 1.0   # keypoint 1 predicted at x = 9, y = 9
    >>> keypoints = torch.tensor([[[3.2, 5.1, 2.0], [2.0, 2.0, 2.0]]])
    >>> float(percentage_correct_keypoints(heatmaps, keypoints, alpha=0.05))  # threshold 0.8 px
    0.5

References:
    Yang & Ramanan, *Articulated human detection with flexible mixtures of parts*, TPAMI 2013 (PCK).
    Andriluka et al., *2D human pose estimation: new benchmark and state of the art analysis*, CVPR 2014 (PCKh).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import check_float_tensor
from .base import Metric

__all__ = [
    "BUILTINS",
    "check_pose",
    "heatmap_argmax",
    "keypoint_distances",
    "pck",
    "pckh",
    "percentage_correct_keypoints",
    "percentage_correct_keypoints_head",
]


def check_pose(
    heatmaps: object,
    keypoints: object,
    *,
    stacked: bool | None = None,
    num_keypoints: int | None = None,
    heatmap_size: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate pose inputs; raise a clear error naming the argument and what was expected.

    Args:
        heatmaps: ``(B, K, H, W)`` (or ``(N, B, K, H, W)`` when ``stacked``) floating-point, finite.
        keypoints: ``(B, K, 3)`` (``(N, B, K, 3)``) floating-point, finite, visibility in {0, 1, 2}.
        stacked: ``True``: a stack is required; ``False``: one batch is required; ``None``: either.
        num_keypoints, heatmap_size: required ``K`` and ``(H, W)``, when given.
    """
    heatmaps = check_float_tensor(heatmaps, "pred")
    keypoints = check_float_tensor(keypoints, "target")
    dims = {None: (4, 5), False: (4,), True: (5,)}[stacked]
    if heatmaps.dim() not in dims:
        want = " or ".join({4: "(B, K, H, W)", 5: "(N, B, K, H, W)"}[d] for d in dims)
        raise ValueError(f"`pred` must be heatmaps of shape {want}, got {tuple(heatmaps.shape)}")
    k, h, w = heatmaps.shape[-3:]
    if num_keypoints is not None and k != num_keypoints:
        raise ValueError(
            f"`pred` must hold K = num_keypoints = {num_keypoints} heatmaps per sample, got shape "
            f"{tuple(heatmaps.shape)}"
        )
    if heatmap_size is not None and (h, w) != tuple(heatmap_size):
        raise ValueError(
            f"`pred` heatmaps must be of size (H, W) = heatmap_size = {tuple(heatmap_size)}, got shape "
            f"{tuple(heatmaps.shape)}"
        )
    want_t = (*heatmaps.shape[:-2], 3)
    if keypoints.shape != want_t:
        raise ValueError(
            f"`target` must be keypoints of shape {want_t} (x, y, visibility for each heatmap of `pred`), "
            f"got {tuple(keypoints.shape)}"
        )
    if heatmaps.shape[-4] < 1:
        raise ValueError("`pred` is an empty batch (B = 0)")
    if h < 1 or w < 1 or k < 1:
        raise ValueError(f"`pred` has an empty dimension: shape {tuple(heatmaps.shape)}")
    vis = keypoints[..., 2]
    if not bool(((vis == 0) | (vis == 1) | (vis == 2)).all()):
        bad = vis[(vis != 0) & (vis != 1) & (vis != 2)][0].item()
        raise ValueError(
            "`target[..., 2]` (visibility) must be 0 (not labelled), 1 (labelled, hidden) or 2 (visible), "
            f"COCO convention; found {bad!r}"
        )
    return heatmaps, keypoints


def heatmap_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """Arg-max pixel of each heatmap as ``(x, y)`` = (column, row): ``(..., H, W) -> (..., 2)``, float64.

    On ties the first maximum in row-major order wins (``torch.argmax``'s rule).

    Example:
        >>> h = torch.zeros(1, 4, 5)
        >>> h[0, 2, 3] = 1.0
        >>> heatmap_argmax(h)
        tensor([[3., 2.]], dtype=torch.float64)
    """
    w = heatmaps.shape[-1]
    idx = heatmaps.flatten(-2).argmax(dim=-1)
    return torch.stack([idx % w, torch.div(idx, w, rounding_mode="floor")], dim=-1).to(torch.float64)


def keypoint_distances(heatmaps: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    r"""Distance :math:`d = \lVert \mathrm{argmax}(h) - (x, y) \rVert_2` per keypoint: ``(..., K)``, float64.

    Visibility is ignored here (the metrics mask it).

    Example:
        >>> h = torch.zeros(1, 1, 8, 8)
        >>> h[0, 0, 4, 1] = 1.0
        >>> keypoint_distances(h, torch.tensor([[[4.0, 0.0, 2.0]]]))
        tensor([[5.]], dtype=torch.float64)
    """
    diff = heatmap_argmax(heatmaps) - keypoints[..., :2].to(torch.float64)
    return diff.square().sum(dim=-1).sqrt()


def _ratio(correct: torch.Tensor, counted: torch.Tensor, empty: float) -> torch.Tensor:
    """Sum over the batch's (B, K) grid of ``correct & counted`` over the number ``counted``."""
    num = (correct & counted).flatten(-2).sum(dim=-1).to(torch.float64)
    den = counted.flatten(-2).sum(dim=-1).to(torch.float64)
    return torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, float(empty)))


def _check_alpha(alpha: float) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise TypeError(f"`alpha` must be a number, got {alpha!r}") from None
    if not a >= 0 or a == float("inf"):
        raise ValueError(f"`alpha` must be a finite number >= 0, got {alpha!r}")
    return a


def percentage_correct_keypoints(
    heatmaps: torch.Tensor, keypoints: torch.Tensor, alpha: float = 0.05, *, empty: float = 0.0
) -> torch.Tensor:
    r"""PCK@α of one batch (``(B, K, H, W)``, ``(B, K, 3)`` -> scalar) or of each batch of a stack (-> ``(N,)``).

    .. math:: \mathrm{PCK}_\alpha = \frac{\sum_{b,k} [v_{bk} > 0]\,[d_{bk} \le \alpha \max(H, W)]}
                                         {\sum_{b,k} [v_{bk} > 0]}

    Args:
        heatmaps: predicted heatmaps.
        keypoints: target ``(x, y, visibility)``.
        alpha: threshold as a fraction of ``max(H, W)`` (default 0.05).
        empty: value of a batch without labelled keypoints.

    Returns:
        float64 tensor, in [0, 1] (or ``empty``).

    Example:
        >>> h = torch.zeros(2, 1, 20, 20)
        >>> h[0, 0, 10, 10] = h[1, 0, 0, 0] = 1.0
        >>> kp = torch.tensor([[[10.0, 11.0, 2.0]], [[10.0, 10.0, 2.0]]])
        >>> float(percentage_correct_keypoints(h, kp, alpha=0.05))  # 1 px <= 0.05 * 20; 14.1 px is not
        0.5
    """
    heatmaps, keypoints = check_pose(heatmaps, keypoints)
    alpha = _check_alpha(alpha)
    threshold = alpha * max(heatmaps.shape[-2:])
    correct = keypoint_distances(heatmaps, keypoints) <= threshold
    return _ratio(correct, keypoints[..., 2] > 0, empty)


def percentage_correct_keypoints_head(
    heatmaps: torch.Tensor,
    keypoints: torch.Tensor,
    alpha: float = 0.5,
    reference: Sequence[int] = (0, 1),
    *,
    empty: float = 0.0,
) -> torch.Tensor:
    r"""PCKh-style PCK@α with a per-sample reference length (one batch -> scalar, a stack -> ``(N,)``).

    .. math:: \mathrm{PCKh}_\alpha = \frac{\sum_{b,k} c_b\,[v_{bk} > 0]\,[d_{bk} \le \alpha\,
              \lVert p_{bi} - p_{bj}\rVert_2]}{\sum_{b,k} c_b\,[v_{bk} > 0]},
              \qquad c_b = [v_{bi} > 0]\,[v_{bj} > 0]

    with :math:`(i, j)` = ``reference``, the two target keypoints whose distance is the reference length
    (MPII: the head segment).

    Args:
        heatmaps: predicted heatmaps.
        keypoints: target ``(x, y, visibility)``.
        alpha: threshold as a fraction of the reference length (default 0.5, PCKh@0.5).
        reference: indices ``(i, j)`` of the two reference keypoints, distinct, in ``[0, K)``.
        empty: value of a batch without a counted keypoint.

    Example:
        >>> h = torch.zeros(1, 3, 16, 16)
        >>> h[0, 0, 2, 2] = h[0, 1, 2, 6] = h[0, 2, 9, 9] = 1.0
        >>> kp = torch.tensor([[[2.0, 2.0, 2.0], [6.0, 2.0, 2.0], [9.0, 11.0, 1.0]]])  # reference length 4
        >>> float(percentage_correct_keypoints_head(heatmaps=h, keypoints=kp, alpha=0.5))  # 2 px <= 2 px
        1.0
    """
    heatmaps, keypoints = check_pose(heatmaps, keypoints)
    alpha = _check_alpha(alpha)
    i, j = _check_reference(reference, heatmaps.shape[-3])
    xy = keypoints[..., :2].to(torch.float64)
    vis = keypoints[..., 2] > 0
    length = (xy[..., i, :] - xy[..., j, :]).square().sum(dim=-1).sqrt()  # (..., B)
    has_ref = vis[..., i] & vis[..., j]
    correct = keypoint_distances(heatmaps, keypoints) <= alpha * length.unsqueeze(-1)
    return _ratio(correct, vis & has_ref.unsqueeze(-1), empty)


def _check_reference(reference: Sequence[int], num_keypoints: int | None = None) -> tuple[int, int]:
    try:
        i, j = (int(r) for r in reference)  # type: ignore[union-attr]
        ok = all(not isinstance(r, bool) and float(r) == int(r) for r in reference)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        ok = False
    if not ok or i == j or min(i, j) < 0 or (num_keypoints is not None and max(i, j) >= num_keypoints):
        bound = f" in [0, {num_keypoints})" if num_keypoints is not None else " >= 0"
        raise ValueError(f"`reference` must be two distinct keypoint indices{bound}, got {reference!r}")
    return i, j


def pck(alpha: float = 0.05, *, empty: float = 0.0) -> Metric:
    """The PCK@α :class:`~metricloss.metrics.Metric` (higher is better), named ``"pck"`` for α = 0.05.

    Example:
        >>> m = pck(0.1)
        >>> m.name, m.higher_is_better
        ('pck@0.1', True)
    """
    alpha = _check_alpha(alpha)

    def fn(heatmaps: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        return percentage_correct_keypoints(heatmaps, keypoints, alpha, empty=empty)

    return Metric("pck" if alpha == 0.05 else f"pck@{alpha:g}", fn, True, fn)


def pckh(alpha: float = 0.5, reference: Sequence[int] = (0, 1), *, empty: float = 0.0) -> Metric:
    """The PCKh-style :class:`~metricloss.metrics.Metric`, named ``"pckh"`` for α = 0.5 and reference (0, 1).

    Example:
        >>> pckh(0.2, reference=(3, 4)).name
        'pckh@0.2[3,4]'
    """
    alpha = _check_alpha(alpha)
    i, j = _check_reference(reference)

    def fn(heatmaps: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        return percentage_correct_keypoints_head(heatmaps, keypoints, alpha, (i, j), empty=empty)

    name = "pckh" if alpha == 0.5 else f"pckh@{alpha:g}"
    if (i, j) != (0, 1):
        name += f"[{i},{j}]"
    return Metric(name, fn, True, fn)


BUILTINS: dict[str, Metric] = {"pck": pck(), "pckh": pckh()}
