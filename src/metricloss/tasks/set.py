r"""Set metrics of a whole batch (F1, AP, AUROC, MCC, balanced accuracy): scores ``(B,)`` or ``(B, L)``.

Call shapes: ``pred`` are logits ``(B,)`` (binary, ``num_labels=None``) or ``(B, L)`` (``num_labels=L``);
``target`` has the same shape and holds 0 and 1 in any integer, bool or floating dtype. Stacks add a leading
``N``. The metrics are in :mod:`metricloss.metrics.set` (threshold 0 on logits, macro average over labels).

Surrogate (ours, beyond the ReLoss paper, whose nets are per-sample): these metrics are functions of the *set* of
(score, label) pairs of a batch, invariant to the order of its samples, so the net is a DeepSets model applied to
each label's set independently and averaged over labels. For label :math:`l` with scores :math:`s_b`, targets
:math:`y_b`, :math:`P` positives and positive rate :math:`\pi`, every sample gets features

.. math:: f_b = \big(\sigma(\beta s_b / \mathrm{rms}(s)),\ \pi,\ \{ \bar k^{-}_{b,\tau},\
          \bar k^{+}_{b,\tau},\ \bar k_{b,\tau} \}_{\tau}\big), \quad
          \bar k^{-}_{b,\tau} = \operatorname*{mean}_{j \ne b,\ y_j = 0} K\Big(\frac{s_b - s_j}{4\tau\,
          \mathrm{sd}(s)}\Big),

(:math:`\bar k^{+}` and :math:`\bar k` likewise over the positives and over all samples, comparing
:math:`s_j - s_b`): soft versions of "negatives below me", "positives above me" and "samples above me", the
quantities AUROC and AP are made of, while the soft sign :math:`\sigma(\beta s_b / \mathrm{rms}(s))`
(:math:`\beta` = ``sharpness``, :math:`\mathrm{rms}(s) = \sqrt{\mathrm{mean}_j s_j^2}`) sees the threshold 0 that F1,
MCC and balanced accuracy use. All of them are invariant to the logit scale, as the five metrics are: a
training model cannot lower this loss by shrinking or inflating its logits, as long as the batch's
:math:`\mathrm{rms}(s)` stays above ``sign_floor`` (0.2 by default) and :math:`\mathrm{sd}(s)` above ``rank_floor``
(0.5); the normalisers are floored there, :math:`\max(\mathrm{sd}(s), \epsilon)`, which bounds the gradient
(``docs/reliability.md``).
(With the plain :math:`\sigma(s_b)` in place of the soft sign, measured in ``benchmarks/downstream_set.py``, the
F1 surrogate drove two of three breast-cancer MLPs to nearly constant, inverted scores: test F1 0.54, AP 0.22.)
``features`` can add ``"prob"``, :math:`\sigma(s_b)`.
An ELU MLP :math:`\phi` embeds each sample; the embeddings are averaged over the positives and over the
negatives, and an ELU MLP :math:`\rho` maps them, with :math:`\pi`, to the label's loss:

.. math:: L(s, y) = \frac1L \sum_{l=1}^{L} \rho\Big(\operatorname*{mean}_{b: y_{bl}=1}\phi(f_{bl}),\
          \operatorname*{mean}_{b: y_{bl}=0}\phi(f_{bl}),\ \pi_l\Big).

The soft step :math:`K` (``kernel="spline"``, the default) is the distribution function of the triangular density
on :math:`[-1, 1]`: it has the logistic :math:`\sigma(d/\tau)`'s value and slope at 0 and differs from it by at most
0.02, and, unlike the logistic, its sums over all :math:`j` are exact polynomials in :math:`s_b` on windows of the
sorted scores, so the features cost :math:`O(B \log B)` time and :math:`O(B)` memory per label
(:func:`spline_below`) instead of the :math:`O(B^2)` of all pairs. Surrogates saved before the kernel was
configurable used :math:`\sigma(\cdot/\tau)` over all pairs (``kernel="logistic"``) and load with it. The baseline
is binary cross-entropy with logits.

G_R mixes two regimes. :meth:`SetTask.spread_batches` (40 %) draws, per batch and label, a positive rate
:math:`\sigma(U(-3, 3))` (at least one positive and one negative are kept, so AP and AUROC are defined), a class
separation :math:`d \sim U(-2.5, 4)` (negative: worse than chance), a threshold offset and a logit scale, so every
metric spreads over most of its range. :meth:`SetTask.trained_batches` (60 %, :attr:`SetTask.trained_share`) is the
trained-model regime: well-separated classes, heavy-tailed noise, under- to over-confident logit scales and 0 to 3
labels flipped near the threshold, the batches a trained model gives (F1 mostly 0.85 to 1). With ``outputs=``,
:meth:`SetTask.relabel` perturbs the real batches the same way.

Example:
    >>> import torch, metricloss as ml
    >>> from metricloss.tasks import set as set_task  # registers task="set"
    >>> task = ml.tasks.get_task("set")
    >>> pred, target = task.random_batches(4, 32, torch.Generator().manual_seed(0))
    >>> pred.shape, target.shape
    (torch.Size([4, 32]), torch.Size([4, 32]))
    >>> net = task.build_net(**task.default_net_config())
    >>> net(pred, target).shape
    torch.Size([4])
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_float_tensor, check_int, check_tensor
from ..metrics.base import Metric
from ..metrics.set import BUILTINS
from ._nets import mlp
from .base import Task, register_task

__all__ = ["SetNet", "SetTask", "set_features"]

FEATURES = ("prob", "sign", "rank")
#: The default: only features that do not change with the scale of the scores, as the five metrics do not.
DEFAULT_FEATURES = ("sign", "rank")
#: Floors of the scores' rms (soft sign) and sd (comparisons) (surrogates saved before they were stored in their
#: config had 1e-3: :attr:`SetTask.stored_net_defaults`). See ``docs/reliability.md``.
SIGN_FLOOR = 0.2
RANK_FLOOR = 0.5
#: Soft steps of the comparison features: ``"spline"`` (O(B log B), the default) and ``"logistic"`` (O(B^2), the one
#: surrogates saved before it was stored in their config used: :attr:`SetTask.stored_net_defaults`).
KERNELS = ("spline", "logistic")
DEFAULT_KERNEL = "spline"


def _as_tuple(values: float | tuple[float, ...] | list[float]) -> tuple[float, ...]:
    return (float(values),) if isinstance(values, (int, float)) else tuple(float(v) for v in values)


def _logistic_counts(rel: torch.Tensor, groups: torch.Tensor, temperatures: tuple[float, ...]) -> torch.Tensor:
    """``(M, T, B, G)``: :math:`\\sum_j w_{jg}\\,\\sigma((r_b - r_j)/\\tau)` per temperature, over the ``(M, B, B)``
    matrix of pairwise differences: the :math:`O(B^2)` kernel of surrogates saved before it was configurable."""
    diff = rel.unsqueeze(-1) - rel.unsqueeze(-2)  # [m, i, j] = rel_i - rel_j
    return torch.stack([torch.sigmoid(diff / tau) @ groups for tau in temperatures], dim=1)


def _sorted_spline_below(r: torch.Tensor, w: torch.Tensor, widths: tuple[float, ...]) -> torch.Tensor:
    """``(M, T, B, G)``: :func:`spline_below` of ``r / h`` for each half-width ``h`` of ``widths``, with positions
    ``r`` ``(M, B)`` sorted ascending along the last axis and weights ``w`` ``(M, B, G)`` in that order.

    The prefix sums of ``w``, ``w r`` and ``w r^2`` are shared by every width; only the window ends differ."""
    m, b, g = w.shape
    x = r.unsqueeze(-1)
    prefix = F.pad(torch.cat([w, w * x, w * x.square()], dim=-1).cumsum(dim=1), (0, 0, 1, 0))  # row k: first k rows
    h = r.new_tensor(widths)
    t = h.shape[0]
    # The far ends of the windows, c = r_b - h (left window, first T) and c = r_b + h (right window, last T), each
    # window as one slice of a (M, 2T, B, .) stack, so both go through every step together.
    c = x.unsqueeze(1) + torch.cat([-h, h]).view(1, 2 * t, 1, 1)  # (M, 2T, B, 1)
    # Window ends: the samples at or below r_b - h and r_b + h. K is continuous, so a tie may fall on either side
    # of an end: the sample itself and the rows before it end the middle window.
    ends = torch.searchsorted(r.detach().contiguous(), c.detach().flatten(1), right=True)  # (M, 2TB)
    # Rows of the flattened prefix sums (index_select and its backward index_add move whole rows of 3G values: much
    # cheaper than a gather along dim 1 with an expanded index).
    rows = (ends + torch.arange(m, device=r.device).unsqueeze(1) * (b + 1)).flatten()
    ends = prefix.reshape(m * (b + 1), 3 * g).index_select(0, rows).view(m, 2 * t, b, 3 * g)
    mid = prefix[:, 1:].unsqueeze(1)
    # window sums of w, w r, w r^2 over (r_b - h, r_b] (mid - end) and (r_b, r_b + h] (end - mid)
    side = torch.cat([h.new_ones(t), -h.new_ones(t)]).view(1, 2 * t, 1, 1)
    win = (mid - ends) * side
    # sum_j w_j (c - r_j)^2 = c^2 n0 - 2 c n1 + n2 over each window, at its far end c
    quad = c * (c * win[..., :g] - 2 * win[..., g:2 * g]) + win[..., 2 * g:]
    return mid[..., :g] + (quad[:, t:] - quad[:, :t]) / (2 * h.view(1, t, 1, 1).square())


def _spline_counts(rel: torch.Tensor, groups: torch.Tensor, widths: tuple[float, ...],
                   presorted: bool = False) -> torch.Tensor:
    """``(M, T, B, G)``: :func:`spline_below` of ``rel / h`` for each half-width ``h``, with one sort for all (none
    when ``presorted``: ``rel`` ascending along its last axis)."""
    dtype = rel.dtype
    m, b, g = groups.shape
    # Prefix sums over B samples need at least float32 (bfloat16 / float16 inputs, as under autocast, are promoted).
    work = torch.promote_types(rel.dtype, torch.float32)
    rel, groups = rel.to(work), groups.to(work)
    centred = rel - rel.mean(dim=-1, keepdim=True).detach()  # centred: prefix sums lose less
    if presorted:
        return _sorted_spline_below(centred, groups, widths).to(dtype)
    srel, order = centred.sort(dim=-1)
    sums = _sorted_spline_below(srel, groups.gather(1, order.unsqueeze(-1).expand(m, b, g)), widths)
    return torch.empty_like(sums).scatter(2, order.view(m, 1, b, 1).expand_as(sums), sums).to(dtype)


def spline_below(u: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    r"""``(M, B, G)``: :math:`S_{bg} = \sum_j w_{jg}\, K(u_b - u_j)` for positions ``u`` ``(M, B)`` and weights
    ``groups`` ``(M, B, G)``, in :math:`O(B \log B)` time and :math:`O(B)` memory.

    :math:`K` is the distribution function of the triangular density on :math:`[-1, 1]`: 0 below -1,
    :math:`(1 + d)^2/2` on :math:`[-1, 0]`, :math:`1 - (1 - d)^2/2` on :math:`[0, 1]`, 1 above; continuous with a
    continuous derivative (slope at most 1, at 0), and :math:`K(d) + K(-d) = 1`. With the positions sorted once,
    :math:`S_{bg}` is the weight of the samples at or below :math:`u_b` minus half the window sum of
    :math:`w_j (u_b - 1 - u_j)^2` over :math:`(u_b - 1, u_b]` plus half that of :math:`w_j (u_b + 1 - u_j)^2` over
    :math:`(u_b, u_b + 1]`; each window sum is a quadratic in :math:`u_b` whose coefficients are differences of
    prefix sums of :math:`w`, :math:`w u` and :math:`w u^2` at the positions :func:`torch.searchsorted` finds. As
    :math:`K` is continuous, ties and the side a boundary sample is counted on do not change the result. Gradients
    flow through the sorted values and the prefix sums (the positions are piecewise constant).
    """
    return _spline_counts(u, groups, (1.0,))[:, 0]


def set_features(scores: torch.Tensor, target: torch.Tensor, features: tuple[str, ...],
                 temperatures: tuple[float, ...], sharpness: float | tuple[float, ...] = 3.0,
                 sign_floor: float = SIGN_FLOOR,
                 rank_floor: float = RANK_FLOOR, kernel: str = DEFAULT_KERNEL, *,
                 presorted: bool = False) -> torch.Tensor:
    r"""Per-sample features ``(M, B, F)`` of ``M`` sets of scores ``(M, B)`` with 0/1 targets ``(M, B)``.

    ``"prob"`` adds :math:`\sigma(s_b)`; ``"rank"`` adds the positive rate and, per temperature, the soft fractions
    of negatives below, positives above and samples above each sample (the sample itself excluded). The scores are
    divided by their rms (``"sign"``, floored at ``sign_floor``) and sd (``"rank"``, floored at ``rank_floor``) over
    the set: the features do not change with the scale of the scores above the floors, and their gradient is bounded
    by a constant over the floor (``docs/reliability.md``).

    ``kernel`` is the soft step of a comparison :math:`d = (s_b - s_j)/\mathrm{sd}` at temperature :math:`\tau`:
    ``"logistic"``, :math:`\sigma(d/\tau)` over all pairs, :math:`O(B^2)` time and memory (surrogates saved before
    2026-11-30); ``"spline"``, :math:`K(d / 4\tau)` with :math:`K` the triangular distribution function of
    :func:`spline_below` (the same slope at 0, :math:`1/4\tau`, and a support of :math:`\pm 4\tau`), computed
    exactly in :math:`O(B \log B)` time and :math:`O(B)` memory. ``presorted=True`` says the scores are ascending
    along the last axis, which spares the spline kernel its sort (a :class:`SetNet` sorts each set once: its output
    does not depend on the order of the samples).
    """
    y = target.to(scores.dtype)
    out = []
    if "prob" in features:
        out.append(torch.sigmoid(scores))
    if "sign" in features:
        # max(rms, floor), clamped before the root: its gradient stays finite (zero) at all-zero scores
        rms = scores.square().mean(dim=-1, keepdim=True).clamp_min(sign_floor**2).sqrt()
        out += [torch.sigmoid(beta * scores / rms) for beta in _as_tuple(sharpness)]
    if "rank" in features:
        m, b = scores.shape
        n_pos = y.sum(-1, keepdim=True)
        n_neg = b - n_pos
        out.append((n_pos / b).expand_as(scores))
        # Relative scale: comparisons do not change with the logit scale above the floor, which bounds the gradient.
        rel = scores / scores.std(dim=-1, keepdim=True, correction=0).clamp_min(rank_floor)
        if kernel == "logistic":  # groups: negatives, positives, all
            c = _logistic_counts(rel, torch.stack([1 - y, y, torch.ones_like(y)], dim=-1), temperatures)
        else:
            c = _spline_counts(rel, torch.stack([1 - y, y], dim=-1), tuple(4 * tau for tau in temperatures),
                               presorted)
            c = torch.cat([c, c.sum(-1, keepdim=True)], dim=-1)  # all = negatives + positives
        # c[m, t, b, g]: the soft count of group g "scored lower than b". Each kernel is 1/2 at 0, each sample's
        # comparison with itself: removed from every count. The three fractions are affine in the counts, with
        # coefficients that depend on the targets only:
        #   negatives below (c_0 - (1 - y_b)/2) / n_neg, positives above (n_pos - c_1 - y_b/2) / n_pos,
        #   samples above (B - c_2 - 1/2) / (B - 1).
        inv_neg, inv_pos, inv_all = 1 / n_neg.clamp_min(1), 1 / n_pos.clamp_min(1), 1 / max(b - 1, 1)
        scale = torch.stack([inv_neg, -inv_pos, torch.full_like(inv_pos, -inv_all)], dim=-1)  # (M, 1, 3)
        offset = torch.stack([-0.5 * (1 - y) * inv_neg, (n_pos - 0.5 * y) * inv_pos,
                              torch.full_like(y, (b - 0.5) * inv_all)], dim=-1)  # (M, B, 3)
        comparisons = torch.addcmul(offset.unsqueeze(1), c, scale.unsqueeze(1))  # (M, T, B, 3)
        out = [f.unsqueeze(-1) for f in out] + [comparisons.transpose(1, 2).reshape(m, b, -1)]
        return torch.cat(out, dim=-1)
    return torch.stack(out, dim=-1)


class SetNet(nn.Module):
    """DeepSets surrogate: per-sample ELU MLP on :func:`set_features`, means over positives and negatives, ELU MLP.

    Takes stacks: scores ``(N, B)`` with targets ``(N, B)`` (binary) or ``(N, B, L)`` (each label a set, the losses
    averaged over labels); returns ``(N,)``.
    """

    def __init__(self, features: tuple[str, ...] | list[str] = DEFAULT_FEATURES,
                 temperatures: tuple[float, ...] | list[float] = (0.1, 0.5), hidden: int = 64, depth: int = 2,
                 embedding: int = 32, sharpness: float | tuple[float, ...] | list[float] = 3.0,
                 sign_floor: float = SIGN_FLOOR,
                 rank_floor: float = RANK_FLOOR, kernel: str = DEFAULT_KERNEL) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"`kernel` must be one of {KERNELS}; got {kernel!r}")
        self.kernel = kernel
        features = tuple(features)
        if not features or set(features) - set(FEATURES):
            raise ValueError(f"`features` must be a non-empty subset of {FEATURES}; got {features!r}")
        temperatures = tuple(float(t) for t in temperatures)
        if "rank" in features and (not temperatures or not all(t > 0 and math.isfinite(t) for t in temperatures)):
            raise ValueError(f"`temperatures` must be positive finite numbers, got {temperatures!r}")
        for value, name in ((hidden, "hidden"), (depth, "depth"), (embedding, "embedding")):
            check_int(value, name, 1)
        self.features = features
        self.temperatures = temperatures
        betas = _as_tuple(sharpness)
        if not betas or not all(b > 0 and math.isfinite(b) for b in betas):
            raise ValueError(f"`sharpness` must be a positive finite number or a list of them, got {sharpness!r}")
        self.sharpness = betas[0] if isinstance(sharpness, (int, float)) else betas
        self.sign_floor, self.rank_floor = float(sign_floor), float(rank_floor)
        for value, name in ((sign_floor, "sign_floor"), (rank_floor, "rank_floor")):
            if not (float(value) > 0 and math.isfinite(float(value))):
                raise ValueError(f"`{name}` must be a positive finite number, got {value!r}")
        width = (("prob" in features) + ("sign" in features) * len(betas)
                 + ("rank" in features) * (1 + 3 * len(temperatures)))
        self.phi = mlp(width, hidden, depth, embedding)
        self.rho = mlp(2 * embedding + 1, hidden, depth, 1)

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if scores.dim() == 2:  # (N, B): binary
            s, y = scores.unsqueeze(1), target.unsqueeze(1)
        else:  # (N, B, L) -> (N, L, B)
            s, y = scores.transpose(1, 2), target.transpose(1, 2)
        n, num_labels, b = s.shape
        s, y = s.reshape(n * num_labels, b), y.reshape(n * num_labels, b).to(scores.dtype)
        presorted = self.kernel == "spline" and "rank" in self.features
        if presorted:  # the loss does not depend on the samples' order: sort each set once, for the comparisons
            s, order = s.sort(dim=-1)
            y = y.gather(-1, order)
        feats = set_features(s, y, self.features, self.temperatures, self.sharpness, self.sign_floor, self.rank_floor,
                             self.kernel, presorted=presorted)
        # phi's last layer is affine, so it commutes with the sums over the positives and the negatives: apply it to
        # the two sums of the last hidden layer, (M, 2, B) @ (M, B, H), not to each of the B samples.
        hidden = self.phi[:-1](feats)  # (M, B, H)
        last = self.phi[-1]
        counts = torch.stack([y.sum(-1), b - y.sum(-1)], dim=-1).unsqueeze(-1)  # (M, 2, 1): positives, negatives
        sums = F.linear(torch.stack([y, 1 - y], dim=1) @ hidden, last.weight) + counts * last.bias
        means = sums / counts.clamp_min(1)  # (M, 2, E); an empty group's mean is 0
        out = self.rho(torch.cat([means[:, 0], means[:, 1], counts[:, 0] / b], dim=-1)).squeeze(-1)
        return out.view(n, num_labels).mean(dim=-1)


def _check_binary_values(target: torch.Tensor) -> None:
    if target.dtype == torch.bool or target.numel() == 0:
        return
    if target.is_complex():
        raise TypeError(f"`target` must hold 0 and 1 (integer, bool or float), got dtype {target.dtype}")
    bad = (target != 0) & (target != 1)
    if bool(bad.any()):
        raise ValueError(f"`target` must hold only 0 and 1, found {target[bad].flatten()[0].item()!r}")


@register_task
class SetTask(Task):
    """``task="set"``: logits ``(B,)`` (``num_labels=None``) or ``(B, L)`` and 0/1 targets of the same shape."""

    name = "set"
    baseline_name = "binary cross-entropy"
    default_metric = "f1"
    default_batch_size = 64
    stored_net_defaults: ClassVar[dict[str, Any]] = {"sign_floor": 1e-3, "rank_floor": 1e-3, "kernel": "logistic"}
    #: The share of G_R batches drawn from :meth:`trained_batches` (the rest from :meth:`spread_batches`).
    trained_share: ClassVar[float] = 0.6

    def __init__(self, num_labels: int | None = None) -> None:
        if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int)
                                       or num_labels < 1):
            raise ValueError(f"`num_labels` must be None (binary scores (B,)) or an integer >= 1, got {num_labels!r}")
        self.num_labels = num_labels

    def config(self) -> dict[str, Any]:
        return {"num_labels": self.num_labels}

    @property
    def metrics(self) -> dict[str, Metric]:
        return BUILTINS

    def _shape_text(self, stacked: bool) -> str:
        lead = "N, " if stacked else ""
        if self.num_labels is None:
            return f"({lead}B) (binary scores; num_labels=None)"
        return f"({lead}B, L) with L = num_labels = {self.num_labels}"

    def check(self, pred: torch.Tensor, target: torch.Tensor, *, stacked: bool = False) -> None:
        pred = check_float_tensor(pred, "pred")
        target = check_tensor(target, "target")
        want = (1 if self.num_labels is None else 2) + (1 if stacked else 0)
        if pred.dim() != want or (self.num_labels is not None and pred.shape[-1] != self.num_labels):
            raise ValueError(f"`pred` must be logits of shape {self._shape_text(stacked)}, got {tuple(pred.shape)}")
        if target.shape != pred.shape:
            raise ValueError(
                f"`target` must have the shape of `pred`, {tuple(pred.shape)} (one 0/1 label per score), "
                f"got {tuple(target.shape)}"
            )
        if pred.shape[1 if stacked else 0] < 1:
            raise ValueError("`pred` is an empty batch (B = 0)")
        if target.is_floating_point() and not bool(torch.isfinite(target).all()):
            raise ValueError("`target` contains non-finite values; expected only 0 and 1")
        _check_binary_values(target)

    def random_batches(
        self, n: int, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """G_R: each batch from :meth:`trained_batches` with probability :attr:`trained_share`, else from
        :meth:`spread_batches`."""
        spread = self.spread_batches(n, batch_size, generator)
        trained = self.trained_batches(n, batch_size, generator)
        pick = torch.rand(n, generator=generator) < self.trained_share
        mask = pick.view(n, *([1] * (spread[0].dim() - 1)))
        return torch.where(mask, trained[0], spread[0]), torch.where(mask, trained[1], spread[1])

    def _targets(self, n: int, b: int, generator: torch.Generator) -> torch.Tensor:
        """0/1 targets ``(n, b, L)``: a positive rate per batch and label, logit-uniform in [0.05, 0.95] (rare and
        common positives), one positive and one negative kept at random places so AP and AUROC are defined."""
        g = generator
        num_labels = self.num_labels or 1
        rate = torch.sigmoid(torch.empty(n, 1, num_labels).uniform_(-3.0, 3.0, generator=g))
        target = (torch.rand(n, b, num_labels, generator=g) < rate).float()
        if b >= 2:
            target[:, 0], target[:, 1] = 1.0, 0.0
            order = torch.rand(n, b, num_labels, generator=g).argsort(dim=1)
            target = target.gather(1, order)
        return target

    def _shaped(self, scores: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.num_labels is None:
            return scores.squeeze(-1), target.squeeze(-1)
        return scores, target

    def spread_batches(
        self, n: int, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The G_R of surrogates learned before 2026-11-30: metrics spread over most of their range."""
        g = generator
        num_labels = self.num_labels or 1
        target = self._targets(n, batch_size, g)
        # Class separation (negative: scores point the wrong way), noise, threshold offset, logit scale.
        # Separation and offset are drawn per batch and jittered per label, so macro averages spread too.
        sep = torch.empty(n, 1, 1).uniform_(-2.5, 4.0, generator=g)
        sep = sep + torch.empty(n, 1, num_labels).uniform_(-0.75, 0.75, generator=g)
        noise = torch.randn(n, batch_size, num_labels, generator=g)
        offset = torch.empty(n, 1, 1).uniform_(-2.5, 2.5, generator=g)
        offset = offset + torch.empty(n, 1, num_labels).uniform_(-0.75, 0.75, generator=g)
        scale = torch.exp(torch.empty(n, 1, num_labels).uniform_(math.log(0.2), math.log(6.0), generator=g))
        return self._shaped(scale * (sep * (target - 0.5) + noise + offset), target)

    def trained_batches(
        self, n: int, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The trained-model regime: well-separated scores with few errors per batch, as a trained model gives.

        Per batch and label: a separation :math:`d \\sim U(3, 8)` between the classes' mean scores, heavy-tailed
        noise (Student t, 4 degrees of freedom: now and then a confident error), a threshold offset
        :math:`U(-0.75, 0.75)` and a log-uniform logit scale in [0.3, 10] (from under- to over-confident); then 0 to
        3 labels flipped (uniformly many) among the quarter of the samples nearest the threshold, the errors a
        late-training model makes. F1 then mostly lies between 0.85 and 1 at batches of 64."""
        g = generator
        num_labels = self.num_labels or 1
        b = batch_size
        target = self._targets(n, b, g)
        sep = torch.empty(n, 1, num_labels).uniform_(3.0, 8.0, generator=g)
        chi = torch.randn(n, b, num_labels, 4, generator=g).square().mean(-1)
        noise = torch.randn(n, b, num_labels, generator=g) / chi.sqrt().clamp_min(0.05)
        offset = torch.empty(n, 1, num_labels).uniform_(-0.75, 0.75, generator=g)
        scale = torch.exp(torch.empty(n, 1, num_labels).uniform_(math.log(0.3), math.log(10.0), generator=g))
        scores = scale * (sep * (target - 0.5) + noise + offset)
        return self._shaped(scores, self._flip_near_threshold(scores, target, g))

    @staticmethod
    def _flip_near_threshold(scores: torch.Tensor, target: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``target`` ``(N, B, L)`` with 0 to 3 labels per batch and label (uniformly many) flipped, chosen at random
        among the quarter of the samples whose scores are nearest 0."""
        n, b, num_labels = target.shape
        near = max(1, b // 4)
        flips = torch.randint(0, 4, (n, 1, num_labels), generator=generator)
        closest = scores.abs().argsort(dim=1)[:, :near]  # (N, near, L)
        pick = torch.rand(n, near, num_labels, generator=generator).argsort(dim=1) < flips  # `flips` of them
        flip = torch.zeros_like(target).scatter(1, closest, pick.to(target.dtype))
        return torch.where(flip > 0, 1 - target, target)

    def relabel(
        self, pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batches around real outputs ``(N, B)`` or ``(N, B, L)``. A third of them keep the scores and re-draw a
        uniformly random fraction of the labels at the batch's positive rate (metric values over the whole range);
        the others are perturbed as a model near this one would score them: the scores multiplied by a log-uniform
        temperature in [1/3, 3], shifted by up to a quarter of their rms (the threshold moves) and jittered by
        Gaussian noise of up to a quarter of their rms, then 0 to 3 labels flipped among the quarter of the samples
        nearest the threshold."""
        g = generator
        t = target.to(torch.float32)
        s3, t3 = (pred, t) if pred.dim() == 3 else (pred.unsqueeze(-1), t.unsqueeze(-1))
        n, num_labels = t3.shape[0], t3.shape[2]
        frac = torch.rand(n, 1, num_labels, generator=g)
        redraw = torch.rand(t3.shape, generator=g) < frac
        fresh = (torch.rand(t3.shape, generator=g) < t3.mean(dim=1, keepdim=True)).float()
        redrawn = torch.where(redraw, fresh, t3)
        rms = s3.detach().square().mean(dim=1, keepdim=True).sqrt()
        temp = torch.exp(torch.empty(n, 1, num_labels).uniform_(-math.log(3.0), math.log(3.0), generator=g))
        shift = torch.empty(n, 1, num_labels).uniform_(-0.25, 0.25, generator=g) * rms
        jitter = torch.rand(n, 1, num_labels, generator=g) * 0.25 * rms * torch.randn(t3.shape, generator=g)
        moved = (s3 * temp + shift + jitter).to(pred.dtype)
        flipped = self._flip_near_threshold(moved, t3, g)
        keep = (torch.rand(n, 1, 1, generator=g) < 1 / 3)
        scores, labels = torch.where(keep, s3, moved), torch.where(keep, redrawn, flipped)
        if pred.dim() == 2:
            scores, labels = scores.squeeze(-1), labels.squeeze(-1)
        return scores, labels.to(target.dtype)

    def baseline(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(pred, target.to(pred.dtype), reduction="none")
        return bce.flatten(1).mean(dim=1)

    def default_net_config(self) -> dict[str, Any]:
        return {"features": list(DEFAULT_FEATURES), "temperatures": [0.1, 0.5], "hidden": 64, "depth": 2,
                "embedding": 32, "sharpness": 3.0, "sign_floor": SIGN_FLOOR,
                "rank_floor": RANK_FLOOR, "kernel": DEFAULT_KERNEL}

    def build_net(self, **net_config: Any) -> nn.Module:
        """:class:`SetNet` built with ``net_config`` (``features``, ``temperatures``, ``hidden``, ``depth``,
        ``embedding``, ``sharpness``, ``sign_floor``, ``rank_floor``, ``kernel``)."""
        return SetNet(**net_config)
