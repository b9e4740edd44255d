"""Batch preparation for learning: the G_R pool, the G_M split and relabelling, the held-out batches, and each
step's draw.

Metric values are computed once per batch here: G_R batches are drawn up front into a pool and G_M batches are
fixed, so a slow Python metric costs its evaluations once, not once per step. Every size (pool, held-out share)
is decided in this module, so bounding memory is a change here only: the pool and the held-out batches are sized
in bytes (:meth:`~metricloss.tasks.base.Task.batch_nbytes`) against ``settings.memory_budget``
(:mod:`metricloss._memory`: the pool may take half of it, the held-out batches a quarter).

The stages see disjoint data: the held-out batches (model selection and the report) are never in the G_M
learning part nor relabelled into the G_R pool.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from .._checks import check_int
from .._memory import HELDOUT_SHARE as HELDOUT_BYTES_SHARE
from .._memory import POOL_SHARE, chunk_count, fit_count, format_bytes, parse_budget
from ..evaluation import FORWARD_COPIES, TooFewOutputsError, agreement, conform, stack_batches
from ..metrics.base import BatchMetric
from ..tasks.base import Task
from .regimes import trained_regime
from .settings import LearnSettings

__all__ = [
    "INVERTED_SPEARMAN", "POOL_ELEMENTS", "LearningBatches", "StepBatches",
    "TimedMetric", "check_direction", "heldout_count", "pool_size", "prepare_batches",
]

#: Pools are capped at this many scalar elements of predictions (about 128 MiB of float32).
POOL_ELEMENTS = 32 * 1024 * 1024
#: The share of G_M batches held out for validation (at most ``validation_batches``).
HELDOUT_SHARE = 4
#: The direction check warns when the baseline loss's Spearman against the oriented metric on the learning pool is
#: below this: the task's own loss then ranks batches opposite to the metric, which is what a lower-is-better
#: metric passed without ``higher_is_better=False`` looks like. (It was -0.5 until the classification G_R gained its
#: model regime, whose temperatures cross-entropy ranks less well: 0.54-0.63 against accuracy on 256 batches at C = 10,
#: 100 and 1000, 0.25-0.66 on 16, so an inverted error rate measured about -0.5.)
INVERTED_SPEARMAN = -0.3
#: Pool batches the direction check looks at (the first ones: relabelled model outputs when there are outputs,
#: else G_R batches, all drawn at random).
DIRECTION_BATCHES = 256


def pool_size(requested: int | None, per_batch: int, batches_per_step: int, *, batch_nbytes: int | None = None,
              memory_budget: int | None = None) -> int:
    """G_R pool size in batches: ``requested``, else as many as fit in :data:`POOL_ELEMENTS` (at most 4096, at
    least two steps' worth); and, with ``batch_nbytes`` and ``memory_budget``, never more than fit in the budget's
    pool share (:data:`metricloss._memory.POOL_SHARE`), even below two steps' worth (steps draw with replacement).
    A ``requested`` size is what the user or the task asked for and is capped by the budget alike."""
    n = int(requested) if requested is not None else max(2 * batches_per_step,
                                                          min(4096, POOL_ELEMENTS // max(per_batch, 1)))
    if batch_nbytes is None or memory_budget is None:
        return n
    fit = fit_count(batch_nbytes, memory_budget, POOL_SHARE)
    if fit < 2:
        raise ValueError(_too_small("pool", 2, batch_nbytes, memory_budget, POOL_SHARE))
    return min(n, fit)


def heldout_count(requested: int, batch_nbytes: int, memory_budget: int) -> int:
    """Held-out batches: ``requested``, at most as many as fit in the budget's held-out share (at least 2)."""
    fit = fit_count(batch_nbytes, memory_budget, HELDOUT_BYTES_SHARE)
    if fit < 2:
        raise ValueError(_too_small("held-out set", 2, batch_nbytes, memory_budget, HELDOUT_BYTES_SHARE))
    return min(int(requested), fit)


def _too_small(what: str, least: int, batch_nbytes: int, budget: int, share: float) -> str:
    return (f"`memory_budget` ({format_bytes(budget)}) is too small: the {what} needs at least {least} batches of "
            f"{format_bytes(batch_nbytes)} in its share ({share:.0%} of the budget); pass a larger `memory_budget` "
            f"(at least {format_bytes(least * batch_nbytes / share)}) or a smaller `batch_size`")


class TimedMetric:
    """A metric's values turned higher-is-better, with the time spent computing them (``seconds``)."""

    def __init__(self, metric: BatchMetric) -> None:
        self.metric = metric
        self.seconds = 0.0

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        values = self.metric.evaluate(pred, target)
        self.seconds += time.perf_counter() - t0
        return self.metric.oriented(values)

    @property
    def batch_metric(self) -> BatchMetric:
        """The metric for measurements that evaluate it on stacks of their own (the report's gradient probes, the
        correlated-gradients term), which time themselves: here ``metric``; shared across ranks by
        :class:`~metricloss.learning.distributed.SharedMetric`."""
        return self.metric


@dataclass
class StepBatches:
    """The batches of one learning step: ``pred`` / ``target`` stacks, their oriented metric ``values``, whether
    each came from the G_R pool (``from_random``) and its index in the pool or in the G_M learning part."""

    pred: torch.Tensor
    target: torch.Tensor
    values: torch.Tensor
    from_random: torch.Tensor
    index: torch.Tensor


@dataclass
class LearningBatches:
    """Everything learning draws from: the G_R pool, the G_M learning part and the held-out batches, each a
    ``(pred, target, oriented metric values)`` triple, and how steps mix them."""

    pool: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    model: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None
    heldout: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    p_random: float
    validation: str
    relabelled: int

    @property
    def offset(self) -> float:
        """The L1/L2 objectives' offset: the best metric value over the learning batches (pool and G_M)."""
        parts = [self.pool[2]] + ([self.model[2]] if self.model is not None else [])
        return float(torch.cat(parts).max())

    def draw(self, n: int, generator: torch.Generator) -> StepBatches:
        """``n`` batches, each from the pool with probability ``p_random`` and from G_M otherwise."""
        from_random = torch.rand(n, generator=generator) < self.p_random
        if self.model is None:
            from_random[:] = True
        n_r = int(from_random.sum())
        r_pred, r_target, r_values = self.pool
        ri = torch.randint(0, r_pred.shape[0], (n_r,), generator=generator)
        parts = [(r_pred[ri], r_target[ri], r_values[ri])]
        index = [ri]
        if n_r < n:
            m_pred, m_target, m_values = self.model
            mi = torch.randint(0, m_pred.shape[0], (n - n_r,), generator=generator)
            parts.append((m_pred[mi], m_target[mi], m_values[mi]))
            index.append(mi)
        pred, target, values = (torch.cat(x) for x in zip(*parts, strict=True))
        flags = torch.arange(n) < n_r  # the pool's batches come first
        return StepBatches(pred, target, values, flags, torch.cat(index))


def _split_outputs(outputs: Iterable, task: Task, settings: LearnSettings, gen: torch.Generator,
                   sample: tuple[int, ...]):
    """G_M's learning and held-out stacks, brought to one sample shape with G_R's batches (``sample``, the shape of
    one of them): model outputs longer or wider than G_R's (sequences: T up to max_length, compacted vocabularies)
    set the shape of both (:func:`~metricloss.evaluation.conform`). Returns both stacks, that shape and the outputs'
    own sample shape."""
    all_pred, all_target = stack_batches(outputs, settings.batch_size, task)
    own = tuple(all_pred.shape[2:])
    if all_pred.dim() == len(sample) + 2 and own != sample:
        sample = tuple(max(a, b) for a, b in zip(all_pred.shape[2:], sample, strict=True))
        all_pred, all_target = conform(task, all_pred, all_target, sample)
    perm = torch.randperm(all_pred.shape[0], generator=gen)
    wanted = heldout_count(settings.validation_batches, _stored_nbytes(all_pred, all_target), settings.memory_budget)
    n_val = min(wanted, max(1, all_pred.shape[0] // HELDOUT_SHARE))
    if all_pred.shape[0] - n_val < 1 or n_val < 2:
        raise TooFewOutputsError(
            f"`outputs` is too small: need at least {2 * HELDOUT_SHARE} batches of batch_size={settings.batch_size} "
            f"to learn and validate, got {all_pred.shape[0]}")
    heldout = all_pred[perm[:n_val]], all_target[perm[:n_val]]
    learning = all_pred[perm[n_val:]], all_target[perm[n_val:]]
    return learning, heldout, sample, own


def _unconformed(pred: torch.Tensor, target: torch.Tensor, own: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacks that :func:`~metricloss.evaluation.conform` padded and widened, cut back to their own sample shape
    ``own`` (padding is appended along the first sample dimension, widening after the last columns)."""
    if tuple(pred.shape[2:]) == own:
        return pred, target
    return pred.narrow(2, 0, own[0]).narrow(-1, 0, own[-1]), target.narrow(2, 0, own[0])


def _warn_step_size(settings: LearnSettings, batch_nbytes: int) -> None:
    """Warn when one step's batches alone (drawn from the pool, outside the budget's shares) exceed the budget."""
    step = settings.batches_per_step * batch_nbytes
    if step > settings.memory_budget:
        warnings.warn(
            f"one learning step draws batches_per_step={settings.batches_per_step} batches of "
            f"{format_bytes(batch_nbytes)} ({format_bytes(step)}, before the surrogate's activations), more than "
            f"`memory_budget` ({format_bytes(settings.memory_budget)}): expect peak memory above the budget; lower "
            "`batches_per_step` or `batch_size` to stay within it", UserWarning, stacklevel=4)


def _stored_nbytes(pred: torch.Tensor, target: torch.Tensor) -> int:
    """Bytes of one batch of a stack."""
    return int(pred[0].nbytes + target[0].nbytes)


def _check_varies(metric: BatchMetric, name: str, values: torch.Tensor) -> None:
    if float(values.max() - values.min()) == 0.0:
        raise ValueError(
            f"metric {metric.name!r} is constant over the {name} ({float(values[0])}): its rank correlation "
            "is undefined, so there is nothing to learn; check the metric and the task's shape arguments"
        )


def check_compaction(task: Task, metric: BatchMetric, outputs: list, batches: int = 2) -> None:
    """Warn when the first ``batches`` of ``outputs`` that the task stores compacted
    (:meth:`~metricloss.tasks.base.Task.compact_outputs`) give ``metric`` other values once compacted: a metric that
    reads more than the family's built-in ones (the token ids themselves, say) learns from renumbered batches."""
    checked = 0
    for item in outputs:
        if checked >= batches or not (isinstance(item, tuple | list) and len(item) == 2
                                      and all(isinstance(x, torch.Tensor) for x in item)):
            break
        pred, target = item[0].detach(), item[1].detach()
        try:
            task.check(pred, target)
        except (TypeError, ValueError):
            break  # stacking names the bad batch
        small, small_target = task.compact_outputs(pred, target)
        if small is pred and small_target is target:
            continue
        checked += 1
        full, compact = (metric.evaluate(p[None], t[None]).to(torch.float64) for p, t in
                         ((pred, target), (small, small_target)))
        if not torch.allclose(full, compact, rtol=1e-6, atol=1e-9):
            warnings.warn(
                f"metric {metric.name!r} gives {float(compact[0]):.6g} on an `outputs` batch as `learn` stores it "
                f"(task.compact_outputs: pred {tuple(pred.shape)} -> {tuple(small.shape)}) against "
                f"{float(full[0]):.6g} on the batch as given: it reads more than which tokens match (the ids "
                "themselves, as chrF or a tokenizer's decode does), so the surrogate learns from its values on the "
                "renumbered batches", UserWarning, stacklevel=4)
            return


def check_direction(task: Task, metric: BatchMetric, pred: torch.Tensor, target: torch.Tensor,
                    values: torch.Tensor, budget: int | None = None) -> float:
    """Warn when ``metric``'s direction looks inverted: the baseline loss's Spearman against the oriented metric
    ``values`` is below :data:`INVERTED_SPEARMAN` on (at most :data:`DIRECTION_BATCHES` of) the batches, the baseline
    run in chunks sized by ``budget`` (bytes; ``None``: the default). Returns that Spearman."""
    n = min(DIRECTION_BATCHES, pred.shape[0])
    chunk = chunk_count(pred[0].nbytes + target[0].nbytes, parse_budget(budget), n, FORWARD_COPIES)
    with torch.no_grad():
        losses = torch.cat([task.baseline(p, t) for p, t in zip(pred[:n].split(chunk), target[:n].split(chunk),
                                                                strict=True)])
    rho = agreement(losses, values[:n], True)["spearman"]
    if rho < INVERTED_SPEARMAN:
        direction = "higher" if metric.higher_is_better else "lower"
        warnings.warn(
            f"metric {metric.name!r} is treated as {direction}-is-better, but the task's baseline loss "
            f"({task.baseline_name}) ranks the learning batches opposite to it (Spearman {rho:+.2f}); if "
            f"{'lower' if metric.higher_is_better else 'higher'} values are better (an error rate, a distance), pass "
            f"`higher_is_better={not metric.higher_is_better}`", UserWarning, stacklevel=4)  # at the call of learn()
    return rho


def prepare_batches(
    task: Task,
    metric: TimedMetric,
    settings: LearnSettings,
    outputs: Iterable[tuple[torch.Tensor, torch.Tensor]] | None,
    generator: torch.Generator,
) -> LearningBatches:
    """Draw the G_R pool (with model outputs, half of it is the trained-model regime made from the G_M learning batches:
    :func:`~metricloss.learning.regimes.trained_regime`), split G_M into learning and
    held-out batches (without, the held-out batches are fresh G_R batches), and compute every metric value once."""
    learning = heldout = None
    probe = task.random_batches(1, 1, torch.Generator())[0]
    sample = drawn = tuple(probe.shape[2:])
    if outputs is not None:
        outputs = list(outputs)
        check_compaction(task, metric.metric, outputs)
        learning, heldout, sample, own = _split_outputs(outputs, task, settings, generator, sample)
        p_random = 0.5 if settings.p_random is None else settings.p_random
        validation = "held-out model outputs"
    else:
        p_random, validation = 1.0, "random batches (G_R)"
    # The pool's batches are brought to the model outputs' shape where that is larger: sized at it.
    nbytes = math.ceil(task.batch_nbytes(settings.batch_size) * math.prod(sample) / math.prod(drawn))
    per_batch = settings.batch_size * math.prod(sample)
    requested = settings.pool_size if settings.pool_size is not None else task.default_pool_size
    n_pool = check_int(pool_size(requested, per_batch, settings.batches_per_step, batch_nbytes=nbytes,
                                 memory_budget=settings.memory_budget), "pool_size", 2)
    r_pred, r_target = task.random_batches(n_pool, settings.batch_size, generator)
    if tuple(r_pred.shape[2:]) != sample:
        r_pred, r_target = conform(task, r_pred, r_target, sample)
    relabelled = 0
    if learning is not None:
        relabelled = n_pool // 2
        src = torch.randint(0, learning[0].shape[0], (relabelled,), generator=generator)
        # Perturbed at their own shape (the widened columns would skew a perturbation's scale), then conformed.
        regime = trained_regime(task, *_unconformed(learning[0][src], learning[1][src], own), generator)
        r_pred[:relabelled], r_target[:relabelled] = conform(task, *regime, sample)
    if heldout is None:
        n_val = heldout_count(settings.validation_batches, nbytes, settings.memory_budget)
        heldout = task.random_batches(n_val, settings.batch_size, generator)

    _warn_step_size(settings, nbytes)
    r_values = metric(r_pred, r_target)
    model = (*learning, metric(*learning)) if learning is not None else None
    v_values = metric(*heldout)
    _check_varies(metric.metric, "random batches", r_values)
    _check_varies(metric.metric, "validation batches", v_values)
    check_direction(task, metric.metric, r_pred, r_target, r_values, settings.memory_budget)
    return LearningBatches((r_pred, r_target, r_values), model, (*heldout, v_values), p_random, validation,
                           relabelled)
