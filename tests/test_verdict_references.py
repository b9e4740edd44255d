"""The verdict against the family's reference losses and the user's own (issue 24, item 2)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import metricloss as ml
from metricloss.references import Reference, as_references, for_task
from metricloss.replay import remeasure
from metricloss.verdict import REAL, Verdict, judge

SMALL = {"steps": 8, "batches_per_step": 16, "pool_size": 32, "validation_batches": 16, "batch_size": 16,
         "gradient_probe": 0, "progress": False, "seed": 0}


def _outputs(n: int = 48) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(3)
    return [(torch.randn(16, 4, generator=gen) * 2, torch.randint(0, 4, (16,), generator=gen)) for _ in range(n)]


def _minus_error_rate(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred.argmax(-1) != target).double().mean()   # lower is better: exactly the metric's order


@pytest.fixture(scope="module")
def learned():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ml.WeakSurrogateWarning)
        return ml.learn("accuracy", num_classes=4, outputs=_outputs(), compare_with=[_minus_error_rate], **SMALL)


def test_every_ranking_reference_is_compared_on_real_outputs_and_random_batches(learned):
    verdict = learned.report.verdict
    task = learned.task
    names = [r.name for r in for_task(task)] + ["_minus_error_rate"]
    for regime in (REAL, "random batches"):
        assert [c.against for c in verdict.references if c.regime == regime] == names


def test_reference_comparisons_use_the_verdict_rule_on_the_same_batches(learned):
    verdict = learned.report.verdict
    for c in verdict.references:
        main = verdict.real if c.regime == REAL else verdict.random
        assert c.spearman == main.spearman and c.n_batches == main.n_batches     # the surrogate on the same batches
        assert c.difference == pytest.approx(c.spearman - c.baseline_spearman)


def test_a_loss_that_orders_batches_as_the_metric_does_ranks_best(learned):
    verdict = learned.report.verdict
    own = next(c for c in verdict.references if c.against == "_minus_error_rate" and c.regime == REAL)
    assert own.baseline_spearman == pytest.approx(1.0)
    assert verdict.best("cross-entropy") == "_minus_error_rate"
    assert any("best on real outputs: **_minus_error_rate**" in line for line in verdict.lines("cross-entropy"))


def test_references_survive_save_and_load(learned, tmp_path):
    learned.save(tmp_path / "s.safetensors")
    assert ml.load(tmp_path / "s.safetensors").report.verdict.references == learned.report.verdict.references


def test_remeasure_reproduces_the_reference_comparisons_of_a_random_batch_card():
    sur = ml.learn("accuracy", num_classes=4, **SMALL)
    assert sur.report.verdict.references                      # the family's references, on random batches
    assert remeasure(sur).verdict.references == sur.report.verdict.references


def test_a_verdict_saved_before_references_loads_with_none():
    old = Verdict.of().to_dict()
    del old["references"]
    assert Verdict.from_dict(old).references == []


def test_judge_compares_with_each_reference_by_the_same_rule():
    m = torch.linspace(0, 1, 40, dtype=torch.float64)
    noise = torch.randn(40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = judge(-m + 0.05 * noise, -m + noise, m, real=True, references=[("perfect", -m, None), ("noisy", noise, None)])
    by_name = {c.against: c for c in v.references}
    assert by_name["perfect"].outcome in {"ties", "loses"} and by_name["noisy"].outcome == "beats"
    assert v.best("base") == "perfect"


def test_compare_with_is_checked():
    with pytest.raises(TypeError, match="`compare_with` must be a list"):
        as_references(F.cross_entropy, "classification")
    with pytest.raises(TypeError, match="`compare_with` must hold callables"):
        as_references([3], "classification")
    ref = Reference("x", "classification", "here", F.cross_entropy)
    assert as_references([ref], "classification") == [ref]


def test_a_loss_that_returns_more_than_one_value_per_batch_is_named():
    bad = as_references([lambda p, t: F.cross_entropy(p, t, reduction="none")], "classification")[0]
    with pytest.raises(ValueError, match="one value per batch"):
        bad(torch.randn(2, 5, 3), torch.randint(0, 3, (2, 5)))
