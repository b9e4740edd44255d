r"""Splitting learning's work across ``torch.distributed`` ranks and across worker processes.

Under an initialised process group (``torchrun``), :func:`metricloss.learn` runs the same program on every rank:

- every rank draws the same G_R pool, G_M split and step batches (the same seeded generator), so nothing but
  metric values and losses ever crosses the wire;
- metric values are computed once per batch, each rank evaluating a contiguous share of every stack
  (:class:`SharedMetric`), and gathered once with ``all_gather`` so every rank holds all of them;
- each step's N batches are split the same way: each rank computes the surrogate losses of its share,
  :func:`gather_losses` (a differentiable all-gather) assembles all N so the rank correlation is over all of them,
  and :func:`sum_gradients` all-reduces the net's gradients (their sum is the gradient of the one objective).

In one process, ``metric_workers > 1`` evaluates a stack's batches in a pool of spawned worker processes
(:class:`SharedMetric` again, with ``workers``); the values are the serial ones, in order.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import pickle
import time

import torch
import torch.distributed as dist
from torch import nn

from ..metrics.base import BatchMetric
from .batches import StepBatches, TimedMetric

__all__ = ["SharedMetric", "barrier", "gather_losses", "group_initialized", "is_main", "rank_share", "share_of",
           "sum_gradients", "sum_scalar", "world"]


#: A stack is cut into this many pieces per metric worker.
PIECES_PER_WORKER = 8


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


def _evaluate(metric: BatchMetric, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return metric.evaluate(pred, target)


class SharedMetric(TimedMetric):
    """A :class:`~metricloss.learning.batches.TimedMetric` whose stacks are split across the ranks of the process
    group (``distributed=True``) and, within a rank, across ``workers`` spawned processes; every caller gets
    every value, in order. ``seconds`` counts this rank's own evaluation time (not the waits for others)."""

    def __init__(self, metric: BatchMetric, *, distributed: bool = False, workers: int = 1) -> None:
        super().__init__(metric)
        self.distributed, self.workers = distributed, workers
        self._pool: futures.ProcessPoolExecutor | None = None
        if workers > 1:
            try:
                pickle.dumps(metric)
            except Exception as err:
                raise TypeError(
                    f"`metric_workers={workers}` evaluates the metric in worker processes, so the metric must be "
                    f"picklable, and {metric.name!r} is not ({type(err).__name__}: {err}); define it as a module-level "
                    "function or class (not a lambda or a closure), or pass metric_workers=1") from err

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return self._local(pred, target)
        rank, size = world()
        start, stop = rank_share(pred.shape[0], rank, size)
        local = (self._local(pred[start:stop], target[start:stop]).to(torch.float64) if stop > start
                 else torch.zeros(0, dtype=torch.float64))
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
