r"""The kernels of the anchored losses: how the metric's exact values at anchors are interpolated at a relaxed
configuration :math:`u \in [0, 1]^l` (UniLoss, section 3.5, and our non-parametric surrogate).

**Interpolation.** Given anchors :math:`a_1, \dots, a_t \in \{0, 1\}^l` with metric values :math:`g(a_i)`, the
metric at a relaxed configuration :math:`u \in [0, 1]^l` is Shepard's inverse-distance weighting (eq. 6)

.. math::

    \tilde g(u) = \frac{\sum_i d(u, a_i)^{-p}\, g(a_i)}{\sum_i d(u, a_i)^{-p}}, \qquad
    d(u, a) = \lVert u - a \rVert_2,

with power :math:`p` (default 1, as eq. 6 is printed). If :math:`u` coincides with anchors
(:math:`d = 0`), :math:`\tilde g(u)` is the mean of their values (one value unless ``g`` is not a function),
with zero gradient. Weights are computed as a softmax of :math:`-p \log d` so that large distances in high
dimension neither overflow nor underflow.

The non-parametric surrogate replaces the inverse distances by a Gaussian kernel of relative bandwidth
(:func:`kernel_interpolation`, Nadaraya–Watson regression): UniLoss and it differ only by this kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from .._checks import check_float_tensor, check_positive, check_tensor
from .anchors import AnchorSet

__all__ = [
    "Kernel", "gaussian_kernel", "idw_kernel", "inverse_distance_weighting", "kernel_interpolation",
    "squared_distances",
]

#: ``kernel(u, anchors, options, validate) -> estimate``: the metric interpolated at the relaxed configuration ``u``
#: from the anchors' exact values, with the loss's options; ``validate=False`` skips input checks.
Kernel = Callable[[torch.Tensor, AnchorSet, Mapping[str, Any], bool], torch.Tensor]


def squared_distances(point: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    r"""Squared Euclidean distances :math:`\lVert u - a_i\rVert_2^2` from ``point`` ``(n,)`` to ``anchors`` ``(A, n)``.

    For boolean anchors (the usual case) this is one matrix-vector product,
    :math:`\lVert u - a\rVert^2 = \sum_j u_j^2 + \sum_j a_j (1 - 2u_j)`.

    Example:
        >>> u = torch.tensor([0.5, 1.0, 0.0])
        >>> squared_distances(u, torch.tensor([[True, True, False], [False, False, True]]))
        tensor([0.2500, 2.2500])
    """
    point = check_float_tensor(point, "point")
    anchors = check_tensor(anchors, "anchors")
    if point.dim() != 1 or anchors.dim() != 2 or anchors.shape[1] != point.shape[0]:
        raise ValueError(
            f"`point` must have shape (n,) and `anchors` shape (A, n); got {tuple(point.shape)} and "
            f"{tuple(anchors.shape)}"
        )
    if anchors.dtype != torch.bool and not anchors.is_floating_point():
        raise TypeError(f"`anchors` must be a bool or floating-point tensor, got dtype {anchors.dtype}")
    return _squared_distances(point, anchors)


def _squared_distances(point: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    if anchors.dtype == torch.bool:
        return (point * point).sum() + torch.mv(anchors.to(point.dtype), 1.0 - 2.0 * point)
    return (point - anchors.to(point.dtype)).pow(2).sum(dim=-1)


def _checked_distances(point: torch.Tensor, anchors: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Squared distances, with ``values`` checked against the anchors (one finite value each, at least one)."""
    values = check_float_tensor(values, "values")
    d2 = squared_distances(point, anchors)
    if values.shape != d2.shape:
        raise ValueError(f"`values` must have shape ({anchors.shape[0]},), one per anchor; got {tuple(values.shape)}")
    if values.shape[0] == 0:
        raise ValueError("`anchors` is empty: at least one anchor is needed")
    return d2


