"""The verdict every report carries (metricloss.verdict): the rule on constructed losses, the bootstrap against scipy,
the gradient comparison against direct autograd, the warning of learn(outputs=...), and files without a verdict."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

import metricloss as ml
import metricloss._serialization as mlser
import metricloss.cli
from metricloss import verdict as V

N = 64


def _metric_and_baseline(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    metric = torch.rand(N, generator=gen, dtype=torch.float64)
    return metric, -metric + 0.3 * torch.randn(N, generator=gen, dtype=torch.float64)  # a loss, noisy in the metric


def test_a_surrogate_equal_to_the_baseline_ties():
    metric, baseline = _metric_and_baseline()
    c = V.compare_ranking(baseline.clone(), baseline, metric, V.REAL)
    assert (c.outcome, c.difference, c.standard_error) == ("ties", 0.0, 0.0)


def test_minus_the_metric_beats_and_the_metric_itself_loses():
    metric, baseline = _metric_and_baseline()
    beats = V.compare_ranking(-metric, baseline, metric, V.REAL)
    assert beats.outcome == "beats" and beats.spearman == 1.0 and beats.difference > 2 * beats.standard_error > 0
    loses = V.compare_ranking(metric, baseline, metric, V.REAL)  # ranks batches exactly backwards
    assert loses.outcome == "loses" and loses.spearman == -1.0


def test_a_small_difference_within_two_standard_errors_ties():
    metric, baseline = _metric_and_baseline()
    nudged = baseline + 0.02 * torch.randn(N, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    c = V.compare_ranking(nudged, baseline, metric, V.RANDOM)
    assert c.difference != 0.0 and abs(c.difference) <= 2 * c.standard_error and c.outcome == "ties"


def test_a_constant_loss_is_unknown():
    metric, baseline = _metric_and_baseline()
    c = V.compare_ranking(torch.zeros(N, dtype=torch.float64), baseline, metric, V.REAL)
    assert c.outcome == "unknown" and np.isnan(c.spearman)


def test_the_standard_error_is_the_paired_bootstrap_of_scipy_spearman():
    metric, baseline = _metric_and_baseline(1)
    ours = -metric + 0.2 * torch.randn(N, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    c = V.compare_ranking(ours, baseline, metric, V.REAL, resamples=50, seed=3)
    idx = torch.randint(0, N, (50, N), generator=torch.Generator().manual_seed(3)).numpy()  # the same resamples
    m, s, b = metric.numpy(), -ours.numpy(), -baseline.numpy()
    diffs = [spearmanr(s[i], m[i]).statistic - spearmanr(b[i], m[i]).statistic for i in idx]
    assert c.standard_error == pytest.approx(np.std(diffs, ddof=1), rel=1e-9)
    assert c.spearman == pytest.approx(spearmanr(s, m).statistic, rel=1e-12)
    assert c.baseline_spearman == pytest.approx(spearmanr(b, m).statistic, rel=1e-12)


def test_the_gradient_comparison_matches_direct_autograd():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(6, 16, 5, generator=gen), torch.randint(0, 5, (6, 16), generator=gen)

    def ce(p, t):
        return F.cross_entropy(p.flatten(0, 1), t.flatten(), reduction="none").view(t.shape).mean(1)

    def doubled_ce(p, t):  # twice the baseline: norm ratio 2, cosine 1
        return 2 * ce(p, t)

    def flipped(p, t):  # minus a different loss
        return -(p.softmax(-1) ** 2).sum(-1).mean(-1)

    assert V.compare_gradients(doubled_ce, ce, pred, target, V.REAL, chunk=4) == pytest.approx(
        V.GradientComparison(V.REAL, 2.0, 1.0, 6))
    c = V.compare_gradients(flipped, ce, pred, target, V.RANDOM, chunk=4)
    ratios, cosines = [], []
    for p, t in zip(pred, target, strict=True):
        x = p.clone().requires_grad_(True)
        (g1,) = torch.autograd.grad(-(x.softmax(-1) ** 2).sum(-1).mean(), x)
        y = p.clone().requires_grad_(True)
        (g2,) = torch.autograd.grad(F.cross_entropy(y, t), y)
        ratios.append(float(g1.norm() / g2.norm()))
        cosines.append(float(F.cosine_similarity(g1.flatten(), g2.flatten(), dim=0)))
    assert c.n_batches == 6 and c.regime == V.RANDOM
    assert c.norm_ratio == pytest.approx(float(np.median(ratios)), rel=1e-5)
    assert c.cosine == pytest.approx(float(np.mean(cosines)), rel=1e-5, abs=1e-7)


def test_the_answer_is_the_real_output_comparison_when_there_is_one():
    metric, baseline = _metric_and_baseline()
    v = V.judge(baseline, baseline, metric, real=True, random_check=(-metric, baseline, metric))
    assert (v.outcome, v.basis, v.real.outcome, v.random.outcome) == ("ties", V.REAL, "ties", "beats")
    v = V.judge(-metric, baseline, metric, real=False)
    assert (v.outcome, v.basis, v.real, v.random.outcome) == ("beats", V.RANDOM, None, "beats")
    assert V.Verdict().outcome == "unknown" and V.Verdict().basis is None


@pytest.mark.parametrize("loss, warns", [("minus_metric", False), ("baseline", True), ("metric", True)])
def test_warn_if_weak_warns_unless_it_beats_on_real_outputs(loss, warns):
    metric, baseline = _metric_and_baseline()
    losses = {"minus_metric": -metric, "baseline": baseline, "metric": metric}[loss]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        V.warn_if_weak(V.judge(losses, baseline, metric, real=True), "cross-entropy")
        V.warn_if_weak(V.judge(metric, baseline, metric, real=False), "cross-entropy")  # random only: never warns
    kinds = [w.category for w in caught]
    assert kinds == ([ml.WeakSurrogateWarning] if warns else [])
    assert issubclass(ml.WeakSurrogateWarning, UserWarning)


def _real_outputs(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Logits of a 'model' at four stages of training on 4 classes: correct-class logit boosted by 0 .. 3."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for stage in range(4):
        for _ in range(6):
            y = torch.randint(0, 4, (32,), generator=gen)
            logits = torch.randn(32, 4, generator=gen) + stage * F.one_hot(y, 4)
            out.append((logits, y))
    return out


LEARN = {"num_classes": 4, "batch_size": 32, "batches_per_step": 16, "pool_size": 64, "validation_batches": 8,
         "eval_every": 5, "progress": False, "gradient_probe": 0, "seed": 0}


def test_learn_with_outputs_judges_real_outputs_and_random_batches_and_warns_when_weak():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sur = ml.learn("accuracy", outputs=_real_outputs(0), steps=1, **LEARN)  # one step: not a useful surrogate
    v = sur.report.verdict
    assert v.basis == V.REAL and v.real.n_batches == sur.report.n_validation_batches
    assert v.real.spearman == pytest.approx(sur.report.spearman) and v.random.regime == V.RANDOM
    assert v.random.n_batches == 8 and v.gradient.regime == V.REAL and v.gradient.n_batches > 0
    weak = [w for w in caught if w.category is ml.WeakSurrogateWarning]
    assert v.real.outcome != "beats" and len(weak) == 1 and weak[0].filename == __file__
    assert "Verdict: **" in sur.report.to_markdown()


def test_learn_without_outputs_judges_random_batches_and_does_not_warn():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sur = ml.learn("accuracy", steps=10, **LEARN)
    v = sur.report.verdict
    assert v.basis == V.RANDOM and v.real is None and v.random.spearman == pytest.approx(sur.report.spearman)
    assert not [w for w in caught if w.category is ml.WeakSurrogateWarning]


@pytest.fixture(scope="module")
def sur() -> ml.Surrogate:
    return ml.learn("accuracy", steps=5, **LEARN)


def test_the_verdict_is_saved_and_loaded(sur, tmp_path):
    sur.save(tmp_path / "s.safetensors")
    loaded = ml.load(tmp_path / "s.safetensors").report.verdict
    assert loaded == sur.report.verdict and isinstance(loaded.random, V.RankingComparison)


def test_files_without_a_verdict_load_with_the_unknown_verdict(sur, tmp_path):
    old = {k: v for k, v in sur.report.to_dict().items() if k != "verdict"}  # a report saved before verdicts
    header = mlser.file_header("surrogate", "classification", sur.task.config(), sur.config(), old)
    mlser.write_loss_file(tmp_path / "old.safetensors", sur.state_tensors(), header)
    loaded = ml.load(tmp_path / "old.safetensors").report
    assert loaded.verdict == V.Verdict() and loaded.verdict.outcome == "unknown"
    assert "Verdict: unknown" in loaded.to_markdown()
    assert ml.pretrained("classification-accuracy").report.verdict.outcome == "unknown"  # shipped before verdicts


def test_a_malformed_verdict_is_a_file_error(sur, tmp_path):
    bad = {**sur.report.to_dict(), "verdict": {"outcome": "wins"}}
    header = mlser.file_header("surrogate", "classification", sur.task.config(), sur.config(), bad)
    mlser.write_loss_file(tmp_path / "bad.safetensors", sur.state_tensors(), header)
    with pytest.raises(ml.io.SurrogateFileError, match="outcome"):
        ml.load(tmp_path / "bad.safetensors")
    assert json.loads(json.dumps(sur.report.to_dict()))["verdict"]["outcome"] in V.OUTCOMES


def test_metricloss_evaluate_prints_the_verdict(sur, tmp_path, capsys):
    sur.save(tmp_path / "s.safetensors")
    args = ["evaluate", str(tmp_path / "s.safetensors"), "--batches", "16", "--batch-size", "32"]
    assert metricloss.cli.main(args) == 0
    out = capsys.readouterr().out
    fresh, stored = out.split("Stored report card:")
    assert "Verdict: **" in fresh and "held-out random batches: Spearman" in fresh and "gradient w.r.t." in fresh
    assert f"Verdict: **{sur.report.verdict.outcome}**" in stored
