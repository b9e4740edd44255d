r"""The verdict every report carries: should this surrogate be used, judged against the loss it replaces?

A surrogate is worth adding to training only where it ranks the batches a model produces better than the baseline
loss (cross-entropy, BCE, heatmap MSE) already does. :class:`Verdict` answers that in one word, with the numbers
behind it:

- on held-out **real model outputs** (when ``outputs=`` were given to :func:`metricloss.learn`) and on held-out
  **random batches** (G_R), a :class:`RankingComparison`: the Spearman correlation of the surrogate and of the
  baseline with the metric over the same batches, their difference and its standard error;
- a :class:`GradientComparison` of the two losses' gradients with respect to the predictions, batch by batch: the
  norm ratio (what a plain sum ``base + surrogate`` lets the surrogate weigh in a step; :func:`metricloss.combine`
  rescales it) and the cosine (whether they pull the same way).

**The rule.** Let :math:`d = \rho_s - \rho_b` be the difference between the surrogate's and the baseline's Spearman
on :math:`N` held-out batches, and :math:`\mathrm{SE}` the standard deviation of :math:`d` over
:data:`RESAMPLES` paired bootstrap resamples of the batches (the same resampled batches for both losses, a fixed
seed). The surrogate **beats** the baseline when :math:`d > 2\,\mathrm{SE}`, **loses** when
:math:`d < -2\,\mathrm{SE}`, and **ties** otherwise (about a two-sided 95 % test; :data:`MARGIN` is the 2). The
outcome is **unknown** when either correlation is undefined (a constant loss or metric) or nothing was measured
(a file saved before verdicts existed). The verdict's one answer (:attr:`Verdict.outcome`) is the comparison on real
outputs when there is one, else the one on random batches: a surrogate is used on a model's outputs, and random
batches rarely look like them.

:func:`metricloss.learn` warns with :class:`WeakSurrogateWarning` when a surrogate learned with ``outputs=`` does not
beat the baseline on the held-out real outputs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from . import ranking

__all__ = [
    "GRADIENT_BATCHES", "MARGIN", "OUTCOMES", "RANDOM", "REAL", "RESAMPLES", "RULE", "TRIAL_RATIO", "TRIAL_STEPS",
    "GradientComparison", "RankingComparison", "TrialComparison", "Verdict", "WeakSurrogateWarning",
    "compare_gradients", "compare_ranking", "judge", "prediction_gradients",
    "random_check", "warn_if_weak",
]

#: The possible answers.
OUTCOMES = ("beats", "ties", "loses", "unknown")
#: Paired bootstrap resamples of the held-out batches behind the standard error.
RESAMPLES = 1000
#: A difference counts when it is more than this many standard errors away from 0.
MARGIN = 2.0
#: The rule, as stored with every verdict.
RULE = (f"beats / loses: Spearman(surrogate) - Spearman(baseline) above {MARGIN:g} / below -{MARGIN:g} "
        f"paired-bootstrap standard errors ({RESAMPLES} resamples of the held-out batches); ties otherwise")
#: The regimes a ranking comparison is made on.
REAL, RANDOM = "real outputs", "random batches"
#: Held-out batches the gradient comparison uses (the first ones), and the number of random batches
#: :func:`metricloss.learn` draws for its random-batch comparison when it learned from real outputs.
GRADIENT_BATCHES = 64
#: The descent trial's steps (:class:`TrialComparison`): each batch's predictions move this many times their own
#: standard deviation (root mean square per coordinate), along the base loss's and the combined loss's descent
#: directions.
TRIAL_STEPS = (0.01, 0.03, 0.1)
#: The surrogate's share of the combined gradient in the descent trial: ``combine``'s default ``ratio``.
TRIAL_RATIO = 0.5

StackedLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class WeakSurrogateWarning(UserWarning):
    """A learned surrogate does not rank held-out real model outputs better than the baseline loss (its verdict
    there is ``"ties"`` or ``"loses"``): adding it to training is unlikely to improve the metric. Silence it with
    ``warnings.simplefilter("ignore", metricloss.WeakSurrogateWarning)``."""


@dataclass(frozen=True)
class RankingComparison:
    """Surrogate against baseline on one set of held-out batches (see the module's rule).

    Attributes:
        regime: :data:`REAL` (held-out real model outputs) or :data:`RANDOM` (random batches, G_R).
        outcome: ``"beats"``, ``"ties"``, ``"loses"`` or ``"unknown"``.
        spearman, baseline_spearman: Spearman of the negated losses with the metric (higher is better).
        difference: ``spearman - baseline_spearman``.
        standard_error: the paired-bootstrap standard error of ``difference``.
        n_batches: held-out batches compared.
        against: the loss compared with, when it is not the family's baseline (a reference loss of
            :mod:`metricloss.references`, or one given to ``learn(compare_with=...)``); ``baseline_spearman`` is then
            that loss's Spearman.
    """

    regime: str
    outcome: str
    spearman: float
    baseline_spearman: float
    difference: float
    standard_error: float
    n_batches: int
    against: str | None = None

    def describe(self, baseline: str) -> str:
        baseline = self.against or baseline
        return (f"{self.outcome} {baseline} on {self.n_batches} held-out {self.regime}: Spearman {_f(self.spearman)} "
                f"vs {_f(self.baseline_spearman)}, difference {_f(self.difference, '+.4f')} "
                f"(standard error {_f(self.standard_error)})")


@dataclass(frozen=True)
class GradientComparison:
    r"""The surrogate's gradient with respect to the predictions beside the baseline's, batch by batch.

    Attributes:
        regime: the held-out batches it was measured on (:data:`REAL` or :data:`RANDOM`).
        norm_ratio: median over batches of :math:`\lVert\nabla_{\hat y} L_s\rVert_2 / \lVert\nabla_{\hat y} L_b\rVert_2`
            (the baseline averaged over the batch, as ``F.cross_entropy`` does).
        cosine: mean over batches of the cosine between the two gradients (1: same direction, 0: unrelated,
            -1: opposite).
        n_batches: batches where both gradients are non-zero and finite (the others are skipped).
    """

    regime: str
    norm_ratio: float
    cosine: float
    n_batches: int

    def describe(self, baseline: str) -> str:
        return (f"gradient w.r.t. the predictions on {self.n_batches} {self.regime}: "
                f"{_f(self.norm_ratio, '.3g')} times {baseline}'s norm (median), "
                f"cosine {_f(self.cosine, '+.3f')} (mean)")


@dataclass(frozen=True)
class TrialComparison:
    r"""Does the metric improve more along ``combine(base, surrogate)``'s descent direction than along the base
    loss's? Measured on held-out batches by :func:`metricloss.evaluation.descent_trial`.

    For batch :math:`i` with predictions :math:`y_i` (:math:`n` numbers, standard deviation :math:`s_i`), the base
    loss's gradient :math:`g_b` and the surrogate's :math:`g_s` with respect to :math:`y_i`, the combined gradient is
    :math:`g_c = g_b + w_i g_s` with :math:`w_i = r\lVert g_b
Vert / \lVert g_s
Vert` (``combine``'s auto weight at
    ``ratio`` :math:`r`, momentum 0). For each step size :math:`\epsilon` the two steps have the same length,
    :math:`y_i - \epsilon s_i \sqrt n \, g / \lVert g
Vert`, and the paired gain is
    :math:`D_i = M(	ext{step along } g_c) - M(	ext{step along } g_b)` (higher is better); :attr:`gain` is the mean
    over batches and steps and :attr:`standard_error` the standard error of the per-batch mean over steps
    (std / sqrt(N)).

    Attributes:
        regime: the held-out batches (:data:`REAL` or :data:`RANDOM`).
        gain: mean paired gain (metric units, higher is better); > 0: the combined direction improves the metric
            more.
        standard_error: its standard error over batches.
        n_batches: batches measured (those with a non-zero, finite gradient of both losses).
        ratio: :math:`r`.
        steps: the step sizes :math:`\epsilon`.
        gains: the mean paired gain at each step size.
        base_gain: the metric's mean change along the base loss's step alone (averaged over steps), for scale.
    """

    regime: str
    gain: float
    standard_error: float
    n_batches: int
    ratio: float = TRIAL_RATIO
    steps: tuple[float, ...] = TRIAL_STEPS
    gains: tuple[float, ...] = ()
    base_gain: float = float("nan")

    def describe(self, baseline: str) -> str:
        return (f"descent trial on {self.n_batches} {self.regime}: the metric gains {_f(self.gain, '+.5f')} "
                f"(standard error {_f(self.standard_error, '.5f')}) more along combine({baseline}, surrogate)'s "
                f"descent direction than along {baseline}'s (equal steps of {', '.join(f'{e:g}' for e in self.steps)}"
                f" x each batch's std; {baseline}'s own step gains {_f(self.base_gain, '+.5f')})")


@dataclass
class Verdict:
    """Whether a surrogate ranks batches better than its baseline loss: one answer and the numbers behind it.

    Attributes:
        outcome: the answer, ``"beats"``, ``"ties"``, ``"loses"`` or ``"unknown"``: :attr:`real`'s outcome when
            real outputs were measured, else :attr:`random`'s.
        basis: the regime the outcome comes from (:data:`REAL`, :data:`RANDOM`, or ``None`` when unknown).
        real, random: the comparisons on held-out real model outputs and on random batches (``None``: not measured).
        gradient: the gradient comparison (``None``: not measured).
        references: the surrogate against each reference loss (:mod:`metricloss.references`, and the losses given
            to ``learn(compare_with=...)``), on the same held-out batches and regimes, by the same rule; each
            comparison's ``against`` names the loss.
        rule: the rule the outcomes follow (:data:`RULE`).
        trial: the descent trial on the held-out real outputs (:class:`TrialComparison`; ``None``: not measured),
            what ``combine(..., gate="trial")`` decides by.

    Example:
        >>> import torch
        >>> metric = torch.linspace(0, 1, 64)
        >>> noisy_baseline = -metric + 0.3 * torch.randn(64, generator=torch.Generator().manual_seed(0))
        >>> judge(-metric, noisy_baseline, metric, real=False).outcome   # a loss equal to minus the metric
        'beats'
        >>> judge(noisy_baseline, noisy_baseline, metric, real=False).outcome
        'ties'
    """

    outcome: str = "unknown"
    basis: str | None = None
    real: RankingComparison | None = None
    random: RankingComparison | None = None
    gradient: GradientComparison | None = None
    rule: str = RULE
    references: list[RankingComparison] = field(default_factory=list)
    trial: TrialComparison | None = None

    @classmethod
    def of(cls, real: RankingComparison | None = None, random: RankingComparison | None = None,
           gradient: GradientComparison | None = None,
           references: Sequence[RankingComparison] = ()) -> Verdict:
        """The verdict of these comparisons: the real-output one decides when present."""
        basis = real if real is not None else random
        return cls(outcome=basis.outcome if basis is not None else "unknown",
                   basis=basis.regime if basis is not None else None, real=real, random=random, gradient=gradient,
                   references=list(references))

    def ranks(self, baseline: str) -> list[tuple[str, float]]:
        """Every loss measured on the verdict's regime (:attr:`basis`) with its Spearman, best first: the surrogate,
        ``baseline`` (the family's baseline loss) and each reference. Empty when nothing was measured.

        Example:
            >>> import torch
            >>> m = torch.linspace(0, 1, 32)
            >>> v = judge(-m, -m + torch.linspace(0, 1, 32).flip(0), m, real=False,
            ...           references=[("minus the metric", -m, None)])
            >>> v.ranks("cross-entropy")[0]
            ('surrogate', 1.0)
        """
        main = self.real if self.basis == REAL else self.random
        if main is None:
            return []
        scores = [("surrogate", main.spearman), (baseline, main.baseline_spearman)]
        scores += [(c.against or "?", c.baseline_spearman) for c in self.references if c.regime == main.regime]
        finite = [(name, float(rho)) for name, rho in scores if rho is not None and math.isfinite(rho)]
        return sorted(finite, key=lambda item: -item[1])

    def best(self, baseline: str) -> str | None:
        """The loss that ranks the verdict's batches best (:meth:`ranks`' first; the surrogate on a tie), or
        ``None`` when nothing was measured."""
        ranks = self.ranks(baseline)
        return ranks[0][0] if ranks else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Verdict:
        """A verdict from :meth:`to_dict`'s form; ``None`` (a file saved before verdicts) gives the unknown verdict.
        Raises ``TypeError`` for a malformed one."""
        if data is None:
            return cls()
        if not isinstance(data, dict) or data.get("outcome") not in OUTCOMES:
            raise TypeError(f"verdict must be a dict whose 'outcome' is one of {OUTCOMES}, got {data!r}")
        parts: dict[str, Any] = {}
        kinds = (("real", RankingComparison), ("random", RankingComparison), ("gradient", GradientComparison))
        for name, kind in kinds:
            value = data.get(name)
            parts[name] = None if value is None else kind(**value)
        references = [RankingComparison(**c) for c in data.get("references") or ()]
        trial = data.get("trial")
        if trial is not None:
            trial = TrialComparison(**{**trial, "steps": tuple(trial.get("steps", TRIAL_STEPS)),
                                       "gains": tuple(trial.get("gains", ()))})
        return cls(outcome=data["outcome"], basis=data.get("basis"), rule=data.get("rule", RULE),
                   references=references, trial=trial, **parts)

    def lines(self, baseline: str) -> list[str]:
        """What the verdict says, one line per measurement (the first is the answer)."""
        if self.basis is None:
            return [f"Verdict: unknown (not measured against {baseline})."]
        head = {"beats": f"it ranks {self.basis} better than {baseline}"
                + ("" if self.basis == REAL else "; no real outputs were measured, so a trained model's batches are "
                   "unjudged: learn with outputs="),
                "ties": f"not shown to rank {self.basis} differently from {baseline}; more held-out batches may "
                        "decide",
                "loses": f"do not use it: {baseline} ranks {self.basis} better",
                "unknown": "undefined (a constant loss or metric)"}[self.outcome]
        out = [f"Verdict: **{self.outcome}** ({head})."]
        out += [f"- {c.describe(baseline)}" for c in (self.real, self.random, self.gradient, self.trial)
                if c is not None]
        out += [f"- {c.describe(baseline)}" for c in self.references]
        ranks = self.ranks(baseline)
        if len(ranks) > 2:
            order = ", ".join(f"{name} {_f(rho)}" for name, rho in ranks)
            out.append(f"- best on {self.basis}: **{ranks[0][0]}** (Spearman, best first: {order})")
        out.append(f"- rule: {self.rule}")
        return out


def _f(x: float, spec: str = ".4f") -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, spec)


def _outcome(difference: float, standard_error: float) -> str:
    if not (math.isfinite(difference) and math.isfinite(standard_error)):
        return "unknown"
    if difference > MARGIN * standard_error:
        return "beats"
    if difference < -MARGIN * standard_error:
        return "loses"
    return "ties"


def compare_ranking(losses: torch.Tensor, baseline_losses: torch.Tensor, values: torch.Tensor, regime: str, *,
                    resamples: int = RESAMPLES, seed: int = 0) -> RankingComparison:
    """Compare two losses' rankings of the same held-out batches with the metric, by the module's rule.

    Args:
        losses, baseline_losses: per-batch losses ``(N,)`` of the surrogate and of the baseline (lower is better).
        values: the metric on those batches ``(N,)``, oriented so that higher is better.
        regime: :data:`REAL` or :data:`RANDOM` (recorded).
        resamples, seed: the paired bootstrap (deterministic given the seed).
    """
    ours, base, m = (-losses.detach().double().flatten(), -baseline_losses.detach().double().flatten(),
                     values.detach().double().flatten())
    n = m.numel()
    if not (ours.numel() == base.numel() == n >= 2):
        raise ValueError(f"compare_ranking needs three vectors of the same length >= 2, got {ours.numel()}, "
                         f"{base.numel()}, {n}")
    rho_s, rho_b = float(ranking.spearman(ours, m)), float(ranking.spearman(base, m))
    gen = torch.Generator().manual_seed(seed)
    diffs = []
    per_chunk = max(1, 2**20 // n)  # bounds memory for very many batches
    for start in range(0, resamples, per_chunk):
        idx = torch.randint(0, n, (min(per_chunk, resamples - start), n), generator=gen)
        diffs.append(ranking.spearman(ours[idx], m[idx]) - ranking.spearman(base[idx], m[idx]))
    d = torch.cat(diffs)
    d = d[~torch.isnan(d)]  # resamples whose metric happened to be constant
    se = float(d.std()) if d.numel() > 1 else float("nan")
    return RankingComparison(regime=regime, outcome=_outcome(rho_s - rho_b, se), spearman=rho_s,
                             baseline_spearman=rho_b, difference=rho_s - rho_b, standard_error=se, n_batches=n)


def compare_gradients(loss: StackedLoss, baseline: StackedLoss, pred: torch.Tensor, target: torch.Tensor,
                      regime: str, *, chunk: int = 8) -> GradientComparison:
    """Norm ratio and cosine of the two losses' gradients with respect to each batch's predictions.

    Args:
        loss, baseline: stacked losses, ``(N, B, ...)`` -> ``(N,)`` (a surrogate's ``batch_losses``, a task's
            ``baseline``); each batch's loss must depend on that batch only.
        pred, target: the held-out stacks ``(N, B, ...)``.
        regime: :data:`REAL` or :data:`RANDOM` (recorded).
        chunk: batches per backward pass (bounds memory).
    """
    ratios, cosines = [], []
    for p, t in zip(pred.split(chunk), target.split(chunk), strict=True):
        gs, gb = (g.flatten(1).double() for g in prediction_gradients((loss, baseline), p, t))
        ns, nb = gs.flatten(1).norm(dim=1), gb.flatten(1).norm(dim=1)
        ok = (ns > 0) & (nb > 0) & torch.isfinite(ns) & torch.isfinite(nb)
        ratios.append((ns / nb)[ok])
        cosines.append(((gs.flatten(1) * gb.flatten(1)).sum(1) / (ns * nb))[ok])
    r, c = torch.cat(ratios), torch.cat(cosines)
    if r.numel() == 0:
        return GradientComparison(regime, float("nan"), float("nan"), 0)
    return GradientComparison(regime, float(r.quantile(0.5)), float(c.mean()), int(r.numel()))


def prediction_gradients(losses: Sequence[StackedLoss], pred: torch.Tensor,
                         target: torch.Tensor) -> list[torch.Tensor]:
    """The gradient of each stacked loss (summed over the stack) with respect to ``pred``, detached; zeros where a loss
    does not depend on the predictions. Each batch's gradient is that batch's, as every loss here is per batch."""
    grads = []
    for fn in losses:
        x = pred.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(fn(x, target).sum(), x, allow_unused=True)
        grads.append(torch.zeros_like(x) if g is None else g.detach())
    return grads


def judge(losses: torch.Tensor, baseline_losses: torch.Tensor, values: torch.Tensor, *, real: bool,
          random_check: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
          gradient: GradientComparison | None = None, seed: int = 0,
          references: Sequence[tuple[str, torch.Tensor, torch.Tensor | None]] = ()) -> Verdict:
    """The verdict from the losses on the held-out batches (real model outputs if ``real``, else random batches) and,
    optionally, ``random_check``: the surrogate's and the baseline's losses and the oriented metric values on other,
    random batches. ``references`` are ``(name, losses on the held-out batches, losses on the random check's batches
    or None)``: the surrogate is compared with each on the same batches, by the same rule."""
    regime = REAL if real else RANDOM
    main = compare_ranking(losses, baseline_losses, values, regime, seed=seed)
    rand = compare_ranking(*random_check, RANDOM, seed=seed) if random_check is not None else None
    against: list[RankingComparison] = []
    for name, held, checked in references:
        against.append(replace(compare_ranking(losses, held, values, regime, seed=seed), against=name))
        if checked is not None and random_check is not None:
            cmp = compare_ranking(random_check[0], checked, random_check[2], RANDOM, seed=seed)
            against.append(replace(cmp, against=name))
    return Verdict.of(real=main if real else None, random=rand if real else main, gradient=gradient,
                      references=against)


def random_check(task: Any, metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], n: int, batch_size: int,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` random batches (the task's G_R) for the random-batch half of a verdict and their metric values
    (``metric`` returns them oriented higher-is-better, as :func:`metricloss.learn`'s metric clock does). They come
    from a generator of their own (seeded ``seed + 7919``), so no learning or validation stream is touched."""
    pred, target = task.random_batches(n, batch_size, torch.Generator().manual_seed(seed + 7919))
    return pred, target, metric(pred, target)


def warn_if_weak(verdict: Verdict, baseline: str, stacklevel: int = 3) -> None:
    """Warn (:class:`WeakSurrogateWarning`) when the verdict on real outputs is not ``"beats"``."""
    if verdict.real is None or verdict.real.outcome == "beats":
        return
    warnings.warn(f"the surrogate does not beat {baseline} on held-out real outputs: {verdict.real.describe(baseline)}"
                  "; adding it to training is unlikely to improve the metric (see report.verdict)",
                  WeakSurrogateWarning, stacklevel=stacklevel)

