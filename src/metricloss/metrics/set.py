r"""Built-in set metrics: scores of a whole batch that no per-sample mean can express.

Call shapes (``task="set"``): ``pred`` are scores (logits) ``(B,)`` for a binary problem or ``(B, L)`` for ``L``
labels; ``target`` has the same shape and holds 0 and 1 (any integer, bool or floating dtype). Every function
also takes a stack of batches, ``(N, B)`` or ``(N, B, L)``, and returns ``(N,)``: the sample axis is always the
one after the stack axis, so a 2-d input is one multi-label batch for the per-batch functions and a stack of
binary batches for ``stacked=True``.

Per label, with :math:`\hat y_b = [s_b > 0]` (threshold 0 on logits) and TP, FP, TN, FN the counts of the batch:

- ``f1``: :math:`\frac{2TP}{2TP + FP + FN}`; 0 when the label has no positive target and no positive prediction
  (scikit-learn's ``zero_division=0``).
- ``mcc``: :math:`\frac{TP\cdot TN - FP\cdot FN}{\sqrt{(TP+FP)(TP+FN)(TN+FP)(TN+FN)}}`; 0 when a factor of the
  denominator is 0 (as scikit-learn).
- ``balanced_accuracy``: the mean of the recalls of the classes present in the target,
  :math:`\frac12\big(\frac{TP}{TP+FN} + \frac{TN}{TN+FP}\big)`, or the one recall when only one class occurs (as
  scikit-learn's ``balanced_accuracy_score``).
- ``average_precision``: :math:`\frac1P\sum_{b: y_b = 1} \mathrm{prec}(s_b)`, with
  :math:`\mathrm{prec}(t) = \frac{|\{b: y_b=1, s_b \ge t\}|}{|\{b: s_b \ge t\}|}` (scikit-learn's step-wise AP,
  ties included); undefined without a positive.
- ``auroc``: :math:`\frac1{P\,N}\sum_{i: y_i=1}\sum_{j: y_j = 0} \big([s_i > s_j] + \tfrac12[s_i = s_j]\big)`
  (Mann-Whitney); undefined unless both classes occur.

Multi-label batches are **macro-averaged**: the mean over labels of the per-label value. A label on which AP or
AUROC is undefined in a batch is left out of that batch's mean; if no label is defined the batch gets the chance
value, 0 for AP (scikit-learn's value without positives) and 0.5 for AUROC.

Reference: scikit-learn's ``f1_score``, ``matthews_corrcoef``, ``balanced_accuracy_score``,
``average_precision_score`` and ``roc_auc_score``, against which the tests check these functions.

Example:
    >>> import torch
    >>> scores = torch.tensor([2.0, 1.0, -0.5, -1.0])
    >>> target = torch.tensor([1, 0, 1, 0])
    >>> f1(scores, target)
    tensor(0.5000, dtype=torch.float64)
    >>> auroc(scores, target)
    tensor(0.7500, dtype=torch.float64)
    >>> average_precision(scores, target)  # (1/1 + 2/3) / 2
    tensor(0.8333, dtype=torch.float64)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import Metric

__all__ = ["BUILTINS", "auroc", "average_precision", "balanced_accuracy", "f1", "mcc"]

#: Value of a batch on which AP / AUROC is undefined for every label.
CHANCE = {"average_precision": 0.0, "auroc": 0.5}


def _canonical(pred: torch.Tensor, target: torch.Tensor, stacked: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and targets as float64 ``(..., L, B)``: one row of ``B`` samples per label (and batch)."""
    binary = pred.dim() == (2 if stacked else 1)
    s = pred.detach().to(torch.float64)
    y = target.detach().to(torch.float64)
    if binary:
        return s.unsqueeze(-2), y.unsqueeze(-2)
    return s.transpose(-1, -2).contiguous(), y.transpose(-1, -2).contiguous()


