"""`ml.combine`'s verdict gate (issue 15, round 2) and the prediction-space descent law of the auto weight."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import metricloss as ml
from metricloss.combine import verdict_gate
from metricloss.verdict import RANDOM, REAL, RankingComparison, Verdict, compare_ranking


class Scored(nn.Module):
    """A surrogate stand-in: mean of squares (gradient 2p/n), a call counter, and a report carrying ``verdict``."""

    def __init__(self, verdict: Verdict | None) -> None:
        super().__init__()
        self.calls = 0
        self.report = None if verdict is None else SimpleNamespace(verdict=verdict)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return (pred * pred).mean()


def comparison(spearman: float, baseline: float, regime: str = REAL) -> RankingComparison:
    return RankingComparison(regime, "ties", spearman, baseline, spearman - baseline, 0.01, 64)


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(16, 5, generator=gen), torch.randint(0, 5, (16,), generator=gen)


@pytest.mark.parametrize(
    ("verdict", "kept"),
    [
        (Verdict.of(real=comparison(0.90, 0.95)), False),            # ranks real outputs below the baseline
        (Verdict.of(real=comparison(0.95, 0.95)), False),            # d = 0: no better
        (Verdict.of(real=comparison(0.96, 0.95)), True),             # d > 0
        (Verdict.of(real=comparison(math.nan, 0.95)), True),         # undefined: no evidence either way
        (Verdict.of(random=comparison(0.10, 0.90, RANDOM)), True),   # random batches only (the zoo's files)
        (Verdict(), True),                                           # unknown verdict
        (None, True),                                                # no report at all
    ],
)
def test_gate_follows_the_sign_of_the_real_output_difference(verdict, kept):
    use, reason = verdict_gate(Scored(verdict))
    assert use is kept
    assert reason.endswith("kept") if kept else reason.endswith("left out")


def test_gated_loss_is_exactly_the_base_and_never_calls_the_surrogate(batch):
    logits, y = batch
    sur = Scored(Verdict.of(real=comparison(0.90, 0.95)))
    with pytest.warns(ml.WeakSurrogateWarning, match="gate=None"):
        loss = ml.combine(F.cross_entropy, sur)
    assert loss.gated and "d = -0.0500" in loss.gate_reason and "gated" in repr(loss)
    x1, x2 = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    value = loss(x1, y)
    value.backward()
    F.cross_entropy(x2, y).backward()
    assert value.item() == F.cross_entropy(logits, y).item()
    assert torch.equal(x1.grad, x2.grad)
    assert sur.calls == 0 and loss.weight == 0.0 and loss.step == 1
    with pytest.warns(ml.WeakSurrogateWarning):
        total = ml.combine(F.cross_entropy, sur, reduction="sum")
    assert total(logits, y).item() == pytest.approx(16 * F.cross_entropy(logits, y).item())


def test_gate_none_float_weight_and_kept_surrogates_match_the_ungated_loss(batch):
    logits, y = batch
    weak = Verdict.of(real=comparison(0.90, 0.95))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither of these may warn
        off = ml.combine(F.cross_entropy, Scored(weak), gate=None, momentum=0.0)
        fixed = ml.combine(F.cross_entropy, Scored(weak), weight=0.3)
        kept = ml.combine(F.cross_entropy, Scored(Verdict.of(real=comparison(0.97, 0.95))), momentum=0.0)
    assert not (off.gated or fixed.gated or kept.gated)
    x = logits.clone().requires_grad_(True)
    # hand-computed: CE's gradient (softmax - onehot) / n, the surrogate's 2 x / numel
    g_ce = (logits.softmax(-1) - F.one_hot(y, 5)) / 16
    g_sur = 2 * logits / logits.numel()
    for loss in (off, kept):
        loss(x, y)
        assert loss.weight == pytest.approx(0.5 * float(g_ce.norm()) / float(g_sur.norm()), rel=1e-5)
    value = fixed(x, y)
    assert value.item() == pytest.approx(F.cross_entropy(logits, y).item() + 0.3 * (logits ** 2).mean().item())


def test_gate_reads_a_verdict_made_by_the_library_rule():
    metric = torch.linspace(0, 1, 40)
    noise = torch.randn(40, generator=torch.Generator().manual_seed(1))
    good, poor = -metric + 0.05 * noise, -metric + 0.5 * noise   # losses: lower is better
    assert verdict_gate(Scored(Verdict.of(real=compare_ranking(poor, good, metric, REAL))))[0] is False
    assert verdict_gate(Scored(Verdict.of(real=compare_ranking(good, poor, metric, REAL))))[0] is True


@pytest.mark.parametrize("gate", ["yes", True, "Verdict"])
def test_bad_gate_names_itself(gate):
    with pytest.raises(ValueError, match="`gate`"):
        ml.combine(F.cross_entropy, Scored(None), gate=gate)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    p=st.lists(st.floats(-3, 3), min_size=4, max_size=4),
    c=st.lists(st.floats(-3, 3), min_size=4, max_size=4),
    ratio=st.floats(0.05, 0.95),
)
def test_combined_gradient_descends_the_base_law(p, c, ratio):
    """With momentum 0 the combined prediction-space gradient g = g_b + w g_s satisfies
    <g, g_b> >= (1 - ratio) |g_b|^2 and |g - g_b| = ratio |g_b| (hand-computed: g_b = 2p, g_s = c)."""
    pred = torch.tensor([p], dtype=torch.float64, requires_grad=True)
    const = torch.tensor([c], dtype=torch.float64)
    g_b, g_s = 2 * pred.detach(), const
    if float(g_b.norm()) < 1e-3 or float(g_s.norm()) < 1e-3:
        return  # no usable measurement: the weight stays 0 (tested elsewhere)
    loss = ml.combine(lambda x, t: (x * x).sum(), lambda x, t: (x * const).sum(), ratio=ratio, momentum=0.0)
    (g,) = torch.autograd.grad(loss(pred, None), pred)
    nb2 = float((g_b * g_b).sum())
    assert float((g * g_b).sum()) >= (1 - ratio) * nb2 - 1e-9 * (1 + nb2)
    assert float((g - g_b).norm()) == pytest.approx(ratio * math.sqrt(nb2), rel=1e-9, abs=1e-12)
