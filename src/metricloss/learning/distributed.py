r"""Splitting learning's work across ``torch.distributed`` ranks and across worker processes.

Under an initialised process group (``torchrun``), :func:`metricloss.learn` runs the same program on every rank:

- every rank draws the same G_R pool, G_M split and step batches (the same seeded generator), so nothing but
  metric values and losses ever crosses the wire;
- metric values are computed once per batch, each rank evaluating a contiguous share of every stack
  (:class:`SharedMetric`), and gathered once with ``all_gather`` so every rank holds all of them;
- each step's N batches are split the same way: each rank computes the surrogate losses of its share,
  :func:`gather_losses` (a differentiable all-gather) assembles all N so the rank correlation is over all of them,
  and :func:`sum_gradients` all-reduces the net's gradients (their sum is the gradient of the one objective).

The measurements after learning split alike: the report's gradient probes evaluate the metric through
:attr:`SharedMetric.batch_metric` (a :class:`~metricloss.metrics.base.BatchMetric` whose stacks are shared across the
ranks), so no metric value is computed on two ranks. Validation is computed on every rank but decided once
(:func:`from_main`: rank 0's score is the one every rank's early stopping sees), so no rank can stop alone.

``outputs=`` may differ across the ranks (each rank recorded its own shard of a run): :func:`agree_outputs` compares
a digest of each rank's outputs and, when they differ, gives every rank the union (:func:`gather_batches`, rank by
rank), so every rank learns from the same G_M.

In one process, ``metric_workers > 1`` evaluates a stack's batches in a pool of spawned worker processes
(:class:`SharedMetric` again, with ``workers``); the values are the serial ones, in order.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import hashlib
import math
import multiprocessing
import pickle
import time
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ..metrics.base import BatchMetric, MetricError
from .batches import StepBatches, TimedMetric

__all__ = ["GATHER_BYTES", "SharedMetric", "agree_outputs", "barrier", "from_main", "gather_batches", "gather_losses",
           "group_initialized", "is_main", "joins_group", "outputs_digest", "rank_share", "share_of", "sum_gradients",
           "sum_scalar", "world"]


#: A stack is cut into this many pieces per metric worker.
PIECES_PER_WORKER = 8
#: :func:`gather_batches` sends a rank's batches in broadcasts of about this many bytes (a larger single tensor goes
#: alone), so gathering holds at most one such piece beyond the batches themselves.
GATHER_BYTES = 64 * 2**20

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def group_initialized() -> bool:
    """Whether a ``torch.distributed`` process group is initialised in this process."""
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if not group_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    """Whether this process is rank 0 (or runs alone)."""
    return world()[0] == 0


def joins_group(distributed: bool | None) -> bool:
    """Whether ``learn(distributed=...)`` runs across the ranks of this process's group: ``None`` or ``True`` with an
    initialised group of more than one rank (the argument itself is checked by
    :class:`~metricloss.learning.settings.LearnSettings`)."""
    return (distributed is None or distributed is True) and group_initialized() and world()[1] > 1


def barrier() -> None:
    """Wait for every rank (nothing without a process group)."""
    if group_initialized():
        dist.barrier()


def _comm_device() -> torch.device:
    """Where collectives' tensors must live: the current GPU for an NCCL group, else the CPU (learning itself
    runs on CPU tensors; they are moved for the collective and back)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def rank_share(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous ``[start, stop)`` share of ``n`` items that ``rank`` handles (sizes differ by at most one)."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def share_of(batch: StepBatches, start: int, stop: int) -> StepBatches:
    """The batches ``[start, stop)`` of one step."""
    return StepBatches(batch.pred[start:stop], batch.target[start:stop], batch.values[start:stop],
                       batch.from_random[start:stop], batch.index[start:stop])


def _gather_padded(local: torch.Tensor, n: int) -> list[torch.Tensor]:
    """``all_gather`` of each rank's share of ``n`` items (1-D, padded to the largest share), unpadded."""
    size = world()[1]
    width = -(-n // size)
    device = _comm_device()
    padded = torch.zeros(width, dtype=local.dtype, device=device)
    padded[: local.shape[0]] = local.to(device)
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    shares = [rank_share(n, r, size) for r in range(size)]
    return [part[: b - a].to(local.device) for part, (a, b) in zip(parts, shares, strict=True)]


class _GatherLosses(torch.autograd.Function):
    """All-gather of each rank's losses; backward keeps the gradient of this rank's own share.

    Every rank computes the same objective from the gathered losses, so the gradient with respect to this rank's
    losses is already the full one here: no communication is needed backward (the nets' gradients are summed
    afterwards by :func:`sum_gradients`)."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, n: int) -> torch.Tensor:
        rank, size = world()
        ctx.share = rank_share(n, rank, size)
        return torch.cat(_gather_padded(local.detach(), n))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        start, stop = ctx.share
        return grad[start:stop], None


def gather_losses(local: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` losses of a step, in order, from each rank's share ``local`` (differentiable in ``local``)."""
    return _GatherLosses.apply(local, n)


def sum_gradients(model: nn.Module) -> None:
    """Replace each parameter's gradient by its sum over the ranks (one all-reduce; a missing one counts as 0)."""
    params = [p for p in model.parameters() if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    flat = flat.to(_comm_device())
    dist.all_reduce(flat)
    flat = flat.to(params[0].device)
    offset = 0
    for p in params:
        p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()


def sum_scalar(value: torch.Tensor) -> torch.Tensor:
    """A scalar summed over the ranks (detached)."""
    out = value.detach().reshape(1).to(_comm_device(), copy=True)
    dist.all_reduce(out)
    return out[0].to(value.device)


def from_main(value: float) -> float:
    """Rank 0's ``value`` on every rank (one broadcast): a decision taken once for the whole group."""
    out = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    dist.broadcast(out, src=0)
    return float(out[0])


def _any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank (one all-reduce)."""
    out = torch.tensor([int(flag)], dtype=torch.int32, device=_comm_device())
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return bool(out[0])


def outputs_digest(outputs: Sequence | None) -> tuple[str | None, str | None]:
    """``(digest, problem)`` of a rank's ``outputs=``: a SHA-256 of every batch's shapes, dtypes and bytes in order
    (``None`` for no outputs), or, when an item is not a ``(pred, target)`` pair of tensors, ``(None, what is
    wrong)``."""
    if outputs is None:
        return None, None
    h = hashlib.sha256()
    for i, item in enumerate(outputs):
        if not (isinstance(item, tuple | list) and len(item) == 2 and all(isinstance(x, torch.Tensor) for x in item)):
            return None, f"`outputs` must yield (pred, target) pairs of tensors; item {i} is {type(item).__name__}"
        for x in item:
            h.update(f"{tuple(x.shape)}|{x.dtype};".encode())
            h.update(_as_bytes(x).numpy())
    return h.hexdigest(), None


def agree_outputs(outputs: Batches | None) -> Batches | None:
    """The ``outputs=`` every rank learns from (call on every rank). When every rank holds the same batches (their
    :func:`outputs_digest` agree) they are returned as they are; when they differ (each rank recorded its own shard)
    every rank gets the union: the batches of each distinct rank's outputs, rank 0's first (a rank whose outputs
    equal an earlier rank's, or are ``None``, adds nothing). Each rank then holds the union, as if it had been given
    it. An item that is not a ``(pred, target)`` pair on any rank raises ``TypeError`` on every rank."""
    gathered: list = [None] * world()[1]
    dist.all_gather_object(gathered, outputs_digest(outputs))
    for rank, (_, problem) in enumerate(gathered):
        if problem is not None:
            raise TypeError(f"{problem} (on rank {rank})")
    digests = [digest for digest, _ in gathered]
    if len(set(digests)) == 1:
        return outputs
    sources = [r for r, d in enumerate(digests) if d is not None and d not in digests[:r]]
    return gather_batches(outputs or [], sources)


def gather_batches(batches: Batches, sources: Sequence[int] | None = None) -> Batches:
    """Every rank's ``(pred, target)`` batches on every rank (call on every rank): those of ``sources`` (default:
    every rank), in rank order, each rank's in its own order. Tensors may differ in shape and dtype from batch to
    batch; they travel as bytes, in broadcasts of about :data:`GATHER_BYTES`, and come back as CPU tensors. Without
    a process group: ``batches`` as a list."""
    if not group_initialized():
        return list(batches)
    rank, size = world()
    layouts: list = [None] * size
    dist.all_gather_object(layouts, [tuple((tuple(x.shape), x.dtype) for x in pair) for pair in batches])
    out: Batches = []
    for src in (range(size) if sources is None else sources):
        specs = [spec for pair in layouts[src] for spec in pair]
        if src == rank:
            _broadcast_tensors([x for pair in batches for x in pair], specs, src)
            out += [(p.detach().cpu(), t.detach().cpu()) for p, t in batches]
        else:
            tensors = _broadcast_tensors(None, specs, src)
            out += list(zip(tensors[::2], tensors[1::2], strict=True))
    return out


def _as_bytes(x: torch.Tensor) -> torch.Tensor:
    """A CPU tensor's bytes, flat (``uint8``)."""
    return x.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def _pieces(sizes: list[int]) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of consecutive tensors of about :data:`GATHER_BYTES` (at least one tensor each)."""
    runs, start, total = [], 0, 0
    for i, n in enumerate(sizes):
        if i > start and total + n > GATHER_BYTES:
            runs.append((start, i))
            start, total = i, 0
        total += n
    if start < len(sizes):
        runs.append((start, len(sizes)))
    return runs


def _broadcast_tensors(send: list[torch.Tensor] | None, specs: list[tuple[tuple[int, ...], torch.dtype]],
                       src: int) -> list[torch.Tensor]:
    """Rank ``src`` broadcasts its tensors ``send`` as bytes; every other rank (``send=None``) receives them as CPU
    tensors of ``specs`` (their shapes and dtypes, known to every rank) and returns them."""
    sizes = [math.prod(shape) * dtype.itemsize for shape, dtype in specs]
    device, received = _comm_device(), []
    for a, b in _pieces(sizes):
        if send is not None:
            buf = torch.cat([_as_bytes(x) for x in send[a:b]]).to(device)
        else:
            buf = torch.empty(sum(sizes[a:b]), dtype=torch.uint8, device=device)
        if buf.numel():
            dist.broadcast(buf, src=src)
        if send is None:
            flat = buf.cpu()
            received += [part.clone().view(dtype).reshape(shape)
                         for part, (shape, dtype) in zip(flat.split(sizes[a:b]), specs[a:b], strict=True)]
    return received


def _evaluate(metric: BatchMetric, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return metric.evaluate(pred, target)


class SharedMetric(TimedMetric):
    """A :class:`~metricloss.learning.batches.TimedMetric` whose stacks are split across the ranks of the process
    group (``distributed=True``) and, within a rank, across ``workers`` spawned processes; every caller gets
    every value, in order. ``seconds`` counts this rank's own evaluation time (not the waits for others).

    :attr:`batch_metric` is the metric for measurements that build stacks of their own (the report's gradient probes,
    the correlated-gradients term): a :class:`~metricloss.metrics.base.BatchMetric` whose stack evaluations are split
    across the ranks the same way (in the main process, untimed: those measurements time themselves). A metric that
    raises on one rank's share raises on every rank (the others with a :class:`~metricloss.metrics.base.MetricError`
    saying so), so no rank is left waiting in a collective."""

    def __init__(self, metric: BatchMetric, *, distributed: bool = False, workers: int = 1) -> None:
        super().__init__(metric)
        self.distributed, self.workers = distributed, workers
        self._pool: futures.ProcessPoolExecutor | None = None
        self._shared = dataclasses.replace(metric, stacked=self._shared_values) if distributed else metric
        if workers > 1:
            try:
                pickle.dumps(metric)
            except Exception as err:
                raise TypeError(
                    f"`metric_workers={workers}` evaluates the metric in worker processes, so the metric must be "
                    f"picklable, and {metric.name!r} is not ({type(err).__name__}: {err}); define it as a module-level "
                    "function or class (not a lambda or a closure), or pass metric_workers=1") from err

    @property
    def batch_metric(self) -> BatchMetric:
        """The metric whose stack evaluations are split across the ranks (the metric itself in one process)."""
        return self._shared

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return self._local(pred, target)
        return self._split(self._local, pred, target)

    def _shared_values(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The metric's (unoriented) values of a stack, each rank evaluating its share."""
        return self._split(self.metric.evaluate, pred, target)

    def _split(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], pred: torch.Tensor,
               target: torch.Tensor) -> torch.Tensor:
        """``fn`` of a stack, each rank evaluating its contiguous share; all values on every rank (float64)."""
        rank, size = world()
        start, stop = rank_share(pred.shape[0], rank, size)
        local, error = torch.zeros(0, dtype=torch.float64), None
        if stop > start:
            try:
                local = fn(pred[start:stop], target[start:stop]).to(torch.float64)
            except Exception as err:  # re-raised below, once every rank knows
                error = err
        if _any_rank(error is not None):
            if error is not None:
                raise error
            raise MetricError(f"metric {self.metric.name!r} raised on another rank (its error says why)")
        return torch.cat(_gather_padded(local, pred.shape[0]))

    def _local(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.workers <= 1 or pred.shape[0] < 2:
            return super().__call__(pred, target)
        t0 = time.perf_counter()
        if self._pool is None:
            self._pool = futures.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        # Several pieces per worker, in order: sending a piece overlaps with evaluating the one before.
        n = pred.shape[0]
        pieces = min(n, self.workers * PIECES_PER_WORKER)
        shares = [rank_share(n, w, pieces) for w in range(pieces)]
        jobs = [self._pool.submit(_evaluate, self.metric, pred[a:b], target[a:b]) for a, b in shares]
        values = torch.cat([job.result() for job in jobs])
        self.seconds += time.perf_counter() - t0
        return self.metric.oriented(values)

    def close(self) -> None:
        """Shut the worker pool down (a later call starts a new one)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
