"""The settings of one learning run (:class:`LearnSettings`): every argument of :func:`metricloss.learn` that
shapes learning, checked once, here, with the task's defaults filled in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed as dist

from .._checks import check_bool, check_choice, check_int, check_nonnegative, check_positive
from .._memory import DEFAULT_MEMORY_BUDGET, parse_budget
from ..objectives import OBJECTIVES
from ..tasks.base import DEFAULT_STEPS, Task

__all__ = ["DEFAULT_STEPS", "LearnSettings"]


@dataclass(frozen=True)
class LearnSettings:
    """Validated learning settings; build with :meth:`resolve` (which fills the task's defaults).

    Field meanings are those of :func:`metricloss.learn`'s arguments; ``max_steps`` is ``steps``,
    ``net_config`` the surrogate network's configuration, ``p_random`` and ``pool_size`` what was asked for
    (``None``: decided by the batch preparation, see :mod:`metricloss.learning.batches`), ``memory_budget`` the
    budget in bytes the pool, the held-out batches and the measurement chunks are sized by (:mod:`metricloss._memory`).
    """

    objective: str
    max_steps: int
    batch_size: int
    batches_per_step: int
    p_random: float | None
    penalty: float
    lr: float
    weight_decay: float
    net_config: dict[str, Any]
    pool_size: int | None
    validation_batches: int
    eval_every: int
    patience: int
    rank_strength: float
    seed: int
    progress: bool
    checkpoint: Path | None
    gradient_weight: float
    directions: int
    sigma: float
    gradient_probe: int
    distributed: bool = False
    metric_workers: int = 1
    memory_budget: int = DEFAULT_MEMORY_BUDGET

    @classmethod
    def resolve(cls, task: Task, *, objective: str = "spearman", steps: int | None = None,
                batch_size: int | None = None, batches_per_step: int | None = None, p_random: float | None = None,
                penalty: float = 10.0, lr: float = 0.01, weight_decay: float = 1e-4,
                net: dict[str, Any] | None = None, pool_size: int | None = None, validation_batches: int = 256,
                eval_every: int = 25, patience: int = 6, rank_strength: float = 10.0, seed: int = 0,
                progress: bool = True, checkpoint: str | Path | None = None, gradient_weight: float = 0.0,
                directions: int = 8, sigma: float = 0.3, gradient_probe: int = 64, distributed: bool | None = None,
                metric_workers: int = 1, memory_budget: int | float | str | None = None) -> LearnSettings:
        """Check every argument (errors name it) and fill the task's defaults."""
        check_choice(objective, "objective", OBJECTIVES)
        gradient_weight = check_nonnegative(gradient_weight, "gradient_weight")
        if objective == "gradient" and gradient_weight == 0:
            gradient_weight = 1.0
        if p_random is not None and not 0.0 <= float(p_random) <= 1.0:
            raise ValueError(f"`p_random` must be in [0, 1], got {p_random!r}")
        return cls(
            objective=objective,
            max_steps=check_int(steps if steps is not None else task.default_steps, "steps", 1),
            batch_size=check_int(batch_size if batch_size is not None else task.default_batch_size, "batch_size", 1),
            batches_per_step=check_int(batches_per_step if batches_per_step is not None
                                       else task.default_batches_per_step, "batches_per_step", 2),
            p_random=None if p_random is None else float(p_random),
            penalty=check_nonnegative(penalty, "penalty"),
            lr=check_positive(lr, "lr"),
            weight_decay=check_nonnegative(weight_decay, "weight_decay"),
            net_config=_net_config(task, net, objective),
            pool_size=None if pool_size is None else check_int(pool_size, "pool_size", 2),
            validation_batches=check_int(validation_batches, "validation_batches", 2),
            eval_every=check_int(eval_every, "eval_every", 1),
            patience=check_int(patience, "patience", 1),
            rank_strength=check_positive(rank_strength, "rank_strength"),
            seed=check_int(seed, "seed"),
            progress=check_bool(progress, "progress"),
            checkpoint=None if checkpoint is None else Path(checkpoint),
            gradient_weight=gradient_weight,
            directions=check_int(directions, "directions", 2),
            sigma=check_positive(sigma, "sigma"),
            gradient_probe=check_int(gradient_probe, "gradient_probe", 0),
            distributed=_distributed(distributed, gradient_weight, batches_per_step),
            metric_workers=check_int(metric_workers, "metric_workers", 1),
            memory_budget=parse_budget(memory_budget),
        )

    @property
    def report_method(self) -> str:
        """The report's ``method``: the objective, ``"+gradient"`` when the gradient term is added to it."""
        if self.gradient_weight == 0 or self.objective == "gradient":
            return self.objective
        return f"{self.objective}+gradient"

    def as_dict(self, *, p_random: float, pool_size: int) -> dict[str, Any]:
        """The settings stored in the report (and fingerprinted by checkpoints), with the resolved pool sizes."""
        return {
            "objective": self.objective, "penalty": self.penalty, "lr": self.lr, "weight_decay": self.weight_decay,
            "batches_per_step": self.batches_per_step, "p_random": p_random, "pool_size": pool_size,
            "rank_strength": self.rank_strength, "seed": self.seed, "max_steps": self.max_steps,
            "eval_every": self.eval_every, "patience": self.patience, "net": self.net_config,
            "gradient_weight": self.gradient_weight, "directions": self.directions, "sigma": self.sigma,
        }


def _distributed(distributed: bool | None, gradient_weight: float, batches_per_step: int | None) -> bool:
    """``distributed``: ``None`` detects an initialised process group with more than one rank."""
    initialised = dist.is_available() and dist.is_initialized()
    if distributed is None:
        distributed = initialised and dist.get_world_size() > 1
    elif check_bool(distributed, "distributed") and not initialised:
        raise ValueError(
            "`distributed=True` needs an initialised torch.distributed process group: call "
            "torch.distributed.init_process_group(...) first (torchrun sets up its env:// variables), "
            "or pass distributed=None to detect one")
    if distributed and gradient_weight > 0:
        raise ValueError(
            "distributed learning does not support the correlated-gradients term yet (`gradient_weight` > 0 or "
            "objective='gradient'); learn it on one rank with distributed=False")
    if distributed and batches_per_step is not None and batches_per_step < dist.get_world_size():
        raise ValueError(f"`batches_per_step` ({batches_per_step}) must be at least the number of ranks "
                         f"({dist.get_world_size()}) so that every rank has a share of each step's batches")
    return bool(distributed)


def _net_config(task: Task, net: dict[str, Any] | None, objective: str) -> dict[str, Any]:
    if net is not None and not isinstance(net, dict):
        raise TypeError(f"`net` must be a dict of network options or None, got {type(net).__name__}")
    config = dict(task.default_net_config() if net is None else net)
    if net is None and objective == "gradient" and config.get("absolute"):
        # The paper's |MLP| output makes the loss V-shaped; a gradient-only objective then flips the V's
        # branches from step to step (measured: held-out gradient agreement jumping between -0.5 and +0.6).
        config["absolute"] = False
    return config
