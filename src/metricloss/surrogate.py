"""The frozen loss modules users hold: :class:`MetricLoss`, the base of every kind, and the learned :class:`Surrogate`.

Every loss metricloss returns (a learned :class:`Surrogate`, a :class:`~metricloss.uniloss.UniLoss`, a
:class:`~metricloss.nonparametric.NonParametricLoss`) is a :class:`MetricLoss`: ``loss(pred, target)`` on one
batch, :meth:`~MetricLoss.batch_losses` on a stack of batches, a ``task``, a ``report``, ``config()`` /
``from_config()`` and ``save()``. A subclass names its ``kind`` in its class statement
(``class MyLoss(MetricLoss, kind="mine")``); that fills :data:`LOSS_KINDS`, the registry
:func:`metricloss.load` reads a file's ``"kind"`` from, so a new kind of loss never edits :mod:`metricloss.io`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from ._checks import check_bool, check_int
from ._serialization import file_header, write_loss_file
from .report import Report
from .tasks.base import Task, get_task

__all__ = ["LOSS_KINDS", "REDUCTIONS", "MetricLoss", "Surrogate", "loss_kind", "reduce_losses"]

#: Every kind of loss by its ``kind`` name (filled by the subclasses' class statements).
LOSS_KINDS: dict[str, type[MetricLoss]] = {}
#: The ``reduction=`` of :meth:`MetricLoss.batch_losses`, as torch.nn's losses name them.
REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum")

_Loss = TypeVar("_Loss", bound="MetricLoss")


def loss_kind(kind: str) -> type[MetricLoss]:
    """The class registered under ``kind`` (``"surrogate"``, ``"uniloss"``, ``"nonparametric"``, ...)."""
    if kind not in LOSS_KINDS:
        raise ValueError(f"`kind`: no kind of loss {kind!r}; known: {', '.join(map(repr, sorted(LOSS_KINDS)))}")
    return LOSS_KINDS[kind]


def reduce_losses(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    """``losses`` ``(N,)`` as they are (``"none"``), averaged (``"mean"``) or summed (``"sum"``)."""
    if reduction == "none":
        return losses
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    raise ValueError(f"`reduction` must be one of {', '.join(map(repr, REDUCTIONS))}; got {reduction!r}")


class MetricLoss(nn.Module):
    """Base of every loss metricloss returns: frozen, with a ``task`` and a ``report``.

    Frozen means no parameter requires grad, so an optimizer over a model that holds the loss never moves it. Its
    mode follows the surrounding model's like any module's (``model.train()`` / ``model.eval()``, so a training
    framework that checks every module's mode, as Lightning does at the start of ``fit``, sees nothing in eval
    mode), and its output never depends on the mode: no loss contains a layer that behaves differently in
    training (dropout, batch norm), which ``tests/test_learn.py`` checks on every kind and shipped file.

    Args:
        task: the task family whose call shapes the loss takes (``None`` only for a UniLoss or non-parametric loss
            on a user-written refactoring that names no task).
        report: the measured agreement with the metric (:class:`~metricloss.report.Report`), if measured.
        validate_args: check the inputs of every call (shapes, dtypes, finite values, class indices in range).
            ``False`` skips the checks that synchronise with the device (as torchmetrics' ``validate_args``), for
            a training loop whose inputs are known to be right.

    Subclasses implement :meth:`forward`, :meth:`config` and :meth:`from_config`, may override
    :meth:`state_tensors` (weights stored in files) and :meth:`_stacked_losses` (a vectorised stack), and call
    :meth:`_freeze` at the end of ``__init__``.
    """

    #: The name of this kind in :data:`LOSS_KINDS` and in saved files.
    kind: ClassVar[str] = ""

    def __init_subclass__(cls, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is None:
            return
        if kind in LOSS_KINDS and LOSS_KINDS[kind].__qualname__ != cls.__qualname__:
            raise ValueError(f"kind {kind!r} is already registered by {LOSS_KINDS[kind].__qualname__}")
        cls.kind = kind
        LOSS_KINDS[kind] = cls

    def __init__(self, task: Task | None = None, report: Report | None = None, *, validate_args: bool = True) -> None:
        super().__init__()
        if task is not None and not isinstance(task, Task):
            raise TypeError(f"`task` must be a metricloss Task or None, got {type(task).__name__}")
        self.task = task
        self.report = report
        self.validate_args = check_bool(validate_args, "validate_args")

    def _freeze(self) -> None:
        for param in self.parameters():
            param.grad = None  # no gradient left from learning: an optimizer holding us must not move us
        self.requires_grad_(False)
        self.train()  # a fresh module's mode, as nn.CrossEntropyLoss(); the output does not depend on it

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The loss of one batch: a 0-d tensor, lower is better, differentiable in ``pred``."""
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def _stacked_losses(self, pred: torch.Tensor, target: torch.Tensor, chunk: int | None) -> torch.Tensor:
        return torch.stack([self(p, t) for p, t in zip(pred, target, strict=True)])

    def batch_losses(self, pred: torch.Tensor, target: torch.Tensor, reduction: str = "none", *,
                     chunk: int | None = None) -> torch.Tensor:
        """Losses of a stack of batches: ``pred`` ``(N, *batch)``, ``target`` ``(N, *batch)`` -> ``(N,)``.

        Differentiable in ``pred`` when autograd is on (wrap the call in ``torch.no_grad()`` for values only; the
        loss's own parameters never require grad, so without a ``pred`` that requires grad no graph is built).
        ``reduction``: ``"none"`` (one loss per batch), ``"mean"`` or ``"sum"``. ``chunk``: at most this many
        batches per call of a vectorised network (bounds memory; ``None``: the kind's default, 256 for a learned
        surrogate; kinds that take one batch at a time ignore it).
        """
        if reduction not in REDUCTIONS:
            raise ValueError(f"`reduction` must be one of {', '.join(map(repr, REDUCTIONS))}; got {reduction!r}")
        if chunk is not None:
            chunk = check_int(chunk, "chunk", 1)
        return reduce_losses(self._stacked_losses(pred, target, chunk), reduction)

    def config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """Everything but the weights that rebuilds this loss (JSON-able; stored as the file's ``net_config``)."""
        raise NotImplementedError(f"{type(self).__name__} must define config")

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors stored with :meth:`save` (none by default)."""
        return {}

    @classmethod
    def from_config(cls: type[_Loss], config: dict[str, Any], *, task: Task | None = None,
                    tensors: dict[str, torch.Tensor] | None = None, **options: Any) -> _Loss:  # pragma: no cover
        """Rebuild a loss from :meth:`config`, its ``task`` and the tensors of :meth:`state_tensors`."""
        raise NotImplementedError(f"{cls.__name__} must define from_config")

    @classmethod
    def stored_task(cls, name: str, config: dict[str, Any]) -> Task | None:
        """The task a file names (``get_task(name, **config)``); kinds that may have none override this."""
        return get_task(name, **config)

    def save(self, path: str | Path) -> None:
        """Write the tensors (safetensors) and metadata (JSON) atomically to ``path``; read it with
        :func:`metricloss.load`."""
        task = self.task
        header = file_header(self.kind, task.name if task is not None else "", task.config() if task else {},
                             self.config(), self.report.to_dict() if self.report is not None else None)
        write_loss_file(path, self.state_tensors(), header)

    def _check(self, pred: torch.Tensor, target: torch.Tensor, *, stacked: bool = False) -> None:
        if self.validate_args and self.task is not None:
            self.task.check(pred, target, stacked=stacked)


class Surrogate(MetricLoss, kind="surrogate"):
    """A learned surrogate loss: ``sur(pred, target)`` is a scalar, lower is better, differentiable in ``pred``.

    Its weights are frozen (no parameter requires grad), so adding it to a training loss never updates it; its
    mode follows the surrounding model's and its output does not depend on it. ``report`` holds its measured
    agreement with the metric beside the baseline loss's. Built by :func:`metricloss.learn`,
    :func:`metricloss.load` or :func:`metricloss.pretrained`.

    Args:
        task: the task family (call shapes, network architecture).
        net: the network, ``net(pred, target) -> (N,)`` on stacks of batches.
        net_config: the keyword arguments of ``task.build_net`` that built ``net``.
        report: its measured agreement with the metric.
        validate_args: check inputs at every call (``False`` skips the checks, which synchronise with the device).

    Example:
        >>> import torch, metricloss as ml
        >>> sur = ml.pretrained("classification-accuracy")
        >>> logits = torch.randn(32, 10, requires_grad=True)
        >>> target = torch.randint(0, 10, (32,))
        >>> loss = sur(logits, target)
        >>> loss.backward()
        >>> logits.grad.shape
        torch.Size([32, 10])
        >>> sur.batch_losses(logits.detach().view(4, 8, 10), target.view(4, 8)).shape
        torch.Size([4])
    """

    task: Task

    def __init__(self, task: Task, net: nn.Module, net_config: dict[str, Any], report: Report | None = None, *,
                 validate_args: bool = True) -> None:
        if not isinstance(task, Task):
            raise TypeError(f"`task` must be a metricloss Task, got {type(task).__name__}")
        super().__init__(task, report, validate_args=validate_args)
        self.net = net
        self.net_config = dict(net_config)
        self._freeze()

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(pred, target)
        param = next(self.net.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        # Low-precision inputs or autocast (bfloat16 / float16): the surrogate is tiny, so it always runs in its
        # own precision (float16 overflowed in the pose surrogate); gradients flow back through the cast in the
        # caller's dtype.
        with torch.autocast(device_type=pred.device.type, enabled=False):
            return self.net(pred.to(dtype).unsqueeze(0), target.unsqueeze(0)).squeeze(0)

    def _stacked_losses(self, pred: torch.Tensor, target: torch.Tensor, chunk: int | None) -> torch.Tensor:
        self._check(pred, target, stacked=True)
        chunk = chunk or 256
        return torch.cat([self.net(p, t) for p, t in zip(pred.split(chunk), target.split(chunk), strict=True)])

    def config(self) -> dict[str, Any]:
        return dict(self.net_config)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.net.state_dict())

    @classmethod
    def from_config(cls, config: dict[str, Any], *, task: Task | None = None,
                    tensors: dict[str, torch.Tensor] | None = None, **options: Any) -> Surrogate:
        """A surrogate with the network ``task.build_net(**config)`` and, if given, the weights ``tensors``.

        Raises ``TypeError`` / ``ValueError`` for an invalid configuration, ``RuntimeError`` for weights that do not
        match the network.
        """
        if options:
            raise TypeError(f"a learned surrogate takes no option(s) {sorted(options)} (those are for UniLoss files)")
        if not isinstance(task, Task):
            raise TypeError(f"`task` must be the metricloss Task the surrogate was learned for, got {task!r}")
        config = task.stored_net_config(config)
        net = task.build_net(**config)
        if tensors is not None:
            net.load_state_dict(tensors, strict=True)
        return cls(task, net, config)

    def extra_repr(self) -> str:
        metric = self.report.metric if self.report else "?"
        return f"task={self.task.name!r}, metric={metric!r}"
