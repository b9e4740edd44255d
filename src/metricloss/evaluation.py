"""Measuring a loss against a metric.

- :func:`agreement`: the ReLoss paper's measure, rank correlation between losses and metric over batches.
- :func:`gradient_agreement`: whether the loss's *gradient* points where the metric improves, probed along
  random directions (derived by us from Yoa et al. 2021, whose full text we could not read).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from . import ranking
from .metrics.base import Metric
from .tasks.base import Task

__all__ = [
    "agreement", "directional_correlation", "gradient_agreement", "metric_changes", "stack_batches",
]


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



def metric_changes(
    metric: Metric,
    pred: torch.Tensor,
    target: torch.Tensor,
    directions: int,
    sigma: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Random directions and the metric's change along them (an evolution-strategies probe).

    For every batch :math:`y_i` of the stack ``pred`` ``(N, ...)`` draws ``directions`` Gaussian directions
    :math:`\delta_{ik}` and measures the antithetic change
    :math:`\Delta m_{ik} = M(y_i + \sigma s_i \delta_{ik}) - M(y_i - \sigma s_i \delta_{ik})` with
    :math:`s_i` the standard deviation of :math:`y_i`, turned so that a positive change is an improvement.

    Returns:
        ``(deltas, changes)`` of shapes ``(N, K, ...)`` and ``(N, K)``.
    """
    n, k = pred.shape[0], directions
    pred = pred.detach()
    deltas = torch.randn((n, k, *pred.shape[1:]), generator=generator, dtype=pred.dtype)
    scale = pred.flatten(1).std(dim=1).clamp_min(1e-6).view(n, 1, *[1] * (pred.dim() - 1))
    step = sigma * scale * deltas
    both = torch.cat([pred.unsqueeze(1) + step, pred.unsqueeze(1) - step], dim=1).flatten(0, 1)
    tgt = target.unsqueeze(1).expand(n, 2 * k, *target.shape[1:]).flatten(0, 1)
    values = metric.oriented(metric.evaluate(both, tgt)).view(n, 2 * k)
    return deltas, (values[:, :k] - values[:, k:]).to(pred.dtype)


def directional_correlation(grads: torch.Tensor, deltas: torch.Tensor, changes: torch.Tensor) -> torch.Tensor:
    r"""Per batch, Pearson correlation over k between :math:`-\langle \nabla L_i, \delta_{ik}\rangle` and
    :math:`\Delta m_{ik}`; NaN for a batch whose metric did not move along any direction. Differentiable in
    ``grads``."""
    d = -(grads.unsqueeze(1) * deltas).flatten(2).sum(-1)
    d = d - d.mean(dim=1, keepdim=True)
    # Rescale both sides before squaring: tiny gradients underflowed in float32 (correlations far above 1),
    # and sqrt at 0 gave NaN gradients when the metric never moved. Correlation is scale-free.
    tiny = torch.finfo(d.dtype).tiny
    d = d / d.detach().abs().amax(dim=1, keepdim=True).clamp_min(tiny)
    c = changes - changes.mean(dim=1, keepdim=True)
    c = c / c.abs().amax(dim=1, keepdim=True).clamp_min(tiny)
    den = (d.square().sum(1) * c.square().sum(1)).clamp_min(tiny).sqrt()
    corr = (d * c).sum(1) / den
    return torch.where(c.square().sum(1) > 0, corr, torch.full_like(corr, float("nan")))


def gradient_agreement(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    metric: Metric,
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    directions: int = 16,
    sigma: float = 0.5,
    seed: int = 0,
    chunk: int = 64,
) -> float:
    r"""How well a loss's gradient points where the metric improves, averaged over batches.

    For each batch of the stack, the Pearson correlation between the loss's directional derivatives
    :math:`-\langle\nabla_y L, \delta_k\rangle` and the metric's changes along the same random directions
    (:func:`metric_changes`); 1 means the loss's gradient predicts perfectly which way the metric moves.
    Batches along which the metric never moved are skipped; NaN if all are.

    Args:
        loss_fn: maps a stack ``(N, ...)`` to per-batch losses ``(N,)`` (a surrogate's net, a task's
            baseline, or any per-batch loss).
        metric: a :class:`~metricloss.metrics.Metric`.
        directions, sigma: number of random directions and their length relative to the batch's std.
    """
    gen = torch.Generator().manual_seed(seed)
    corrs = []
    for p, t in zip(pred.split(chunk), target.split(chunk), strict=True):
        deltas, changes = metric_changes(metric, p, t, directions, sigma, gen)
        x = p.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (grads,) = torch.autograd.grad(loss_fn(x, t).sum(), x)
        corrs.append(directional_correlation(grads, deltas, changes))
    allc = torch.cat(corrs)
    valid = allc[~torch.isnan(allc)]
    return float(valid.mean()) if valid.numel() else float("nan")
