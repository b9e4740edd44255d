r"""Multi-class classification: logits ``(B, C)``, class indices ``(B,)``.

Surrogate (ReLoss, appendix A.1, generalised): per sample, a few features of the softmax probabilities
go through an ELU MLP; the absolute value of its output is averaged over the batch,

.. math:: L(z, y) = \frac1B \sum_{b=1}^{B} \big|\,\mathrm{MLP}(\phi(\mathrm{softmax}(z_b), y_b))\big|,

with :math:`\phi` the target-class probability :math:`p_{y}` (the paper's only input) and optionally the
margin :math:`p_y - \max_{c \ne y} p_c`. The baseline is cross-entropy.

G_R draws logits at random scales and labels equal to the arg-max with a uniformly random fraction
re-drawn, so batch accuracy spreads over :math:`[1/C, 1]`; a share of batches is made "confidently
wrong" or "barely right" so the logit scale and the metric are not confounded.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_class_batch
from ..metrics.base import Metric
from ..metrics.classification import BUILTINS
from .base import Task, register_task

__all__ = ["ClassificationNet", "ClassificationTask", "LSEDNet"]

FEATURES = ("target_prob", "margin", "log_target_prob")


def class_features(logits: torch.Tensor, target: torch.Tensor, features: tuple[str, ...]) -> torch.Tensor:
    """Per-sample features ``(..., B, F)`` of logits ``(..., B, C)`` and targets ``(..., B)``."""
    target = target.long()
    logp = logits.log_softmax(dim=-1)
    logp_y = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    p = logp.exp()
    p_y = logp_y.exp()
    out = []
    for name in features:
        if name == "target_prob":
            out.append(p_y)
        elif name == "log_target_prob":
            out.append(logp_y.clamp_min(-30.0) / 10)
        elif name == "margin":
            other = p.scatter(-1, target.unsqueeze(-1), float("-inf")).amax(dim=-1)
            out.append(p_y - other)
    return torch.stack(out, dim=-1)


class ClassificationNet(nn.Module):
    """Per-sample ELU MLP on probability features, absolute value (the paper's; ``absolute=False`` drops it),
    mean over the batch."""

    def __init__(self, features: tuple[str, ...] | list[str] = ("target_prob",), hidden: int = 128,
                 depth: int = 3, absolute: bool = True) -> None:
        super().__init__()
        features = tuple(features)
        unknown = set(features) - set(FEATURES)
        if not features or unknown:
            raise ValueError(f"`features` must be a non-empty subset of {FEATURES}; got {features!r}")
        self.features = features
        self.absolute = bool(absolute)
        layers: list[nn.Module] = []
        width = len(features)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ELU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = class_features(logits, target, self.features)
        out = self.mlp(x).squeeze(-1)
        return (out.abs() if self.absolute else out).mean(dim=-1)


class LSEDNet(nn.Module):
    r"""LS-ED (Patel et al. 2020), for classification: prediction and target are embedded by two networks and
    the loss is their Euclidean distance, averaged over the batch,

    .. math:: L(z, y) = \frac1B \sum_b \lVert \phi(\mathrm{softmax}(z_b)) - \psi(y_b) \rVert_2,

    with :math:`\phi` an ELU MLP and :math:`\psi` a learned embedding of the class. Fitted to the metric
    value (``objective="l2"``), it approximates the metric's error as a distance; used to post-tune a model.
    """

    def __init__(self, num_classes: int, embedding: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(num_classes, hidden), nn.ELU(), nn.Linear(hidden, embedding))
        self.psi = nn.Embedding(num_classes, embedding)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = self.phi(logits.softmax(dim=-1)) - self.psi(target.long())
        # sqrt with a floor keeps the gradient finite when an embedding lands exactly on its target's.
        return (diff.square().sum(dim=-1) + 1e-12).sqrt().mean(dim=-1)


@register_task
class ClassificationTask(Task):
    """``task="classification"``: logits ``(B, C)`` and int64 class indices ``(B,)``."""

    name = "classification"
    baseline_name = "cross-entropy"
    default_metric = "accuracy"

    def __init__(self, num_classes: int) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes!r}")
        self.num_classes = num_classes

    def config(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes}

    @property
    def metrics(self) -> dict[str, Metric]:
        return BUILTINS

    def check(self, pred: torch.Tensor, target: torch.Tensor, *, stacked: bool = False) -> None:
        check_class_batch(pred, target, self.num_classes, stacked=stacked)

    def random_batches(
        self, n: int, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.num_classes
        g = generator
        # Logit scale log-uniform in [0.3, 12]: from nearly uniform to very confident outputs.
        scale = torch.exp(torch.empty(n, 1, 1).uniform_(math.log(0.3), math.log(12.0), generator=g))
        logits = torch.randn(n, batch_size, c, generator=g) * scale
        target = logits.argmax(dim=-1)
        # Re-draw a uniformly random fraction of the labels in each batch.
        frac = torch.rand(n, 1, generator=g)
        redraw = torch.rand(n, batch_size, generator=g) < frac
        random_labels = torch.randint(0, c, (n, batch_size), generator=g)
        target = torch.where(redraw, random_labels, target)
        # A quarter of the batches: boost the target logit by a random amount so "barely right" and
        # "confidently right" batches both occur at every accuracy.
        boost = torch.rand(n, 1, generator=g) * (torch.rand(n, 1, generator=g) < 0.25) * 2 * scale[..., 0]
        keep = torch.rand(n, batch_size, generator=g) < 0.5
        logits = logits + F.one_hot(target, c) * (boost * keep).unsqueeze(-1)
        return logits, target

    def relabel(
        self, pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # The authors' G_R on stored logits: arg-max labels, a uniformly random fraction re-drawn.
        n, b = target.shape
        frac = torch.rand(n, 1, generator=generator)
        redraw = torch.rand(n, b, generator=generator) < frac
        random_labels = torch.randint(0, self.num_classes, (n, b), generator=generator)
        return pred, torch.where(redraw, random_labels, pred.argmax(dim=-1))

    def baseline(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(pred.flatten(0, -2), target.flatten().long(), reduction="none")
        return ce.view(target.shape).mean(dim=-1)

    def default_net_config(self) -> dict[str, Any]:
        return {"features": ["target_prob", "margin"], "hidden": 128, "depth": 3, "absolute": True}

    def build_net(self, **net_config: Any) -> nn.Module:
        """``kind="mlp"`` (default): :class:`ClassificationNet`; ``kind="lsed"``: :class:`LSEDNet`."""
        config = dict(net_config)
        kind = config.pop("kind", "mlp")
        if kind == "lsed":
            return LSEDNet(self.num_classes, **config)
        if kind != "mlp":
            raise ValueError(f"`net` kind must be 'mlp' or 'lsed', got {kind!r}")
        return ClassificationNet(**config)
