r"""The two differentiable approximations of UniLoss: the relaxed step :math:`\tilde h` and the interpolated
metric :math:`\tilde g` (UniLoss, sections 3.4–3.5).

**Relaxation.** A comparison :math:`c` (a difference of two scores whose sign is a binary variable
:math:`b = [c > 0]`) is relaxed on the :math:`\{0, 1\}` scale as

.. math:: \tilde b = \sigma(c / \tau),

with temperature :math:`\tau` (default 1, the paper's eq. 5). The authors' code relaxes on the
:math:`\pm 1` scale instead, :math:`2\sigma(c) - 1`, with anchors in :math:`\{-1, 1\}^l`. That map is affine
(:math:`x \mapsto 2x - 1`), so it doubles every distance below, and inverse-distance weights are invariant to a
common scale of the distances: both choices give the same estimate and the same gradients.

**Interpolation.** Given anchors :math:`a_1, \dots, a_t \in \{0, 1\}^l` with metric values :math:`g(a_i)`, the
metric at a relaxed configuration :math:`u \in [0, 1]^l` is Shepard's inverse-distance weighting (eq. 6)

.. math::

    \tilde g(u) = \frac{\sum_i d(u, a_i)^{-p}\, g(a_i)}{\sum_i d(u, a_i)^{-p}}, \qquad
    d(u, a) = \lVert u - a \rVert_2,

with power :math:`p` (default 1, as eq. 6 is printed). If :math:`u` coincides with anchors
(:math:`d = 0`), :math:`\tilde g(u)` is the mean of their values (one value unless ``g`` is not a function),
with zero gradient. Weights are computed as a softmax of :math:`-p \log d` so that large distances in high
dimension neither overflow nor underflow.
"""

from __future__ import annotations

import torch

from .._checks import check_float_tensor, check_positive, check_tensor

__all__ = ["inverse_distance_weighting", "relax", "squared_distances"]


def relax(comparisons: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    r"""Relaxed binary variables :math:`\sigma(c / \tau)` of comparisons :math:`c`, any shape.

    Args:
        comparisons: score differences whose sign is the binary variable, any shape.
        temperature: :math:`\tau > 0`; smaller is closer to the step function.

    Returns:
        A tensor of the same shape with values in :math:`(0, 1)`.

    Example:
        >>> relax(torch.tensor([-2.0, 0.0, 2.0]), temperature=0.5)
        tensor([0.0180, 0.5000, 0.9820])
    """
    comparisons = check_float_tensor(comparisons, "comparisons")
    temperature = check_positive(temperature, "temperature")
    return torch.sigmoid(comparisons / temperature)


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
    if anchors.dtype == torch.bool:
        return (point * point).sum() + torch.mv(anchors.to(point.dtype), 1.0 - 2.0 * point)
    if not anchors.is_floating_point():
        raise TypeError(f"`anchors` must be a bool or floating-point tensor, got dtype {anchors.dtype}")
    return (point - anchors.to(point.dtype)).pow(2).sum(dim=-1)


def inverse_distance_weighting(
    point: torch.Tensor, anchors: torch.Tensor, values: torch.Tensor, power: float = 1.0
) -> torch.Tensor:
    r"""Shepard's inverse-distance-weighted interpolation of ``values`` at ``point``.

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
    values = check_float_tensor(values, "values")
    d2 = squared_distances(point, anchors)
    if values.shape != d2.shape:
        raise ValueError(f"`values` must have shape ({anchors.shape[0]},), one per anchor; got {tuple(values.shape)}")
    if values.shape[0] == 0:
        raise ValueError("`anchors` is empty: at least one anchor is needed")
    values = values.to(point.dtype)
    hit = d2 <= 0  # rounding can only make an exact hit look slightly negative
    safe = torch.where(hit, torch.ones_like(d2), d2)
    weights = torch.softmax(-0.5 * power * safe.log(), dim=0)
    estimate = (weights * values).sum()
    if bool(hit.any()):
        # At an anchor the interpolant is that anchor's value; keep the graph so backward() works.
        return values[hit].mean() + 0.0 * estimate
    return estimate
