"""The descent trial (issue 24, item 3): the measurement against a naive per-batch loop, and ``combine(gate="trial")``
keeping a surrogate that points where the metric improves and leaving out adversarial ones."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import metricloss as ml
from metricloss.combine import trial_gate
from metricloss.evaluation import descent_trial
from metricloss.metrics.base import as_metric
from metricloss.tasks.base import get_task
from metricloss.verdict import REAL, RankingComparison, TrialComparison, Verdict

TASK = get_task("classification", num_classes=5)
ACCURACY = as_metric("accuracy", None, TASK.metrics)


def _stack(n: int = 24, b: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a half-trained model: the correct class boosted by 1, unit noise (about half the samples right)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 5, (n, b), generator=gen)
    return torch.randn(n, b, 5, generator=gen, dtype=torch.float64) + F.one_hot(y, 5).double(), y


def _stacked_ce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(pred.flatten(0, 1), target.flatten(), reduction="none").view(target.shape).mean(1)


def _soft_accuracy(pred: torch.Tensor, target: torch.Tensor, sharpness: float = 4.0) -> torch.Tensor:
    """A smooth proxy of accuracy per batch: mean sigmoid of the margin (correct logit minus the best other)."""
    correct = pred.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    others = pred.masked_fill(F.one_hot(target, pred.shape[-1]).bool(), -math.inf).amax(-1)
    return torch.sigmoid(sharpness * (correct - others)).mean(-1)


def _naive(loss, base, pred, target, ratio, steps):
    """The trial written out batch by batch and step by step, with sklearn-free accuracy (argmax == target)."""
    per_batch, moved = [], []
    for p, t in zip(pred, target, strict=True):
        x = p.clone().requires_grad_(True)
        (gb,) = torch.autograd.grad(base(x.unsqueeze(0), t.unsqueeze(0)).sum(), x)
        x = p.clone().requires_grad_(True)
        (gs,) = torch.autograd.grad(loss(x.unsqueeze(0), t.unsqueeze(0)).sum(), x)
        w = ratio * gb.norm() / gs.norm()
        gc = gb + w * gs
        length = p.flatten().std() * math.sqrt(p.numel())
        def acc(q: torch.Tensor, t: torch.Tensor = t) -> float:
            return float((q.argmax(-1) == t).double().mean())
        gains, base_moves = [], []
        for eps in steps:
            after_b = acc(p - eps * length * gb / gb.norm())
            after_c = acc(p - eps * length * gc / gc.norm())
            gains.append(after_c - after_b)
            base_moves.append(after_b - acc(p))
        per_batch.append(sum(gains) / len(gains))
        moved.append(sum(base_moves) / len(base_moves))
    d = torch.tensor(per_batch, dtype=torch.float64)
    return float(d.mean()), float(d.std() / math.sqrt(len(d))), sum(moved) / len(moved)


def test_trial_matches_a_naive_loop():
    pred, target = _stack()
    steps = (0.05, 0.2)
    minus_soft = lambda p, t: -_soft_accuracy(p, t)  # noqa: E731
    trial = descent_trial(minus_soft, _stacked_ce, ACCURACY, pred, target, ratio=0.5, steps=steps, chunk=5)
    gain, se, base_gain = _naive(minus_soft, _stacked_ce, pred, target, 0.5, steps)
    assert trial.n_batches == 24 and trial.steps == steps and len(trial.gains) == 2
    assert trial.gain == pytest.approx(gain, abs=1e-12)
    assert trial.standard_error == pytest.approx(se, abs=1e-12)
    assert trial.base_gain == pytest.approx(base_gain, abs=1e-12)
    assert sum(trial.gains) / 2 == pytest.approx(trial.gain, abs=1e-12)


def test_chunking_does_not_change_the_trial():
    pred, target = _stack(n=10)
    minus_soft = lambda p, t: -_soft_accuracy(p, t)  # noqa: E731
    a = descent_trial(minus_soft, _stacked_ce, ACCURACY, pred, target, chunk=1)
    b = descent_trial(minus_soft, _stacked_ce, ACCURACY, pred, target, chunk=10)
    assert a == b


def test_known_start_values_give_the_same_trial():
    pred, target = _stack(n=10)
    minus_soft = lambda p, t: -_soft_accuracy(p, t)  # noqa: E731
    values = ACCURACY.oriented(ACCURACY.evaluate(pred, target))
    for chunk in (1, 3):
        assert descent_trial(minus_soft, _stacked_ce, ACCURACY, pred, target, chunk=chunk, values=values) == \
            descent_trial(minus_soft, _stacked_ce, ACCURACY, pred, target, chunk=chunk)


class _Reported(nn.Module):
    """A surrogate stand-in carrying a report whose verdict holds the trial measured for it."""

    def __init__(self, fn, trial: TrialComparison | None) -> None:
        super().__init__()
        self.fn = fn
        self.report = SimpleNamespace(verdict=Verdict(trial=trial))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(pred.unsqueeze(0), target.unsqueeze(0)).squeeze(0)


def _gated(fn) -> tuple[TrialComparison, bool]:
    pred, target = _stack(n=48, seed=1)
    trial = descent_trial(fn, _stacked_ce, ACCURACY, pred, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ml.WeakSurrogateWarning)
        loss = ml.combine(F.cross_entropy, _Reported(fn, trial), gate="trial")
    assert trial_gate(_Reported(fn, trial))[0] is not loss.gated
    return trial, not loss.gated


def test_minus_the_metrics_smooth_proxy_is_kept():
    trial, kept = _gated(lambda p, t: -_soft_accuracy(p, t))
    assert trial.gain > 2 * trial.standard_error and kept


def test_minus_the_baseline_is_left_out():
    # g_c = g_b - 0.5 g_b points exactly along g_b: no gain at any step, so nothing is kept
    trial, kept = _gated(lambda p, t: -_stacked_ce(p, t))
    assert trial.gain == 0.0 and not kept


def test_a_surrogate_that_rewards_errors_is_left_out():
    trial, kept = _gated(_soft_accuracy)   # lower loss where accuracy is lower
    assert trial.gain < -2 * trial.standard_error and not kept


def test_trial_gate_falls_back_to_the_verdict_and_keeps_plain_callables():
    assert trial_gate(F.mse_loss) == (True, "no verdict on held-out real outputs: kept")
    nan = TrialComparison(REAL, math.nan, math.nan, 0)
    assert trial_gate(_Reported(_stacked_ce, nan))[0] is True


def test_trial_survives_the_report_round_trip():
    trial = TrialComparison(REAL, 0.01, 0.002, 40, 0.5, (0.03, 0.1, 0.3), (0.0, 0.01, 0.02), 0.2)
    assert Verdict.from_dict(Verdict(trial=trial).to_dict()).trial == trial
    verdict = Verdict.of(real=RankingComparison(REAL, "ties", 0.9, 0.9, 0.0, 0.01, 40))
    verdict.trial = trial
    assert any(line.startswith("- descent trial on 40 real outputs: the metric gains +0.01000")
               for line in verdict.lines("CE"))


def test_bad_steps_name_the_argument():
    pred, target = _stack(n=2)
    with pytest.raises(ValueError, match="`steps`"):
        descent_trial(_stacked_ce, _stacked_ce, ACCURACY, pred, target, steps=(0.1, -1.0))


@pytest.mark.parametrize(
    ("gain", "se", "gains", "kept"),
    [
        (0.010, 0.002, (0.005, 0.010, 0.015), True),     # 5 standard errors, positive at every step
        (0.003, 0.002, (0.001, 0.003, 0.005), False),    # 1.5 standard errors: not shown
        (0.010, 0.002, (0.020, 0.020, -0.010), False),   # significant on average, but loses at the largest step
        (0.010, 0.002, (0.0, 0.010, 0.020), False),      # no gain at the smallest step
        (-0.010, 0.002, (-0.01, -0.01, -0.01), False),   # loses
    ],
)
def test_trial_rule(gain, se, gains, kept):
    trial = TrialComparison(REAL, gain, se, 64, 0.5, (0.01, 0.03, 0.1), gains, 0.05)
    use, reason = trial_gate(_Reported(_stacked_ce, trial))
    assert use is kept and reason.endswith("kept" if kept else "left out")


def test_the_trial_gate_is_combines_default():
    losing = TrialComparison(REAL, -0.01, 0.002, 64, 0.5, (0.01, 0.03, 0.1), (-0.01, -0.01, -0.01), 0.05)
    with pytest.warns(ml.WeakSurrogateWarning, match="gate=None"):
        loss = ml.combine(F.cross_entropy, _Reported(_stacked_ce, losing))
    assert loss.gate == "trial" and loss.gated and "descent direction" in loss.gate_reason
