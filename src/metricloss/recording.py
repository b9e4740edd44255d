"""`OutputRecorder`: keep a bounded, subsampled record of a training run's ``(pred, target)`` batches.

A surrogate learned from a model's real outputs (``learn(..., outputs=...)``, G_M) ranks the batches a
trained model produces far better than one learned on random batches alone. The recorder collects those
outputs during an ordinary baseline run, without holding the run's memory hostage.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import torch

from ._checks import check_tensor
from .learning.distributed import gather_batches

__all__ = ["OutputRecorder"]

Keep = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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

    Iterating yields the kept batches in the order they were recorded, which is what
    ``metricloss.learn(..., outputs=recorder)`` expects.

    Args:
        max_bytes: the budget for the stored tensors, in bytes (default 256 MiB).
        every: record every ``every``-th batch offered (1: all of them).
        keep: optional transform applied to each recorded batch before storing it.
        seed: seed of the reservoir's random choices (recording is deterministic given the batches).

    Example:
        >>> import torch
        >>> from metricloss import OutputRecorder
        >>> recorder = OutputRecorder(max_bytes=4 * 2**20, every=2)
        >>> for step in range(10):
        ...     logits = torch.randn(16, 10, requires_grad=True)      # the model's outputs in a training step
        ...     recorder.record(logits, torch.randint(0, 10, (16,)))
        >>> len(recorder), recorder.seen
        (5, 10)
    """

    def __init__(self, max_bytes: int = 256 * 2**20, *, every: int = 1, keep: Keep | None = None,
                 seed: int = 0) -> None:
        for name, value in (("max_bytes", max_bytes), ("every", every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if keep is not None and not callable(keep):
            raise TypeError(f"`keep` must be a callable `keep(pred, target) -> (pred, target)`, "
                            f"got {type(keep).__name__}")
        self.max_bytes = max_bytes
        self.every = every
        self.keep = keep
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

    def clear(self) -> None:
        """Forget every batch and counter (the random state continues)."""
        self._items.clear()
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
            raise ValueError(f"one recorded batch takes {size} bytes, more than `max_bytes`={self.max_bytes}; "
                             f"raise max_bytes or store less with `keep=` (e.g. a lower precision)")
        if self.capacity is None and self._bytes + size <= self.max_bytes:
            self._store(index, item, size)
            return
        if self.capacity is None:
            self.capacity = max(len(self._items), 1)
        # Algorithm R: the n-th candidate enters with probability capacity / n, replacing a random kept batch.
        slot = self._rng.randrange(self.candidates)
        if slot >= self.capacity:
            return
        if self._items:
            self._evict(self._rng.randrange(len(self._items)))
        while self._items and self._bytes + size > self.max_bytes:
            self._evict(self._rng.randrange(len(self._items)))
        self._store(index, item, size)

    def _copy(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pred, target = check_tensor(pred, "pred").detach(), check_tensor(target, "target").detach()
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
