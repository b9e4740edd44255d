r"""The UniLoss loss: functional form :func:`uniloss`, module :class:`UniLoss`, and :func:`build`.

For a batch, with refactoring :math:`e = g(h(f(s, y)))`, comparisons :math:`c = f(s, y)`, hard configuration
:math:`b = [c > 0]`, relaxed configuration :math:`u = \sigma(c/\tau)` and anchors :math:`a_i` drawn around
:math:`b` (:mod:`~metricloss.anchored.anchors`), the loss is the gap between the all-correct value and the
inverse-distance-weighted estimate (:func:`~metricloss.anchored.inverse_distance_weighting`; the shared core is
:mod:`metricloss.anchored`):

.. math:: L(s, y) = g(\mathbf 1) - \tilde g(u; a) \quad\text{(higher-is-better metrics; } \tilde g(u; a) - g(\mathbf 1)
    \text{ otherwise)},

so lower is better, and :math:`L = 0` when the batch is all-correct. For the built-ins :math:`g(\mathbf 1) = 1`,
so :math:`L = 1 - \tilde g`. Gradients come from autograd through :math:`\sigma` and the weights. Anchors are
re-drawn at every call (they adapt to the current :math:`b`); their values come from one call of :math:`g` on
the whole stack. With ``fraction < 1`` a random fraction of the variables is relaxed at each call and the rest
is held at :math:`b` (the paper trains 20 % of them per step on CIFAR-100).

Reference:
    UniLoss: Unified Surrogate Loss by Adaptive Interpolation (ICLR 2020 submission; ECCV 2020), sections 3–4.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..anchored.base import ANCHOR_DEFAULTS, AnchoredLoss
from ..anchored.kernels import idw_kernel
from ..anchored.refactorings import Refactoring

__all__ = ["OPTIONS", "UniLoss", "build", "uniloss"]

#: Keyword options of :class:`UniLoss` / :func:`uniloss` and their defaults (the paper's, with τ = p = 1).
OPTIONS: dict[str, Any] = {"temperature": 1.0, "power": 1.0, **ANCHOR_DEFAULTS}
_POSITIVE = ("temperature", "power")


def uniloss(pred: torch.Tensor, target: torch.Tensor, refactoring: Refactoring, **kwargs: Any) -> torch.Tensor:
    r"""UniLoss of one batch: :math:`g(\mathbf 1) - \tilde g(\sigma(f(\mathrm{pred}, \mathrm{target})/\tau); a)`.

    Args:
        pred, target: one batch in the refactoring's call shapes.
        refactoring: the metric's :class:`~metricloss.uniloss.Refactoring`.
        **kwargs: ``anchors=``, a fixed :class:`~metricloss.uniloss.AnchorSet` (then none is drawn; for tests and
            analysis); ``generator=``, the random source for the anchors; ``validate=False`` skips the input checks
            that synchronise with the device; and the keys of :data:`OPTIONS` (defaults there): ``temperature``
            :math:`\tau` of the sigmoid relaxation; ``power`` :math:`p` of the inverse-distance weights
            :math:`d^{-p}` (Euclidean :math:`d`); the anchor options ``num_good``, ``num_bad``, ``num_nearby``,
            ``good_flips``, ``nearby_flips``, ``fraction`` (:func:`~metricloss.anchored.draw_anchors`).

    Returns:
        A 0-d tensor, lower is better, differentiable in ``pred`` (computed in at least float32).

    Example:
        >>> from metricloss.uniloss import Accuracy
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]], requires_grad=True)
        >>> loss = uniloss(logits, torch.tensor([0, 1]), Accuracy(), generator=torch.Generator().manual_seed(0))
        >>> loss.backward()
        >>> bool(logits.grad[1, 1] < 0)  # raising the wrong sample's target logit lowers the loss
        True
    """
    return UniLoss.functional(pred, target, refactoring, **kwargs)


class UniLoss(AnchoredLoss, kind="uniloss"):
    r"""UniLoss as a loss module: ``loss(pred, target)`` is a scalar, lower is better, differentiable in ``pred``.

    It has the call shape of a learned :class:`~metricloss.Surrogate` but no weights: the metric is evaluated
    exactly at anchors drawn for each batch and interpolated (see :func:`uniloss`).

    Args:
        refactoring: a :class:`~metricloss.uniloss.Refactoring` or a built-in name (``"accuracy"``,
            ``"average_precision"``, ``"pck"``).
        temperature, power, num_good, num_bad, num_nearby, good_flips, nearby_flips, fraction: see
            :func:`uniloss` (defaults in :data:`OPTIONS`).
        seed: seeds the anchors (one generator per device), making a sequence of calls reproducible;
            ``None`` uses torch's global random state.
        task: the task family (default: the refactoring's, e.g. classification for ``"accuracy"`` with
            ``num_classes``); saved with the loss.
        validate_args: check inputs at every call (``False`` skips the checks, which synchronise with the device).
        **refactoring_kwargs: arguments of a built-in refactoring (``num_classes=``, ``alpha=``).

    Example:
        >>> import torch
        >>> from metricloss import uniloss
        >>> loss_fn = uniloss.build("accuracy", num_classes=10, seed=0)
        >>> logits = torch.randn(32, 10, requires_grad=True)
        >>> target = torch.randint(0, 10, (32,))
        >>> loss = loss_fn(logits, target)
        >>> loss.backward()
        >>> logits.grad.shape, 0.0 <= loss.item() <= 1.0
        (torch.Size([32, 10]), True)
        >>> uniloss.UniLoss.from_config(loss_fn.config()).options == loss_fn.options, loss_fn.kind
        (True, 'uniloss')
    """

    OPTIONS: ClassVar[dict[str, Any]] = OPTIONS
    POSITIVE: ClassVar[tuple[str, ...]] = _POSITIVE
    label: ClassVar[str] = "UniLoss"
    kernel = staticmethod(idw_kernel)
    # Other keys of a config have always gone on to the refactoring's constructor (e.g. a top-level
    # "num_classes"); kept so that configs written by hand keep loading.
    strict_config: ClassVar[bool] = False


def build(refactoring: Refactoring | str, **kwargs: Any) -> UniLoss:
    """A :class:`UniLoss` for a built-in refactoring name or a :class:`~metricloss.uniloss.Refactoring`.

    Example:
        >>> from metricloss import uniloss
        >>> uniloss.build("pck", alpha=0.05, fraction=0.2)
        UniLoss(PCK(alpha=0.05), fraction=0.2)
    """
    return UniLoss(refactoring, **kwargs)
