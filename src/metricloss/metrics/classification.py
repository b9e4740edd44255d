r"""Built-in classification metrics, per batch and vectorised over stacks of batches.

Decomposable: :func:`accuracy`, :func:`top_k_accuracy` (averages over samples).

Batch-level, for imbalanced classes (they depend on the batch's whole confusion matrix, so a per-sample loss
cannot express them): :func:`macro_f1`, :func:`balanced_accuracy`, :func:`cohen_kappa` and :func:`mcc`
(multi-class Matthews correlation), computed with torchmetrics' functional forms.

Conventions for classes absent from a batch (they match scikit-learn's defaults, and the tests check it):

- ``macro_f1`` averages :math:`F_1^c = 2\,TP_c / (2\,TP_c + FP_c + FN_c)` over the classes that occur in the
  batch's targets *or* predictions (``sklearn.metrics.f1_score(average="macro")`` with its default labels; a
  class neither present nor predicted has no defined :math:`F_1` and is left out, as torchmetrics' macro average
  does). A class present but never predicted, or predicted but absent, scores 0.
- ``balanced_accuracy`` averages recall over the classes present in the targets only
  (``sklearn.metrics.balanced_accuracy_score``). torchmetrics' ``multiclass_recall(average="macro")`` differs
  here: it also counts a class that is predicted but absent from the targets, with recall 0 (its
  ``zero_division=0``); we take its per-class recalls and average them over the present classes.
- ``cohen_kappa`` and ``mcc`` are torchmetrics' (they agree with scikit-learn's); when they are undefined (one
  class in both targets and predictions: every expected and observed agreement is 1, or a zero denominator)
  they are 0, as scikit-learn's ``matthews_corrcoef`` is; scikit-learn's ``cohen_kappa_score`` gives NaN there.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch

from .base import Metric

__all__ = ["BUILTINS", "accuracy", "balanced_accuracy", "cohen_kappa", "macro_f1", "mcc", "top_k_accuracy"]



def _tm() -> ModuleType:
    """torchmetrics' functional classification metrics, imported on first use: importing torchmetrics takes 1-2 s
    (it pulls in scipy.signal where scipy is installed), which ``import metricloss`` should not pay."""
    return importlib.import_module("torchmetrics.functional.classification")

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


def _stack(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Arg-max predictions and targets as ``(N, B)`` stacks (one batch becomes ``N = 1``)."""
    single = target.dim() == 1
    pred = logits.argmax(dim=-1)
    if single:
        pred, target = pred.unsqueeze(0), target.unsqueeze(0)
    return pred, target.long(), single


def _out(values: torch.Tensor, single: bool) -> torch.Tensor:
    values = values.to(torch.float64)
    return values[0] if single else values


def macro_f1(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Macro-averaged :math:`F_1` of the arg-max predictions, per batch.

    .. math:: \mathrm{macroF_1} = \frac{1}{|K|}\sum_{c \in K} \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c},

    with :math:`K` the classes present in the targets or predicted. Shapes: ``(B, C)``, ``(B,)`` -> scalar,
    or ``(N, B, C)``, ``(N, B)`` -> ``(N,)``. torchmetrics' ``multiclass_f1_score(average="macro",
    multidim_average="samplewise")`` does the work.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
        >>> round(float(macro_f1(logits, torch.tensor([0, 0, 1, 1]))), 4)  # F1 0.8 and 0.6667
        0.7333
    """
    pred, target, single = _stack(logits, target)
    values = _tm().multiclass_f1_score(pred, target, logits.shape[-1], average="macro", multidim_average="samplewise",
                                 validate_args=False)
    return _out(values, single)


def balanced_accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Balanced accuracy: recall averaged over the classes present in the batch's targets,

    .. math:: \mathrm{BA} = \frac{1}{|K|}\sum_{c \in K} \frac{TP_c}{TP_c + FN_c}, \quad K = \{c : n_c > 0\}.

    Same shapes as :func:`macro_f1`; per-class recalls from torchmetrics' ``multiclass_recall``.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
        >>> float(balanced_accuracy(logits, torch.tensor([0, 0, 0, 1])))
        1.0
    """
    pred, target, single = _stack(logits, target)
    c = logits.shape[-1]
    recall = _tm().multiclass_recall(pred, target, c, average="none", multidim_average="samplewise",
                               validate_args=False).to(torch.float64)
    present = torch.zeros(target.shape[0], c, dtype=torch.float64).scatter_(1, target, 1.0)
    return _out((recall * present).sum(dim=-1) / present.sum(dim=-1), single)


def _loop(fn, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred, target, single = _stack(logits, target)
    c = logits.shape[-1]
    values = torch.stack([fn(p, t, c, validate_args=False) for p, t in zip(pred, target, strict=True)])
    return _out(torch.nan_to_num(values.to(torch.float64), nan=0.0), single)


def cohen_kappa(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Cohen's :math:`\kappa` between arg-max predictions and targets, per batch:
    :math:`\kappa = (p_o - p_e) / (1 - p_e)`, observed agreement :math:`p_o` (accuracy) against the agreement
    :math:`p_e = \sum_c \hat n_c n_c / B^2` expected from the two marginals. torchmetrics'
    ``multiclass_cohen_kappa`` on each batch; undefined (0/0) is 0. Same shapes as :func:`macro_f1`.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [2.0, 0.0]])
        >>> float(cohen_kappa(logits, torch.tensor([0, 0, 0, 1])))  # 75 % accuracy, no better than chance
        0.0
    """
    return _loop(_tm().multiclass_cohen_kappa, logits, target)


def mcc(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Multi-class Matthews correlation coefficient (Gorodkin's :math:`R_K`) of the batch's confusion matrix
    :math:`M`, with :math:`s = B`, :math:`c = \mathrm{tr}\,M`, :math:`t_k`, :math:`p_k` the true and predicted
    counts of class :math:`k`,

    .. math:: \mathrm{MCC} = \frac{c\,s - \sum_k p_k t_k}{\sqrt{(s^2 - \sum_k p_k^2)(s^2 - \sum_k t_k^2)}}.

    torchmetrics' ``multiclass_matthews_corrcoef`` on each batch; undefined is 0 (as scikit-learn). Same shapes as
    :func:`macro_f1`.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
        >>> float(mcc(logits, torch.tensor([0, 1, 0, 1])))
        1.0
    """
    return _loop(_tm().multiclass_matthews_corrcoef, logits, target)


def _top5(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return top_k_accuracy(logits, target, 5)


BUILTINS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", accuracy, True, accuracy),
    "top5_accuracy": Metric("top5_accuracy", _top5, True, _top5),
    "macro_f1": Metric("macro_f1", macro_f1, True, macro_f1),
    "balanced_accuracy": Metric("balanced_accuracy", balanced_accuracy, True, balanced_accuracy),
    "cohen_kappa": Metric("cohen_kappa", cohen_kappa, True, cohen_kappa),
    "mcc": Metric("mcc", mcc, True, mcc),
}
