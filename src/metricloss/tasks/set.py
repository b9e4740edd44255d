r"""Set metrics of a whole batch (F1, AP, AUROC, MCC, balanced accuracy): scores ``(B,)`` or ``(B, L)``.

Call shapes: ``pred`` are logits ``(B,)`` (binary, ``num_labels=None``) or ``(B, L)`` (``num_labels=L``);
``target`` has the same shape and holds 0 and 1 in any integer, bool or floating dtype. Stacks add a leading
``N``. The metrics are in :mod:`metricloss.metrics.set` (threshold 0 on logits, macro average over labels).

Surrogate (ours, beyond the ReLoss paper, whose nets are per-sample): these metrics are functions of the *set* of
(score, label) pairs of a batch, invariant to the order of its samples, so the net is a DeepSets model applied to
each label's set independently and averaged over labels. For label :math:`l` with scores :math:`s_b`, targets
:math:`y_b`, :math:`P` positives and positive rate :math:`\pi`, every sample gets features

.. math:: f_b = \big(\sigma(\beta s_b / \mathrm{rms}(s)),\ \pi,\ \{ \bar\sigma^{-}_{b,\tau},\
          \bar\sigma^{+}_{b,\tau},\ \bar\sigma_{b,\tau} \}_{\tau}\big), \quad
          \bar\sigma^{-}_{b,\tau} = \operatorname*{mean}_{j \ne b,\ y_j = 0} \sigma\Big(\frac{s_b - s_j}{\tau\,
          \mathrm{sd}(s)}\Big),

(:math:`\bar\sigma^{+}` and :math:`\bar\sigma` likewise over the positives and over all samples, comparing
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

The pairwise features cost :math:`O(B^2)` per label. The baseline is binary cross-entropy with logits.

G_R draws, per batch and label, a positive rate :math:`\sigma(U(-3, 3))` (at least one positive and one negative
are kept, so AP and AUROC are defined), a class separation :math:`d \sim U(-2.5, 4)` (negative: worse than
chance), a threshold offset and a logit scale, so every metric spreads over most of its range.

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


def set_features(scores: torch.Tensor, target: torch.Tensor, features: tuple[str, ...],
                 temperatures: tuple[float, ...], sharpness: float = 3.0, sign_floor: float = SIGN_FLOOR,
                 rank_floor: float = RANK_FLOOR) -> torch.Tensor:
    r"""Per-sample features ``(M, B, F)`` of ``M`` sets of scores ``(M, B)`` with 0/1 targets ``(M, B)``.

    ``"prob"`` adds :math:`\sigma(s_b)`; ``"rank"`` adds the positive rate and, per temperature, the soft fractions
    of negatives below, positives above and samples above each sample (the sample itself excluded). The scores are
    divided by their rms (``"sign"``, floored at ``sign_floor``) and sd (``"rank"``, floored at ``rank_floor``) over
    the set: the features do not change with the scale of the scores above the floors, and their gradient is bounded
    by a constant over the floor (``docs/reliability.md``).
    """
    y = target.to(scores.dtype)
    out = []
    if "prob" in features:
        out.append(torch.sigmoid(scores))
    if "sign" in features:
        rms = scores.square().mean(dim=-1, keepdim=True).sqrt().clamp_min(sign_floor)
        out.append(torch.sigmoid(sharpness * scores / rms))
    if "rank" in features:
        b = scores.shape[-1]
        n_pos = y.sum(-1, keepdim=True)
        n_neg = b - n_pos
        rate = n_pos / b
        out.append(rate.expand_as(scores))
        # Relative scale: comparisons do not change with the logit scale above the floor, which bounds the gradient.
        sd = scores.std(dim=-1, keepdim=True, correction=0).clamp_min(rank_floor).unsqueeze(-1)
        diff = (scores.unsqueeze(-1) - scores.unsqueeze(-2)) / sd  # [m, i, j] = (s_i - s_j) / sd
        # Columns: negatives, positives, all; below @ columns counts soft "scored lower than me" per group.
        groups = torch.stack([1 - y, y, torch.ones_like(y)], dim=-1)
        for tau in temperatures:
            below = torch.sigmoid(diff / tau)  # [m, i, j]: soft [s_j < s_i]
            c = below @ groups  # (M, B, 3)
            # sigma(0) = 1/2 is each sample's comparison with itself: removed from every count.
            neg_below = (c[..., 0] - 0.5 * (1 - y)) / n_neg.clamp_min(1)
            pos_above = (n_pos - c[..., 1] - 0.5 * y) / n_pos.clamp_min(1)
            all_above = (b - c[..., 2] - 0.5) / max(b - 1, 1)
            out += [neg_below, pos_above, all_above]
    return torch.stack(out, dim=-1)


class SetNet(nn.Module):
    """DeepSets surrogate: per-sample ELU MLP on :func:`set_features`, means over positives and negatives, ELU MLP.

    Takes stacks: scores ``(N, B)`` with targets ``(N, B)`` (binary) or ``(N, B, L)`` (each label a set, the losses
    averaged over labels); returns ``(N,)``.
    """

    def __init__(self, features: tuple[str, ...] | list[str] = DEFAULT_FEATURES,
                 temperatures: tuple[float, ...] | list[float] = (0.1, 0.5), hidden: int = 64, depth: int = 2,
                 embedding: int = 32, sharpness: float = 3.0, sign_floor: float = SIGN_FLOOR,
                 rank_floor: float = RANK_FLOOR) -> None:
        super().__init__()
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
        self.sharpness = float(sharpness)
        if not (self.sharpness > 0 and math.isfinite(self.sharpness)):
            raise ValueError(f"`sharpness` must be a positive finite number, got {sharpness!r}")
        self.sign_floor, self.rank_floor = float(sign_floor), float(rank_floor)
        for value, name in ((sign_floor, "sign_floor"), (rank_floor, "rank_floor")):
            if not (float(value) > 0 and math.isfinite(float(value))):
                raise ValueError(f"`{name}` must be a positive finite number, got {value!r}")
        width = ("prob" in features) + ("sign" in features) + ("rank" in features) * (1 + 3 * len(temperatures))
        self.phi = mlp(width, hidden, depth, embedding)
        self.rho = mlp(2 * embedding + 1, hidden, depth, 1)

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if scores.dim() == 2:  # (N, B): binary
            s, y = scores.unsqueeze(1), target.unsqueeze(1)
        else:  # (N, B, L) -> (N, L, B)
            s, y = scores.transpose(1, 2), target.transpose(1, 2)
        n, num_labels, b = s.shape
        s, y = s.reshape(n * num_labels, b), y.reshape(n * num_labels, b).to(scores.dtype)
        feats = set_features(s, y, self.features, self.temperatures, self.sharpness, self.sign_floor, self.rank_floor)
        emb = self.phi(feats)  # (M, B, E)
        n_pos = y.sum(-1, keepdim=True)
        pos = (emb * y.unsqueeze(-1)).sum(-2) / n_pos.clamp_min(1)
        neg = (emb * (1 - y).unsqueeze(-1)).sum(-2) / (b - n_pos).clamp_min(1)
        out = self.rho(torch.cat([pos, neg, n_pos / b], dim=-1)).squeeze(-1)
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
    stored_net_defaults: ClassVar[dict[str, Any]] = {"sign_floor": 1e-3, "rank_floor": 1e-3}

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
        g = generator
        num_labels = self.num_labels or 1
        b = batch_size
        # Positive rate per batch and label, logit-uniform in [0.05, 0.95]: rare and common positives.
        rate = torch.sigmoid(torch.empty(n, 1, num_labels).uniform_(-3.0, 3.0, generator=g))
        target = (torch.rand(n, b, num_labels, generator=g) < rate).float()
        if b >= 2:  # keep one positive and one negative, at random places, so AP and AUROC are defined
            target[:, 0], target[:, 1] = 1.0, 0.0
            order = torch.rand(n, b, num_labels, generator=g).argsort(dim=1)
            target = target.gather(1, order)
        # Class separation (negative: scores point the wrong way), noise, threshold offset, logit scale.
        # Separation and offset are drawn per batch and jittered per label, so macro averages spread too.
        sep = torch.empty(n, 1, 1).uniform_(-2.5, 4.0, generator=g)
        sep = sep + torch.empty(n, 1, num_labels).uniform_(-0.75, 0.75, generator=g)
        noise = torch.randn(n, b, num_labels, generator=g)
        offset = torch.empty(n, 1, 1).uniform_(-2.5, 2.5, generator=g)
        offset = offset + torch.empty(n, 1, num_labels).uniform_(-0.75, 0.75, generator=g)
        scale = torch.exp(torch.empty(n, 1, num_labels).uniform_(math.log(0.2), math.log(6.0), generator=g))
        scores = scale * (sep * (target - 0.5) + noise + offset)
        if self.num_labels is None:
            return scores.squeeze(-1), target.squeeze(-1)
        return scores, target

    def relabel(
        self, pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Real scores kept; a uniformly random fraction of each batch's labels re-drawn at its positive rate."""
        t = target.to(torch.float32)
        lead = (t.shape[0], 1, *t.shape[2:])
        frac = torch.rand(lead, generator=generator)
        redraw = torch.rand(t.shape, generator=generator) < frac
        fresh = (torch.rand(t.shape, generator=generator) < t.mean(dim=1, keepdim=True)).float()
        return pred, torch.where(redraw, fresh, t).to(target.dtype)

    def baseline(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(pred, target.to(pred.dtype), reduction="none")
        return bce.flatten(1).mean(dim=1)

    def default_net_config(self) -> dict[str, Any]:
        return {"features": list(DEFAULT_FEATURES), "temperatures": [0.1, 0.5], "hidden": 64, "depth": 2,
                "embedding": 32, "sharpness": 3.0, "sign_floor": SIGN_FLOOR,
                "rank_floor": RANK_FLOOR}

    def build_net(self, **net_config: Any) -> nn.Module:
        """:class:`SetNet` built with ``net_config`` (``features``, ``temperatures``, ``hidden``, ``depth``,
        ``embedding``, ``sharpness``, ``sign_floor``, ``rank_floor``)."""
        return SetNet(**net_config)
