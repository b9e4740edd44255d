"""Measuring a saved loss again on the batches its report card was measured on, so a card can be reproduced.

Every builder records what its held-out batches were: their number and size, the seed, and whether they were random
batches (G_R) or held-out model outputs. :func:`card_batches` draws those batches again the way the builder drew
them (for :func:`metricloss.learn`, the G_R pool is drawn first and dropped, since the held-out batches come after it
from the same generator), and :func:`remeasure` measures the loss on them with the card's probe settings, through
the same :func:`~metricloss.evaluation.measure`. ``metricloss evaluate FILE`` runs :func:`remeasure`; cards whose
batches were model outputs need those outputs (``outputs=``, ``--outputs FILE``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from ._memory import parse_budget
from .evaluation import measure, stack_batches
from .metrics.base import BatchMetric, as_metric
from .references import for_task
from .report import Report
from .surrogate import MetricLoss, Surrogate
from .tasks.base import Task

__all__ = ["CardBatches", "card_batches", "remeasure"]

#: The report's ``validation`` for each policy.
RANDOM, OUTPUTS = "random batches (G_R)", "held-out model outputs"
#: ``gradient_probe`` of reports written before it was stored (learn's default).
DEFAULT_PROBE = 64


@dataclass
class CardBatches:
    """The held-out batches of a card and the probe settings its report was measured with."""

    pred: torch.Tensor
    target: torch.Tensor
    validation: str
    probe: dict[str, Any] = field(default_factory=dict)


def _kind(loss: MetricLoss) -> str:
    return "surrogate" if isinstance(loss, Surrogate) else loss.kind


def _surrogate_batches(loss: Surrogate, task: Task, report: Report, outputs: list | None) -> CardBatches:
    """:func:`metricloss.learn`'s draws: with outputs, one permutation then the first ``n`` batches of it; without,
    the G_R pool (dropped) then the held-out batches, all from one generator seeded with the run's seed."""
    s, n, size = report.settings, report.n_validation_batches, report.batch_size
    gen = torch.Generator().manual_seed(int(s.get("seed", 0)))
    probe = {"gradient_batches": int(s.get("gradient_probe", DEFAULT_PROBE)), "sigma": float(s.get("sigma", 0.3)),
             "seed": int(s.get("seed", 0)), "gradient_loss": loss.net}
    if outputs is not None:
        pred, target = stack_batches(outputs, size, task)
        keep = torch.randperm(pred.shape[0], generator=gen)[:n]
        return CardBatches(pred[keep], target[keep], OUTPUTS, probe)
    task.random_batches(int(s["pool_size"]), size, gen)  # the pool came first from the same generator
    return CardBatches(*task.random_batches(n, size, gen), RANDOM, probe)


def _anchored_batches(loss: MetricLoss, task: Task, report: Report, outputs: list | None) -> CardBatches:
    """``build_uniloss``'s (the first ``n`` batches) and ``fit_nonparametric``'s (a permutation; its first
    ``selection_batches`` chose the hyper-parameters, the rest measured the report) held-out batches."""
    s, n, size = report.settings, report.n_validation_batches, report.batch_size
    seed = int(loss.config().get("seed", s.get("seed", 0)))
    gen = torch.Generator().manual_seed(seed)
    skip, probe = 0, {}
    if _kind(loss) == "nonparametric":
        skip = int(s.get("selection_batches", n))
        probe = {"gradient_batches": None, "gradient_dtype": torch.float64, "directions": int(s.get("directions", 16)),
                 "sigma": float(s.get("sigma", 0.5)), "seed": seed}
    if outputs is None:
        pred, target = task.random_batches(skip + n, size, gen)
        return CardBatches(pred[skip:], target[skip:], RANDOM, probe)
    pred, target = stack_batches(outputs, size, task)
    keep = torch.randperm(pred.shape[0], generator=gen)[: skip + n] if skip else slice(0, n)
    return CardBatches(pred[keep][skip:], target[keep][skip:], OUTPUTS, probe)


def card_batches(loss: MetricLoss, metric: BatchMetric | None = None, *,
                 outputs: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None) -> CardBatches:
    """The held-out batches ``loss``'s report was measured on, drawn again, and its probe settings.

    Args:
        loss: a loss with a report (learned, UniLoss or non-parametric, e.g. from :func:`metricloss.load`).
        metric: the metric (default: the report's); a family whose generator depends on the metric (class-averaged
            classification metrics) draws for it, as the builder did.
        outputs: the model outputs the builder was given, for a report measured on held-out model outputs. A report
            measured on random batches is reproduced on those (drawn again, labelled so) whatever ``outputs`` holds.

    Raises:
        ValueError: the loss has no report or no task, or its report was measured on model outputs and none were
            given (the error says to pass them).
    """
    report, task = loss.report, loss.task
    if report is None or task is None:
        raise ValueError("the loss has no report card (or no task) to reproduce; measure it on fresh batches instead")
    if report.validation.startswith(OUTPUTS) and outputs is None:
        raise ValueError("its report was measured on held-out model outputs: pass the same outputs (`outputs=`, "
                         "`--outputs FILE`) to reproduce it, or measure it on random batches (`--batches N`)")
    metric = metric if metric is not None else as_metric(report.metric, None, task.metrics)
    task = task.for_metric(metric)
    outputs = list(outputs) if outputs is not None and report.validation.startswith(OUTPUTS) else None
    if _kind(loss) == "surrogate":
        return _surrogate_batches(loss, task, report, outputs)
    return _anchored_batches(loss, task, report, outputs)


def remeasure(loss: MetricLoss, metric: BatchMetric | None = None, *,
              outputs: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
              memory_budget: int | float | str | None = None) -> Report:
    """Measure ``loss`` again exactly as its report was measured (:func:`card_batches`): a loss saved with its report
    gives the same Spearman, Kendall and gradient agreement (``memory_budget`` sizes the measurement's chunks,
    which does not change the numbers).

    Example:
        >>> import metricloss as ml
        >>> sur = ml.learn("accuracy", num_classes=5, steps=10, batches_per_step=16, pool_size=32,
        ...                validation_batches=16, gradient_probe=4, progress=False)
        >>> again = remeasure(sur)
        >>> (again.spearman, again.gradient_agreement) == (sur.report.spearman, sur.report.gradient_agreement)
        True
    """
    metric = metric if metric is not None else as_metric(loss.report.metric if loss.report else "", None,
                                                         loss.task.metrics if loss.task else {})
    batches = card_batches(loss, metric, outputs=outputs)
    task = loss.task.for_metric(metric)
    references = for_task(task, batches.target if batches.validation == OUTPUTS else None)
    return measure(loss, task, metric, (batches.pred, batches.target), method=loss.report.method,
                   validation=batches.validation, memory_budget=parse_budget(memory_budget), references=references,
                   net_choice=dict(loss.report.net_choice), **batches.probe)
