"""Measuring a loss against a metric the way the ReLoss paper does: rank correlation over held-out batches."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from . import ranking
from .tasks.base import Task

__all__ = ["agreement", "stack_batches"]


def agreement(losses: torch.Tensor, metric_values: torch.Tensor, higher_is_better: bool) -> dict[str, float]:
    """Spearman and Kendall between ``-losses`` and the metric turned higher-is-better (1 = same order)."""
    if losses.numel() < 2:
        raise ValueError("agreement needs at least 2 batches")
    m = metric_values.to(torch.float64)
    m = m if higher_is_better else -m
    neg = -losses.detach().to(torch.float64)
    return {"spearman": float(ranking.spearman(neg, m)), "kendall": float(ranking.kendall(neg, m))}


def stack_batches(
    outputs: Iterable[tuple[torch.Tensor, torch.Tensor]], batch_size: int, task: Task, name: str = "outputs"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate ``(pred, target)`` batches in order and cut them into stacked batches of ``batch_size``.

    The remainder that does not fill a batch is dropped (as the authors' code does with stored logits).
    """
    preds, targets = [], []
    for i, item in enumerate(outputs):
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise TypeError(f"`{name}` must yield (pred, target) pairs; item {i} is {type(item).__name__}")
        p, t = item
        try:
            task.check(p, t)
        except (TypeError, ValueError) as err:
            raise type(err)(f"`{name}` item {i}: {err}") from None
        preds.append(p.detach().cpu())
        targets.append(t.detach().cpu())
    if not preds:
        raise ValueError(f"`{name}` is empty")
    pred, target = torch.cat(preds), torch.cat(targets)
    n = pred.shape[0] // batch_size
    if n < 2:
        raise ValueError(
            f"`{name}` holds {pred.shape[0]} samples: fewer than 2 batches of batch_size={batch_size}"
        )
    pred = pred[: n * batch_size].reshape(n, batch_size, *pred.shape[1:])
    target = target[: n * batch_size].reshape(n, batch_size, *target.shape[1:])
    return pred, target

