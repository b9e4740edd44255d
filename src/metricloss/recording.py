"""`OutputRecorder`: keep a bounded, subsampled record of a training run's ``(pred, target)`` batches.

A surrogate learned from a model's real outputs (``learn(..., outputs=...)``, G_M) ranks the batches a
trained model produces far better than one learned on random batches alone. The recorder collects those
outputs during an ordinary baseline run, without holding the run's memory hostage.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterator

import torch

from ._checks import check_tensor
from ._memory import format_bytes
from .learning.batches import HELDOUT_SHARE
from .learning.distributed import gather_batches
from .learning.shapes import INFERABLE, UPPER_BOUNDS, infer_shapes
from .tasks.base import TASKS, Task, get_task

__all__ = ["OutputRecorder"]

Keep = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
#: The fewest batches (of the batch size they were recorded at) ``learn(outputs=...)`` learns and validates from: the
#: recorder warns when its budget fills with fewer.
MIN_OUTPUT_BATCHES = 2 * HELDOUT_SHARE


class OutputRecorder:
    r"""Record ``(pred, target)`` batches during training, subsampled and within a byte budget.

    Every ``every``-th batch offered to :meth:`record` is a candidate (batches ``0, every, 2·every, …``). While
    the candidates fit in ``max_bytes`` they are all kept; after that the recorder keeps a uniform sample of
    all candidates seen so far (reservoir sampling, Vitter's Algorithm R over batches: the :math:`n`-th
    candidate replaces a random kept batch with probability :math:`k/n`, :math:`k` the number of batches
    that fitted), so early, middle and late training stay represented whatever the run's length. If a
    replacement is larger than the batch it replaces, random kept batches are dropped until the total fits:
    the budget holds at every moment.

    Stored tensors are detached, compact CPU copies (the model's graph and GPU memory are never held).
    ``keep(pred, target) -> (pred, target)`` transforms a batch before it is stored, e.g. to keep only what
    the surrogate reads or a lower precision; the budget counts what is stored.

    **Compact recording.** Given the ``task`` the outputs will be learned for, each batch is stored the way
    ``learn`` stores model outputs, :meth:`task.compact_outputs <metricloss.tasks.base.Task.compact_outputs>` (on
    the batch's own device, before the copy to the CPU): what the family's default surrogate net and built-in
    metrics read, exactly. For sequences over a vocabulary wider than 128 ids that is each sentence's ids renumbered
    over its targets and arg-max tokens, ``(B, T, V)`` -> ``(B, T, W)`` with ``W <= 2T + 1``
    (:meth:`~metricloss.tasks.sequence.SequenceTask.compact`): a batch of (16, 64, 32000) float32 logits takes at
    most 0.5 MiB instead of 125 MiB, so the default budget holds about 500 of them instead of 2; BLEU, edit
    distance, token F1, ROUGE-L and the default net give the same values (not chrF or cross-entropy: they read more
    than which tokens match). Other families store their batches unchanged. ``learn(..., outputs=recorder)`` then
    reads the vocabulary size and the longest length from what was recorded (:meth:`shape_keywords`).

    Iterating yields the kept batches in the order they were recorded, which is what
    ``metricloss.learn(..., outputs=recorder)`` expects.

    Args:
        max_bytes: the budget for the stored tensors, in bytes (default 256 MiB).
        every: record every ``every``-th batch offered (1: all of them).
        keep: optional transform applied to each recorded batch before storing it.
        seed: seed of the reservoir's random choices (recording is deterministic given the batches).
        task: the task family the outputs are for: a name (``"sequence"``; the task is built from the first
            recorded batch's shapes) or a :class:`~metricloss.tasks.base.Task`; ``None`` (default) stores batches as
            given. Applied before ``keep``.

    Example:
        >>> import torch
        >>> from metricloss import OutputRecorder
        >>> recorder = OutputRecorder(max_bytes=4 * 2**20, every=2)
        >>> for step in range(10):
        ...     logits = torch.randn(16, 10, requires_grad=True)      # the model's outputs in a training step
        ...     recorder.record(logits, torch.randint(0, 10, (16,)))
        >>> len(recorder), recorder.seen
        (5, 10)
        >>> seq = OutputRecorder(task="sequence")                # token logits over a wide vocabulary
        >>> logits = torch.randn(4, 12, 5000)
        >>> seq.record(logits, logits.argmax(-1))
        >>> next(iter(seq))[0].shape[-1] <= 2 * 12 + 1, seq.shape_keywords("sequence")
        (True, {'vocab_size': 5000, 'max_length': 12})
    """

    def __init__(self, max_bytes: int = 256 * 2**20, *, every: int = 1, keep: Keep | None = None,
                 seed: int = 0, task: str | Task | None = None) -> None:
        for name, value in (("max_bytes", max_bytes), ("every", every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if keep is not None and not callable(keep):
            raise TypeError(f"`keep` must be a callable `keep(pred, target) -> (pred, target)`, "
                            f"got {type(keep).__name__}")
        if task is not None and not isinstance(task, str | Task):
            raise TypeError(f"`task` must be None, a task name such as 'sequence' or a Task, got {type(task).__name__}")
        if isinstance(task, str) and task not in TASKS:
            raise ValueError(f"`task` must be one of {', '.join(map(repr, sorted(TASKS)))} or a Task; got {task!r}")
        self.max_bytes = max_bytes
        self.every = every
        self.keep = keep
        #: The task batches are compacted for (a name until the first batch builds it), or None.
        self.task: str | Task | None = task
        self._shapes: dict[str, object] = {}  # shape keywords of the batches as offered (before compacting)
        self.seen = 0          # batches offered to record()
        self.candidates = 0    # of those, every-th ones (the reservoir's population)
        self.capacity: int | None = None  # batches held when the budget first filled
        self._items: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self._bytes = 0
        self._rng = random.Random(seed)

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored tensors (never more than ``max_bytes``)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _, pred, target in sorted(self._items, key=lambda item: item[0]):
            yield pred, target

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.record(pred, target)

    def shape_keywords(self, task: str) -> dict[str, object]:
        """The shape keywords of the batches as they were offered, before compacting (``vocab_size`` the widest,
        ``max_length`` the longest, ...), when the recorder compacts for the family ``task``; else ``{}`` (the batches
        as stored tell them). ``learn(..., outputs=recorder)`` starts from them."""
        name = self.task if isinstance(self.task, str) else getattr(self.task, "name", None)
        return dict(self._shapes) if name == task else {}

    def budget_note(self) -> str:
        """What the recorder kept of what it was offered, against its budget, and how to keep more: the sentence
        ``learn`` adds to its error when the recorded outputs are too few."""
        size = f" of {format_bytes(self._bytes / len(self))} each" if len(self) else ""
        return (f"the OutputRecorder kept {len(self)} of the {self.candidates} batches it was offered{size} within "
                f"its budget max_bytes={self.max_bytes} ({format_bytes(self.max_bytes)}): {self._more()}")

    def _more(self) -> str:
        if self.task is None:
            return ("record them compactly with OutputRecorder(task=...) (e.g. task='sequence': only what the "
                    "surrogate and the metric read), raise `max_bytes`, or record more batches")
        return "raise `max_bytes` or record more batches (`every=1` offers all of them)"

    def clear(self) -> None:
        """Forget every batch and counter (the random state continues)."""
        self._items.clear()
        self._shapes.clear()
        self._bytes = 0
        self.seen = self.candidates = 0
        self.capacity = None

    def record(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Offer one batch; it is stored (a detached CPU copy) if the subsampling picks it."""
        index = self.seen
        self.seen += 1
        if index % self.every:
            return
        self.candidates += 1
        item = self._copy(pred, target)
        size = _nbytes(item)
        if size > self.max_bytes:
            compact = "" if self.task is not None else "record compactly with `task=` (e.g. task='sequence'), "
            raise ValueError(f"one recorded batch takes {size} bytes, more than `max_bytes`={self.max_bytes}; "
                             f"{compact}raise max_bytes or store less with `keep=` (e.g. a lower precision)")
        if self.capacity is None and self._bytes + size <= self.max_bytes:
            self._store(index, item, size)
            return
        if self.capacity is None:
            self.capacity = max(len(self._items), 1)
            if self.capacity < MIN_OUTPUT_BATCHES:
                warnings.warn(f"OutputRecorder: max_bytes={self.max_bytes} ({format_bytes(self.max_bytes)}) is full "
                              f"after {self.capacity} batches of {format_bytes(size)}; `learn(outputs=...)` needs at "
                              f"least {MIN_OUTPUT_BATCHES} batches of its batch_size: {self._more()}",
                              UserWarning, stacklevel=2)
        # Algorithm R: the n-th candidate enters with probability capacity / n, replacing a random kept batch.
        slot = self._rng.randrange(self.candidates)
        if slot >= self.capacity:
            return
        if self._items:
            self._evict(self._rng.randrange(len(self._items)))
        while self._items and self._bytes + size > self.max_bytes:
            self._evict(self._rng.randrange(len(self._items)))
        self._store(index, item, size)

    def _compact(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch as the task stores it, and the shape keywords of the batch as offered merged in."""
        if self.task is None:
            return pred, target
        name = self.task if isinstance(self.task, str) else self.task.name
        shapes = infer_shapes(name, [(pred, target)], {}, name="recorded batch") if name in INFERABLE else {}
        if isinstance(self.task, str):
            self.task = get_task(self.task, **shapes)
        self.task.check(pred, target)
        for key, value in shapes.items():
            old = self._shapes.get(key)
            self._shapes[key] = max(old, value) if key in UPPER_BOUNDS and old is not None else value
        with torch.no_grad():
            return self.task.compact_outputs(pred, target)

    def _copy(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pred, target = check_tensor(pred, "pred").detach(), check_tensor(target, "target").detach()
        pred, target = self._compact(pred, target)
        if self.keep is not None:
            kept = self.keep(pred, target)
            if not (isinstance(kept, tuple | list) and len(kept) == 2
                    and all(isinstance(x, torch.Tensor) for x in kept)):
                raise TypeError("`keep(pred, target)` must return a (pred, target) pair of tensors")
            pred, target = kept[0].detach(), kept[1].detach()
        return tuple(x.to("cpu", copy=True, memory_format=torch.contiguous_format) for x in (pred, target))

    def _store(self, index: int, item: tuple[torch.Tensor, torch.Tensor], size: int) -> None:
        self._items.append((index, *item))
        self._bytes += size

    def _evict(self, position: int) -> None:
        _, pred, target = self._items.pop(position)
        self._bytes -= _nbytes((pred, target))

    def gather(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every rank's kept batches, on every rank, under an initialised ``torch.distributed`` process group (DDP
        gives each rank its own shard of the data, so each rank's recorder holds its own shard of the run's outputs).

        A collective: call it on every rank. The order is deterministic: rank 0's batches in the order they were
        recorded, then rank 1's, and so on; every rank gets the same list (CPU tensors), ready for
        ``metricloss.learn(..., outputs=...)``. Without a process group: this recorder's batches, as iteration gives
        them. The recorder itself is unchanged (its budget bounds this rank's shard; the union holds every rank's).

        Example:
            >>> import torch
            >>> from metricloss import OutputRecorder
            >>> recorder = OutputRecorder()
            >>> recorder.record(torch.randn(8, 3), torch.randint(0, 3, (8,)))
            >>> len(recorder.gather())   # with no process group: this rank's own batches
            1
        """
        return gather_batches(list(self))

    def __repr__(self) -> str:
        return (f"OutputRecorder(batches={len(self)}, seen={self.seen}, nbytes={self.nbytes}, "
                f"max_bytes={self.max_bytes}, every={self.every})")


def _nbytes(item: tuple[torch.Tensor, torch.Tensor]) -> int:
    return sum(x.numel() * x.element_size() for x in item)
