"""The report card every surrogate carries: how well it ranks batches like the metric, beside the baseline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .verdict import Verdict

if TYPE_CHECKING:
    from .metrics.base import BatchMetric
    from .tasks.base import Task

__all__ = ["Report"]


@dataclass
class Report:
    """Measured agreement of a surrogate with its metric on held-out batches.

    ``spearman`` and ``kendall`` are rank correlations between the *negated* loss and the metric oriented
    so that higher is better: 1 means the loss orders batches exactly as the metric does.
    ``baseline_*`` are the same numbers for the loss the surrogate replaces, on the same batches.
    ``gradient_agreement`` is the mean correlation between the loss's directional derivatives and the metric's
    changes along random directions (:func:`metricloss.evaluation.gradient_agreement`); ``None`` if not measured.
    ``verdict`` (:class:`~metricloss.verdict.Verdict`) says whether the surrogate beats the baseline on held-out real
    outputs and on random batches, by a stated rule, and how its gradient compares with the baseline's; a report
    read from a file saved before verdicts existed has the unknown verdict.
    ``net_choice`` says which surrogate net was learned and why (:meth:`metricloss.tasks.base.Task.net_choice`:
    ``net``, ``chosen_by``, ``reason``, and where the metric was measured per-sample or batch-level, ``metric`` and the
    probe's numbers ``probe``); empty for losses that learn no net and for files saved before it existed.
    """

    task: str
    task_config: dict[str, Any]
    metric: str
    higher_is_better: bool
    method: str
    spearman: float
    kendall: float
    baseline: str
    baseline_spearman: float
    baseline_kendall: float
    validation: str
    n_validation_batches: int
    batch_size: int
    library_version: str
    settings: dict[str, Any] = field(default_factory=dict)
    gradient_agreement: float | None = None
    baseline_gradient_agreement: float | None = None
    steps: int = 0
    best_step: int = 0
    learn_seconds: float = 0.0
    metric_seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)
    net_choice: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """The report of :meth:`to_dict`'s form; a missing ``verdict`` (an older file) is the unknown verdict."""
        known = {f for f in cls.__dataclass_fields__}
        kept = {k: v for k, v in data.items() if k in known}
        kept["verdict"] = Verdict.from_dict(kept.get("verdict"))
        return cls(**kept)

    @classmethod
    def from_agreement(
        cls,
        task: Task,
        metric: BatchMetric,
        method: str,
        ours: Mapping[str, float],
        baseline: Mapping[str, float],
        *,
        validation: str,
        n_validation_batches: int,
        batch_size: int,
        **fields: Any,
    ) -> Report:
        """The report of a surrogate measured on held-out batches of ``task``, beside the task's baseline loss.

        Args:
            task, metric: the task (its name, configuration and baseline's name) and the metric (its name and
                direction) the surrogate was measured on.
            method: how the surrogate was made (``"spearman"``, ``"uniloss"``, ``"nonparametric"``, ...).
            ours, baseline: :func:`~metricloss.evaluation.agreement` of the surrogate's and of the baseline's
                losses with the metric (``"spearman"`` and ``"kendall"``).
            validation, n_validation_batches, batch_size: what the held-out batches were and how many.
            **fields: the other fields of :class:`Report` (``settings``, ``gradient_agreement``,
                ``learn_seconds``, ...); ``library_version`` is this metricloss's.
        """
        return cls(
            task=task.name,
            task_config=task.config(),
            metric=metric.name,
            higher_is_better=metric.higher_is_better,
            method=method,
            spearman=ours["spearman"],
            kendall=ours["kendall"],
            baseline=task.baseline_name,
            baseline_spearman=baseline["spearman"],
            baseline_kendall=baseline["kendall"],
            validation=validation,
            n_validation_batches=n_validation_batches,
            batch_size=batch_size,
            library_version=__version__,
            **fields,
        )

    def net_line(self) -> str | None:
        """``Net: ...``, the net and why it was chosen (``None`` when the report does not say)."""
        if not self.net_choice:
            return None
        return f"Net: {self.net_choice.get('net', '?')}; {self.net_choice.get('reason', '')}."

    def to_markdown(self) -> str:
        def fmt(x: float | None) -> str:
            return "n/a" if x is None or x != x else f"{x:.4f}"

        rows = [
            "| loss | Spearman | Kendall | gradient agreement |",
            "| --- | --- | --- | --- |",
            f"| {self.baseline} (baseline) | {self.baseline_spearman:.4f} | {self.baseline_kendall:.4f} "
            f"| {fmt(self.baseline_gradient_agreement)} |",
            f"| surrogate ({self.method}) | {self.spearman:.4f} | {self.kendall:.4f} "
            f"| {fmt(self.gradient_agreement)} |",
        ]
        head = (
            f"Surrogate for **{self.metric}** ({'higher' if self.higher_is_better else 'lower'} is better), "
            f"task `{self.task}` {self.task_config}; rank correlation with the metric on "
            f"{self.n_validation_batches} held-out batches of {self.batch_size} ({self.validation})."
        )
        rows += ["", *self.verdict.lines(self.baseline)]
        if self.method == "uniloss":
            return "\n".join([head, "", *rows, "", f"UniLoss: no learning; metricloss {self.library_version}."])
        if self.method == "nonparametric":
            s = self.settings
            note = (f"Non-parametric: (temperature, bandwidth) = ({s.get('temperature')}, {s.get('bandwidth')}) chosen "
                    f"by gradient agreement on other held-out batches; no weights; metricloss {self.library_version}.")
            return "\n".join([head, "", *rows, "", note])
        if self.net_line() is not None:
            rows += ["", self.net_line()]
        tail = (
            f"Learned in {self.steps} steps (best at step {self.best_step}), {self.learn_seconds:.1f} s "
            f"({self.metric_seconds:.1f} s in the metric); metricloss {self.library_version}."
        )
        return "\n".join([head, "", *rows, "", tail])

    def __str__(self) -> str:
        return self.to_markdown()
