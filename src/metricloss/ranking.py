r"""Exact and differentiable ranks and rank correlations.

Everything here works on the **last** dimension and broadcasts over any leading ("batch") dimensions.
Ranks are 1-based and ascending, with ties given their average rank, as :func:`scipy.stats.rankdata`.

Soft ranks
----------
All soft ranks first standardise the input by its (differentiable) standard deviation along the last
dimension, so ``strength`` is scale-free: it is the steepness applied to differences of standardised
values. As ``strength`` grows every method tends to the exact ranks of inputs without ties.

``"pairwise"`` (default)
    :math:`r_i = \tfrac12 + \sum_j F\big(s\,(z_i - z_j)\big)` with :math:`F` the logistic or Cauchy CDF.
    :math:`O(n^2)` time and memory, a few dense tensor operations; the fastest here up to n ≈ 1024–2048
    (at 4096 the bitonic network is faster: ``docs/benchmarks.md``).
``"bitonic"`` and ``"odd_even"``
    Relaxed sorting networks (Petersen et al., *Differentiable Sorting Networks*, ICML 2021). Each
    comparator mixes its two wires with :math:`\alpha = F(s\,(x_{hi} - x_{lo}))`. Every layer is a
    symmetric doubly-stochastic matrix, so the soft ranks :math:`P^\top (1, \dots, n)` are obtained by
    running the layers backwards on the vector of positions: :math:`O(n \log^2 n)` (bitonic) or
    :math:`O(n^2)` (odd-even) work and memory instead of materialising the :math:`n \times n`
    permutation matrix per layer. Non-powers of two are padded with wires that always compare larger.

Example:
    >>> import torch
    >>> from metricloss import ranking
    >>> x = torch.tensor([0.3, -1.0, 2.0, 0.1])
    >>> ranking.rank(x)
    tensor([3., 1., 4., 2.])
    >>> ranking.soft_rank(x, strength=100.0).round()
    tensor([3., 1., 4., 2.])
    >>> round(float(ranking.spearman(x, torch.tensor([1.0, 0.0, 3.0, 2.0]))), 6)
    0.8
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import torch

from ._checks import check_choice, check_float_tensor, check_positive

__all__ = ["DEFAULT_STRENGTH", "kendall", "rank", "soft_rank", "spearman"]

Method = Literal["pairwise", "bitonic", "odd_even"]
Relaxation = Literal["logistic", "cauchy"]

METHODS = ("pairwise", "bitonic", "odd_even")
RELAXATIONS = ("logistic", "cauchy")

#: Default steepness on standardised values, chosen by ``benchmarks/ranking.py``: the smoothest value
#: whose soft Spearman stays within 0.005 of the exact one on random data for n = 64 ... 4096.
DEFAULT_STRENGTH = 100.0

_EPS = 1e-12


def _check_vector(x: object, name: str) -> torch.Tensor:
    x = check_float_tensor(x, name, min_dim=1)
    if x.shape[-1] < 2:
        raise ValueError(
            f"`{name}` needs at least 2 elements along its last dimension to be ranked, "
            f"got shape {tuple(x.shape)}"
        )
    return x


def _check_pair(a: object, b: object) -> tuple[torch.Tensor, torch.Tensor]:
    a = _check_vector(a, "a")
    b = _check_vector(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"`a` and `b` must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return a, b


def rank(x: torch.Tensor) -> torch.Tensor:
    """Exact 1-based ascending ranks along the last dimension, ties averaged (``scipy.stats.rankdata``).

    Args:
        x: float tensor ``(..., n)`` with ``n >= 2``, finite.

    Returns:
        Ranks of the same shape and dtype, not differentiable.
    """
    x = _check_vector(x, "x")
    return _rank(x)


def _rank(x: torch.Tensor) -> torch.Tensor:
    x = x.detach()
    s = x.sort(dim=-1).values.contiguous()
    xc = x.contiguous()
    below = torch.searchsorted(s, xc, right=False)
    upto = torch.searchsorted(s, xc, right=True)
    return ((below + upto + 1).to(x.dtype)) / 2


def _cdf(d: torch.Tensor, relaxation: str) -> torch.Tensor:
    if relaxation == "logistic":
        return torch.sigmoid(d)
    return 0.5 + torch.atan(d) / math.pi


def _standardise(x: torch.Tensor) -> torch.Tensor:
    # Differentiable scale (no centring needed: only differences are used).
    return x / x.std(dim=-1, keepdim=True, correction=0).clamp_min(_EPS)


def soft_rank(
    x: torch.Tensor,
    method: Method = "pairwise",
    strength: float = DEFAULT_STRENGTH,
    relaxation: Relaxation = "logistic",
) -> torch.Tensor:
    r"""Differentiable 1-based ascending ranks along the last dimension.

    Args:
        x: float tensor ``(..., n)``, ``n >= 2``, finite.
        method: ``"pairwise"`` (sigmoid of all pairwise differences), ``"bitonic"`` or ``"odd_even"``
            (relaxed sorting networks).
        strength: steepness applied to differences of standardised values (``x / std(x)``); larger is
            closer to the exact ranks and less smooth.
        relaxation: ``"logistic"`` (sigmoid) or ``"cauchy"`` CDF for each soft comparison.

    Returns:
        Soft ranks, same shape and dtype as ``x``; they sum to :math:`n(n+1)/2` for every method.
    """
    x = _check_vector(x, "x")
    check_choice(method, "method", METHODS)
    check_choice(relaxation, "relaxation", RELAXATIONS)
    return _soft_rank(x, method, check_positive(strength, "strength"), relaxation)


def _soft_rank(x: torch.Tensor, method: str, strength: float, relaxation: str) -> torch.Tensor:
    """:func:`soft_rank` on arguments already checked (no second pass over the data)."""
    z = _standardise(x) * strength
    if method == "pairwise":
        return _pairwise_soft_rank(z, relaxation)
    return _network_soft_rank(z, method, relaxation)


def _pairwise_soft_rank(z: torch.Tensor, relaxation: str) -> torch.Tensor:
    d = z.unsqueeze(-1) - z.unsqueeze(-2)
    return _cdf(d, relaxation).sum(dim=-1) + 0.5


@lru_cache(maxsize=64)
def _network(n: int, method: str) -> tuple[int, tuple[tuple[torch.Tensor, torch.Tensor], ...]]:
    """Comparator layers ``(lo, hi)``: after a layer the min of each pair is on ``lo``, the max on ``hi``."""
    if method == "odd_even":
        layers = []
        for t in range(n):
            lo = torch.arange(t % 2, n - 1, 2)
            if len(lo):
                layers.append((lo, lo + 1))
        return n, tuple(layers)
    size = 1 << max(1, math.ceil(math.log2(n)))
    layers = []
    k = 2
    while k <= size:
        j = k // 2
        while j >= 1:
            i = torch.arange(size)
            partner = i ^ j
            keep = partner > i
            i, partner = i[keep], partner[keep]
            ascending = (i & k) == 0
            lo = torch.where(ascending, i, partner)
            hi = torch.where(ascending, partner, i)
            layers.append((lo, hi))
            j //= 2
        k *= 2
    return size, tuple(layers)


def _network_soft_rank(z: torch.Tensor, method: str, relaxation: str) -> torch.Tensor:
    n = z.shape[-1]
    size, layers = _network(n, method)
    lead = z.shape[:-1]
    pad = size - n
    if pad:
        # Padding wires always compare larger than real wires (and equal among themselves).
        z = torch.cat([z, z.new_zeros((*lead, pad))], dim=-1)
    is_pad = torch.arange(size, device=z.device) >= n
    alphas = []
    v = z
    for lo, hi in layers:
        lo, hi = lo.to(z.device), hi.to(z.device)
        x_lo, x_hi = v[..., lo], v[..., hi]
        alpha = _cdf(x_hi - x_lo, relaxation)
        if pad:
            pad_lo, pad_hi = is_pad[lo], is_pad[hi]
            alpha = torch.where(pad_hi, torch.ones_like(alpha), alpha)
            alpha = torch.where(pad_lo & ~pad_hi, torch.zeros_like(alpha), alpha)
            # The forced comparisons move padding to the hi wire: the mask follows the padding values.
            is_pad = is_pad.clone()
            is_pad[lo], is_pad[hi] = pad_lo & pad_hi, pad_lo | pad_hi
        new = v.clone()
        new[..., lo] = alpha * x_lo + (1 - alpha) * x_hi
        new[..., hi] = alpha * x_hi + (1 - alpha) * x_lo
        v = new
        alphas.append(alpha)
    # Soft ranks = P^T (1..size), with P the product of the (symmetric) layer matrices.
    r = torch.arange(1, size + 1, dtype=z.dtype, device=z.device).expand(*lead, size)
    for (lo, hi), alpha in zip(reversed(layers), reversed(alphas), strict=True):
        lo, hi = lo.to(z.device), hi.to(z.device)
        r_lo, r_hi = r[..., lo], r[..., hi]
        new = r.clone()
        new[..., lo] = alpha * r_lo + (1 - alpha) * r_hi
        new[..., hi] = alpha * r_hi + (1 - alpha) * r_lo
        r = new
    return r[..., :n]


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean(dim=-1, keepdim=True)
    b = b - b.mean(dim=-1, keepdim=True)
    num = (a * b).sum(dim=-1)
    den = (a.square().sum(dim=-1) * b.square().sum(dim=-1)).sqrt()
    return num / den


def spearman(
    a: torch.Tensor,
    b: torch.Tensor,
    soft: bool = False,
    *,
    soft_b: bool = False,
    method: Method = "pairwise",
    strength: float = DEFAULT_STRENGTH,
    relaxation: Relaxation = "logistic",
) -> torch.Tensor:
    r"""Spearman rank correlation along the last dimension.

    :math:`\rho = \mathrm{pearson}(\mathrm{rank}(a), \mathrm{rank}(b))`.

    Args:
        a, b: float tensors of the same shape ``(..., n)``, ``n >= 2``.
        soft: use :func:`soft_rank` for ``a``, so the result is differentiable in ``a``. With
            ``soft=False`` the result equals :func:`scipy.stats.spearmanr` (ties averaged) and carries no
            gradient.
        soft_b: also use soft ranks for ``b`` (differentiable in ``b``); needs ``soft=True``.
        method, strength, relaxation: passed to :func:`soft_rank`.

    Returns:
        Tensor of shape ``(...)``. NaN where ``a`` or ``b`` is constant, as in scipy.
    """
    a, b = _check_pair(a, b)
    if soft_b and not soft:
        raise ValueError("`soft_b=True` needs `soft=True`")
    if not soft:
        with torch.no_grad():
            return _pearson(_rank(a), _rank(b))
    check_choice(method, "method", METHODS)
    check_choice(relaxation, "relaxation", RELAXATIONS)
    strength = check_positive(strength, "strength")
    ra = _soft_rank(a, method, strength, relaxation)
    rb = _soft_rank(b, method, strength, relaxation) if soft_b else _rank(b)
    return _pearson(ra, rb.to(ra.dtype))


def _pair_signs(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x.unsqueeze(-1) - x.unsqueeze(-2))


def _soft_pair_signs(x: torch.Tensor, strength: float, relaxation: str) -> torch.Tensor:
    z = _standardise(x) * strength
    return 2 * _cdf(z.unsqueeze(-1) - z.unsqueeze(-2), relaxation) - 1


def kendall(
    a: torch.Tensor,
    b: torch.Tensor,
    soft: bool = False,
    *,
    soft_b: bool = False,
    strength: float = DEFAULT_STRENGTH,
    relaxation: Relaxation = "logistic",
) -> torch.Tensor:
    r"""Kendall's :math:`\tau_b` along the last dimension.

    :math:`\tau_b = \sum_{i,j} s^a_{ij} s^b_{ij} / \sqrt{\sum_{ij} (s^a_{ij})^2 \sum_{ij} (s^b_{ij})^2}`
    with :math:`s_{ij} = \mathrm{sign}(x_i - x_j)`; this is :func:`scipy.stats.kendalltau`'s tau-b,
    ties included. The soft form replaces the sign by :math:`2F(s\,(z_i - z_j)) - 1` on standardised
    values, which keeps :math:`|\tau| \le 1` (Cauchy–Schwarz) and tends to the exact form.

    Args:
        a, b: float tensors of the same shape ``(..., n)``, ``n >= 2``. Uses :math:`O(n^2)` memory.
        soft: differentiable in ``a``. ``soft_b``: also in ``b``.
        strength, relaxation: as in :func:`soft_rank`.

    Returns:
        Tensor of shape ``(...)``; NaN where ``a`` or ``b`` is constant, as in scipy.
    """
    a, b = _check_pair(a, b)
    if soft_b and not soft:
        raise ValueError("`soft_b=True` needs `soft=True`")
    if soft:
        check_choice(relaxation, "relaxation", RELAXATIONS)
        strength = check_positive(strength, "strength")
        sa = _soft_pair_signs(a, strength, relaxation)
        sb = _soft_pair_signs(b, strength, relaxation) if soft_b else _pair_signs(b.detach()).to(sa.dtype)
        return _tau(sa, sb)
    with torch.no_grad():
        work = torch.float64 if a.dtype != torch.float64 else a.dtype
        return _tau(_pair_signs(a.to(work)), _pair_signs(b.to(work))).to(a.dtype)


def _tau(sa: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
    num = (sa * sb).sum(dim=(-1, -2))
    den = (sa.square().sum(dim=(-1, -2)) * sb.square().sum(dim=(-1, -2))).sqrt()
    return num / den

