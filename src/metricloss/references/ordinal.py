r"""Reference losses for ordinal classification (MAE, within-one accuracy, quadratic weighted kappa).

- ``dlordinal``'s ``SORDLoss`` (Díaz & Marathe, *Soft Labels for Ordinal Regression*, CVPR 2019): cross-entropy
  against soft labels that decay with the distance to the true class, on the K logits the family's models output.
- ``dlordinal``'s ``WKLoss`` (de la Torre et al. 2018): one minus the weighted (quadratic) kappa of the softmax,
  computed over the batch, for QWK.
- ``coral_pytorch``'s CORN (Shi et al. 2023) and CORAL (Cao et al. 2020), training only (``ranks_outputs=False``):
  they need a head with ``K - 1`` outputs (``coral_pytorch.layers.CoralLayer`` for CORAL, a plain
  ``nn.Linear(d, K - 1)`` for CORN), so they cannot rank the K-class logits of a model trained otherwise; the
  predicted class comes from ``coral_pytorch.dataset.corn_label_from_logits`` / ``proba_to_label``.

Installs: ``pip install coral-pytorch`` and ``pip install --no-deps dlordinal`` (plus ``deprecated`` and
``pandas``; ``dlordinal.losses`` runs without its declared torchvision dependency).
"""

from __future__ import annotations

import torch

from .._optional import require
from ._packages import installed
from .base import Reference, register_references, stacked
from .classification import class_counts

__all__ = ["coral_reference", "corn_reference", "sord_loss", "wk_loss"]


def sord_loss(num_classes: int, targets: torch.Tensor | None, alpha: float = 1.0) -> object:
    """dlordinal's SORD loss for ``num_classes`` ordered classes, one batch ``(B, K)`` -> scalar."""
    losses = require("dlordinal.losses", "references", "the SORD reference loss")
    train = targets.flatten().long() if targets is not None else torch.arange(num_classes)
    return losses.SORDLoss(alpha=alpha, num_classes=num_classes, train_targets=train)


def wk_loss(num_classes: int) -> object:
    """dlordinal's quadratic weighted-kappa loss on logits, one batch ``(B, K)`` -> scalar."""
    losses = require("dlordinal.losses", "references", "the weighted-kappa reference loss")
    return losses.WKLoss(num_classes=num_classes, penalization_type="quadratic", use_logits=True)


def corn_reference(num_classes: int) -> Reference:
    """CORN on a ``K - 1``-output head: ``loss(head_logits (B, K-1), target (B,))``."""
    losses = require("coral_pytorch.losses", "references", "the CORN reference loss")
    return Reference("CORN", "ordinal", "coral_pytorch corn_loss",
                     stacked(lambda z, y: losses.corn_loss(z, y, num_classes)), ranks_outputs=False,
                     training="a K - 1 output head (nn.Linear); labels from "
                              "coral_pytorch.dataset.corn_label_from_logits")


def coral_reference(num_classes: int) -> Reference:
    """CORAL on a ``K - 1``-output CORAL head: ``loss(head_logits (B, K-1), target (B,))``."""
    losses = require("coral_pytorch.losses", "references", "the CORAL reference loss")
    levels = require("coral_pytorch.dataset", "references", "the CORAL reference loss").levels_from_labelbatch

    def coral(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return losses.coral_loss(z, levels(y, num_classes).to(z.dtype))

    return Reference("CORAL", "ordinal", "coral_pytorch coral_loss", stacked(coral), ranks_outputs=False,
                     training="a coral_pytorch.layers.CoralLayer head (K - 1 outputs sharing one weight vector)")


@register_references("ordinal")
def ordinal_references(task: object, targets: torch.Tensor | None) -> list[Reference]:
    k = int(task.num_classes)  # type: ignore[attr-defined]
    refs: list[Reference] = []
    if installed("dlordinal"):
        counts = class_counts(targets, k)
        train = torch.repeat_interleave(torch.arange(k), counts.long())
        refs += [Reference("SORD", "ordinal", "dlordinal SORDLoss (alpha 1)", stacked(sord_loss(k, train))),
                 Reference("WK (QWK)", "ordinal", "dlordinal WKLoss (quadratic, logits)", stacked(wk_loss(k)))]
    if installed("coral_pytorch"):
        refs += [corn_reference(k), coral_reference(k)]
    return refs
