"""What a task family provides to the learner, and the registry of families.

A task family (one file each under :mod:`metricloss.tasks`) knows its call shapes, its surrogate
network, its random batch generator G_R, its baseline loss and its built-in metrics. The learner works
on *stacks* of batches: ``pred`` of shape ``(N, *batch_shape)`` and ``target`` likewise, and every
network returns one loss per batch, ``(N,)``.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_class_batch, check_int, check_size_range
from ..metrics.base import Metric
from ..metrics.decomposability import Decomposability, probe_decomposability

__all__ = ["DEFAULT_STEPS", "MIN_DEFAULT_STEPS", "PROBE_BATCHES", "PROBE_SEED", "TASKS", "ClassIndexTask", "Task",
           "capped_steps", "get_task", "register_task"]

#: Upper bound on learning steps when ``steps`` is not given, for tasks whose batches are small (early stopping
#: ends most runs sooner); :attr:`Task.default_steps` lowers it where a step's default batches are large.
DEFAULT_STEPS = 2000
#: The fewest steps :func:`capped_steps` gives, however large a step's batches.
MIN_DEFAULT_STEPS = 50
#: Batches (of the task's default size) :meth:`Task.for_metric` measures a metric on, and their seed: with
#: :data:`~metricloss.metrics.decomposability.PROBE_PARTS` parts each, 32 metric calls, the same batches every time.
PROBE_BATCHES = 8
PROBE_SEED = 0


def capped_steps(step_elements: int, budget: float) -> int:
    """A default step bound for steps of ``step_elements`` elements each: :data:`DEFAULT_STEPS`, or as many steps as
    fit in ``budget`` elements in all when fewer, but at least :data:`MIN_DEFAULT_STEPS`.

    Example:
        >>> capped_steps(128 * 128 * 10, 1.6e9), capped_steps(128 * 128 * 1000, 1.6e9)
        (2000, 97)
    """
    return int(max(MIN_DEFAULT_STEPS, min(DEFAULT_STEPS, budget // max(step_elements, 1))))


class Task(ABC):
    """Base class of task families. Subclasses are registered with :func:`register_task`."""

    name: ClassVar[str]
    baseline_name: ClassVar[str]
    default_metric: ClassVar[str]
    default_batch_size: ClassVar[int] = 128
    #: N, batches ranked together per learning step (the paper's 128 unless a task's batches are costly).
    default_batches_per_step: ClassVar[int] = 128
    #: Upper bound on learning steps when ``learn`` is not given ``steps`` (families with large batches lower it by
    #: the size of a step's batches, see :func:`capped_steps`).
    default_steps: ClassVar[int] = DEFAULT_STEPS
    #: G_R batches drawn up front by :func:`metricloss.learn` (``None``: as many as fit in ~128 MiB, <= 4096).
    #: Tasks with slow metrics set a smaller pool.
    default_pool_size: ClassVar[int | None] = None
    #: Values of net-configuration keys added after surrogates were first saved: a stored configuration that lacks
    #: such a key was saved before it existed and is rebuilt with the value it then had (see :meth:`stored_net_config`).
    stored_net_defaults: ClassVar[dict[str, Any]] = {}
    #: Whether the family has a per-sample and a batch-level surrogate net, so that :meth:`for_metric` measures each
    #: metric (:meth:`probe_metric`) to choose between them.
    measures_metric: ClassVar[bool] = False
    #: What :meth:`for_metric` measured of the metric (``None``: not measured).
    metric_probe: Decomposability | None = None

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The shape arguments this task was built with (JSON-able; stored with surrogates)."""

    @property
    @abstractmethod
    def metrics(self) -> dict[str, Metric]:
        """Built-in metrics by name."""

    @abstractmethod
    def check(self, pred: torch.Tensor, target: torch.Tensor, *, stacked: bool = False) -> None:
        """Raise a clear error if ``pred``/``target`` do not have this task's call shapes."""

    @abstractmethod
    def random_batches(
        self, n: int, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """G_R: ``n`` random batches, stacked, whose metric values spread over the metric's range."""

    @abstractmethod
    def baseline(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss the surrogate replaces, per batch of a stack: ``(N,)``."""

    @abstractmethod
    def default_net_config(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`build_net` used when the user gives none."""

    @abstractmethod
    def build_net(self, **net_config: Any) -> nn.Module:
        """The surrogate network: ``net(pred, target) -> (N,)`` on stacks."""

    def for_metric(self, metric: Metric) -> Task:
        """The task as :func:`metricloss.learn` uses it for ``metric``.

        A family with one kind of net (:attr:`measures_metric` false) returns ``self``. A family with a per-sample
        and a batch-level net returns a copy (same :meth:`config`) configured by *measuring* the metric, never by its
        name: :meth:`probe_metric` tests whether the metric of a batch is the size-weighted mean of its values on
        sub-batches (:func:`~metricloss.metrics.decomposability.probe_decomposability`), the result is kept in the
        copy's :attr:`metric_probe`, and :meth:`configure_for` sets the copy's default net and generator for it.
        The decision is the same for the same function under any name (a lambda, ``functools.partial``, a
        torchmetrics object), and every call makes the same decision (fixed batches and seed).
        """
        if not self.measures_metric:
            return self
        task = copy.copy(self)
        task.metric_probe = self.probe_metric(metric)
        task.configure_for(task.metric_probe.per_sample)
        return task

    def probe_metric(self, metric: Metric, seed: int = PROBE_SEED) -> Decomposability:
        """Whether ``metric`` is a per-sample average, measured on :data:`PROBE_BATCHES` batches of
        :meth:`probe_batches` (drawn and split with private generators seeded with ``seed``: the global random state
        is not touched)."""
        pred, target = self.probe_batches(PROBE_BATCHES, torch.Generator().manual_seed(seed))
        return probe_decomposability(metric, pred, target, seed=seed)

    def probe_batches(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The batches :meth:`probe_metric` measures on: by default ``n`` G_R batches of the default size."""
        return self.random_batches(n, self.default_batch_size, generator)

    def configure_for(self, per_sample: bool) -> None:
        """Set this task's default net and generator for a metric measured per-sample or batch-level (called on the
        copy :meth:`for_metric` returns; by default nothing changes)."""
        return None

    def net_label(self, net_config: dict[str, Any]) -> str:
        """A short name of the net ``net_config`` builds, for reports."""
        return str(net_config.get("kind", "default net"))

    def net_choice(self, net_config: dict[str, Any], given: str | None = None) -> dict[str, Any]:
        """Which net learning used and why, as the report keeps it: ``net`` (:meth:`net_label`), ``chosen_by``
        (``"net="`` or ``"init="`` when ``given`` names it, ``"measurement"`` when :meth:`for_metric` measured the
        metric, ``"family"`` when the family has one kind of net), ``reason`` (a sentence) and, when measured,
        ``metric`` (``"per-sample"`` or ``"batch-level"``) and ``probe`` (the measured numbers)."""
        probe, label = self.metric_probe, self.net_label(net_config)
        choice: dict[str, Any] = {"net": label}
        if probe is not None:
            choice.update(metric=probe.kind, probe=probe.to_dict())
        measured = "" if probe is None else f"the metric measured {probe.kind}: {probe.describe()}"
        if given is not None:
            choice["chosen_by"] = given
            choice["reason"] = f"given by `{given}`" + (f" ({measured})" if measured else "")
        elif probe is not None:
            choice["chosen_by"] = "measurement"
            choice["reason"] = f"{measured}; it is this family's default net for {probe.kind} metrics"
        else:
            choice["chosen_by"] = "family"
            choice["reason"] = "this family's default net (it has one kind of net for every metric)"
        return choice

    def stored_net_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """The configuration a saved surrogate's net is rebuilt with: ``config`` completed by
        :attr:`stored_net_defaults`, so a file saved before a key existed behaves as it did when it was saved."""
        return {**self.stored_net_defaults, **config}

    def relabel(
        self, pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Optional G_R variant on real model outputs; by default the batches are returned unchanged."""
        return pred, target

    def compact_outputs(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch of model outputs in the form it is stored in: what the family's surrogate net and built-in
        metrics read, as few bytes as that takes. :func:`metricloss.learn` stores ``outputs=`` batches this way, and
        so does :class:`~metricloss.OutputRecorder` given the task. The result is a ``(pred, target)`` batch of the
        family's call shapes on which the default net and the built-in metrics give the values of the batch given.
        By default the batch unchanged; the sequence family renumbers a wide vocabulary
        (:meth:`~metricloss.tasks.sequence.SequenceTask.compact`)."""
        return pred, target

    def widen(self, pred: torch.Tensor, width: int) -> torch.Tensor:
        """``pred`` with its last (class) dimension grown to ``width`` by classes that nothing reads, appended after the
        existing ones (so ``pred[..., :V]`` recovers the batch), so that batches of different widths (compacted model
        outputs, G_R's) stack together. Families whose width is fixed by the task raise; the sequence family appends
        ids far below all others."""
        if width == pred.shape[-1]:
            return pred
        raise ValueError(f"task {self.name!r}: batches must share their last dimension; got {pred.shape[-1]}, "
                         f"expected {width}")

    def batch_nbytes(self, batch_size: int) -> int:
        """Bytes one stored batch of ``batch_size`` takes (its ``pred`` and ``target``): what pools, held-out sets
        and measurement chunks are sized by against the memory budget (:mod:`metricloss._memory`).

        By default measured on one batch drawn from G_R (a fixed seed, so the answer is stable); a family whose
        batches differ in size (lengths drawn from a range) or that stores them compactly overrides it with the
        largest a stored batch can take.
        """
        pred, target = self.random_batches(1, check_int(batch_size, "batch_size", 1), torch.Generator().manual_seed(0))
        return int(pred.nbytes + target.nbytes)


#: Logits a classification or ordinal run learns from in all by default (:attr:`ClassIndexTask.default_steps`):
#: 100 steps of 128 batches of 128 samples at ``C = 1000``. On 2 cores at ImageNet's ``C = 1000`` such a run took
#: 49 s and ranked held-out batches above cross-entropy, 0.878 against 0.761 (``benchmarks/real_sizes.py``,
#: docs/benchmarks.md).
LEARN_LOGITS = 100 * 128 * 128 * 1000


class ClassIndexTask(Task):
    """The shared half of the families whose predictions are logits ``(B, C)`` and whose targets are int64 class
    indices ``(B,)`` (classification, ordinal): shape, checks and the cross-entropy baseline.

    ``num_classes`` is the number of classes G_R draws batches with: one integer, or a range ``(low, high)`` from
    which each G_R batch draws its own ``C`` (:meth:`draw_classes`). Stacks hold one width, so a batch with fewer
    classes than ``high`` is padded with *absent* classes, whose logits are ``-inf``: softmax gives them probability
    0, no arg-max or top-k picks them before a present class, and no target names one. Every built-in metric and
    surrogate of the two families gives a padded batch the value of the unpadded one; a metric of your own that
    counts classes from ``pred.shape[-1]`` sees ``high``.

    The surrogates are size-agnostic: :meth:`check` accepts any ``C >= 2`` (``num_classes`` says only which sizes a
    surrogate was learned on); a network tied to one ``C`` (LS-ED's class embedding) raises its own error, naming
    what would serve another ``C``.
    """

    baseline_name = "cross-entropy"
    #: The letter the error messages use for the number of classes.
    class_letter: ClassVar[str] = "C"
    #: How a range of ``num_classes`` is drawn: ``"log"`` (log-uniform, for ranges over decades) or ``"uniform"``.
    class_draw: ClassVar[str] = "log"

    def __init__(self, num_classes: int | tuple[int, int] | list[int]) -> None:
        #: The smallest and the largest number of classes G_R draws (equal for one integer).
        self.min_classes, self.num_classes = check_size_range(num_classes, "num_classes", 2)

    @property
    def default_steps(self) -> int:  # type: ignore[override]
        """:data:`DEFAULT_STEPS` up to ``C = 50``, then fewer, so a step's default batches times the steps stay
        within :data:`LEARN_LOGITS` logits: 1000 steps at ``C = 100``, 100 at ``C = 1000`` (the largest ``C`` of a
        range)."""
        return capped_steps(self.default_batches_per_step * self.default_batch_size * self.num_classes, LEARN_LOGITS)

    def config(self) -> dict[str, Any]:
        if self.min_classes == self.num_classes:
            return {"num_classes": self.num_classes}
        return {"num_classes": [self.min_classes, self.num_classes]}

    def check(self, pred: torch.Tensor, target: torch.Tensor, *, stacked: bool = False) -> None:
        check_class_batch(pred, target, None, stacked=stacked, letter=self.class_letter)

    def baseline(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(pred.flatten(0, -2), target.flatten().long(), reduction="none")
        return ce.view(target.shape).mean(dim=-1)

    def draw_classes(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """The number of classes of each of ``n`` G_R batches, ``(n,)`` int64, drawn from ``num_classes``'s range
        (:attr:`class_draw`); ``None`` for one integer (no draw, so a fixed size draws exactly what it always did)."""
        low, high = self.min_classes, self.num_classes
        if low == high:
            return None
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        if self.class_draw == "log":
            sizes = torch.exp(math.log(low) + u * (math.log(high + 1) - math.log(low))).floor()
        else:
            sizes = (low + u * (high + 1 - low)).floor()
        return sizes.long().clamp(low, high)

    @staticmethod
    def absent(classes: torch.Tensor | None, width: int) -> torch.Tensor | None:
        """``(n, 1, width)`` mask of the padded (absent) classes of batches with ``classes`` ``(n,)`` classes."""
        if classes is None:
            return None
        return (torch.arange(width) >= classes.view(-1, 1, 1))


TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


def get_task(task: str | Task, **kwargs: Any) -> Task:
    """Build a task family by name (``"classification"``, ...) with its shape keyword arguments."""
    if isinstance(task, Task):
        if kwargs:
            raise TypeError("`task` is already a Task object; pass shape arguments when building it")
        return task
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {', '.join(map(repr, sorted(TASKS)))}; got {task!r}")
    try:
        return TASKS[task](**kwargs)
    except TypeError as err:
        raise TypeError(f"task {task!r}: {err}") from None