def _counts(s: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    hat = (s > 0).to(torch.float64)
    tp = (hat * y).sum(-1)
    fp = (hat * (1 - y)).sum(-1)
    fn = ((1 - hat) * y).sum(-1)
    tn = ((1 - hat) * (1 - y)).sum(-1)
    return tp, fp, tn, fn


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


def _f1(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    tp, fp, _, fn = _counts(s, y)
    return _safe_div(2 * tp, 2 * tp + fp + fn).mean(-1)


def _mcc(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    tp, fp, tn, fn = _counts(s, y)
    den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    return _safe_div(tp * tn - fp * fn, den.sqrt()).mean(-1)


def _balanced_accuracy(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    tp, fp, tn, fn = _counts(s, y)
    pos, neg = tp + fn, tn + fp
    recalls = _safe_div(tp, pos) + _safe_div(tn, neg)
    present = (pos > 0).to(torch.float64) + (neg > 0).to(torch.float64)
    return (recalls / present).mean(-1)


def _macro_defined(values: torch.Tensor, defined: torch.Tensor, chance: float) -> torch.Tensor:
    count = defined.sum(-1)
    total = torch.where(defined, values, torch.zeros_like(values)).sum(-1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, chance))


def _average_precision(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    pos = y > 0.5
    b = s.shape[-1]
    # For every sample: how many samples, and how many positives, score at least as high.
    at_least = b - torch.searchsorted(s.sort(dim=-1).values, s, side="left")
    pos_sorted = torch.where(pos, s, torch.full_like(s, -torch.inf)).sort(dim=-1).values
    pos_at_least = b - torch.searchsorted(pos_sorted, s, side="left")
    precision = pos_at_least.to(torch.float64) / at_least.to(torch.float64)
    n_pos = pos.sum(-1)
    ap = torch.where(pos, precision, torch.zeros_like(precision)).sum(-1) / n_pos.clamp_min(1)
    return _macro_defined(ap, n_pos > 0, CHANCE["average_precision"])


def _auroc(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    pos = y > 0.5
    neg_sorted = torch.where(pos, torch.full_like(s, torch.inf), s).sort(dim=-1).values
    below = torch.searchsorted(neg_sorted, s, side="left")  # negatives scored strictly lower
    not_above = torch.searchsorted(neg_sorted, s, side="right")  # ... lower or equal
    wins = (below + not_above).to(torch.float64) / 2
    n_pos, n_neg = pos.sum(-1), (~pos).sum(-1)
    u = torch.where(pos, wins, torch.zeros_like(wins)).sum(-1)
    auc = u / (n_pos * n_neg).clamp_min(1)
    return _macro_defined(auc, (n_pos > 0) & (n_neg > 0), CHANCE["auroc"])


def _make(core: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], stacked: bool) -> Callable:
    def fn(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        s, y = _canonical(pred, target, stacked)
        return core(s, y)

    return fn


def f1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """F1 score of one batch at threshold 0, macro-averaged over labels: ``(B,)`` or ``(B, L)`` -> scalar.

    Example:
        >>> f1(torch.tensor([[1.0, -1.0], [1.0, 1.0]]), torch.tensor([[1, 0], [0, 1]]))
        tensor(0.8333, dtype=torch.float64)
    """
    return _f1(*_canonical(pred, target, False))


def mcc(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Matthews correlation coefficient of one batch at threshold 0, macro-averaged over labels.

    Example:
        >>> mcc(torch.tensor([1.0, -1.0, 1.0, -1.0]), torch.tensor([1, 0, 0, 0]))
        tensor(0.5774, dtype=torch.float64)
    """
    return _mcc(*_canonical(pred, target, False))


def balanced_accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Balanced accuracy (mean recall of the classes present) of one batch at threshold 0, macro over labels.

    Example:
        >>> balanced_accuracy(torch.tensor([1.0, -1.0, 1.0, -1.0]), torch.tensor([1, 0, 0, 0]))
        tensor(0.8333, dtype=torch.float64)
    """
    return _balanced_accuracy(*_canonical(pred, target, False))


def average_precision(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Average precision (scikit-learn's step-wise definition) of one batch, macro over labels with a positive.

    Example:
        >>> average_precision(torch.tensor([0.5, 0.5, -1.0]), torch.tensor([1, 0, 1]))  # tie: (1/2 + 2/3) / 2
        tensor(0.5833, dtype=torch.float64)
    """
    return _average_precision(*_canonical(pred, target, False))


def auroc(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve of one batch (ties count 1/2), macro over labels with both classes.

    Example:
        >>> auroc(torch.tensor([0.5, 0.5, -1.0]), torch.tensor([1, 0, 0]))
        tensor(0.7500, dtype=torch.float64)
    """
    return _auroc(*_canonical(pred, target, False))


BUILTINS: dict[str, Metric] = {
    "f1": Metric("f1", f1, True, _make(_f1, True)),
    "average_precision": Metric("average_precision", average_precision, True, _make(_average_precision, True)),
    "auroc": Metric("auroc", auroc, True, _make(_auroc, True)),
    "mcc": Metric("mcc", mcc, True, _make(_mcc, True)),
    "balanced_accuracy": Metric("balanced_accuracy", balanced_accuracy, True, _make(_balanced_accuracy, True)),
}
