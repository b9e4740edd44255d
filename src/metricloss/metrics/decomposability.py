r"""Whether a metric is a per-sample average or a batch-level quantity: measured on batches, never read from its name.

A metric :math:`M` is *per-sample* when the value of a batch is the mean of one number per sample,
:math:`M(X) = \frac{1}{|X|}\sum_{i \in X} m(x_i)` (accuracy, top-k accuracy, MAE, mean sentence BLEU). Then for any
split of a batch :math:`X` into parts :math:`X_1, \dots, X_k`,

.. math:: M(X) = \sum_{j=1}^{k} \frac{|X_j|}{|X|}\, M(X_j),

the size-weighted mean of the parts' values. Metrics of the whole batch (macro F1, balanced accuracy, Cohen's kappa,
MCC, AUROC, corpus BLEU) break this identity on almost every batch. :func:`probe_decomposability` tests it: each given
batch is shuffled and cut into ``parts`` sub-batches of random sizes, the metric is evaluated on the batch and on its
parts, and the largest gap between the batch's value and the size-weighted mean of its parts' decides, against a
tolerance relative to the values' size (float32 round-off passes, a class-averaged metric's gaps of 10^-2 do not). A
metric that raises on a sub-batch is batch-level (a mean over samples is defined on any of them).

It is what :meth:`metricloss.tasks.base.Task.for_metric` uses to choose between a family's per-sample and batch-level
surrogate nets, so a lambda, a ``def my_f1``, a ``functools.partial`` or a configured torchmetrics object gets the net
its behaviour calls for, whatever its name.

Example:
    >>> import torch
    >>> from metricloss.metrics.base import as_metric
    >>> from metricloss.metrics.classification import BUILTINS
    >>> pred, target = torch.randn(4, 64, 5), torch.randint(0, 5, (4, 64))
    >>> probe_decomposability(as_metric(lambda p, t: (p.argmax(-1) == t).float().mean()), pred, target).kind
    'per-sample'
    >>> probe_decomposability(BUILTINS["macro_f1"], pred, target).kind
    'batch-level'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .base import BatchMetric, MetricError

__all__ = ["PROBE_PARTS", "PROBE_TOLERANCE", "Decomposability", "probe_decomposability"]

#: Sub-batches each probe batch is cut into (each batch costs ``1 + PROBE_PARTS`` metric calls).
PROBE_PARTS = 3
#: Largest gap, relative to the largest absolute metric value seen, that still counts as equal.
PROBE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Decomposability:
    """What :func:`probe_decomposability` measured.

    Attributes:
        per_sample: the metric of every batch equalled the size-weighted mean of its parts' values (within tolerance).
        gap: the largest :math:`|M(X) - \\sum_j \\frac{|X_j|}{|X|} M(X_j)|` over the batches (``nan`` if a sub-batch
            was refused).
        scale: the largest absolute metric value measured, which ``tolerance`` is relative to.
        tolerance: the relative tolerance.
        batches, parts, calls: batches probed, sub-batches per batch, metric calls made.
        refused: the error the metric raised on a sub-batch, if it did (then ``per_sample`` is ``False``).
    """

    per_sample: bool
    gap: float
    scale: float
    tolerance: float
    batches: int
    parts: int
    calls: int
    refused: str | None = None

    @property
    def kind(self) -> str:
        """``"per-sample"`` or ``"batch-level"``."""
        return "per-sample" if self.per_sample else "batch-level"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields, with ``kind``."""
        out = asdict(self)
        out["kind"] = self.kind
        if not math.isfinite(out["gap"]):
            out["gap"] = None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decomposability:
        """The result :meth:`to_dict` wrote (``kind`` is derived, so it is dropped)."""
        kept = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if kept.get("gap") is None:
            kept["gap"] = math.nan
        return cls(**kept)

    def describe(self) -> str:
        """One sentence: what was measured and what it means."""
        where = (f"on {self.batches} random batches, each cut into {self.parts} sub-batches of random sizes "
                 f"({self.calls} metric calls)")
        if self.refused is not None:
            return f"the metric raised on a sub-batch ({self.refused}) {where}, so it is not a mean over samples"
        bound = self.tolerance * self.scale
        if self.per_sample:
            return (f"{where}, the metric of each batch equalled the size-weighted mean of its sub-batches' values "
                    f"(largest gap {self.gap:.2g} <= {bound:.2g})")
        return (f"{where}, the metric of a batch differed from the size-weighted mean of its sub-batches' values by up "
                f"to {self.gap:.3g} (tolerance {bound:.2g})")


def _part_sizes(batch_size: int, parts: int, generator: torch.Generator) -> list[int]:
    """``parts`` random sizes summing to ``batch_size``, each at least ``batch_size // (2 * parts)`` (and 1)."""
    floor = max(1, batch_size // (2 * parts))
    share = torch.rand(parts, generator=generator, dtype=torch.float64) + 0.05
    extra = (share / share.sum() * (batch_size - floor * parts)).floor().long()
    sizes = [floor + int(e) for e in extra]
    sizes[-1] += batch_size - sum(sizes)
    return sizes


def probe_decomposability(metric: BatchMetric, pred: torch.Tensor, target: torch.Tensor, *,
                          parts: int = PROBE_PARTS, tolerance: float = PROBE_TOLERANCE,
                          seed: int = 0) -> Decomposability:
    r"""Measure whether ``metric`` is a per-sample average on the stacked batches ``pred`` / ``target``.

    Each batch ``pred[i]``, ``target[i]`` (its samples along the first dimension, as the task's call shapes have
    them) is permuted and cut into ``parts`` sub-batches of random sizes; the metric is evaluated on the batch and on
    each part (``N * (1 + parts)`` calls of ``metric``), and the batch's value compared with the size-weighted mean of
    the parts' values (module docstring). The metric is per-sample when every gap is at most
    ``tolerance * max |value|``. The permutations and sizes come from a private generator seeded with ``seed``: the
    result is the same on every call, and the global random state is not touched.

    Args:
        metric: the metric (:func:`~metricloss.metrics.base.as_metric`).
        pred, target: stacks ``(N, B, ...)`` with ``B >= parts`` samples per batch.
        parts: sub-batches per batch (at least 2).
        tolerance: relative tolerance of the equality.
        seed: seed of the permutations and part sizes.

    Raises:
        MetricError: the metric raised (or returned something other than one number) on a *whole* batch.
    """
    n, b = int(pred.shape[0]), int(pred.shape[1])
    if parts < 2 or b < parts:
        raise ValueError(f"`parts` must be at least 2 and at most the batch size {b}, got {parts}")
    g = torch.Generator().manual_seed(seed)
    gap, scale, calls = 0.0, 0.0, 0
    for i in range(n):
        whole = metric(pred[i], target[i])  # an error here is the metric's on a valid batch: let it through
        calls += 1
        order = torch.randperm(b, generator=g)
        mean = 0.0
        for idx in order.split(_part_sizes(b, parts, g)):
            calls += 1
            try:
                value = metric(pred[i][idx], target[i][idx])
            except MetricError as err:
                return Decomposability(False, math.nan, scale, tolerance, i + 1, parts, calls, str(err))
            mean += value * idx.numel() / b
            scale = max(scale, abs(value))
        scale = max(scale, abs(whole))
        gap = max(gap, abs(whole - mean))
    return Decomposability(gap <= tolerance * scale + 1e-12, gap, scale, tolerance, n, parts, calls)
