r"""Objectives that fit a surrogate's batch losses to the metric.

All functions take the surrogate losses ``L`` of N batches, shape ``(N,)`` (lower is better), and the
metric values ``m`` of the same batches *oriented so that higher is better*, and return a scalar to
minimise.

- :func:`rank_objective` (ReLoss, eq. 6–9): :math:`\rho(\mathrm{softrank}(L), \mathrm{rank}(m))`, which is
  -1 when the losses order the batches exactly as the metric does (Spearman), or Kendall's soft
  :math:`\tau`.
- :func:`approximation_objective` (Grabocka et al. 2019): :math:`\mathrm{mean}\,|L - (c - m)|^p` with
  :math:`p \in \{1, 2\}` and :math:`c` an offset making the target non-negative.
- :func:`gradient_objective` (ours, derived from the abstract of Yoa et al. 2021): minus the mean, over
  batches, of the correlation between the surrogate's directional derivatives and the metric's changes
  along random directions (see :func:`metricloss.evaluation.metric_changes`).
- :func:`gradient_penalty` (ReLoss, Algorithm 1 line 7): :math:`\frac1N\sum_i (\lVert \nabla_y L_i\rVert_2 - 1)^2`.
"""

from __future__ import annotations

from typing import Literal

import torch

from . import ranking
from .evaluation import directional_correlation

__all__ = ["OBJECTIVES", "approximation_objective", "gradient_objective", "gradient_penalty", "rank_objective"]

OBJECTIVES = ("spearman", "kendall", "l2", "l1", "gradient")


def rank_objective(
    losses: torch.Tensor,
    metric: torch.Tensor,
    kind: Literal["spearman", "kendall"] = "spearman",
    strength: float = 10.0,
) -> torch.Tensor:
    """Soft rank correlation between losses and (higher-is-better) metric values; minimise towards -1."""
    metric = metric.to(losses.dtype)
    if kind == "spearman":
        return ranking.spearman(losses, metric, soft=True, strength=strength)
    return ranking.kendall(losses, metric, soft=True, strength=strength)


def approximation_objective(
    losses: torch.Tensor, metric: torch.Tensor, kind: Literal["l2", "l1"] = "l2", offset: float = 0.0
) -> torch.Tensor:
    """Fit the losses to the metric's "error" ``offset - metric`` with a squared or absolute error."""
    err = losses - (offset - metric.to(losses.dtype))
    return err.square().mean() if kind == "l2" else err.abs().mean()


def gradient_penalty(grads: torch.Tensor) -> torch.Tensor:
    """Mean of ``(||g_i||_2 - 1)^2`` over the leading dimension of ``grads`` ``(N, ...)``."""
    norms = grads.flatten(1).norm(dim=1)
    return (norms - 1).square().mean()


def gradient_objective(grads: torch.Tensor, deltas: torch.Tensor, changes: torch.Tensor) -> torch.Tensor:
    """``-mean`` over batches of the directional correlation (batches whose metric never moved are skipped)."""
    corr = directional_correlation(grads, deltas, changes)
    valid = ~torch.isnan(corr)
    if not bool(valid.any()):
        return grads.sum() * 0.0
    return -corr[valid].mean()
