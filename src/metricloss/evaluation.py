"""Measuring a loss against a metric.

- :func:`agreement`: the ReLoss paper's measure, rank correlation between losses and metric over batches.
- :func:`gradient_agreement`: whether the loss's *gradient* points where the metric improves, probed along
  random directions (derived by us from Yoa et al. 2021, whose full text we could not read).
- :func:`measure`: both, for a loss and the task's baseline on the same held-out batches, as a
  :class:`~metricloss.report.Report`. Every builder (``learn``, UniLoss, the non-parametric surrogate) and
  ``metricloss evaluate`` measure through it.

Every measurement runs in chunks of batches sized by bytes against a memory budget (:mod:`metricloss._memory`), so
nothing it allocates at once exceeds the budget's chunk share, whatever the batch's size; the numbers do not depend
on the chunking.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from . import ranking
from ._memory import CHUNK_SHARE, PROBE_COPIES, PROBE_EXTRA, chunk_count, parse_budget
from .metrics.base import BatchMetric
from .report import Report
from .tasks.base import Task
from .verdict import (
    GRADIENT_BATCHES,
    RANDOM,
    REAL,
    TRIAL_RATIO,
    TRIAL_STEPS,
    TrialComparison,
    Verdict,
    compare_gradients,
    judge,
    prediction_gradients,
)

__all__ = [
    "TooFewOutputsError", "agreement", "conform", "descent_trial", "directional_correlation", "gradient_agreement",
    "measure", "metric_changes", "stack_batches",
]

StackedLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: Copies of a batch's predictions a loss or metric is assumed to hold while it runs on a stack (its softmax, its
#: features): the chunks :func:`measure` evaluates losses and metric values in are sized by it.
FORWARD_COPIES = 4


def agreement(losses: torch.Tensor, metric_values: torch.Tensor, higher_is_better: bool) -> dict[str, float]:
    """Spearman and Kendall between ``-losses`` and the metric turned higher-is-better (1 = same order)."""
    if losses.numel() < 2:
        raise ValueError("agreement needs at least 2 batches")
    m = metric_values.to(torch.float64)
    m = m if higher_is_better else -m
    neg = -losses.detach().to(torch.float64)
    return {"spearman": float(ranking.spearman(neg, m)), "kendall": float(ranking.kendall(neg, m))}


class TooFewOutputsError(ValueError):
    """``outputs=`` hold too few batches to learn from (a ``ValueError``; ``learn`` adds what a recorder kept)."""


def stack_batches(
    outputs: Iterable[tuple[torch.Tensor, torch.Tensor]], batch_size: int, task: Task, name: str = "outputs"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate ``(pred, target)`` batches in order and cut them into stacked batches of ``batch_size``.

    Each batch is first stored the way its task stores model outputs
    (:meth:`~metricloss.tasks.base.Task.compact_outputs`: unchanged except for sequences over a vocabulary wider than
    128 ids, which are renumbered), so that ``learn``, ``remeasure`` and the builders see the same stacks.
    Batches may differ in batch size. For a task with a target padding value (``pad_target``: the sequence task's
    -100), they may also differ in length ``T``: each is padded to the longest, its logits with zeros and its
    targets with the padding value, which every metric and surrogate of the task ignores; and a task that can widen
    its predictions (:meth:`~metricloss.tasks.base.Task.widen`: compacted sequence outputs) may mix widths, each
    widened to the widest (see :func:`conform`). The remainder that does not fill a batch is dropped (as the
    authors' code does with stored logits).
    """
    preds, targets = [], []
    for i, item in enumerate(outputs):
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise TypeError(f"`{name}` must yield (pred, target) pairs; item {i} is {type(item).__name__}")
        p, t = item
        try:
            task.check(p, t)
        except (TypeError, ValueError) as err:
            raise type(err)(f"`{name}` item {i}: {err}") from None
        compact = getattr(task, "compact_outputs", None)  # a Task's; a duck-typed task stores batches as given
        p, t = compact(p.detach(), t.detach()) if compact is not None else (p.detach(), t.detach())
        preds.append(p.cpu())
        targets.append(t.cpu())
    if not preds:
        raise ValueError(f"`{name}` is empty")
    preds, targets = _pad_lengths(preds, targets, task, name)
    pred, target = torch.cat(preds), torch.cat(targets)
    n = pred.shape[0] // batch_size
    if n < 2:
        raise TooFewOutputsError(
            f"`{name}` holds {pred.shape[0]} samples: fewer than 2 batches of batch_size={batch_size}"
        )
    pred = pred[: n * batch_size].reshape(n, batch_size, *pred.shape[1:])
    target = target[: n * batch_size].reshape(n, batch_size, *target.shape[1:])
    return pred, target


