"""Built-in classification metrics: accuracy and top-k accuracy, per batch and vectorised over stacks."""

from __future__ import annotations

import torch

from .base import Metric

__all__ = ["BUILTINS", "accuracy", "top_k_accuracy"]


def top_k_accuracy(logits: torch.Tensor, target: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Fraction of samples whose target is among the ``k`` largest logits.

    Works on one batch (``(B, C)``, ``(B,)`` -> scalar) or a stack (``(N, B, C)``, ``(N, B)`` -> ``(N,)``).
    Ties are broken by ``torch.topk``'s order.
    """
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    hit = (top == target.unsqueeze(-1)).any(dim=-1)
    return hit.to(torch.float64).mean(dim=-1)


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose arg-max logit is the target (top-1 accuracy)."""
    return (logits.argmax(dim=-1) == target).to(torch.float64).mean(dim=-1)


def _top5(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return top_k_accuracy(logits, target, 5)


BUILTINS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", accuracy, True, accuracy),
    "top5_accuracy": Metric("top5_accuracy", _top5, True, _top5),
}
