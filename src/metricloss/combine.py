r"""`combine(base, surrogate, weight="auto")`: add a surrogate to the loss it corrects without letting it dominate.

The surrogate's weight is set from the two terms' gradients with respect to the predictions (gradient-magnitude
loss balancing, see :class:`CombinedLoss`), and a surrogate whose own descent trial does not show that a step along
the combined loss helps the metric more than one along the baseline loss is left out (:func:`trial_gate`; the older
rule by held-out Spearman is :func:`verdict_gate`). The functional core is
:func:`prediction_gradient_norms`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ._checks import check_choice, check_tensor
from .verdict import REAL, WeakSurrogateWarning

__all__ = ["GATES", "TRIAL_MARGIN", "CombinedLoss", "LossFn", "combine", "prediction_gradient_norms", "trial_gate",
           "verdict_gate"]

#: The values of ``gate``: ``"trial"`` (the default, the descent trial, :func:`trial_gate`), ``"verdict"`` (held-out
#: Spearman, :func:`verdict_gate`) or ``None`` (off).
GATES = ("verdict", "trial", None)
#: ``gate="trial"`` keeps the surrogate when its descent-trial gain is above this many standard errors (and positive at
#: every step size).
TRIAL_MARGIN = 2.0

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Schedule = Callable[[int], float]


def prediction_gradient_norms(
    base_loss: torch.Tensor, surrogate_loss: torch.Tensor, pred: torch.Tensor
) -> tuple[float, float]:
    r"""The Euclidean norms :math:`(\lVert\nabla_{\hat y} L_b\rVert_2, \lVert\nabla_{\hat y} L_s\rVert_2)` of two
    scalar losses' gradients with respect to the predictions ``pred``.

    Only the graph between ``pred`` and the losses is traversed (never the model that produced ``pred``), and
    the graph is retained, so the caller can still call ``backward()`` on any combination of the two. A loss
    that does not depend on ``pred`` has norm 0.

    Args:
        base_loss, surrogate_loss: scalar tensors computed from ``pred``.
        pred: the predictions, a tensor that requires grad (a leaf or the model's output).

    Returns:
        The two norms as Python floats (they may be ``nan`` or ``inf`` if a loss's gradient is).
    """
    norms = []
    for loss in (base_loss, surrogate_loss):
        if not loss.requires_grad:
            norms.append(0.0)
            continue
        (grad,) = torch.autograd.grad(loss, pred, retain_graph=True, allow_unused=True)
        norms.append(0.0 if grad is None else float(grad.detach().double().norm()))
    return norms[0], norms[1]


def verdict_gate(surrogate: object) -> tuple[bool, str]:
    r"""Whether the surrogate's own verdict allows ``weight="auto"`` to use it, and why.

    The surrogate is left out when it carries a report (``surrogate.report.verdict``, what
    :func:`metricloss.learn` writes) with a comparison on held-out **real** model outputs (``outputs=`` was given)
    whose Spearman difference :math:`d = \rho_s - \rho_b` against the baseline loss is not positive: on the outputs
    of the very model it is meant for, it ranks the metric no better than the loss it would correct. Anything else is
    kept: :math:`d > 0`, an undefined :math:`d` (``"unknown"``), a verdict on random batches only (the zoo's files),
    or no report at all (any other callable).

    Args:
        surrogate: the surrogate (any object; only ``report.verdict.real`` is read, if present).

    Returns:
        ``(use, reason)``: ``use`` False when the gate leaves the surrogate out; ``reason`` says why, in words.

    Example:
        >>> import metricloss as ml
        >>> from metricloss.combine import verdict_gate
        >>> verdict_gate(ml.pretrained("classification-accuracy"))
        (True, 'no verdict on held-out real outputs: kept')
    """
    verdict = getattr(getattr(surrogate, "report", None), "verdict", None)
    real = getattr(verdict, "real", None)
    if real is None or getattr(real, "regime", REAL) != REAL:
        return True, "no verdict on held-out real outputs: kept"
    d = float(real.difference)
    if not math.isfinite(d):
        return True, f"its verdict on held-out real outputs is undefined (d = {d}): kept"
    words = (f"Spearman {real.spearman:.4f} vs the baseline's {real.baseline_spearman:.4f} on {real.n_batches} "
             f"held-out real-output batches, d = {d:+.4f}")
    if d > 0:
        return True, f"{words} > 0: kept"
    return False, f"{words} <= 0: left out"


def trial_gate(surrogate: object) -> tuple[bool, str]:
    r"""Whether the surrogate's descent trial allows ``weight="auto"`` to use it, and why (``gate="trial"``).

    :func:`metricloss.learn` (with ``outputs=``) measures on the held-out recorded outputs whether the metric improves
    more along ``combine(base, surrogate)``'s descent direction than along the base loss's, at equal step lengths
    (``surrogate.report.verdict.trial``, a :class:`~metricloss.verdict.TrialComparison`; the measurement is
    :func:`metricloss.evaluation.descent_trial`). The surrogate is kept when both

    - the mean paired gain :math:`D` (over batches and step sizes) is above :data:`TRIAL_MARGIN` standard errors, and
    - the mean gain is positive at *every* step size (``trial.gains``): a combined direction that gains at small steps
      but loses at larger ones flips a few outputs at the boundary at the expense of the base loss's progress (what
      the sequence surrogate of issue 15 did: no gain in training BLEU, a loss in test BLEU);

    and left out otherwise. A surrogate with a real-output verdict but no trial (saved before trials existed) is
    judged by :func:`verdict_gate`; one without a real-output verdict (the zoo's, any plain callable) is kept.

    Args:
        surrogate: the surrogate (any object; only ``report.verdict`` is read, if present).

    Returns:
        ``(use, reason)``, as :func:`verdict_gate`.

    Example:
        >>> import metricloss as ml
        >>> from metricloss.combine import trial_gate
        >>> trial_gate(ml.pretrained("classification-accuracy"))
        (True, 'no verdict on held-out real outputs: kept')
    """
    verdict = getattr(getattr(surrogate, "report", None), "verdict", None)
    trial = getattr(verdict, "trial", None)
    if trial is None:
        return verdict_gate(surrogate)
    gain, se = float(trial.gain), float(trial.standard_error)
    if not math.isfinite(gain):
        return True, f"its descent trial on held-out real outputs is undefined (gain {gain}): kept"
    bar = TRIAL_MARGIN * se if math.isfinite(se) else 0.0
    gains = tuple(float(g) for g in trial.gains)
    steps = ", ".join(f"{g:+.5f} at {e:g}" for g, e in zip(gains, trial.steps, strict=False))
    words = (f"the metric gains {gain:+.5f} (standard error {se:.5f}; {steps}) more along the combined loss's descent "
             f"direction than along the baseline's on {trial.n_batches} held-out real-output batches")
    if gain <= bar:
        return False, f"{words}: not above {TRIAL_MARGIN:g} standard errors, left out"
    if gains and min(gains) <= 0:
        return False, f"{words}: not positive at every step size, left out"
    return True, f"{words}: above {TRIAL_MARGIN:g} standard errors and positive at every step size, kept"


class CombinedLoss(nn.Module):
    r"""A base loss plus a surrogate, the surrogate weighted so that neither term dominates a step.

    .. math::

        \ell(\hat y, y) = L_b(\hat y, y) + w_t \, L_s(\hat y, y)

    With ``weight="auto"`` the weight is set, at every training call, from the gradients of the two terms with
    respect to the predictions :math:`\hat y` (not the model's parameters, so it costs two backward passes
    through the losses only):

    .. math::

        w^\ast_t = r \, \frac{\lVert \nabla_{\hat y} L_b \rVert_2}{\lVert \nabla_{\hat y} L_s \rVert_2}, \qquad
        \bar w_t = \mu \, \bar w_{t-1} + (1 - \mu) \, w^\ast_t, \qquad
        w_t = \bar w_t \cdot \min(1, t / T_{\text{warm}}) \cdot s(t)

    where :math:`r` is ``ratio``, :math:`\mu` ``momentum`` (the first measurement initialises
    :math:`\bar w`), :math:`T_{\text{warm}}` ``warmup`` and :math:`s` the optional ``schedule``; :math:`t`
    counts training calls from 0. :math:`w_t` is detached: gradients flow through both losses, never
    through the weight. With ``momentum=0`` and no warm-up, the surrogate's gradient with respect to the
    predictions has exactly ``ratio`` times the norm of the base loss's.

    Why ``ratio=0.5`` by default: for any :math:`r < 1` the combined gradient (in prediction space) stays a
    descent direction of the base loss, :math:`\langle \nabla L_b + w\nabla L_s, \nabla L_b\rangle \ge
    (1 - r)\lVert\nabla L_b\rVert^2 > 0`, within :math:`\arcsin r` (30° at 0.5) of the base gradient, and the
    step is at most :math:`1 + r` times the base's alone; at :math:`r = 1` the surrogate can cancel the base
    gradient. A surrogate that disagrees with the metric on your outputs can therefore slow the base loss but
    never reverse it.

    Method: gradient-magnitude loss balancing. GradNorm (Chen, Badrinarayanan, Lee and Rabinovich, ICML 2018)
    balances multitask losses by learning their weights with an extra L1 loss that pulls each task's gradient
    norm, on the last shared layer, towards the tasks' average times a training-rate term
    :math:`r_i(t)^\alpha`. The closed-form ratio of gradient norms used here is the "adaptive weight" of
    VQGAN (Esser, Rombach and Ommer, *Taming Transformers for High-Resolution Image Synthesis*, CVPR 2021),
    which scales a GAN loss by the ratio of its and the reconstruction loss's gradient norms on the decoder's
    last layer. Ours differs from both: the gradients are taken with respect to the predictions (the only
    thing a loss module sees, and cheap); the base loss is the fixed reference and only the surrogate's
    weight adapts (no training-rate term, no renormalisation of the weights); the weight is smoothed by an
    exponential moving average, ramped in by a warm-up, and ``ratio`` sets the share instead of 1.

    **Verdict gate** (``gate="verdict"``, the default before issue 24; ``weight="auto"`` only): a surrogate whose
    report says that on held-out outputs of your own model it ranks the metric no better than the baseline loss
    (Spearman difference :math:`d = \rho_s - \rho_b \le 0` on the real-output part of ``surrogate.report.verdict``, see
    :func:`verdict_gate`) is left out: :math:`w_t = 0` at every call, the surrogate is not even evaluated, the loss is
    exactly ``base`` and a :class:`~metricloss.WeakSurrogateWarning` says so at construction (:attr:`gated`,
    :attr:`gate_reason`). Why: such a surrogate adds a second, worse model of the metric; on issue 15's sequence task
    (``docs/results.md``) every prediction-space correction of its gradient we tried (cosine gating as in Du et al.
    2018, PCGrad projection as in Yu et al. 2020, per-coordinate sign agreement) still lost BLEU as a fine-tune, while
    cosine gating cut the gain of a surrogate that helps (pose) threefold. Surrogates without a real-output verdict
    (the zoo's, any plain callable) are never gated; ``gate=None`` turns the gate off.

    **Trial gate** (``gate="trial"``, the default): decides instead by the descent trial that
    :func:`metricloss.learn` stores in the report (:func:`trial_gate`): does the metric improve more, on held-out
    recorded outputs, along this combined loss's descent direction than along the base loss's? Held-out Spearman
    does not predict training well (issue 24: a pose surrogate ranked below MSE and helped on 10 of 10 seeds; a
    sequence surrogate ranked above CE and hurt); the trial asks about the step training takes instead of the
    ranking. On the six downstream data sets of ``docs/results.md`` (round 3) it keeps the pose, digits and diabetes
    surrogates and leaves out MNIST-5k's, breast cancer's and sequence's, with no row significantly worse; a
    surrogate without a trial falls back to the verdict gate.

    Safety: when the surrogate's gradient is zero or not finite (or the base's is not finite), the weight is
    not updated (before any valid measurement it is 0, the surrogate off); the weight is never NaN. When
    ``pred`` does not require grad, autograd is disabled (``torch.no_grad()``) or the module is in eval mode,
    the last weight is used and nothing is updated, so validation losses are comparable across steps. Under an
    initialised ``torch.distributed`` process group (``distributed=None`` detects it), the squared gradient
    norms are summed over ranks before the ratio, so every rank uses the same weight (one all-reduce of two
    numbers per training call: call the loss on every rank). One host synchronisation per training call reads
    the norms.

    Args:
        base: the loss the surrogate corrects, ``base(pred, target) -> scalar`` (``F.cross_entropy``,
            ``nn.MSELoss()``, a task's baseline).
        surrogate: the surrogate, ``surrogate(pred, target) -> scalar`` (a :class:`metricloss.Surrogate`
            or any such callable).
        weight: ``"auto"`` or a fixed non-negative float (then ``base + weight * surrogate``, times the
            warm-up ramp and schedule if given).
        ratio: the target norm of the surrogate's gradient as a fraction of the base's (``"auto"`` only).
        momentum: EMA factor in ``[0, 1)`` for the auto weight; 0 uses each step's own ratio.
        warmup: training calls over which the weight ramps linearly from 0 (``0``: no warm-up).
        schedule: optional ``schedule(t) -> float`` multiplying the weight at training call ``t``.
        reduction: ``"mean"`` (the two scalar losses as given) or ``"sum"`` (the combined loss times the
            batch size ``pred.shape[0]``). A surrogate scores a whole batch, so there is no ``"none"``.
        distributed: share the auto weight across an initialised process group (``None``: when one is).
        gate: ``"trial"`` (default): with ``weight="auto"``, leave out a surrogate whose descent trial is not above
            :data:`TRIAL_MARGIN` standard errors or not positive at every step (:func:`trial_gate`); ``"verdict"``: one
            whose real-output verdict is not positive (:func:`verdict_gate`); ``None``: never.

    Shape:
        - pred: whatever ``base`` and ``surrogate`` take, e.g. logits :math:`(B, C)`.
        - target: likewise, e.g. class indices :math:`(B,)`.
        - Output: scalar.

    Example:
        >>> import torch, torch.nn.functional as F, metricloss as ml
        >>> loss_fn = ml.combine(F.cross_entropy, ml.pretrained("classification-accuracy"))
        >>> logits = torch.randn(64, 10, requires_grad=True)
        >>> target = torch.randint(0, 10, (64,))
        >>> loss = loss_fn(logits, target)
        >>> loss.backward()
        >>> loss_fn.weight > 0
        True
    """

    def __init__(
        self,
        base: LossFn,
        surrogate: LossFn,
        weight: float | str = "auto",
        *,
        ratio: float = 0.5,
        momentum: float = 0.9,
        warmup: int = 0,
        schedule: Schedule | None = None,
        reduction: str = "mean",
        distributed: bool | None = None,
        gate: str | None = "trial",
    ) -> None:
        super().__init__()
        for name, fn in (("base", base), ("surrogate", surrogate)):
            if not callable(fn):
                raise TypeError(f"`{name}` must be a loss callable `{name}(pred, target) -> scalar`, "
                                f"got {type(fn).__name__}")
        self.base = base  # an nn.Module is registered as a submodule (moves with .to(), saved in state_dict)
        self.surrogate = surrogate
        self.auto = _check_weight(weight)
        self.ratio = _check_number(ratio, "ratio", low=0.0, low_open=True)
        self.momentum = _check_number(momentum, "momentum", low=0.0, high=1.0)
        self.warmup = _check_count(warmup, "warmup")
        if schedule is not None and not callable(schedule):
            raise TypeError(f"`schedule` must be a callable `schedule(step) -> float` or None, "
                            f"got {type(schedule).__name__}")
        self.schedule = schedule
        self.reduction = check_choice(reduction, "reduction", ("mean", "sum"))
        self.distributed = distributed
        if gate not in GATES:
            raise ValueError(f"`gate` must be 'verdict' (leave out a surrogate whose verdict on held-out real outputs "
                             f"is not positive), 'trial' (one whose descent trial is not positive) or None (never), "
                             f"got {gate!r}")
        self.gate = gate
        rule = {"verdict": verdict_gate, "trial": trial_gate}.get(gate) if self.auto else None
        use, self.gate_reason = rule(surrogate) if rule is not None else (True, "gate off")
        #: True when the verdict gate left the surrogate out: the loss is exactly ``base``.
        self.gated = not use
        if self.gated:
            warnings.warn(f"combine(weight='auto') leaves the surrogate out (weight 0): {self.gate_reason}; on your "
                          f"model's outputs it is not measured to help the baseline loss. Pass gate=None to use it "
                          f"anyway.",
                          WeakSurrogateWarning, stacklevel=3)
        # State, saved in state_dict as "_extra_state" (Python numbers, not buffers: `.to(dtype)` never rounds
        # them and DDP has no buffers to broadcast): the smoothed weight, how many valid measurements made it, the
        # training call counter, and the last measured gradient norms (for logging).
        self.weight_ema = 0.0 if self.auto else float(weight)
        self.updates = 0
        self.step = 0
        self.base_grad_norm = 0.0
        self.surrogate_grad_norm = 0.0

    @property
    def weight(self) -> float:
        """The surrogate's weight the next evaluation call uses (after warm-up and schedule)."""
        return self._weight_at(max(self.step - 1, 0))

    def _weight_at(self, step: int) -> float:
        if self.gated:
            return 0.0
        w = self.weight_ema
        if self.warmup:
            w *= min(1.0, step / self.warmup)
        if self.schedule is not None:
            factor = float(self.schedule(step))
            if not math.isfinite(factor) or factor < 0:
                raise ValueError(f"`schedule({step})` returned {factor!r}; expected a finite number >= 0")
            w *= factor
        return w

    def _updating(self, pred: torch.Tensor) -> bool:
        return self.training and torch.is_grad_enabled() and pred.requires_grad

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_tensor(pred, "pred")
        base = _scalar(self.base(pred, target), "base")
        if self.gated:
            if self._updating(pred):
                self.step += 1
            return base * pred.shape[0] if self.reduction == "sum" else base
        sur = _scalar(self.surrogate(pred, target), "surrogate")
        if self._updating(pred):
            if self.auto:
                self._update(base, sur, pred)
            w = self._weight_at(self.step)
            self.step += 1
        else:
            w = self.weight
        total = base if w == 0.0 else base + w * sur.to(base.dtype)
        return total * pred.shape[0] if self.reduction == "sum" else total

    def _update(self, base: torch.Tensor, sur: torch.Tensor, pred: torch.Tensor) -> None:
        gb, gs = prediction_gradient_norms(base, sur, pred)
        if self._sync():
            sq = torch.tensor([gb * gb, gs * gs], dtype=torch.float64, device=pred.device)
            dist.all_reduce(sq)  # the norms of the whole global batch's gradients (up to a common scale)
            gb, gs = (math.sqrt(v) for v in sq.tolist())
        self.base_grad_norm, self.surrogate_grad_norm = gb, gs
        if not (math.isfinite(gb) and math.isfinite(gs) and gs > 0.0):
            return  # no usable measurement: keep the last weight (0 before the first)
        target_weight = self.ratio * gb / gs
        if not math.isfinite(target_weight):
            return  # gs so small that the ratio overflows
        if self.updates == 0:
            self.weight_ema = target_weight
        else:
            self.weight_ema = self.momentum * self.weight_ema + (1.0 - self.momentum) * target_weight
        self.updates += 1

    def _sync(self) -> bool:
        ready = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if self.distributed is None:
            return ready
        if self.distributed and not ready:
            raise RuntimeError("`distributed=True` needs an initialised torch.distributed process group with "
                               "more than one rank; call torch.distributed.init_process_group first")
        return bool(self.distributed)

    _STATE = ("weight_ema", "updates", "step", "base_grad_norm", "surrogate_grad_norm")

    def get_extra_state(self) -> torch.Tensor:
        # One float64 tensor (exact for counters below 2**53), so state dicts stay all-tensor (safetensors, clone).
        return torch.tensor([float(getattr(self, name)) for name in self._STATE], dtype=torch.float64)

    def set_extra_state(self, state: torch.Tensor) -> None:
        if not isinstance(state, torch.Tensor) or state.shape != (len(self._STATE),):
            raise ValueError(f"CombinedLoss state must be a tensor of {len(self._STATE)} numbers "
                             f"({', '.join(self._STATE)}), got {state!r}")
        for name, value in zip(self._STATE, state.tolist(), strict=True):
            if name == "weight_ema" and not self.auto:
                continue  # a fixed weight is the constructor's, not the checkpoint's
            setattr(self, name, type(getattr(self, name))(value))

    def extra_repr(self) -> str:
        if self.auto:
            mode = f"weight='auto', ratio={self.ratio}, momentum={self.momentum}"
        else:
            mode = f"weight={self.weight_ema}"
        extra = f", warmup={self.warmup}" if self.warmup else ""
        extra += ", schedule=custom" if self.schedule is not None else ""
        extra += ", gated (surrogate left out by its verdict)" if self.gated else ""
        return f"{mode}{extra}, reduction={self.reduction!r}, step={self.step}, current={self.weight:.4g}"


def combine(base: LossFn, surrogate: LossFn, weight: float | str = "auto", **options: Any) -> CombinedLoss:
    """``base + w * surrogate`` as an ``nn.Module`` loss, ``w`` balanced from the gradients: a
    :class:`CombinedLoss`, whose docstring gives the method and the keyword ``options`` (``ratio``, ``momentum``,
    ``warmup``, ``schedule``, ``reduction``, ``distributed``, ``gate``).

    Example:
        >>> import torch, torch.nn.functional as F, metricloss as ml
        >>> loss_fn = ml.combine(F.cross_entropy, ml.pretrained("classification-accuracy"))
        >>> loss_fn(torch.randn(8, 10, requires_grad=True), torch.randint(0, 10, (8,))).dim()
        0
    """
    return CombinedLoss(base, surrogate, weight, **options)


def _scalar(value: object, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"`{name}(pred, target)` must return a scalar tensor (a reduced loss), got {shape}; "
                         f"use its reduction='mean' (or wrap it to return one number per batch)")
    return value


def _check_weight(weight: object) -> bool:
    if isinstance(weight, str):
        if weight != "auto":
            raise ValueError(f"`weight` must be 'auto' or a non-negative number, got {weight!r}")
        return True
    _check_number(weight, "weight", low=0.0)
    return False


def _check_number(value: object, name: str, *, low: float, high: float | None = None,
                  low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}")
    v = float(value)
    bad_low = v <= low if low_open else v < low
    if not math.isfinite(v) or bad_low or (high is not None and v >= high):
        span = f"({low}, inf)" if low_open else (f"[{low}, {high})" if high is not None else f"[{low}, inf)")
        raise ValueError(f"`{name}` must be a finite number in {span}, got {value!r}")
    return v


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer (a number of training calls), got {value!r}")
    return value