def inverse_distance_weighting(
    point: torch.Tensor, anchors: torch.Tensor, values: torch.Tensor, power: float = 1.0
) -> torch.Tensor:
    r"""Shepard's inverse-distance-weighted interpolation of ``values`` at ``point`` (UniLoss's kernel).

    Args:
        point: relaxed configuration :math:`u`, shape ``(n,)``.
        anchors: configurations :math:`a_i`, shape ``(A, n)``, bool (or float).
        values: :math:`g(a_i)`, shape ``(A,)``.
        power: :math:`p > 0` in the weights :math:`d^{-p}`.

    Returns:
        A 0-d tensor, differentiable in ``point``; exactly the anchor value at an anchor.

    Example:
        >>> anchors = torch.tensor([[True, True], [False, False]])
        >>> values = torch.tensor([1.0, 0.0])
        >>> inverse_distance_weighting(torch.tensor([0.75, 0.75]), anchors, values)
        tensor(0.7500)
        >>> inverse_distance_weighting(torch.tensor([1.0, 1.0]), anchors, values)
        tensor(1.)

    Reference:
        D. Shepard, *A two-dimensional interpolation function for irregularly-spaced data*, ACM 1968.
    """
    power = check_positive(power, "power")
    d2 = _checked_distances(point, anchors, values)
    return _idw_weighting(d2, values.to(point.dtype), power)


def _idw_weighting(d2: torch.Tensor, values: torch.Tensor, power: float) -> torch.Tensor:
    hit = d2 <= 0  # rounding can only make an exact hit look slightly negative
    safe = torch.where(hit, torch.ones_like(d2), d2)
    weights = torch.softmax(-0.5 * power * safe.log(), dim=0)
    estimate = (weights * values).sum()
    if bool(hit.any()):
        # At an anchor the interpolant is that anchor's value; keep the graph so backward() works.
        return values[hit].mean() + 0.0 * estimate
    return estimate


def kernel_interpolation(
    point: torch.Tensor, anchors: torch.Tensor, values: torch.Tensor, bandwidth: float
) -> torch.Tensor:
    r"""Nadaraya–Watson estimate of ``values`` at ``point`` with a Gaussian kernel of relative bandwidth ``h``
    (the non-parametric surrogate's kernel).

    .. math:: \hat g(u) = \sum_i w_i\, g(a_i), \qquad
        w = \mathrm{softmax}_i\Big(-\frac{\lVert u - a_i\rVert_2^2}{2 h^2 n}\Big)

    (:math:`n` = length of ``point``; the softmax form never overflows or underflows to 0/0).

    Args:
        point: :math:`u`, shape ``(n,)``, floating point.
        anchors: :math:`a_i`, shape ``(A, n)``, bool (or float).
        values: :math:`g(a_i)`, shape ``(A,)``.
        bandwidth: :math:`h > 0`, relative to :math:`\sqrt n`.

    Returns:
        A 0-d tensor in ``point``'s dtype, differentiable in ``point``.

    Example:
        >>> anchors = torch.tensor([[True, True], [False, False]])
        >>> values = torch.tensor([1.0, 0.0])
        >>> kernel_interpolation(torch.tensor([0.5, 0.5]), anchors, values, bandwidth=0.5)
        tensor(0.5000)
        >>> kernel_interpolation(torch.tensor([1.0, 1.0]), anchors, values, bandwidth=0.01)
        tensor(1.)

    References:
        E. A. Nadaraya, *On estimating regression*, 1964; G. S. Watson, *Smooth regression analysis*, 1964.
    """
    bandwidth = check_positive(bandwidth, "bandwidth")
    d2 = _checked_distances(point, anchors, values)
    return _gaussian_weighting(d2, values.to(point.dtype), bandwidth, point.shape[0])


def _gaussian_weighting(d2: torch.Tensor, values: torch.Tensor, bandwidth: float, n: int) -> torch.Tensor:
    weights = torch.softmax(-d2.clamp_min(0) / (2.0 * bandwidth * bandwidth * max(n, 1)), dim=0)
    return (weights * values).sum()


def idw_kernel(u: torch.Tensor, anchors: AnchorSet, options: Mapping[str, Any], validate: bool = True) -> torch.Tensor:
    """UniLoss's kernel: :func:`inverse_distance_weighting` with ``options["power"]``."""
    if validate:
        return inverse_distance_weighting(u, anchors.bits, anchors.values, options["power"])
    return _idw_weighting(_squared_distances(u, anchors.bits), anchors.values.to(u.dtype), options["power"])


def gaussian_kernel(u: torch.Tensor, anchors: AnchorSet, options: Mapping[str, Any], validate: bool = True
                    ) -> torch.Tensor:
    """The non-parametric surrogate's kernel: :func:`kernel_interpolation` with ``options["bandwidth"]``."""
    if validate:
        return kernel_interpolation(u, anchors.bits, anchors.values, options["bandwidth"])
    d2 = _squared_distances(u, anchors.bits)
    return _gaussian_weighting(d2, anchors.values.to(u.dtype), options["bandwidth"], u.shape[0])
