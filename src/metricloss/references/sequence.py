r"""Reference losses for sequences (BLEU, chrF, edit distance, ...): token cross-entropy with label smoothing
(Szegedy et al. 2016; the usual choice for translation, 0.1 in Vaswani et al. 2017), padding ``-100`` ignored."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..metrics.sequence import IGNORE_INDEX
from .base import Reference, register_references

__all__ = ["label_smoothing_token_cross_entropy"]


def label_smoothing_token_cross_entropy(pred: torch.Tensor, target: torch.Tensor,
                                        smoothing: float = 0.1) -> torch.Tensor:
    """Label-smoothed token cross-entropy averaged over each batch's non-padding tokens: logits ``(..., B, T, V)``,
    targets ``(..., B, T)`` -> ``(...)``."""
    ce = F.cross_entropy(pred.flatten(0, -2), target.flatten().long(), ignore_index=IGNORE_INDEX,
                         label_smoothing=smoothing, reduction="none").view(target.shape)
    valid = (target != IGNORE_INDEX).to(pred.dtype)
    return (ce * valid).flatten(-2).sum(-1) / valid.flatten(-2).sum(-1).clamp_min(1)


@register_references("sequence")
def sequence_references(task: object, targets: torch.Tensor | None) -> list[Reference]:
    return [Reference("label smoothing", "sequence", "torch cross_entropy(label_smoothing=0.1)",
                      label_smoothing_token_cross_entropy)]
