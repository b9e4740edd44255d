r"""The learning loop: :class:`Trainer` (one :meth:`~Trainer.step` of Algorithm 1, validation, the run),
:class:`EarlyStopping` and the checkpoint hook :class:`Checkpointing`.

Each step draws N batches (:meth:`~metricloss.learning.batches.LearningBatches.draw`), computes the surrogate
loss :math:`l_i` of every batch and descends

.. math:: \rho_S(\mathrm{softrank}(l), \mathrm{rank}(m)) + \lambda\,\frac1N\sum_i (\lVert\nabla_{y_i} l_i\rVert_2 - 1)^2

(or Kendall's soft :math:`\tau`, or an L2/L1 fit to the metric value, plus the correlated-gradients term when
``gradient_weight > 0``). Every ``eval_every`` steps the model-selection score on the held-out batches is
measured; the best weights are kept and learning stops once it has not improved for ``patience`` evaluations.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .._checkpoint import load_progress, save_progress
from .._memory import chunk_count
from ..evaluation import agreement, gradient_agreement, metric_changes
from ..objectives import approximation_objective, gradient_objective, gradient_penalty, rank_objective
from .batches import LearningBatches, StepBatches, TimedMetric
from .distributed import (
    barrier,
    from_main,
    gather_losses,
    is_main,
    rank_share,
    share_of,
    sum_gradients,
    sum_scalar,
    world,
)
from .settings import LearnSettings

__all__ = ["Checkpointing", "DistributedTrainer", "EarlyStopping", "Trainer"]

#: Steps in a row whose objective or gradient may be non-finite before learning gives up.
MAX_NONFINITE = 10
#: Copies of a batch's predictions a surrogate net's forward pass is assumed to hold (its features, activations):
#: validation chunks are sized by it against the memory budget.
FORWARD_COPIES = 4


@dataclass
class EarlyStopping:
    """Keeps the best weights and stops after ``patience`` validations without an improvement of ``min_delta``."""

    patience: int
    min_delta: float = 1e-4
    best_score: float = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    best_step: int = 0
    bad: int = 0
    done: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    def update(self, step: int, score: float, objective: float | None,
               state: Callable[[], dict[str, torch.Tensor]]) -> bool:
        """Record a validation; ``state()`` is called for the weights when ``score`` is the new best. Returns
        whether learning should stop."""
        self.history.append({"step": step, "score": score if math.isfinite(score) else None, "objective": objective})
        if score > self.best_score + self.min_delta:
            self.best_score, self.best_state, self.best_step, self.bad = score, state(), step, 0
        else:
            self.bad += 1
            self.done = self.bad >= self.patience
        return self.done


class Trainer:
    """Learns ``model`` on ``batches`` with the objective of ``settings`` (Adam, seeded by ``generator``)."""

    def __init__(self, model: nn.Module, metric: TimedMetric, batches: LearningBatches, settings: LearnSettings,
                 generator: torch.Generator) -> None:
        self.model, self.metric, self.batches, self.settings, self.gen = model, metric, batches, settings, generator
        self.opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        self.stopping = EarlyStopping(settings.patience)
        self.steps = 0
        self.nonfinite = 0
        self.last_objective: torch.Tensor | None = None

    def objective(self, batch: StepBatches) -> torch.Tensor:
        """The learning objective of one step's batches (differentiable in the model's weights)."""
        s = self.settings
        pred = batch.pred.requires_grad_(True)
        losses = self.model(pred, batch.target)
        if s.objective in ("spearman", "kendall"):
            obj = rank_objective(losses, batch.values, s.objective, s.rank_strength)
        elif s.objective in ("l2", "l1"):
            obj = approximation_objective(losses, batch.values, s.objective, self.batches.offset)
        else:
            obj = losses.sum() * 0.0
        if s.penalty > 0 or s.gradient_weight > 0:
            (grads,) = torch.autograd.grad(losses.sum(), pred, create_graph=True)
        if s.penalty > 0:
            obj = obj + s.penalty * gradient_penalty(grads)
        if s.gradient_weight > 0:
            deltas, changes = self._metric_changes(pred, batch.target)
            obj = obj + s.gradient_weight * gradient_objective(grads, deltas, changes)
        return obj

    def _metric_changes(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t0 = time.perf_counter()
        out = metric_changes(self.metric.batch_metric, pred, target, self.settings.directions, self.settings.sigma,
                             self.gen)
        self.metric.seconds += time.perf_counter() - t0
        return out

    def step(self) -> torch.Tensor:
        """One learning step; the weights move only when the objective and all its gradients are finite."""
        self.steps += 1
        obj = self.objective(self.batches.draw(self.settings.batches_per_step, self.gen))
        return self._descend(obj, obj)

    def _sync_gradients(self) -> None:
        """Hook between ``backward()`` and the finiteness check (the distributed trainer sums gradients here)."""

    def _descend(self, local: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        """Backpropagate ``local`` (this process's part of the objective ``obj``) and step when all is finite."""
        self.opt.zero_grad(set_to_none=True)
        if torch.isfinite(obj):
            local.backward()
        self._sync_gradients()
        finite = bool(torch.isfinite(obj)) and all(
            p.grad is None or bool(torch.isfinite(p.grad).all()) for p in self.model.parameters())
        if finite:
            self.opt.step()
            self.nonfinite = 0
        else:  # never let a NaN (in the objective or its gradients) reach the weights
            self.nonfinite += 1
            if self.nonfinite >= MAX_NONFINITE:
                raise RuntimeError(
                    f"the learning objective or its gradient was not finite for {MAX_NONFINITE} steps in a row; "
                    "try a smaller `lr` or `penalty`"
                )
        self.last_objective = obj.detach()
        return self.last_objective

    def validate(self) -> float:
        """Model-selection score: exact Spearman on the held-out batches, or, for ``objective="gradient"``, the
        gradient agreement it optimises (on the first ``max(gradient_probe, 8)`` held-out batches)."""
        s = self.settings
        v_pred, v_target, v_values = self.batches.heldout
        self.model.eval()
        try:
            if s.objective == "gradient":
                n = max(s.gradient_probe, 8)
                score = gradient_agreement(self.model, self.metric.batch_metric, v_pred[:n], v_target[:n],
                                           directions=s.directions, sigma=s.sigma, seed=s.seed,
                                           memory_budget=s.memory_budget)
            else:
                chunk = chunk_count(v_pred[0].nbytes, s.memory_budget, 256, FORWARD_COPIES)
                with torch.no_grad():
                    losses = torch.cat([self.model(p, t) for p, t in
                                        zip(v_pred.split(chunk), v_target.split(chunk), strict=True)])
                if not bool(torch.isfinite(losses).all()):
                    return -math.inf
                score = agreement(losses, v_values, True)["spearman"]
        finally:
            self.model.train()
        return score if math.isfinite(score) else -math.inf  # constant losses: correlation undefined

    @property
    def done(self) -> bool:
        return self.stopping.done or self.steps >= self.settings.max_steps

    def run(self, hooks: tuple[Callable[[Trainer], None], ...] = (), desc: str = "learning") -> None:
        """Step until early stopping or ``max_steps``, validating every ``eval_every`` steps; each hook is called
        with the trainer after every validation (e.g. :class:`Checkpointing`)."""
        s = self.settings
        bar = tqdm(total=s.max_steps, initial=self.steps, disable=not (s.progress and is_main()), desc=desc,
                   leave=False)
        while not self.done:
            obj = self.step()
            bar.update(1)
            if self.steps % s.eval_every == 0 or self.steps == s.max_steps:
                score = self.validate()
                bar.set_postfix(val_score=f"{score:.4f}")
                self.stopping.update(self.steps, score, float(obj) if torch.isfinite(obj) else None,
                                     lambda: copy.deepcopy(self.model.state_dict()))
                self.stopping.done = self.done
                for hook in hooks:
                    hook(self)
        bar.close()

    def best_model(self) -> nn.Module:
        """The model with the best validated weights loaded, in eval mode."""
        if self.stopping.best_state is None:
            raise RuntimeError(
                "no validation score was ever defined: the surrogate's losses were constant or not finite"
                + (", or the metric never moved along the probe directions (try a larger `sigma`)"
                   if self.settings.objective == "gradient" else "")
                + "; try a smaller `lr`")
        self.model.load_state_dict(self.stopping.best_state)
        return self.model.eval()


class DistributedTrainer(Trainer):
    """The trainer on every rank of a process group: each step's N batches (drawn identically on every rank) are
    split across the ranks; each computes the losses of its share, which are all-gathered (differentiably) so the
    rank objective is over all N, and the nets' gradients are summed over the ranks before Adam steps. Every rank
    thus takes the same step and ends with the same weights. Validation is replicated (every rank scores the same
    held-out batches with the same weights) and decided once: every rank's early stopping and best checkpoint follow
    rank 0's score, so no rank can stop alone (on held-out batches or a score that differ on one rank)."""

    def validate(self) -> float:
        return from_main(super().validate())

    def step(self) -> torch.Tensor:
        self.steps += 1
        s = self.settings
        batch = self.batches.draw(s.batches_per_step, self.gen)
        n = batch.values.shape[0]
        share = share_of(batch, *rank_share(n, *world()))
        pred = share.pred.requires_grad_(True)
        local = self.model(pred, share.target)
        losses = gather_losses(local, n)
        if s.objective in ("spearman", "kendall"):
            common = rank_objective(losses, batch.values, s.objective, s.rank_strength)
        else:  # "l2" / "l1" (settings refuse the gradient objective here)
            common = approximation_objective(losses, batch.values, s.objective, self.batches.offset)
        own = local.sum() * 0.0
        if s.penalty > 0 and pred.shape[0] > 0:
            (grads,) = torch.autograd.grad(local.sum(), pred, create_graph=True)
            own = s.penalty * gradient_penalty(grads) * (pred.shape[0] / n)  # this share of the mean over N
        return self._descend(common + own, common.detach() + sum_scalar(own))

    def _sync_gradients(self) -> None:
        sum_gradients(self.model)


class Checkpointing:
    """The checkpoint hook: after every validation, save everything a resumed run needs to ``path`` (atomic);
    :meth:`resume` restores it when the file exists and its fingerprint is this run's."""

    def __init__(self, path: str | Path, fingerprint: str, *, distributed: bool = False) -> None:
        self.path, self.fingerprint, self.distributed = Path(path), fingerprint, distributed

    def resume(self, trainer: Trainer) -> bool:
        """Restore ``trainer`` from the file when it is this run's (in a process group: every rank reads it)."""
        if self.distributed:
            barrier()
        resumed = load_progress(self.path, fingerprint=self.fingerprint, model=trainer.model, opt=trainer.opt,
                                gen=trainer.gen)
        if resumed is None:
            return False
        st = trainer.stopping
        trainer.steps, st.best_step, st.bad, st.history, st.done = (
            resumed["step"], resumed["best_step"], resumed["bad"], resumed["history"], resumed["done"])
        st.best_score = resumed["best_score"] if resumed["best_score"] is not None else -math.inf
        st.best_state = resumed["best_state"]
        return True

    def __call__(self, trainer: Trainer) -> None:
        if not self.distributed or is_main():
            self._save(trainer)
        if self.distributed:
            barrier()

    def _save(self, trainer: Trainer) -> None:
        st = trainer.stopping
        save_progress(self.path, fingerprint=self.fingerprint, model=trainer.model, opt=trainer.opt, gen=trainer.gen,
                      best_state=st.best_state,
                      progress={"step": trainer.steps, "best_step": st.best_step, "bad": st.bad, "history": st.history,
                                "done": st.done,
                                "best_score": st.best_score if math.isfinite(st.best_score) else None})
