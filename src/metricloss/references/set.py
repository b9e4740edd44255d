r"""Reference losses for the set family's batch-level metrics (F1, AP, AUROC).

:func:`soft_f1` and :func:`sigmoid_f1` take one batch of scores ``(B,)`` or ``(B, L)`` (logits) with ``{0, 1}``
targets of the same shape and return a scalar; the :class:`~metricloss.references.base.Reference` objects apply them
to every batch of a stack ``(N, B, ...)``.

- :func:`soft_f1`: 1 minus F1 computed on sigmoid probabilities instead of hard decisions, pooled over the batch and
  every label (micro).
- :func:`sigmoid_f1`: written from Bénédict et al., *sigmoidF1: A Smooth F1 Score Surrogate Loss for Multilabel
  Classification*, 2021: the decisions relaxed by :math:`S(u) = 1 / (1 + e^{-\beta (u + \eta)})`, F1 per label over
  the batch, averaged over labels (macro); :math:`\beta, \eta` are tuned per data set in the paper, and
  :math:`\beta = 1, \eta = 0` is the logistic. For one label it equals :func:`soft_f1` at those values.
- LibAUC's ``APLoss`` (Qi et al. 2021) and ``AUCMLoss`` (Yuan et al. 2021), training only (``ranks_outputs=False``):
  both are stochastic min-max or moving-average objectives whose forward value is not a loss of the batch, and AUC-M
  means something only with its own optimiser. LibAUC's documentation pairs ``APLoss`` with its ``SOAP`` optimiser
  (or Adam) and a per-sample ``index``, ``AUCMLoss`` with ``PESG``, both with sigmoid scores and its ``DualSampler``
  to keep positives in every batch. Install: ``pip install --no-deps libauc`` (its torchvision dependency is not
  needed by ``libauc.losses``).
"""

from __future__ import annotations

import torch

from ._packages import installed
from .base import Reference, register_references, stacked

__all__ = ["sigmoid_f1", "soft_f1"]

EPS = 1e-8


def _f1(s: torch.Tensor, y: torch.Tensor, dim: int | None) -> torch.Tensor:
    tp = (s * y).sum() if dim is None else (s * y).sum(dim)
    fp = (s * (1 - y)).sum() if dim is None else (s * (1 - y)).sum(dim)
    fn = ((1 - s) * y).sum() if dim is None else ((1 - s) * y).sum(dim)
    return 2 * tp / (2 * tp + fp + fn + EPS)


def soft_f1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - F1`` on sigmoid probabilities, micro-averaged over one batch.

    Example:
        >>> y = torch.tensor([1.0, 0.0, 1.0])
        >>> float(soft_f1(torch.tensor([50.0, -50.0, 50.0]), y)) < 1e-6    # confident and right: F1 = 1
        True
    """
    return 1 - _f1(torch.sigmoid(pred), target.to(pred.dtype), None)


def sigmoid_f1(pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0, eta: float = 0.0) -> torch.Tensor:
    """sigmoidF1: ``1 - `` the macro average over labels of the relaxed F1 of one batch."""
    s = torch.sigmoid(beta * (pred + eta))
    return 1 - _f1(s, target.to(pred.dtype), 0).mean()



def _libauc_ap(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    raise TypeError("LibAUC's APLoss is stateful (a moving average per training sample, `index` required); build "
                    "`libauc.losses.APLoss(data_len)` in the training loop and optimise it with "
                    "`libauc.optimizers.SOAP`")


def _libauc_aucm(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    raise TypeError("LibAUC's AUCMLoss has its own variables (a, b, alpha); build `libauc.losses.AUCMLoss()` and "
                    "optimise the model and the loss together with `libauc.optimizers.PESG`")


@register_references("set")
def set_references(task: object, targets: torch.Tensor | None) -> list[Reference]:
    refs = [Reference("soft F1", "set", "written (micro F1 on sigmoid probabilities)", stacked(soft_f1)),
            Reference("sigmoidF1", "set", "written from Bénédict et al. 2021 (beta 1, eta 0)", stacked(sigmoid_f1))]
    if installed("libauc"):
        sampler = "libauc.sampler.DualSampler (positives in every batch), sigmoid scores"
        refs += [Reference("LibAUC AP", "set", "LibAUC APLoss", _libauc_ap, ranks_outputs=False,
                           training=f"libauc.optimizers.SOAP, a per-sample index, {sampler}"),
                 Reference("LibAUC AUC-M", "set", "LibAUC AUCMLoss", _libauc_aucm, ranks_outputs=False,
                           training=f"libauc.optimizers.PESG, {sampler}")]
    return refs
