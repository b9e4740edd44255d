r"""Reference losses for classification and its class-averaged metrics (macro F1, balanced accuracy, ...).

All take logits ``(..., B, C)`` and class indices ``(..., B)`` and return the mean over the batch, one value per
batch (``(...)``), as :meth:`~metricloss.tasks.base.ClassIndexTask.baseline` does.

- :func:`label_smoothing_cross_entropy`: cross-entropy against targets smoothed by ``smoothing`` (Szegedy et al.
  2016; ``torch.nn.functional.cross_entropy``'s ``label_smoothing``).
- :func:`focal_loss`: MONAI's ``FocalLoss`` (Lin et al. 2017) on the softmax, :math:`-(1-p_y)^\gamma \log p_y`.
- :func:`logit_adjusted_cross_entropy`: written from Menon et al., *Long-tail learning via logit adjustment*, ICLR
  2021: cross-entropy of :math:`z + \tau \log \pi`, with :math:`\pi` the training class priors; at test time the
  model's plain logits are used, which shifts its decisions towards rare classes (Fisher-consistent for balanced
  error).
- :func:`class_balanced_cross_entropy`: written from Cui et al., *Class-Balanced Loss Based on Effective Number of
  Samples*, CVPR 2019: each sample weighted by :math:`(1-\beta)/(1-\beta^{n_y})`, the weights normalised to sum to
  :math:`C` over classes.
- :func:`ldam_loss`: written from Cao et al., *Learning Imbalanced Datasets with Label-Distribution-Aware Margin
  Loss*, NeurIPS 2019: the target logit lowered by :math:`\Delta_y \propto n_y^{-1/4}` (largest margin
  ``max_margin``), then cross-entropy of ``scale`` times the logits. The paper uses ``scale = 30`` on a cosine
  classifier (normalised features and weights, logits in [-1, 1]); on the raw logits of an ordinary linear head
  the default ``scale = 1`` keeps the loss on cross-entropy's scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._optional import require
from ._packages import installed
from .base import Reference, register_references

__all__ = ["class_balanced_cross_entropy", "class_counts", "focal_loss", "label_smoothing_cross_entropy",
           "ldam_loss", "logit_adjusted_cross_entropy"]


def _per_batch(per_sample: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return per_sample.view(target.shape).mean(dim=-1)


def _ce(pred: torch.Tensor, target: torch.Tensor, **kwargs: object) -> torch.Tensor:
    per_sample = F.cross_entropy(pred.flatten(0, -2), target.flatten().long(), reduction="none", **kwargs)
    return _per_batch(per_sample, target)


def class_counts(targets: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """Training-set count of each class ``(C,)`` float64, at least 1 (a class never seen counts once, so its log
    prior and its margin stay finite); ``None`` gives equal counts."""
    if targets is None:
        return torch.ones(num_classes, dtype=torch.float64)
    t = targets.flatten().long()
    t = t[(t >= 0) & (t < num_classes)]
    return torch.bincount(t, minlength=num_classes).double().clamp_min(1.0)


def label_smoothing_cross_entropy(pred: torch.Tensor, target: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    r"""Cross-entropy with label smoothing, per batch: :math:`(1-arepsilon)\,(-\log p_y) + arepsilon\,
    \overline{(-\log p_c)}`, the mean over the classes present (absent classes, whose logits are ``-inf``, as in the
    library's padded stacks, are left out of the mean); with every class present it is
    ``F.cross_entropy(..., label_smoothing=smoothing)``.

    Example:
        >>> z, y = torch.tensor([[2.0, 0.0, 1.0]]), torch.tensor([0])
        >>> bool(torch.isclose(label_smoothing_cross_entropy(z, y), F.cross_entropy(z, y, label_smoothing=0.1)))
        True
    """
    logp = torch.log_softmax(pred, dim=-1)
    present = torch.isfinite(pred)
    nll = -logp.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
    spread = -logp.where(present, 0).sum(-1) / present.sum(-1).clamp_min(1)
    return ((1 - smoothing) * nll + smoothing * spread).mean(dim=-1)


def focal_loss(pred: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    r"""MONAI's focal loss on the softmax of ``pred``, summed over classes and averaged over the batch:
    :math:`-\frac1B\sum_i (1 - p_{i,y_i})^\gamma \log p_{i,y_i}`. Needs ``pip install 'metricloss[references]'``."""
    losses = require("monai.losses", "references", "the focal reference loss")
    # absent classes (-inf logits) get a finite floor: probability 0 either way, and no 0 * inf in MONAI's sum
    flat, t = pred.flatten(0, -2).clamp_min(torch.finfo(torch.float32).min / 8), target.flatten().long()
    fl = losses.FocalLoss(gamma=gamma, use_softmax=True, to_onehot_y=True, reduction="none")
    per_sample = fl(flat.unsqueeze(-1), t.view(-1, 1, 1)).sum(dim=1).flatten()
    return _per_batch(per_sample, target)


def logit_adjusted_cross_entropy(pred: torch.Tensor, target: torch.Tensor, counts: torch.Tensor,
                                 tau: float = 1.0) -> torch.Tensor:
    r"""Logit-adjusted cross-entropy: :math:`\mathrm{CE}(z + \tau\log\pi, y)`, :math:`\pi = n / \sum n`.

    Example:
        >>> z, y = torch.zeros(2, 2), torch.tensor([0, 1])
        >>> bool(logit_adjusted_cross_entropy(z, y, torch.ones(2)) == F.cross_entropy(z, y))   # equal priors: CE
        True
    """
    log_prior = (counts.double() / counts.double().sum()).log().to(pred.dtype)
    return _ce(pred + tau * log_prior, target)


def class_balanced_cross_entropy(pred: torch.Tensor, target: torch.Tensor, counts: torch.Tensor,
                                 beta: float = 0.9999) -> torch.Tensor:
    r"""Class-balanced softmax cross-entropy: sample :math:`i` weighted by
    :math:`w_{y_i} = C\,\frac{(1-\beta)/(1-\beta^{n_{y_i}})}{\sum_c (1-\beta)/(1-\beta^{n_c})}`, averaged over the
    batch."""
    effective = (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts.double())) / (1.0 - beta)
    weights = 1.0 / effective
    weights = (weights * counts.numel() / weights.sum()).to(pred.dtype)
    per_sample = F.cross_entropy(pred.flatten(0, -2), target.flatten().long(), reduction="none")
    return _per_batch(per_sample * weights[target.flatten().long()], target)


def ldam_loss(pred: torch.Tensor, target: torch.Tensor, counts: torch.Tensor, max_margin: float = 0.5,
              scale: float = 1.0) -> torch.Tensor:
    r"""LDAM: :math:`\mathrm{CE}(s\,(z - \Delta_y e_y), y)` with
    :math:`\Delta_c = m\,n_c^{-1/4} / \max_k n_k^{-1/4}`."""
    margins = counts.double().pow(-0.25)
    margins = (margins * (max_margin / margins.max())).to(pred.dtype)
    t = target.long()
    shifted = pred - F.one_hot(t, pred.shape[-1]).to(pred.dtype) * margins[t].unsqueeze(-1)
    return _ce(scale * shifted, target)


@register_references("classification")
def classification_references(task: object, targets: torch.Tensor | None) -> list[Reference]:
    counts = class_counts(targets, int(task.num_classes))  # type: ignore[attr-defined]
    refs = [Reference("label smoothing", "classification", "torch cross_entropy(label_smoothing=0.1)",
                      label_smoothing_cross_entropy)]
    if installed("monai"):
        refs.append(Reference("focal", "classification", "MONAI FocalLoss (gamma 2)", focal_loss))
    refs += [
        Reference("logit-adjusted CE", "classification", "written from Menon et al. 2021 (tau 1)",
                  lambda p, t: logit_adjusted_cross_entropy(p, t, counts)),
        Reference("class-balanced CE", "classification", "written from Cui et al. 2019 (beta 0.9999)",
                  lambda p, t: class_balanced_cross_entropy(p, t, counts)),
        Reference("LDAM", "classification", "written from Cao et al. 2019 (max margin 0.5, scale 1)",
                  lambda p, t: ldam_loss(p, t, counts)),
    ]
    return refs
