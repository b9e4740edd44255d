r"""Built-in ordinal metrics: ``K`` ordered classes, logits ``(B, K)``, class indices ``(B,)`` (int64).

The predicted class is the arg-max :math:`\hat y_b = \arg\max_k z_{bk}`. Every function takes one batch
(-> a 0-d float64 tensor) or a stack of batches ``(N, B, K)``, ``(N, B)`` (-> ``(N,)``).

- ``mae`` (lower is better): :math:`\frac1B\sum_b |\hat y_b - y_b|`, in classes.
- ``within1_accuracy``: :math:`\frac1B\sum_b [\,|\hat y_b - y_b| \le 1\,]`.
- ``quadratic_kappa``: Cohen's kappa with quadratic weights :math:`w_{ij} = (i-j)^2`,
  :math:`\kappa = 1 - \frac{\sum_{ij} w_{ij} O_{ij}}{\sum_{ij} w_{ij} E_{ij}}` with :math:`O` the confusion matrix
  and :math:`E` the outer product of its marginals over :math:`B`. With quadratic weights this is

  .. math:: \kappa = 1 - \frac{\sum_b (\hat y_b - y_b)^2}{\sum_b \hat y_b^2 + \sum_b y_b^2 - \frac2B
            \sum_b \hat y_b \sum_b y_b},

  computed without the ``K x K`` matrices. The weights use the class indices themselves (scikit-learn's
  ``cohen_kappa_score(..., weights="quadratic", labels=range(K))``). Kappa is 0/0 only when every prediction and
  every target is the same class; that batch agrees perfectly and gets :math:`\kappa = 1` (scikit-learn gives NaN).
  A batch whose targets are all one class but whose predictions are not gets the formula's value.

Reference: J. Cohen, "Weighted kappa", Psychological Bulletin 70(4), 1968.

Example:
    >>> import torch
    >>> logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 3.0, 0.0]])
    >>> target = torch.tensor([0, 1, 1])
    >>> mae(logits, target)
    tensor(0.3333, dtype=torch.float64)
    >>> within1_accuracy(logits, target)
    tensor(1., dtype=torch.float64)
    >>> quadratic_kappa(logits, target)
    tensor(0.6667, dtype=torch.float64)
"""

from __future__ import annotations

import torch

from .base import Metric

__all__ = ["BUILTINS", "mae", "quadratic_kappa", "within1_accuracy"]


def _classes(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return logits.detach().argmax(dim=-1).to(torch.float64), target.detach().to(torch.float64)


def mae(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of the arg-max class, in classes (lower is better).

    Example:
        >>> mae(torch.tensor([[0.0, 1.0, 0.0, 0.0]]), torch.tensor([3]))
        tensor(2., dtype=torch.float64)
    """
    pred, y = _classes(logits, target)
    return (pred - y).abs().mean(dim=-1)


def within1_accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose arg-max class is at most one class away from the target.

    Example:
        >>> within1_accuracy(torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]), torch.tensor([3, 3]))
        tensor(0.5000, dtype=torch.float64)
    """
    pred, y = _classes(logits, target)
    return ((pred - y).abs() <= 1).to(torch.float64).mean(dim=-1)


def quadratic_kappa(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Quadratic weighted kappa of the arg-max classes; 1 for a batch where all predictions and targets are one class.

    Example:
        >>> quadratic_kappa(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 0]))  # 0/0: defined as 1
        tensor(1., dtype=torch.float64)
    """
    pred, y = _classes(logits, target)
    b = pred.shape[-1]
    num = (pred - y).square().sum(dim=-1)
    den = pred.square().sum(dim=-1) + y.square().sum(dim=-1) - 2 * pred.sum(dim=-1) * y.sum(dim=-1) / b
    # den = B (var(pred) + var(y) + (mean pred - mean y)^2) >= 0; it is 0 (up to rounding) only when num is 0 too.
    defined = den > 1e-9 * b
    return torch.where(defined, 1 - num / den.clamp_min(1e-300), torch.ones_like(num))


BUILTINS: dict[str, Metric] = {
    "mae": Metric("mae", mae, False, mae),
    "within1_accuracy": Metric("within1_accuracy", within1_accuracy, True, within1_accuracy),
    "quadratic_kappa": Metric("quadratic_kappa", quadratic_kappa, True, quadratic_kappa),
}
