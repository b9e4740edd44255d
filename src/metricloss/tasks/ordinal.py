r"""Ordinal classification: logits ``(B, K)`` over ``K`` ordered classes, class indices ``(B,)`` (int64).

Metrics (:mod:`metricloss.metrics.ordinal`): MAE of the arg-max class (lower is better), accuracy within one
class, quadratic weighted kappa.

Surrogate (the ReLoss classification net made order-aware): with :math:`p = \mathrm{softmax}(z_b)`, a sharpened
:math:`q = \mathrm{softmax}(\beta z_b / \mathrm{sd}(z_b))` (a soft arg-max, :math:`\beta` = ``sharpness``) and
target :math:`y_b`, every sample gets features that know which classes are near the target; by default

.. math:: f_b = \Big(\frac{y_b}{K-1},\ \frac{\mathbb E_q[k] - y_b}{K-1},\ P_q(|k - y_b| \le 1),\
          \frac{\mathbb E_q[k]}{K-1}\Big),

and ``features`` can add the same quantities under :math:`p` (``expected_error``, ``near``, ``expected``), the
target probability :math:`p_{y_b}`, the masses :math:`P_p(k < y_b)`, :math:`P_p(k > y_b)` and ``span``
:math:`\log(K - 1)`, which lets one net rank batches of different ``K`` by an error counted in classes (MAE). ELU
MLPs map them to the loss, pooled over the batch in one of two ways:

- ``pool="mean"`` (decomposable, as MAE and within-one accuracy are per-sample means):
  :math:`L = \frac1B\sum_b \mathrm{MLP}(f_b)`;
- ``pool="deepsets"`` (the default; kappa is not a per-sample mean, it divides by the spread of the
  predictions and targets over the batch): :math:`L = \rho\big(\frac1B\sum_b \phi(f_b)\big)` with ELU MLPs
  :math:`\phi, \rho`. It contains the mean pool as the case of a linear :math:`\rho`, and measured better for MAE
  too.

``learn`` measures each metric (:meth:`~metricloss.tasks.base.Task.for_metric`: per-sample like MAE, or batch-level
like kappa) and its report says which it measured and which net it used; since the deepsets pool measured better
for both kinds, it is the default for both (``net={"pool": "mean", ...}`` picks the mean pool).

The default features do not change with the logit scale, as the three metrics do not, so a model trained with
the surrogate cannot lower it by shrinking or inflating its logits, as long as the standard deviation of a
sample's logits stays above ``spread_floor`` (1 by default; below it the sharpened softmax has the fixed
temperature ``spread_floor / sharpness``, which bounds the gradient, ``docs/reliability.md``).
Measured, not assumed: with the :math:`p`-features and the log of the logits' spread as inputs, the MAE surrogate
ranked G_R batches better (held-out Spearman 0.92 against 0.87 at K = 5) but drove the diabetes MLP of
``benchmarks/downstream_ordinal.py`` to logits of spread 0.01 and a test MAE of 1.29 against CE's 0.90.

The baseline is cross-entropy.

G_R draws targets from a random class distribution per batch (from uniform to nearly one class), moves a
uniformly random fraction of them by ordinal offsets of random size and direction to make the predicted
classes, and builds logits at a random scale, sometimes unimodal around the prediction, whose arg-max is the
predicted class by a random margin. MAE then spreads over ``[0, K - 1]``, within-one accuracy over ``[0, 1]``
and kappa over most of ``[-1, 1]``.

Example:
    >>> import torch, metricloss as ml
    >>> from metricloss.tasks import ordinal  # registers task="ordinal"
    >>> task = ml.tasks.get_task("ordinal", num_classes=5)
    >>> pred, target = task.random_batches(3, 16, torch.Generator().manual_seed(0))
    >>> pred.shape, target.shape, target.dtype
    (torch.Size([3, 16, 5]), torch.Size([3, 16]), torch.int64)
    >>> task.build_net(**task.default_net_config())(pred, target).shape
    torch.Size([3])
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from .._checks import check_choice, check_int
from ..metrics.base import Metric
from ..metrics.ordinal import BUILTINS
from ._nets import mlp
from .base import ClassIndexTask, register_task

__all__ = ["OrdinalNet", "OrdinalTask", "ordinal_features"]

FEATURES = ("expected_error", "target_prob", "below", "above", "near", "expected", "target",
            "sharp_error", "sharp_near", "sharp_expected", "span")
#: The default: only features that do not change with the logit scale, as the metrics do not.
DEFAULT_FEATURES = ("target", "sharp_error", "sharp_near", "sharp_expected")
#: Floor of the logits' spread in the ``sharp_*`` features (surrogates saved before it was stored in their config
#: had 1e-3: :attr:`OrdinalTask.stored_net_defaults`). See ``docs/reliability.md``.
SPREAD_FLOOR = 1.0


def ordinal_features(logits: torch.Tensor, target: torch.Tensor, features: tuple[str, ...],
                     sharpness: float = 4.0, spread_floor: float = SPREAD_FLOOR) -> torch.Tensor:
    r"""Per-sample features ``(..., B, F)`` of logits ``(..., B, K)`` and class indices ``(..., B)``.

    The ``sharp_*`` features use :math:`q = \mathrm{softmax}(\beta z / \max(\mathrm{sd}(z), \epsilon))`
    (``sharpness`` :math:`\beta`, the sample's logits standardised, ``spread_floor`` :math:`\epsilon`), a soft
    arg-max that does not change with the logit scale while the spread is above :math:`\epsilon`. The floor bounds
    their gradient: :math:`\lVert\partial q / \partial z\rVert \le \beta / (2\max(\mathrm{sd}(z), \epsilon))`;
    below it, :math:`q` is a softmax at the fixed temperature :math:`\epsilon/\beta`.

    Any ``K >= 2``: classes whose logit is ``-inf`` are absent (a G_R batch padded to a wider ``K``); ``K`` in the
    divisions by ``K - 1`` and in the spread counts the present classes of each sample.

    Example:
        >>> z = torch.tensor([[0.0, 2.0, 0.0, float("-inf")]])  # K = 3, padded to 4
        >>> ordinal_features(z, torch.tensor([2]), ("target", "expected"))
        tensor([[1.0000, 0.5000]])
    """
    target = target.long()
    # Absent classes (logit -inf: a G_R batch padded to a wider K, ClassIndexTask) are not counted: K is per sample.
    present = logits > float("-inf")
    k = present.sum(dim=-1, keepdim=True).to(logits.dtype)  # (..., B, 1)
    p = logits.softmax(dim=-1)
    classes = torch.arange(logits.shape[-1], device=logits.device, dtype=logits.dtype)
    norm = (k - 1).clamp_min(1).squeeze(-1)
    expected = (p * classes).sum(-1)
    offset = classes - target.unsqueeze(-1).to(logits.dtype)  # (..., B, K): class minus target
    y = target.to(logits.dtype)
    if any(name.startswith("sharp_") for name in features):
        # The spread over the present classes, floored before the square root (finite gradient at zero spread).
        z = logits.masked_fill(~present, 0.0)
        centred = (z - z.sum(-1, keepdim=True) / k).masked_fill(~present, 0.0)
        sd = (centred.square().sum(-1, keepdim=True) / k).clamp_min(spread_floor ** 2).sqrt()
        q = torch.where(present, sharpness * z / sd, float("-inf")).softmax(dim=-1)
        sharp_expected = (q * classes).sum(-1)
    out = []
    for name in features:
        if name == "expected_error":
            out.append((expected - y) / norm)
        elif name == "target_prob":
            out.append(p.gather(-1, target.unsqueeze(-1)).squeeze(-1))
        elif name == "below":
            out.append((p * (offset < 0)).sum(-1))
        elif name == "above":
            out.append((p * (offset > 0)).sum(-1))
        elif name == "near":
            out.append((p * (offset.abs() <= 1)).sum(-1))
        elif name == "expected":
            out.append(expected / norm)
        elif name == "target":
            out.append(y / norm)
        elif name == "sharp_error":
            out.append((sharp_expected - y) / norm)
        elif name == "sharp_near":
            out.append((q * (offset.abs() <= 1)).sum(-1))
        elif name == "sharp_expected":
            out.append(sharp_expected / norm)
        elif name == "span":
            out.append(norm.log().expand_as(y))
    return torch.stack(out, dim=-1)


class OrdinalNet(nn.Module):
    """ELU MLPs on :func:`ordinal_features`; ``pool="mean"`` averages a per-sample loss, ``pool="deepsets"``
    averages per-sample embeddings and maps the mean to the loss. Stacks ``(N, B, K)``, ``(N, B)`` -> ``(N,)``."""

    def __init__(self, features: tuple[str, ...] | list[str] = DEFAULT_FEATURES, pool: str = "deepsets",
                 hidden: int = 64, depth: int = 2, embedding: int = 32, sharpness: float = 4.0,
                 spread_floor: float = SPREAD_FLOOR) -> None:
        super().__init__()
        features = tuple(features)
        if not features or set(features) - set(FEATURES):
            raise ValueError(f"`features` must be a non-empty subset of {FEATURES}; got {features!r}")
        self.pool = check_choice(pool, "pool", ("mean", "deepsets"))
        for value, name in ((hidden, "hidden"), (depth, "depth"), (embedding, "embedding")):
            check_int(value, name, 1)
        self.features = features
        self.sharpness = float(sharpness)
        if not (self.sharpness > 0 and math.isfinite(self.sharpness)):
            raise ValueError(f"`sharpness` must be a positive finite number, got {sharpness!r}")
        self.spread_floor = float(spread_floor)
        if not (self.spread_floor > 0 and math.isfinite(self.spread_floor)):
            raise ValueError(f"`spread_floor` must be a positive finite number, got {spread_floor!r}")
        if pool == "mean":
            self.phi = mlp(len(features), hidden, depth, 1)
            self.rho = None
        else:
            self.phi = mlp(len(features), hidden, depth, embedding)
            self.rho = mlp(embedding, hidden, 1, 1)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        feats = ordinal_features(logits, target, self.features, self.sharpness, self.spread_floor)
        emb = self.phi(feats)  # (N, B, E)
        if self.rho is None:
            return emb.squeeze(-1).mean(dim=-1)
        return self.rho(emb.mean(dim=-2)).squeeze(-1)


def displace(classes: torch.Tensor, num_classes: int | torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    r"""Move a uniformly random fraction of each batch's classes ``(N, B)`` to other ordered classes.

    Per batch, the moved samples are, with probability 0.6, shifted by offsets of size
    :math:`\lceil |z|\,\lambda \rceil` (:math:`z` standard normal, :math:`\lambda` log-uniform in [0.3, K]) in a
    direction that leans up or down by a random bias; with probability 0.2 sent to uniformly random classes; and
    with probability 0.2 mirrored, :math:`k \mapsto K - 1 - k` (anti-ordered predictions, negative kappa). Results
    are clipped to [0, K - 1]. ``num_classes``: one ``K``, or one per batch, ``(N,)``.
    """
    g, k = generator, num_classes
    n, b = classes.shape
    frac = torch.rand(n, 1, generator=g)
    moved = torch.rand(n, b, generator=g) < frac
    if isinstance(k, torch.Tensor):  # one K per batch
        k = k.view(n, 1)
        log_k = k.to(torch.float32).log()
        size = torch.exp(math.log(0.3) + torch.rand(n, 1, generator=g) * (log_k - math.log(0.3)))
    else:
        size = torch.exp(torch.empty(n, 1).uniform_(math.log(0.3), math.log(k), generator=g))
    step = (torch.randn(n, b, generator=g).abs() * size).ceil().clamp_min(1)
    p_up = torch.rand(n, 1, generator=g)
    sign = torch.where(torch.rand(n, b, generator=g) < p_up, 1.0, -1.0)
    shifted = classes + (sign * step).long()
    if isinstance(k, torch.Tensor):
        shifted = torch.minimum(shifted.clamp_min(0), k - 1)
        uniform = (torch.rand(n, b, generator=g) * k).long()
    else:
        shifted = shifted.clamp(0, k - 1)
        uniform = torch.randint(0, k, (n, b), generator=g)
    mirrored = k - 1 - classes
    mode = torch.rand(n, 1, generator=g)
    other = torch.where(mode < 0.6, shifted, torch.where(mode < 0.8, uniform, mirrored))
    return torch.where(moved, other, classes)


@register_task
class OrdinalTask(ClassIndexTask):
    """``task="ordinal"``: logits ``(B, K)`` over ordered classes and int64 class indices ``(B,)``."""

    name = "ordinal"
    default_metric = "mae"
    default_batch_size = 128
    class_letter = "K"
    measures_metric = True
    stored_net_defaults: ClassVar[dict[str, Any]] = {"spread_floor": 1e-3}

    class_draw = "uniform"

    def __init__(self, num_classes: int | tuple[int, int] | list[int]) -> None:
        super().__init__(num_classes)

    @property
    def metrics(self) -> dict[str, Metric]:
        return BUILTINS

    def random_batches(
        self, n: int, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        g, k, b = generator, self.num_classes, batch_size
        classes = self.draw_classes(n, g)  # None for one K: the draws below are then exactly the fixed-K ones
        absent = self.absent(classes, k)
        # Class distribution per batch: softmax of random logits at a random sharpness (uniform .. one class).
        sharp = torch.empty(n, 1).uniform_(0.0, 4.0, generator=g)
        weights = torch.randn(n, k, generator=g) * sharp
        if absent is not None:
            weights = weights.masked_fill(absent[:, 0], float("-inf"))
        target = torch.multinomial(weights.softmax(dim=-1), b, replacement=True, generator=g)
        predicted = displace(target, k if classes is None else classes, g)
        # Logits at a random scale; in some batches unimodal around the predicted class.
        scale = torch.exp(torch.empty(n, 1, 1).uniform_(math.log(0.3), math.log(8.0), generator=g))
        logits = torch.randn(n, b, k, generator=g) * scale
        dist = (torch.arange(k).view(1, 1, k) - predicted.unsqueeze(-1)).abs().float()
        peak = torch.empty(n, 1, 1).uniform_(-1.0, 1.5, generator=g).clamp_min(0) * scale
        logits = logits - peak * dist
        if absent is not None:
            logits = logits.masked_fill(absent, float("-inf"))
        # Make the predicted class the arg-max by a random margin.
        others = logits.scatter(-1, predicted.unsqueeze(-1), float("-inf")).amax(dim=-1)
        gap = (torch.rand(n, b, generator=g) * 1.5 + 0.01) * scale.squeeze(-1)
        logits = logits.scatter(-1, predicted.unsqueeze(-1), (others + gap).unsqueeze(-1))
        return logits, target

    def relabel(
        self, pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Real logits kept; targets are their arg-max moved by :func:`displace` (G_R's offsets)."""
        return pred, displace(pred.argmax(dim=-1), pred.shape[-1], generator)

    def net_label(self, net_config: dict[str, Any]) -> str:
        return f"the {net_config.get('pool', 'deepsets')} pool (OrdinalNet)"

    def default_net_config(self) -> dict[str, Any]:
        return {"features": list(DEFAULT_FEATURES), "pool": "deepsets", "hidden": 64, "depth": 2, "embedding": 32,
                "sharpness": 4.0, "spread_floor": SPREAD_FLOOR}

    def build_net(self, **net_config: Any) -> nn.Module:
        """:class:`OrdinalNet` with ``net_config`` (``features``, ``pool``, ``hidden``, ``depth``, ``embedding``,
        ``sharpness``, ``spread_floor``)."""
        return OrdinalNet(**net_config)
