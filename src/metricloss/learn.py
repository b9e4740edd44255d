r"""Learning a surrogate loss (ReLoss, Algorithm 1), with the approximation baselines behind the same call.

Each step draws N batches, each from the random generator G_R with probability ``p_random`` and from the
model outputs G_M otherwise, computes the surrogate loss :math:`l_i` and the metric :math:`m_i` of every
batch, and descends

.. math:: \rho_S(\mathrm{softrank}(l), \mathrm{rank}(m)) + \lambda\,\frac1N\sum_i (\lVert\nabla_{y_i} l_i\rVert_2 - 1)^2

(or Kendall's soft :math:`\tau`, or an L2/L1 fit to the metric value). Ranks are taken over all N batches
of a step at once, wherever they were drawn. Every ``eval_every`` steps the exact Spearman on held-out
batches is measured (or, for the correlated-gradients objective alone, the gradient agreement it optimises);
the best weights are kept and learning stops once it has not improved for
``patience`` evaluations.

Metric values are computed once per batch: G_R batches are drawn up front into a pool and G_M batches
are fixed, so a slow Python metric costs its evaluations once, not once per step.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from ._checkpoint import fingerprint, load_progress, save_progress
from ._checks import check_choice, check_positive
from .evaluation import agreement, gradient_agreement, metric_changes, stack_batches
from .metrics.base import as_metric
from .objectives import (
    OBJECTIVES,
    approximation_objective,
    gradient_objective,
    gradient_penalty,
    rank_objective,
)
from .report import Report
from .surrogate import Surrogate
from .tasks.base import Task, get_task

if TYPE_CHECKING:
    from .nonparametric import NonParametricLoss
    from .uniloss import UniLoss

__all__ = ["learn"]

# Pools are capped at this many scalar elements of predictions (about 128 MiB of float32).
_POOL_ELEMENTS = 32 * 1024 * 1024


def _pool_size(requested: int | None, per_batch: int, batches_per_step: int) -> int:
    if requested is not None:
        return int(requested)
    return max(2 * batches_per_step, min(4096, _POOL_ELEMENTS // max(per_batch, 1)))


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return value


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
        steps: upper bound on learning steps (default 2000; early stopping ends most runs sooner).
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
        method: ``"reloss"`` (a learned surrogate, the default); ``"uniloss"``: no learning, a
            :class:`~metricloss.uniloss.UniLoss` built for the metric and measured on the same kind of held-out
            batches, ``net=`` then carrying UniLoss options such as ``{"fraction": 0.2}``; or ``"nonparametric"``:
            kernel interpolation over UniLoss anchors with temperature and bandwidth chosen by gradient
            agreement (:func:`metricloss.nonparametric.fit_nonparametric`; ``net=`` may carry ``"grid"``).
        gradient_probe: number of validation batches on which the report's gradient agreement is measured
            (0 skips it).
        **task_kwargs: the task's shape arguments, e.g. ``num_classes=10``.

    Returns:
        A frozen :class:`~metricloss.Surrogate` with its :class:`~metricloss.report.Report`.

    Example:
        >>> import metricloss as ml
        >>> sur = ml.learn("accuracy", num_classes=10, steps=30, batches_per_step=32,
        ...                validation_batches=32, pool_size=256, progress=False)
        >>> sur.report.spearman > sur.report.baseline_spearman - 0.2
        True
    """
    check_choice(method, "method", ("reloss", "uniloss", "nonparametric"))
    if method == "uniloss":
        from .uniloss import learn_uniloss

        return learn_uniloss(metric, task, outputs=outputs, batch_size=batch_size,
                             validation_batches=validation_batches, seed=seed, uniloss=net, **task_kwargs)
    if method == "nonparametric":
        from .nonparametric import fit_nonparametric

        options = dict(net or {})
        grid = options.pop("grid", None)
        # The grid costs 20 x (batches / 2) gradient probes: at most 64 held-out batches.
        return fit_nonparametric(metric, task, outputs=outputs, batch_size=batch_size, grid=grid,
                                 validation_batches=min(validation_batches, 64), seed=seed, options=options,
                                 **task_kwargs)
    t_start = time.perf_counter()
    task_obj = get_task(task, **task_kwargs)
    met = as_metric(metric, higher_is_better, task_obj.metrics)
    check_choice(objective, "objective", OBJECTIVES)
    batch_size = _positive_int(batch_size if batch_size is not None else task_obj.default_batch_size,
                               "batch_size")
    batches_per_step = _positive_int(
        batches_per_step if batches_per_step is not None else task_obj.default_batches_per_step,
        "batches_per_step", 2)
    validation_batches = _positive_int(validation_batches, "validation_batches", 2)
    max_steps = _positive_int(steps if steps is not None else 2000, "steps")
    eval_every = _positive_int(eval_every, "eval_every")
    patience = _positive_int(patience, "patience")
    penalty = float(penalty)
    if not penalty >= 0 or not math.isfinite(penalty):
        raise ValueError(f"`penalty` must be a finite number >= 0, got {penalty!r}")
    check_positive(lr, "lr")
    gradient_weight = float(gradient_weight)
    if not gradient_weight >= 0 or not math.isfinite(gradient_weight):
        raise ValueError(f"`gradient_weight` must be a finite number >= 0, got {gradient_weight!r}")
    if objective == "gradient" and gradient_weight == 0:
        gradient_weight = 1.0
    directions = _positive_int(directions, "directions", 2)
    sigma = check_positive(sigma, "sigma")
    gradient_probe = _positive_int(gradient_probe, "gradient_probe", 0)
    rank_strength = check_positive(rank_strength, "rank_strength")
    net_config = dict(task_obj.default_net_config() if net is None else net)
    if net is None and objective == "gradient" and net_config.get("absolute"):
        # The paper's |MLP| output makes the loss V-shaped; a gradient-only objective then flips the V's
        # branches from step to step (measured: held-out gradient agreement jumping between -0.5 and +0.6).
        net_config["absolute"] = False

    gen = torch.Generator().manual_seed(seed)
    metric_time = 0.0

    def measure(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        nonlocal metric_time
        t0 = time.perf_counter()
        values = met.evaluate(pred, target)
        metric_time += time.perf_counter() - t0
        return met.oriented(values)

    if p_random is not None and not 0.0 <= float(p_random) <= 1.0:
        raise ValueError(f"`p_random` must be in [0, 1], got {p_random!r}")
    # G_M: model outputs, split into learning and held-out batches.
    m_pred = m_target = v_pred = v_target = None
    if outputs is not None:
        all_pred, all_target = stack_batches(outputs, batch_size, task_obj)
        perm = torch.randperm(all_pred.shape[0], generator=gen)
        n_val = min(validation_batches, max(1, all_pred.shape[0] // 4))
        if all_pred.shape[0] - n_val < 1 or n_val < 2:
            raise ValueError("`outputs` is too small: need at least 8 batches of batch_size to learn and validate")
        v_pred, v_target = all_pred[perm[:n_val]], all_target[perm[:n_val]]
        m_pred, m_target = all_pred[perm[n_val:]], all_target[perm[n_val:]]
        p_random = 0.5 if p_random is None else float(p_random)
        validation = "held-out model outputs"
    else:
        p_random = 1.0
        validation = "random batches (G_R)"
    if not 0.0 <= p_random <= 1.0:
        raise ValueError(f"`p_random` must be in [0, 1], got {p_random!r}")

    # G_R: a pool of random batches; with model outputs, half of it relabels their predictions.
    probe = task_obj.random_batches(1, 1, torch.Generator())[0]
    per_batch = batch_size * probe[0, 0].numel()
    n_pool = _positive_int(_pool_size(pool_size if pool_size is not None else task_obj.default_pool_size,
                                             per_batch, batches_per_step), "pool_size", 2)
    r_pred, r_target = task_obj.random_batches(n_pool, batch_size, gen)
    if m_pred is not None:
        half = n_pool // 2
        src = torch.randint(0, m_pred.shape[0], (half,), generator=gen)
        rp, rt = task_obj.relabel(m_pred[src], m_target[src], gen)
        r_pred[:half], r_target[:half] = rp, rt
    if v_pred is None:
        v_pred, v_target = task_obj.random_batches(validation_batches, batch_size, gen)

    r_metric = measure(r_pred, r_target)
    m_metric = measure(m_pred, m_target) if m_pred is not None else None
    v_metric = measure(v_pred, v_target)
    for name, values in (("random batches", r_metric), ("validation batches", v_metric)):
        if float(values.max() - values.min()) == 0.0:
            raise ValueError(
                f"metric {met.name!r} is constant over the {name} ({float(values[0])}): its rank correlation "
                "is undefined, so there is nothing to learn; check the metric and the task's shape arguments"
            )
    offset = float(torch.cat([r_metric] + ([m_metric] if m_metric is not None else [])).max())

    if init is not None:
        if not isinstance(init, Surrogate):
            raise TypeError(f"`init` must be a metricloss Surrogate, got {type(init).__name__}")
        if init.task.name != task_obj.name or init.task.config() != task_obj.config():
            raise ValueError(f"`init` was learned for task {init.task.name!r} {init.task.config()}, "
                             f"not {task_obj.name!r} {task_obj.config()}")
        net_config = dict(init.net_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = task_obj.build_net(**net_config)
    if init is not None:
        model.load_state_dict(init.net.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    def validate() -> float:
        """Model-selection score: exact Spearman on held-out batches, or, for ``objective="gradient"``, the
        gradient agreement it optimises (measured on the first ``gradient_probe`` held-out batches)."""
        model.eval()
        try:
            if objective == "gradient":
                probe = max(gradient_probe, 8)
                score = gradient_agreement(model, met, v_pred[:probe], v_target[:probe], directions=directions,
                                           sigma=sigma, seed=seed)
            else:
                with torch.no_grad():
                    losses = torch.cat([model(p, t) for p, t in
                                        zip(v_pred.split(256), v_target.split(256), strict=True)])
                if not bool(torch.isfinite(losses).all()):
                    return -math.inf
                score = agreement(losses, v_metric, True)["spearman"]
        finally:
            model.train()
        return score if math.isfinite(score) else -math.inf  # constant losses: correlation undefined

    settings = {
        "objective": objective, "penalty": penalty, "lr": lr, "weight_decay": weight_decay,
        "batches_per_step": batches_per_step, "p_random": p_random, "pool_size": n_pool,
        "rank_strength": rank_strength, "seed": seed, "max_steps": max_steps,
        "eval_every": eval_every, "patience": patience, "net": net_config,
        "gradient_weight": gradient_weight, "directions": directions, "sigma": sigma,
    }
    best_score, best_state, best_step, bad, history, step, done = -math.inf, None, 0, 0, [], 0, False
    if checkpoint is not None:
        run_id = fingerprint({**settings, "task": task_obj.name, "task_config": task_obj.config(),
                              "metric": met.name, "batch_size": batch_size},
                             r_metric, v_metric, *([m_metric] if m_metric is not None else []),
                             *(init.net.state_dict().values() if init is not None else []))
        resumed = load_progress(checkpoint, fingerprint=run_id, model=model, opt=opt, gen=gen)
        if resumed is not None:
            step, best_step, bad, history, done = (resumed["step"], resumed["best_step"], resumed["bad"],
                                                   resumed["history"], resumed["done"])
            best_score = resumed["best_score"] if resumed["best_score"] is not None else -math.inf
            best_state = resumed["best_state"]

    def save_checkpoint() -> None:
        if checkpoint is not None:
            save_progress(checkpoint, fingerprint=run_id, model=model, opt=opt, gen=gen, best_state=best_state,
                          progress={"step": step, "best_step": best_step, "bad": bad, "history": history,
                                    "done": done, "best_score": best_score if math.isfinite(best_score) else None})

    bar = tqdm(total=max_steps, initial=step, disable=not progress, desc=f"learning {met.name} surrogate",
               leave=False)
    nonfinite = 0
    while not done and step < max_steps:
        step += 1
        from_random = torch.rand(batches_per_step, generator=gen) < p_random
        if m_pred is None:
            from_random[:] = True
        n_r = int(from_random.sum())
        ri = torch.randint(0, r_pred.shape[0], (n_r,), generator=gen)
        parts_p, parts_t, parts_m = [r_pred[ri]], [r_target[ri]], [r_metric[ri]]
        if n_r < batches_per_step:
            mi = torch.randint(0, m_pred.shape[0], (batches_per_step - n_r,), generator=gen)
            parts_p.append(m_pred[mi])
            parts_t.append(m_target[mi])
            parts_m.append(m_metric[mi])
        pred = torch.cat(parts_p).requires_grad_(True)
        target, values = torch.cat(parts_t), torch.cat(parts_m)

        losses = model(pred, target)
        if objective in ("spearman", "kendall"):
            obj = rank_objective(losses, values, objective, rank_strength)
        elif objective in ("l2", "l1"):
            obj = approximation_objective(losses, values, objective, offset)
        else:
            obj = losses.sum() * 0.0
        if penalty > 0 or gradient_weight > 0:
            (grads,) = torch.autograd.grad(losses.sum(), pred, create_graph=True)
        if penalty > 0:
            obj = obj + penalty * gradient_penalty(grads)
        if gradient_weight > 0:
            t0 = time.perf_counter()
            deltas, changes = metric_changes(met, pred, target, directions, sigma, gen)
            metric_time += time.perf_counter() - t0
            obj = obj + gradient_weight * gradient_objective(grads, deltas, changes)
        opt.zero_grad(set_to_none=True)
        if torch.isfinite(obj):
            obj.backward()
        finite = bool(torch.isfinite(obj)) and all(
            p.grad is None or bool(torch.isfinite(p.grad).all()) for p in model.parameters())
        if finite:
            opt.step()
            nonfinite = 0
        else:  # never let a NaN (in the objective or its gradients) reach the weights
            nonfinite += 1
            if nonfinite >= 10:
                raise RuntimeError(
                    "the learning objective or its gradient was not finite for 10 steps in a row; "
                    "try a smaller `lr` or `penalty`"
                )
        bar.update(1)

        if step % eval_every == 0 or step == max_steps:
            score = validate()
            history.append({"step": step, "score": score if math.isfinite(score) else None,
                            "objective": float(obj.detach()) if torch.isfinite(obj) else None})
            bar.set_postfix(val_score=f"{score:.4f}")
            if score > best_score + 1e-4:
                best_score, best_state, best_step, bad = score, copy.deepcopy(model.state_dict()), step, 0
            else:
                bad += 1
                done = bad >= patience
            done = done or step >= max_steps
            save_checkpoint()
    bar.close()
    if best_state is None:
        raise RuntimeError(
            "no validation score was ever defined: the surrogate's losses were constant or not finite"
            + (", or the metric never moved along the probe directions (try a larger `sigma`)"
               if objective == "gradient" else "")
            + "; try a smaller `lr`")
    model.load_state_dict(best_state)
    model.eval()

    with torch.no_grad():
        sur_losses = torch.cat([model(p, t) for p, t in zip(v_pred.split(256), v_target.split(256), strict=True)])
        base_losses = task_obj.baseline(v_pred, v_target)
    ours, base = agreement(sur_losses, v_metric, True), agreement(base_losses, v_metric, True)
    grad_ours = grad_base = None
    if gradient_probe:
        # The probe is mostly metric evaluations (2 x 16 per batch): counted as metric time.
        t0 = time.perf_counter()
        probe_p, probe_t = v_pred[:gradient_probe], v_target[:gradient_probe]
        grad_ours = gradient_agreement(model, met, probe_p, probe_t, sigma=sigma, seed=seed)
        grad_base = gradient_agreement(task_obj.baseline, met, probe_p, probe_t, sigma=sigma, seed=seed)
        metric_time += time.perf_counter() - t0
    learn_seconds = time.perf_counter() - t_start
    report_method = objective if gradient_weight == 0 or objective == "gradient" else f"{objective}+gradient"
    report = Report.from_agreement(
        task_obj, met, report_method, ours, base,
        validation=validation,
        n_validation_batches=int(v_pred.shape[0]),
        batch_size=batch_size,
        gradient_agreement=grad_ours,
        baseline_gradient_agreement=grad_base,
        settings=settings,
        steps=step,
        best_step=best_step,
        learn_seconds=learn_seconds,
        metric_seconds=metric_time,
        history=history,
    )
    return Surrogate(task_obj, model, net_config, report)