def conform(task: Task, pred: torch.Tensor, target: torch.Tensor,
            shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``pred`` (batches ``(B, *sample)`` or stacks ``(N, B, *sample)``) and ``target`` brought to the sample shape
    ``shape`` (of ``pred``, at least as large): the first sample dimension (a sequence's ``T``) padded at its end,
    logits with zeros and targets with the task's ``pad_target``; the last one (the classes) grown by
    :meth:`~metricloss.tasks.base.Task.widen`. Raises ``ValueError`` where the task allows neither."""
    sample = tuple(pred.shape[pred.dim() - len(shape):])
    if sample == tuple(shape):
        return pred, target
    pad_target = getattr(task, "pad_target", None)
    if len(sample) < 2 or sample[1:-1] != tuple(shape[1:-1]) or (sample[0] != shape[0] and pad_target is None):
        raise ValueError(f"pred of sample shape {sample} cannot be brought to {tuple(shape)}")
    if sample[0] != shape[0]:
        extra = shape[0] - sample[0]
        pred = torch.nn.functional.pad(pred, (0, 0) * (len(shape) - 1) + (0, extra))
        target = torch.nn.functional.pad(target, (0, 0) * (len(shape) - 2) + (0, extra), value=pad_target)
    if pred.shape[-1] != shape[-1]:
        if not hasattr(task, "widen"):
            raise ValueError(f"pred of width {pred.shape[-1]} cannot be widened to {shape[-1]}")
        pred = task.widen(pred, shape[-1])
    return pred, target


def _pad_lengths(preds: list[torch.Tensor], targets: list[torch.Tensor], task: Task,
                 name: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Batches ``(B_i, *sample_i)`` brought to the largest sample shape by :func:`conform`, else checked alike."""
    first = preds[0].shape[1:]
    if all(p.shape[1:] == first for p in preds):
        return preds, targets
    if all(p.dim() == preds[0].dim() for p in preds):
        shape = tuple(max(p.shape[1 + d] for p in preds) for d in range(len(first)))
        try:
            pairs = [conform(task, p, t, shape) for p, t in zip(preds, targets, strict=True)]
            return [p for p, _ in pairs], [t for _, t in pairs]
        except ValueError:
            pass
    i = next(i for i, p in enumerate(preds) if p.shape[1:] != first)
    raise ValueError(
        f"`{name}` item {i}: pred of shape {tuple(preds[i].shape)} does not match item 0's "
        f"{tuple(preds[0].shape)} beyond the batch dimension; every batch must share it")


def metric_changes(
    metric: BatchMetric,
    pred: torch.Tensor,
    target: torch.Tensor,
    directions: int,
    sigma: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Random directions and the metric's change along them (an evolution-strategies probe).

    For every batch :math:`y_i` of the stack ``pred`` ``(N, ...)`` draws ``directions`` Gaussian directions
    :math:`\delta_{ik}` and measures the antithetic change
    :math:`\Delta m_{ik} = M(y_i + \sigma s_i \delta_{ik}) - M(y_i - \sigma s_i \delta_{ik})` with
    :math:`s_i` the standard deviation of :math:`y_i`, turned so that a positive change is an improvement.

    Returns:
        ``(deltas, changes)`` of shapes ``(N, K, ...)`` and ``(N, K)``.
    """
    n, k = pred.shape[0], directions
    pred = pred.detach()
    deltas = torch.randn((n, k, *pred.shape[1:]), generator=generator, dtype=pred.dtype)
    scale = pred.flatten(1).std(dim=1).clamp_min(1e-6).view(n, 1, *[1] * (pred.dim() - 1))
    # The two antithetic points written into one buffer (the step first, then each point from it), so the probe
    # holds the directions and the points, not also the step and the points twice (see _memory.PROBE_COPIES).
    both = torch.empty((n, 2 * k, *pred.shape[1:]), dtype=pred.dtype)
    step, minus = both[:, :k], both[:, k:]
    torch.mul(sigma * scale, deltas, out=step)
    torch.sub(pred.unsqueeze(1), step, out=minus)
    step.add_(pred.unsqueeze(1))  # now the + points: the same sums as pred + step
    both = both.flatten(0, 1)
    tgt = target.unsqueeze(1).expand(n, 2 * k, *target.shape[1:]).flatten(0, 1)
    values = metric.oriented(metric.evaluate(both, tgt)).view(n, 2 * k)
    return deltas, (values[:, :k] - values[:, k:]).to(pred.dtype)


def directional_correlation(grads: torch.Tensor, deltas: torch.Tensor, changes: torch.Tensor) -> torch.Tensor:
    r"""Per batch, Pearson correlation over k between :math:`-\langle \nabla L_i, \delta_{ik}\rangle` and
    :math:`\Delta m_{ik}`; NaN for a batch whose metric did not move along any direction. Differentiable in
    ``grads``."""
    return _correlation(_derivatives(grads, deltas), changes)


def _derivatives(grads: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    r""":math:`-\langle \nabla L_i, \delta_{ik}\rangle`, ``(N, K)``."""
    return -(grads.unsqueeze(1) * deltas).flatten(2).sum(-1)


def _correlation(d: torch.Tensor, changes: torch.Tensor) -> torch.Tensor:
    """Per row, Pearson correlation of ``d`` and ``changes`` (``(N, K)`` each); NaN where ``changes`` is constant."""
    d = d - d.mean(dim=1, keepdim=True)
    # Rescale both sides before squaring: tiny gradients underflowed in float32 (correlations far above 1),
    # and sqrt at 0 gave NaN gradients when the metric never moved. Correlation is scale-free.
    tiny = torch.finfo(d.dtype).tiny
    d = d / d.detach().abs().amax(dim=1, keepdim=True).clamp_min(tiny)
    c = changes - changes.mean(dim=1, keepdim=True)
    c = c / c.abs().amax(dim=1, keepdim=True).clamp_min(tiny)
    den = (d.square().sum(1) * c.square().sum(1)).clamp_min(tiny).sqrt()
    corr = (d * c).sum(1) / den
    return torch.where(c.square().sum(1) > 0, corr, torch.full_like(corr, float("nan")))


def gradient_agreement(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    metric: BatchMetric,
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    directions: int = 16,
    sigma: float = 0.5,
    seed: int = 0,
    chunk: int = 64,
    memory_budget: int | float | str | None = None,
) -> float:
    r"""How well a loss's gradient points where the metric improves, averaged over batches.

    For each batch of the stack, the Pearson correlation between the loss's directional derivatives
    :math:`-\langle\nabla_y L, \delta_k\rangle` and the metric's changes along the same random directions
    (:func:`metric_changes`); 1 means the loss's gradient predicts perfectly which way the metric moves.
    Batches along which the metric never moved are skipped; NaN if all are.

    Args:
        loss_fn: maps a stack ``(N, ...)`` to per-batch losses ``(N,)`` (a surrogate's net, a task's
            baseline, or any per-batch loss).
        metric: a :class:`~metricloss.metrics.base.BatchMetric`.
        directions, sigma: number of random directions and their length relative to the batch's std.
        chunk, memory_budget: batches probed at once: at most ``chunk``, and as many as fit in the budget's chunk
            share with their ``directions`` perturbed copies (``None``: the default budget, 2 GiB). The directions
            are drawn from one stream in batch order, so the result does not depend on the chunking.
    """
    gen = torch.Generator().manual_seed(seed)
    group = directions
    if pred.shape[0]:
        budget = parse_budget(memory_budget)
        group = _probe_group(pred, directions, budget)
        chunk = _probe_chunk(pred, directions, chunk, budget) if group == directions else 1
    corrs = []
    for p, t in zip(pred.split(chunk), target.split(chunk), strict=True):
        if group < directions:  # one batch, its directions a group at a time
            corrs.append(_grouped_probe(loss_fn, metric, p, t, directions, group, sigma, gen))
            continue
        deltas, changes = metric_changes(metric, p, t, directions, sigma, gen)
        x = p.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (grads,) = torch.autograd.grad(loss_fn(x, t).sum(), x)
        corrs.append(directional_correlation(grads, deltas, changes))
        del deltas, changes, x, grads  # not held while the next chunk's copies are made
    allc = torch.cat(corrs)
    valid = allc[~torch.isnan(allc)]
    return float(valid.mean()) if valid.numel() else float("nan")


def _probe_chunk(pred: torch.Tensor, directions: int, most: int, budget: int) -> int:
    """Batches per chunk of the gradient probe: as many as fit in the budget's chunk share (at most ``most``), and a
    multiple of the batches whose directions fill whole blocks of 16 normal draws: torch's CPU generator draws normal
    numbers in blocks of 16, so chunks that start on a block boundary draw exactly the numbers one unchunked call
    would (the probe's result does not depend on the budget or on ``chunk``)."""
    per_batch = directions * pred[0].numel()
    step = 16 // math.gcd(16, per_batch)
    n = chunk_count(pred[0].nbytes, budget, most, PROBE_COPIES * directions + PROBE_EXTRA)
    return n if n >= pred.shape[0] else max(step, n - n % step)


def _probe_group(pred: torch.Tensor, directions: int, budget: int) -> int:
    """Directions probed at once when even one batch with all of them exceeds the chunk share: as many as fit beside
    the batch's input, gradient and graph, a multiple of those filling whole blocks of 16 normal draws (the stream
    is then the unchunked one when a batch's size is a multiple of 16)."""
    room = CHUNK_SHARE * budget / max(pred[0].nbytes, 1) - PROBE_EXTRA
    if room >= PROBE_COPIES * directions:
        return directions
    step = 16 // math.gcd(16, pred[0].numel())
    fit = max(1, int(room // PROBE_COPIES))
    return min(directions, max(step, fit - fit % step))


def _grouped_probe(loss_fn: StackedLoss, metric: BatchMetric, p: torch.Tensor, t: torch.Tensor, directions: int,
                   group: int, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """The probe of a chunk of one batch, ``group`` directions at a time: the gradient once, then the directional
    derivatives and metric changes of each group (the same numbers as all directions at once)."""
    x = p.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grads,) = torch.autograd.grad(loss_fn(x, t).sum(), x)
    ds, cs = [], []
    for start in range(0, directions, group):
        deltas, changes = metric_changes(metric, p, t, min(group, directions - start), sigma, gen)
        ds.append(_derivatives(grads, deltas))
        cs.append(changes)
        del deltas
    return _correlation(torch.cat(ds, dim=1), torch.cat(cs, dim=1))


def descent_trial(
    loss: StackedLoss,
    baseline: StackedLoss,
    metric: BatchMetric,
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    ratio: float = TRIAL_RATIO,
    steps: Sequence[float] = TRIAL_STEPS,
    regime: str = REAL,
    chunk: int = 8,
    values: torch.Tensor | None = None,
) -> TrialComparison:
    r"""The descent trial (:class:`~metricloss.verdict.TrialComparison`): per held-out batch, the metric after an
    equal-length step along ``baseline + w * loss``'s descent direction minus after one along ``baseline``'s.

    Each batch is handled on its own: :math:`g_b, g_s` are the gradients of the two losses with respect to that batch's
    predictions, :math:`w = r\lVert g_b
Vert/\lVert g_s
Vert` (``combine(weight="auto", ratio=r, momentum=0)``),
    :math:`g_c = g_b + w g_s`, and for every :math:`\epsilon` in ``steps`` both
    :math:`y - \epsilon s \sqrt n\, g/\lVert g
Vert` (:math:`s`, :math:`n`: the batch's standard deviation and size)
    are scored with ``metric`` (oriented so that higher is better). Batches where either gradient is zero or not
    finite are skipped.

    Args:
        loss, baseline: stacked losses ``(N, B, ...) -> (N,)`` (a surrogate's ``batch_losses``, a task's
            ``baseline``); each batch's loss must depend on that batch only.
        metric: the metric (:class:`~metricloss.metrics.base.BatchMetric`).
        pred, target: the held-out stacks ``(N, B, ...)``.
        ratio: :math:`r`; steps: the :math:`\epsilon`; regime: what the batches are (recorded).
        chunk: batches per backward pass and per metric call on the stepped copies (bounds memory).
        values: the metric on the unmoved batches ``(N,)``, oriented higher-is-better, if already known (else
            evaluated here).

    Returns:
        The :class:`~metricloss.verdict.TrialComparison` (its ``gain`` NaN when no batch could be measured).

    Example:
        >>> import torch
        >>> from metricloss.metrics.base import as_metric
        >>> from metricloss.tasks.base import get_task
        >>> task = get_task("classification", num_classes=4)
        >>> metric = as_metric("accuracy", None, task.metrics)
        >>> pred, target = task.random_batches(16, 32, torch.Generator().manual_seed(0))
        >>> descent_trial(task.baseline, task.baseline, metric, pred, target).gain   # the same direction
        0.0
    """
    steps = tuple(float(e) for e in steps)
    if not steps or any(not math.isfinite(e) or e <= 0 for e in steps):
        raise ValueError(f"`steps` must be positive finite step sizes, got {steps!r}")
    per_batch, base_changes = [], []
    known = values.split(chunk) if values is not None else [None] * len(pred.split(chunk))
    for p, t, v in zip(pred.split(chunk), target.split(chunk), known, strict=True):
        gb, gs = (g.flatten(1).to(p.dtype) for g in prediction_gradients((baseline, loss), p, t))
        nb, ns = gb.double().norm(dim=1), gs.double().norm(dim=1)
        ok = (nb > 0) & (ns > 0) & torch.isfinite(nb) & torch.isfinite(ns)
        if not bool(ok.any()):
            continue
        p, t, gb, gs, nb, ns = p[ok], t[ok], gb[ok], gs[ok], nb[ok], ns[ok]
        v = v[ok] if v is not None else None
        w = (ratio * nb / ns).to(p.dtype).unsqueeze(1)
        gc = gb + w * gs
        flat = p.detach().flatten(1)
        length = flat.std(dim=1, keepdim=True).clamp_min(1e-6) * flat.shape[1] ** 0.5
        units = [g / g.double().norm(dim=1, keepdim=True).clamp_min(1e-300).to(g.dtype) for g in (gb, gc)]
        start = v if v is not None else metric.oriented(metric.evaluate(p, t))
        gains, moved = [], []
        for eps in steps:
            after = [metric.oriented(metric.evaluate((flat - eps * length * u).view_as(p), t)) for u in units]
            gains.append(after[1] - after[0])
            moved.append(after[0] - start)
        per_batch.append(torch.stack(gains, dim=1))
        base_changes.append(torch.stack(moved, dim=1))
    if not per_batch:
        return TrialComparison(regime, float("nan"), float("nan"), 0, ratio, steps, (), float("nan"))
    d, b = torch.cat(per_batch).double(), torch.cat(base_changes).double()
    n = d.shape[0]
    mean_over_steps = d.mean(dim=1)
    se = float(mean_over_steps.std() / n**0.5) if n > 1 else float("nan")
    return TrialComparison(regime, float(mean_over_steps.mean()), se, n, ratio, steps,
                           tuple(float(v) for v in d.mean(dim=0)), float(b.mean()))


def _stacked(loss: Any) -> StackedLoss:
    """The per-batch loss of a stack: ``loss.batch_losses`` for the library's losses, else ``loss`` itself."""
    fn = getattr(loss, "batch_losses", None)
    if fn is None and not callable(loss):
        raise TypeError(
            f"`loss` must be a metricloss loss or a callable on stacks of batches, got {type(loss).__name__}")
    return fn if fn is not None else loss


def _chunked(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], pred: torch.Tensor, target: torch.Tensor,
             chunk: int) -> torch.Tensor:
    """``fn`` on a stack, ``chunk`` batches at a time (one call when the stack fits)."""
    if pred.shape[0] <= chunk:
        return fn(pred, target)
    return torch.cat([fn(p, t) for p, t in zip(pred.split(chunk), target.split(chunk), strict=True)])


def measure(
    loss: Any,
    task: Task,
    metric: BatchMetric,
    heldout: tuple[torch.Tensor, torch.Tensor],
    *,
    method: str,
    validation: str,
    metric_values: torch.Tensor | None = None,
    gradient_batches: int | None = 0,
    gradient_loss: StackedLoss | None = None,
    gradient_dtype: torch.dtype | None = None,
    directions: int = 16,
    sigma: float = 0.5,
    seed: int = 0,
    started: float | None = None,
    real_outputs: bool = False,
    random_check: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    memory_budget: int | float | str | None = None,
    references: Sequence[Any] = (),
    **fields: Any,
) -> Report:
    r"""Measure ``loss`` against ``metric`` on the held-out batches, beside the task's baseline loss on the same ones.

    Spearman and Kendall (:func:`agreement`) between the negated losses and the metric over the held-out batches,
    for ``loss`` and for ``task.baseline``; optionally the gradient agreement of both (:func:`gradient_agreement`)
    on the first ``gradient_batches`` of them. The calls happen in this order — losses, baseline, gradient probe of
    the loss, of the baseline — so a loss with seeded anchor generators gives the same numbers every time.

    Args:
        loss: a loss of the library (its ``batch_losses`` is used) or a callable mapping a stack ``(N, B, ...)`` to
            per-batch losses ``(N,)``.
        task, metric: the task (its baseline) and the metric (:class:`~metricloss.metrics.base.BatchMetric`).
        heldout: ``(pred, target)`` stacks of shape ``(N, B, ...)``, ``N >= 2``.
        method, validation: what made the loss and what the held-out batches are (Report fields).
        metric_values: the metric on the held-out batches *oriented so that higher is better*, if already known
            (else evaluated here).
        gradient_batches: how many held-out batches the gradient probe uses (0: none, ``None``: all).
        gradient_loss: the differentiable stacked loss to probe (default: ``loss``'s).
        gradient_dtype: probe in this dtype (e.g. ``torch.float64`` for very sharp losses).
        directions, sigma, seed: the gradient probe's settings.
        started: a ``time.perf_counter()`` value; ``learn_seconds`` is then the time from it to the end of
            the measurement.
        real_outputs: the held-out batches are real model outputs (else random batches): the report's
            :class:`~metricloss.verdict.Verdict` is decided on them.
        random_check: other, random ``(pred, target, oriented metric values)`` batches on which the verdict also
            compares the two losses when the held-out batches are real outputs
            (:func:`~metricloss.verdict.random_check`). The verdict's gradient comparison uses the first
            :data:`~metricloss.verdict.GRADIENT_BATCHES` held-out batches.
        memory_budget: bytes (or ``"2GiB"``; ``None``: 2 GiB) the chunks of the measurement are sized by: the
            losses, the baseline and the metric run on as many batches at once as fit in an eighth of it, the
            gradient probe likewise with its perturbed copies (:func:`gradient_agreement`).
        references: reference losses (:class:`~metricloss.references.Reference`, or anything with a ``name`` that
            maps a stack ``(N, B, ...)`` to ``(N,)``) the verdict also compares the loss with, on the same held-out
            batches and random check (:attr:`~metricloss.verdict.Verdict.references`).
        **fields: the other :class:`~metricloss.report.Report` fields (``settings``, ``steps``, ``history``,
            ``metric_seconds`` spent before, ...).

    Returns:
        The :class:`~metricloss.report.Report`; its ``metric_seconds`` adds the time spent here in the metric
        (its values and the gradient probes).

    Example:
        >>> import torch
        >>> from metricloss.metrics.base import as_metric
        >>> from metricloss.tasks.base import get_task
        >>> task = get_task("classification", num_classes=4)
        >>> heldout = task.random_batches(16, 32, torch.Generator().manual_seed(0))
        >>> report = measure(task.baseline, task, as_metric("accuracy", None, task.metrics), heldout,
        ...                  method="baseline", validation="random batches (G_R)")
        >>> report.spearman == report.baseline_spearman
        True
    """
    pred, target = heldout
    losses_of = _stacked(loss)
    budget = parse_budget(memory_budget)
    chunk = chunk_count(pred[0].nbytes + target[0].nbytes, budget, pred.shape[0], FORWARD_COPIES)
    metric_seconds = float(fields.pop("metric_seconds", 0.0))
    t0 = time.perf_counter()
    if metric_values is None:
        metric_values = metric.oriented(_chunked(metric.evaluate, pred, target, chunk))
    metric_seconds += time.perf_counter() - t0
    with torch.no_grad():
        ours_losses = _chunked(losses_of, pred, target, chunk)
        base_losses = _chunked(task.baseline, pred, target, chunk)
        ours, base = agreement(ours_losses, metric_values, True), agreement(base_losses, metric_values, True)
    if gradient_batches != 0:
        t0 = time.perf_counter()
        probe_p, probe_t = (pred, target) if gradient_batches is None else (pred[:gradient_batches],
                                                                            target[:gradient_batches])
        if gradient_dtype is not None:
            probe_p = probe_p.to(gradient_dtype)
        probe = {"directions": directions, "sigma": sigma, "seed": seed, "memory_budget": budget}
        fields["gradient_agreement"] = gradient_agreement(gradient_loss or losses_of, metric, probe_p, probe_t,
                                                          **probe)
        fields["baseline_gradient_agreement"] = gradient_agreement(task.baseline, metric, probe_p, probe_t, **probe)
        metric_seconds += time.perf_counter() - t0
    fields["verdict"] = _verdict(losses_of, task, heldout, (ours_losses, base_losses, metric_values), budget,
                                 real_outputs,
                                 random_check if real_outputs else None, gradient_dtype, seed, references)
    if real_outputs:  # the descent trial that combine(gate="trial") decides by
        t0 = time.perf_counter()
        item = pred[0].nbytes + target[0].nbytes
        fields["verdict"].trial = descent_trial(losses_of, task.baseline, metric,
                                                pred if gradient_dtype is None else pred.to(gradient_dtype), target,
                                                chunk=chunk_count(item, budget, 8, PROBE_EXTRA),
                                                values=metric_values)
        metric_seconds += time.perf_counter() - t0
    if started is not None:
        fields["learn_seconds"] = time.perf_counter() - started
    return Report.from_agreement(task, metric, method, ours, base, validation=validation,
                                 n_validation_batches=int(pred.shape[0]), batch_size=int(pred.shape[1]),
                                 metric_seconds=metric_seconds, **fields)


def _verdict(losses_of: StackedLoss, task: Task, heldout: tuple[torch.Tensor, torch.Tensor],
             measured: tuple[torch.Tensor, torch.Tensor, torch.Tensor], budget: int, real: bool,
             check: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None, dtype: torch.dtype | None,
             seed: int, references: Sequence[Any] = ()) -> Verdict:
    """:func:`measure`'s verdict (:mod:`metricloss.verdict`): the rankings it measured, those on the random check
    ``(pred, target, oriented metric values)``, the gradients on the first held-out batches, and the reference
    losses on the same batches, each in chunks sized by ``budget``."""
    against = []
    for ref in references:  # a reference that cannot score these batches is left out, never the report
        try:
            held, checked = _reference_losses(ref, heldout, check, budget)
        except Exception as err:  # a third-party loss may raise anything
            warnings.warn(f"reference loss {ref.name!r} left out of the verdict: {type(err).__name__}: {err}",
                          stacklevel=3)
            continue
        if not all(x is None or bool(torch.isfinite(x).all()) for x in (held, checked)):
            warnings.warn(f"reference loss {ref.name!r} left out of the verdict: it is not finite on every batch "
                          "(e.g. classes absent from a batch, whose logits are -inf)", stacklevel=3)
            continue
        against.append((ref.name, held, checked))
    pred, target = (x[:GRADIENT_BATCHES] for x in heldout)
    item = pred[0].nbytes + target[0].nbytes
    gradient = compare_gradients(losses_of, task.baseline, pred if dtype is None else pred.to(dtype), target,
                                 REAL if real else RANDOM, chunk=chunk_count(item, budget, 8, PROBE_EXTRA))
    random_losses = None
    if check is not None:
        chunk = chunk_count(check[0][0].nbytes + check[1][0].nbytes, budget, check[0].shape[0], FORWARD_COPIES)
        with torch.no_grad():
            random_losses = (_chunked(losses_of, check[0], check[1], chunk),
                             _chunked(task.baseline, check[0], check[1], chunk), check[2])
    return judge(*measured, real=real, random_check=random_losses, gradient=gradient, seed=seed, references=against)


def _reference_losses(ref: StackedLoss, heldout: tuple[torch.Tensor, torch.Tensor],
                      check: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
                      budget: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A reference loss on the held-out batches and on the random check's, without gradients, in chunks."""
    out: list[torch.Tensor | None] = []
    for stack in (heldout, check):
        if stack is None:
            out.append(None)
            continue
        pred, target = stack[0], stack[1]
        chunk = chunk_count(pred[0].nbytes + target[0].nbytes, budget, pred.shape[0], FORWARD_COPIES)
        with torch.no_grad():
            out.append(_chunked(ref, pred, target, chunk).detach().double())
    return out[0], out[1]
