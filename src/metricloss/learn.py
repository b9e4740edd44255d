r"""Learning a surrogate loss (ReLoss, Algorithm 1), with the approximation baselines behind the same call.

:func:`learn` is the public verb; the parts live in :mod:`metricloss.learning`: the settings (one validated
dataclass), the batch preparation (G_R pool, G_M split and relabelling, held-out batches), the trainer (step,
validation, early stopping, checkpoints); the report comes from :func:`metricloss.evaluation.measure`, the
measurement every builder shares.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import nonparametric as _nonparametric
from . import uniloss as _uniloss
from ._checkpoint import fingerprint
from ._checks import check_choice
from ._rng import private_rng
from .evaluation import TooFewOutputsError, measure
from .learning.batches import LearningBatches, heldout_count, prepare_batches
from .learning.distributed import SharedMetric, agree_outputs, joins_group
from .learning.settings import LearnSettings
from .learning.shapes import infer_shapes
from .learning.trainer import Checkpointing, DistributedTrainer, Trainer
from .metrics.base import BatchMetric, as_metric
from .references import as_references, for_task
from .surrogate import Surrogate
from .tasks.base import Task, get_task
from .verdict import GRADIENT_BATCHES, random_check, warn_if_weak

if TYPE_CHECKING:
    from .nonparametric import NonParametricLoss
    from .uniloss import UniLoss

__all__ = ["MeasurementError", "learn"]

#: Arguments of :func:`learn` that only learning uses: with ``method="uniloss"`` / ``"nonparametric"`` a value other
#: than the default is an error (it would be ignored).
LEARNING_ONLY = ("objective", "higher_is_better", "steps", "batches_per_step", "p_random", "penalty", "lr",
                 "weight_decay", "pool_size", "eval_every", "patience", "rank_strength", "checkpoint",
                 "gradient_weight", "directions", "sigma", "gradient_probe", "init", "distributed",
                 "metric_workers", "memory_budget")


class MeasurementError(RuntimeError):
    """Measuring a learned surrogate's report failed after learning (out of memory, a metric raising on the probe's
    perturbed predictions, ...). The learned weights are not lost: ``surrogate`` holds the surrogate (without a
    report) and ``path`` the file it was saved to first (``None`` if even saving failed); ``__cause__`` is the
    error measuring raised. ``metricloss.load(err.path)`` gives the surrogate back; ``metricloss evaluate`` on that
    file measures it again (with a smaller ``--memory-budget`` if memory was the cause)."""

    def __init__(self, message: str, surrogate: Surrogate, path: Path | None) -> None:
        super().__init__(message)
        self.surrogate, self.path = surrogate, path


def learn(
    metric: Any,
    task: str | Task = "classification",
    *,
    outputs: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    objective: str = "spearman",
    higher_is_better: bool | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    batches_per_step: int | None = None,
    p_random: float | None = None,
    penalty: float = 10.0,
    lr: float = 0.01,
    weight_decay: float = 1e-4,
    net: dict[str, Any] | None = None,
    pool_size: int | None = None,
    validation_batches: int = 256,
    eval_every: int = 25,
    patience: int = 6,
    rank_strength: float = 10.0,
    seed: int = 0,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    gradient_weight: float = 0.0,
    directions: int = 8,
    sigma: float = 0.3,
    gradient_probe: int = 64,
    init: Surrogate | None = None,
    distributed: bool | None = None,
    metric_workers: int = 1,
    memory_budget: int | float | str | None = None,
    compare_with: Iterable[Any] | None = None,
    method: str = "reloss",
    **task_kwargs: Any,
) -> Surrogate | UniLoss | NonParametricLoss:
    """Learn a surrogate loss for ``metric``.

    Args:
        metric: a built-in metric name of the task (``"accuracy"``, ``"top5_accuracy"``, ...), a callable
            ``metric(pred, target) -> float`` on one batch, or a torchmetrics metric object.
        task: task family (``"classification"``, ...) or a :class:`~metricloss.tasks.Task`.
        outputs: G_M, an iterable of ``(pred, target)`` batches of real model outputs (for instance from
            several checkpoints of a model trained with the baseline loss). They are cut into batches of
            ``batch_size``; a quarter (at most ``validation_batches``) is held out for validation.
        objective: ``"spearman"`` (ReLoss), ``"kendall"``, ``"l2"`` / ``"l1"`` (approximation), or
            ``"gradient"`` (correlated gradients alone; see ``gradient_weight``).
        higher_is_better: direction of a callable metric (default ``True``).
        steps: upper bound on learning steps (default: the task's ``default_steps``, 2000 where a step's batches
            are small, fewer where they are large, sized so learning at ImageNet, COCO and NMT sizes takes about a
            minute or two on 2 cores: 100 steps at ``C = 1000``, 80 for pose at 17 keypoints on 64×48, 100 for
            sequences at ``max_length = 128``; early stopping ends most runs sooner).
        batch_size: samples per batch (default: the task's, 128 for classification).
        batches_per_step: N, batches ranked together per step (default: the task's, 128 for classification).
        p_random: probability of drawing a batch from G_R (default 0.5 with ``outputs``, else 1).
        penalty: weight λ of the gradient penalty (0 disables it).
        lr, weight_decay: Adam settings.
        net: surrogate network configuration (default: the task's; for ``objective="gradient"`` without the
            absolute value on the output, which made gradient-only learning unstable).
        pool_size: number of G_R batches drawn up front (default: as many as fit in ~128 MiB, ≤ 4096).
        validation_batches: held-out batches for model selection and the report.
        eval_every, patience: validation period (steps) and early-stopping patience (evaluations).
        rank_strength: steepness of the soft ranks in the objective (on standardised losses).
        seed: makes learning deterministic.
        progress: show a progress bar.
        checkpoint: a file where progress is saved at every validation (safetensors, atomic). If it exists
            and belongs to the same run (same settings, metric and data), learning resumes from it and
            ends with the same weights as an uninterrupted run.
        gradient_weight: weight of the correlated-gradients term added to the objective (derived by us from
            Yoa et al. 2021): each step, the metric is measured along ``directions`` random antithetic
            perturbations of length ``sigma`` (relative to each batch's std) and the surrogate's directional
            derivatives are asked to correlate with those changes. ``objective="gradient"`` uses this term
            alone (weight 1 unless given). It evaluates the metric ``2 * directions`` times per batch per step.
        init: a surrogate to continue learning from (its weights and network configuration; the task must
            match), e.g. to refresh it on a model's current outputs (alternate training, ReLoss Table 11).
        method: ``"reloss"`` (a learned surrogate, the default). Deprecated: ``"uniloss"`` forwards to
            :func:`metricloss.build_uniloss` (``net=`` carrying its ``options``) and ``"nonparametric"`` to
            :func:`metricloss.fit_nonparametric` (``net=`` may carry ``"grid"``) with a ``DeprecationWarning``;
            the learning-only arguments they would ignore (``objective``, ``steps``, ``lr``, ``checkpoint``, ...)
            must then keep their defaults (a ``ValueError`` names the others).
        gradient_probe: number of validation batches on which the report's gradient agreement is measured
            (0 skips it).
        distributed: learn across the ranks of the initialised ``torch.distributed`` process group (``torchrun``):
            call ``learn`` on every rank with the same arguments; metric evaluations (the report's included) and each
            step's batches are split across the ranks, early stopping is decided once (rank 0's validation), and
            every rank returns the same surrogate (see ``docs/distributed.md``). ``outputs`` may differ across the
            ranks (each rank's shard of a recorded run): every rank then learns from their union, rank 0's batches
            first. ``None`` (default) detects a group of more than one rank; ``False`` learns alone on this rank.
            Not with the correlated-gradients term (``gradient_weight`` > 0).
        metric_workers: evaluate the metric in this many worker processes (spawned: in a script, call ``learn``
            under ``if __name__ == "__main__":``; the metric must be picklable: a module-level function or class).
            For slow Python metrics; the values, and so the surrogate, are those of ``metric_workers=1``. They
            serve the G_R pool, G_M and held-out stacks (not the gradient term's probes).
        memory_budget: bytes (``int``) or a size (``"512MiB"``, ``"4GiB"``) that bounds what learning holds on top of
            its inputs (default 2 GiB): the G_R pool takes at most half of it, the held-out batches a quarter, and
            every measurement (validation, the report's losses and gradient probe) runs in chunks of at most an
            eighth. Sizes come from :meth:`~metricloss.tasks.base.Task.batch_nbytes`, so at real sizes the pool and
            the held-out set shrink (the report's ``settings["pool_size"]`` and ``n_validation_batches`` say to
            what); at small sizes the budget changes nothing. ``outputs=`` (and its stacked copy) and one step's
            ``batches_per_step`` batches with their autograd graph are outside it.
        compare_with: losses of your own ``loss(pred, target) -> scalar`` (or
            :class:`~metricloss.references.Reference` objects) that the report's verdict compares the surrogate
            with, besides the family's baseline and its reference losses (:func:`metricloss.references.for_task`,
            whose class frequencies come from the held-out targets of ``outputs``):
            ``sur.report.verdict.references`` holds each comparison and ``verdict.best(...)`` the loss that ranks
            held-out batches best.
        **task_kwargs: the task's shape arguments, e.g. ``num_classes=10``. With ``outputs``, those a built-in
            task needs are read from the outputs when omitted (and checked against them when given); see
            :mod:`metricloss.learning.shapes`.

    Returns:
        A frozen :class:`~metricloss.Surrogate` with its :class:`~metricloss.report.Report`, whose ``verdict`` says
        whether it beats the baseline loss on the held-out real outputs and on random batches
        (:mod:`metricloss.verdict`).

    Warns:
        WeakSurrogateWarning: learned with ``outputs``, the surrogate does not beat the baseline on the held-out real
            outputs (:class:`~metricloss.verdict.WeakSurrogateWarning`).

    Raises:
        MeasurementError: learning finished but measuring its report failed; the learned surrogate was saved
            first and the error carries it (``err.surrogate``) and the file (``err.path``).

    Example:
        >>> import metricloss as ml
        >>> sur = ml.learn("accuracy", num_classes=10, steps=30, batches_per_step=32,
        ...                validation_batches=32, pool_size=256, progress=False)
        >>> sur.report.spearman > sur.report.baseline_spearman - 0.2
        True
    """
    # An OutputRecorder says what it kept against its budget (for the error when too few) and, when it compacted the
    # batches, the shapes they had before (a compacted sequence batch is narrower than the vocabulary).
    budget_note = getattr(outputs, "budget_note", None)
    recorded = (outputs.shape_keywords(task) if isinstance(task, str)
                and callable(getattr(outputs, "shape_keywords", None)) else {})
    if method == "reloss" and joins_group(distributed):  # every rank learns from the same outputs (their union)
        outputs = agree_outputs(None if outputs is None else list(outputs))
    if outputs is not None and isinstance(task, str):  # shape keywords not given are read from the outputs
        outputs = list(outputs)
        task_kwargs = infer_shapes(task, outputs, task_kwargs, bounds=recorded)
    if method != "reloss":
        given = {k: v for k, v in locals().items() if k in LEARNING_ONLY}
        return _forward_method(method, metric, task, given, outputs=outputs, batch_size=batch_size,
                               validation_batches=validation_batches, seed=seed, net=net, **task_kwargs)
    t_start = time.perf_counter()
    task_obj = get_task(task, **task_kwargs)
    own_references = as_references(compare_with, task_obj.name)
    met = as_metric(metric, higher_is_better, task_obj.metrics)
    task_obj = task_obj.for_metric(met)
    settings = LearnSettings.resolve(
        task_obj, objective=objective, steps=steps, batch_size=batch_size, batches_per_step=batches_per_step,
        p_random=p_random, penalty=penalty, lr=lr, weight_decay=weight_decay, net=net, pool_size=pool_size,
        validation_batches=validation_batches, eval_every=eval_every, patience=patience,
        rank_strength=rank_strength, seed=seed, progress=progress, checkpoint=checkpoint,
        gradient_weight=gradient_weight, directions=directions, sigma=sigma, gradient_probe=gradient_probe,
        distributed=distributed, metric_workers=metric_workers, memory_budget=memory_budget)
    gen = torch.Generator().manual_seed(settings.seed)
    # One process and one worker: SharedMetric evaluates in place, as its base TimedMetric does.
    clock = SharedMetric(met, distributed=settings.distributed, workers=settings.metric_workers)
    try:
        try:
            batches = prepare_batches(task_obj, clock, settings, outputs, gen)
        except TooFewOutputsError as err:
            if not callable(budget_note):
                raise
            raise TooFewOutputsError(f"{err}; {budget_note()}") from None
        check = None if batches.model is None else random_check(  # the verdict's random batches, beside real outputs
            task_obj, clock, heldout_count(min(GRADIENT_BATCHES, settings.validation_batches),
                                           task_obj.batch_nbytes(settings.batch_size), settings.memory_budget),
            settings.batch_size, settings.seed)
    finally:
        clock.close()
    if init is not None:
        _check_init(init, task_obj)
        settings = dataclasses.replace(settings, net_config=dict(init.net_config))
    with private_rng(settings.seed):  # the caller's RNG untouched; threads seeded alike build alike
        model = task_obj.build_net(**settings.net_config)
    if init is not None:
        model.load_state_dict(init.net.state_dict())
    trainer = (DistributedTrainer if settings.distributed else Trainer)(model, clock, batches, settings, gen)
    report_settings = settings.as_dict(p_random=batches.p_random, pool_size=int(batches.pool[0].shape[0]))
    hooks = ()
    if settings.checkpoint is not None:
        hook = Checkpointing(settings.checkpoint, _run_id(report_settings, task_obj, met, settings, batches, init),
                             distributed=settings.distributed)
        hook.resume(trainer)
        hooks = (hook,)
    trainer.run(hooks, desc=f"learning {met.name} surrogate")
    sur = Surrogate(task_obj, trainer.best_model(), settings.net_config)
    v_pred, v_target, v_values = batches.heldout
    try:
        sur.report = measure(
            sur, task_obj, clock.batch_metric, (v_pred, v_target), metric_values=v_values,
            method=settings.report_method, validation=batches.validation,
            gradient_batches=settings.gradient_probe, gradient_loss=sur.net, sigma=settings.sigma, seed=settings.seed,
            started=t_start, memory_budget=settings.memory_budget, steps=trainer.steps,
            settings={**report_settings, "gradient_probe": settings.gradient_probe,
                      "memory_budget": settings.memory_budget},
            best_step=trainer.stopping.best_step, metric_seconds=clock.seconds, history=trainer.stopping.history,
            real_outputs=batches.model is not None, random_check=check,
            references=[*for_task(task_obj, None if batches.model is None else v_target), *own_references],
            net_choice=task_obj.net_choice(settings.net_config,
                                           "init=" if init is not None else "net=" if net is not None else None),
        )
    except Exception as err:
        raise _unmeasured(sur, settings.checkpoint, err) from err
    warn_if_weak(sur.report.verdict, task_obj.baseline_name)
    return sur


def _unmeasured(sur: Surrogate, checkpoint: Path | None, err: BaseException) -> MeasurementError:
    """Save the learned ``sur`` (next to ``checkpoint``, else in the temporary directory) and return the error that
    says where it is."""
    if checkpoint is not None:
        path = checkpoint.with_name(checkpoint.stem + ".unmeasured.safetensors")
    else:
        fd, name = tempfile.mkstemp(prefix="metricloss-unmeasured-", suffix=".safetensors")
        os.close(fd)
        path = Path(name)
    try:
        sur.save(path)
        kept = f"the learned surrogate was saved to {path} (metricloss.load({str(path)!r}))"
    except Exception as save_err:  # the disk may be what failed; the weights are still in err.surrogate
        path, kept = None, f"saving it failed too ({type(save_err).__name__}: {save_err})"
    return MeasurementError(
        f"learning finished, but measuring its report failed ({type(err).__name__}: {err}); {kept}; the surrogate is "
        "also in this error's `.surrogate`. If memory ran out, pass a smaller `memory_budget`, or measure the file "
        "again with `metricloss evaluate FILE --memory-budget ...`", sur, path)


def _check_init(init: Any, task: Task) -> None:
    if not isinstance(init, Surrogate):
        raise TypeError(f"`init` must be a metricloss Surrogate, got {type(init).__name__}")
    if init.task.name != task.name or init.task.config() != task.config():
        raise ValueError(f"`init` was learned for task {init.task.name!r} {init.task.config()}, "
                         f"not {task.name!r} {task.config()}")


def _run_id(report_settings: dict[str, Any], task: Task, metric: BatchMetric, settings: LearnSettings,
            batches: LearningBatches, init: Surrogate | None) -> str:
    """The checkpoint fingerprint: the settings, the task, the metric and the metric values of every batch."""
    return fingerprint({**report_settings, "task": task.name, "task_config": task.config(), "metric": metric.name,
                        "batch_size": settings.batch_size},
                       batches.pool[2], batches.heldout[2], *([batches.model[2]] if batches.model is not None else []),
                       *(init.net.state_dict().values() if init is not None else []))


def _forward_method(method: str, metric: Any, task: str | Task, given: dict[str, Any], *,
                    net: dict[str, Any] | None, validation_batches: int, **kwargs: Any) -> UniLoss | NonParametricLoss:
    """``learn(method="uniloss" | "nonparametric")``: deprecated; forwards to the public builders after
    refusing the learning-only arguments they would ignore."""
    check_choice(method, "method", ("reloss", "uniloss", "nonparametric"))
    builder = "build_uniloss" if method == "uniloss" else "fit_nonparametric"
    ignored = sorted(k for k, v in given.items() if not _is_default(v, _LEARN_DEFAULTS[k]))
    if ignored:
        raise ValueError(
            f"learn(method={method!r}) does not learn, so {', '.join(f'`{k}`' for k in ignored)} would be "
            f"ignored; remove them, or call metricloss.{builder}(...) directly"
        )
    warnings.warn(f"learn(method={method!r}) is deprecated; call metricloss.{builder}(...) instead",
                  DeprecationWarning, stacklevel=3)
    if method == "uniloss":
        return _uniloss.build_uniloss(metric, task, validation_batches=validation_batches, options=net, **kwargs)
    options = dict(net or {})
    grid = options.pop("grid", None)
    # The grid costs 20 x (batches / 2) gradient probes: at most 64 held-out batches.
    return _nonparametric.fit_nonparametric(metric, task, grid=grid, validation_batches=min(validation_batches, 64),
                                            options=options, **kwargs)


def _is_default(value: Any, default: Any) -> bool:
    return value is default or (type(value) is type(default) and value == default)


_LEARN_DEFAULTS = {name: p.default for name, p in inspect.signature(learn).parameters.items()}
