"""UniLoss and the non-parametric surrogate behind the same interface as learned surrogates: their builders,
the report against independent recomputations, save and load, the deprecated learn(method=...)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import kendalltau, spearmanr

import metricloss as ml
from metricloss.io import SurrogateFileError
from metricloss.metrics.base import BatchMetric
from metricloss.report import Report
from metricloss.tasks.base import get_task


def test_build_uniloss_is_measured_against_independent_recomputations(tmp_path):
    loss = ml.build_uniloss("accuracy", num_classes=5, validation_batches=32, batch_size=32, seed=1)
    assert isinstance(loss, ml.uniloss.UniLoss) and loss.task.config() == {"num_classes": 5}
    rep = loss.report
    assert rep.method == "uniloss" and rep.n_validation_batches == 32 and rep.batch_size == 32
    # the report's held-out batches are the task's G_R drawn with the seed; recompute both rows by hand
    pred, target = loss.task.random_batches(32, 32, torch.Generator().manual_seed(1))
    accuracy = (pred.argmax(-1) == target).double().mean(-1).numpy()
    with torch.no_grad():
        ours = ml.uniloss.UniLoss.from_config(loss.config()).batch_losses(pred, target).numpy()
    ce = torch.stack([F.cross_entropy(p, t) for p, t in zip(pred, target, strict=True)]).numpy()
    assert rep.spearman == pytest.approx(spearmanr(-ours, accuracy).statistic, abs=1e-12)
    assert rep.kendall == pytest.approx(kendalltau(-ours, accuracy).statistic, abs=1e-12)
    assert rep.baseline_spearman == pytest.approx(spearmanr(-ce, accuracy).statistic, abs=1e-6)
    assert rep.spearman > rep.baseline_spearman + 0.05  # measured 0.973 against cross-entropy's 0.759
    z = torch.randn(32, 5, requires_grad=True)
    y = torch.randint(0, 5, (32,))
    out = loss(z, y)
    out.backward()
    assert out.dim() == 0 and torch.isfinite(z.grad).all()

    path = tmp_path / "uni.safetensors"
    loss.save(path)
    again = ml.load(path)
    assert isinstance(again, ml.uniloss.UniLoss)
    assert again.config() == loss.config() and again.report == loss.report
    assert again.task.name == "classification" and again.task.config() == {"num_classes": 5}
    # same seed, same anchor draws: two fresh loads give the same loss value
    assert torch.equal(again(z.detach(), y), ml.load(path)(z.detach(), y))


def test_learn_method_uniloss_forwards_to_build_uniloss_with_a_warning():
    kw = {"num_classes": 5, "validation_batches": 8, "batch_size": 16, "seed": 2}
    with pytest.warns(DeprecationWarning, match="build_uniloss"):
        old = ml.learn("accuracy", method="uniloss", net={"fraction": 0.5}, **kw)
    new = ml.build_uniloss("accuracy", options={"fraction": 0.5}, **kw)
    assert old.config() == new.config()
    assert (old.report.spearman, old.report.kendall) == (new.report.spearman, new.report.kendall)


def test_user_refactoring_needs_its_code_back_on_load(tmp_path):
    def f(scores, y):
        return scores[y == 1].unsqueeze(1) - scores[y == 0].unsqueeze(0)

    def g(bits, context):
        return bits.all(dim=-1).double().mean(dim=-1)

    ref = ml.uniloss.FunctionRefactoring(f, g, name="positives_on_top")
    loss = ml.uniloss.UniLoss(ref, seed=0)
    path = tmp_path / "mine.safetensors"
    loss.save(path)
    with pytest.raises(SurrogateFileError, match="refactoring"):
        ml.load(path)
    assert ml.load(path, refactoring=ref).config() == loss.config()


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="`method` must be one of"):
        ml.learn("accuracy", num_classes=3, method="magic")


def test_fit_nonparametric_saves_and_loads(tmp_path):
    grid = {"temperature": (1.0,), "bandwidth": (0.3, 3.0)}
    loss = ml.fit_nonparametric("accuracy", num_classes=4, grid=grid, validation_batches=8, batch_size=16, seed=0)
    assert isinstance(loss, ml.nonparametric.NonParametricLoss)
    assert loss.report.method == "nonparametric" and "Non-parametric" in loss.report.to_markdown()
    path = tmp_path / "np.safetensors"
    loss.save(path)
    again = ml.load(path)
    assert isinstance(again, ml.nonparametric.NonParametricLoss) and again.config() == loss.config()
    assert again.report == loss.report and again.task.config() == {"num_classes": 4}
    z = torch.randn(16, 4, requires_grad=True)
    again(z, torch.randint(0, 4, (16,))).backward()
    assert torch.isfinite(z.grad).all()
    with pytest.warns(DeprecationWarning, match="fit_nonparametric"):
        old = ml.learn("accuracy", num_classes=4, method="nonparametric", net={"grid": grid}, validation_batches=8,
                       batch_size=16, seed=0)
    assert old.config() == loss.config() and old.report.spearman == loss.report.spearman


def _acc(p, t):
    return float((p.argmax(-1) == t).float().mean())


QUICK = {"sigma": 1e-6, "steps": 6, "eval_every": 3, "batches_per_step": 8, "batch_size": 16, "pool_size": 16,
         "validation_batches": 8, "gradient_probe": 4, "progress": False}


def test_gradient_term_survives_a_metric_that_never_moves():
    # PCK-like situation: along tiny perturbations the metric does not change; no NaN may reach the weights.
    sur = ml.learn(_acc, num_classes=3, gradient_weight=1.0, **QUICK)
    assert all(torch.isfinite(p).all() for p in sur.parameters())


def test_gradient_only_objective_with_a_metric_that_never_moves_is_a_clear_error():
    with pytest.raises(RuntimeError, match="larger `sigma`"):
        ml.learn(_acc, num_classes=3, objective="gradient", **QUICK)


def test_report_from_agreement_fills_the_shared_fields():
    task = get_task("classification", num_classes=3)
    met = BatchMetric("accuracy", lambda p, t: 0.0, True)
    rep = Report.from_agreement(task, met, "uniloss", {"spearman": 0.5, "kendall": 0.4},
                                {"spearman": 0.2, "kendall": 0.1}, validation="random batches (G_R)",
                                n_validation_batches=8, batch_size=16, settings={"a": 1}, learn_seconds=2.0)
    assert (rep.task, rep.task_config, rep.metric, rep.higher_is_better, rep.method) == (
        "classification", {"num_classes": 3}, "accuracy", True, "uniloss")
    assert (rep.spearman, rep.kendall, rep.baseline_spearman, rep.baseline_kendall) == (0.5, 0.4, 0.2, 0.1)
    assert rep.baseline == task.baseline_name and rep.library_version == ml.__version__
    assert (rep.n_validation_batches, rep.batch_size, rep.settings, rep.learn_seconds) == (8, 16, {"a": 1}, 2.0)
    assert rep.gradient_agreement is None and rep.steps == 0
