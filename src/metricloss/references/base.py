r"""What a reference loss is, and the registry that lists each family's.

A :class:`Reference` is one hand-made loss that practitioners train with instead of (or beside) the family's
baseline: logit-adjusted cross-entropy for balanced accuracy, sigmoidF1 for F1, CORN for ordinal classes, Lovász for
IoU. Its ``loss`` takes a stack of batches in the family's call shapes (:mod:`metricloss.tasks`), ``(N, B, ...)``, and
returns one value per batch ``(N,)``, like a task's ``baseline``; the family modules' functions take one batch.

Some references cannot rank the outputs a model already produces: CORN and CORAL need their own ``K - 1`` output
head, and LibAUC's AP and AUC-M losses are stateful min-max objectives whose forward value is not a loss of the batch
(AUC-M's is only meaningful at its optimiser's saddle point). Those carry ``ranks_outputs=False`` and say in
``training`` what they need (head, optimiser, sampler); :func:`for_task` leaves them out unless asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

__all__ = ["Reference", "as_references", "for_task", "register_references", "stacked"]

StackedLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Builder = Callable[..., list["Reference"]]

_BUILDERS: dict[str, Builder] = {}


@dataclass(frozen=True)
class Reference:
    """One hand-made loss of a family.

    Attributes:
        name: short name, as tables print it (``"logit-adjusted CE"``).
        family: the task family it serves (``"classification"``, ``"set"``, ...).
        source: where the implementation comes from: a maintained package (``"MONAI FocalLoss"``) or
            ``"written from <paper>"``.
        loss: ``loss(pred, target)`` on a stack of batches ``(N, B, ...)`` in the family's call shapes, one value
            per batch ``(N,)`` (lower is better); for a reference that needs its own head, on that head's outputs.
        ranks_outputs: whether ``loss`` applies to the family's model outputs as they are, so it can rank recorded
            batches beside the surrogate.
        training: what training with it needs beyond the loss (a head, an optimiser, a sampler), or ``""``.
    """

    name: str
    family: str
    source: str
    loss: StackedLoss
    ranks_outputs: bool = True
    training: str = ""

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(pred, target)


def stacked(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> StackedLoss:
    """``fn(pred, target)`` on one batch made a stacked loss, ``(N, B, ...) -> (N,)``, for losses that are defined
    on one batch only (batch-level ones such as soft F1 or weighted kappa)."""

    def per_batch(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        values = [torch.as_tensor(fn(p, t)) for p, t in zip(pred, target, strict=True)]
        for v in values:
            if v.dim() != 0:
                raise ValueError(f"a reference loss must return one value per batch (a scalar), got shape "
                                 f"{tuple(v.shape)}; reduce it over the batch (e.g. reduction='mean')")
        return torch.stack(values).to(pred.dtype)

    return per_batch


def as_references(compare_with: Iterable[object] | None, family: str) -> list[Reference]:
    """``learn(compare_with=...)``'s losses as references: a :class:`Reference` as it is, any other callable
    ``loss(pred, target) -> scalar`` on one batch (``F.cross_entropy``, a ``torch.nn`` loss module, a function) named
    by its ``__name__`` (or class name) and applied to every batch of a stack.

    Raises:
        TypeError: ``compare_with`` is not an iterable of callables.
    """
    if compare_with is None:
        return []
    if isinstance(compare_with, (str, bytes)) or not isinstance(compare_with, Iterable) or callable(compare_with):
        raise TypeError(f"`compare_with` must be a list of losses loss(pred, target) -> scalar, got "
                        f"{type(compare_with).__name__}; wrap a single loss in a list: compare_with=[my_loss]")
    out = []
    for item in compare_with:
        if isinstance(item, Reference):
            out.append(item)
        elif callable(item):
            name = getattr(item, "__name__", None) or type(item).__name__
            out.append(Reference(name, family, "given to compare_with", stacked(item)))
        else:
            raise TypeError(f"`compare_with` must hold callables loss(pred, target) -> scalar, got "
                            f"{type(item).__name__}")
    return out


def register_references(family: str) -> Callable[[Builder], Builder]:
    """Register ``builder(task, targets) -> list[Reference]`` as the references of ``family``."""

    def wrap(builder: Builder) -> Builder:
        _BUILDERS[family] = builder
        return builder

    return wrap


def for_task(task: object, targets: torch.Tensor | None = None, *, ranking_only: bool = True) -> list[Reference]:
    """The reference losses of ``task``'s family.

    Args:
        task: a :class:`~metricloss.tasks.base.Task` (its ``name`` picks the family, its shape keywords size the
            references).
        targets: training targets of the user's data (e.g. every target of the recorded outputs), from which the
            references that need class frequencies (logit adjustment, class-balanced weights, LDAM margins, SORD)
            estimate them; ``None``: uniform frequencies, which reduces those losses to their plain forms.
        ranking_only: leave out the references that cannot rank the family's outputs as they are
            (``ranks_outputs=False``).

    Returns:
        The references, in a fixed order; an empty list for a family without any, or whose optional packages are not
        installed (each family module says which it needs).

    Example:
        >>> import torch
        >>> from metricloss.tasks.base import get_task
        >>> refs = for_task(get_task("classification", num_classes=4), torch.tensor([0, 0, 0, 1, 2, 3]))
        >>> [r.name for r in refs][:3]
        ['label smoothing', 'focal', 'logit-adjusted CE']
    """
    builder = _BUILDERS.get(getattr(task, "name", ""))
    if builder is None:
        return []
    refs = builder(task, targets)
    return [r for r in refs if r.ranks_outputs] if ranking_only else refs
