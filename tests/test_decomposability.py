"""The net is chosen by the metric's behaviour, never its name (issue 22, item 1): the decomposability probe, the
families that use it (classification, ordinal), and the report that records the choice."""

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

import metricloss as ml
from metricloss import cli
from metricloss.metrics.base import BatchMetric, as_metric
from metricloss.metrics.classification import BUILTINS, macro_f1
from metricloss.metrics.decomposability import Decomposability, probe_decomposability
from metricloss.report import Report
from metricloss.tasks.base import PROBE_BATCHES, get_task
from metricloss.tasks.classification import BatchClassificationNet, ClassificationNet, ClassificationTask

TINY = {"steps": 3, "batches_per_step": 8, "pool_size": 16, "validation_batches": 8, "gradient_probe": 0,
        "batch_size": 32, "progress": False}


def _my_f1(pred, target):
    return macro_f1(pred, target)


def _accuracy_loop(pred, target):
    """Accuracy by a plain loop over samples (a reference written independently of the built-in)."""
    return sum(int(int(p.argmax()) == int(t)) for p, t in zip(pred, target, strict=True)) / len(target)


# (metric, whether it is per-sample): the forms issue 22 found mis-served by the name lookup, and references.
CASES = [
    pytest.param(lambda z, y: macro_f1(z, y), False, id="lambda-macro-f1"),
    pytest.param(_my_f1, False, id="def-my_f1"),
    pytest.param(functools.partial(macro_f1), False, id="partial-macro-f1"),
    pytest.param(MulticlassF1Score(num_classes=6, average="macro"), False, id="torchmetrics-f1-macro"),
    pytest.param(MulticlassAccuracy(num_classes=6, average="micro"), True, id="torchmetrics-accuracy-micro"),
    pytest.param(MulticlassAccuracy(num_classes=6, average="macro"), False, id="torchmetrics-accuracy-macro"),
    pytest.param("accuracy", True, id="accuracy"),
    pytest.param("top5_accuracy", True, id="top5"),
    pytest.param("balanced_accuracy", False, id="balanced-accuracy"),
    pytest.param(_accuracy_loop, True, id="accuracy-loop"),
]


@pytest.mark.parametrize(("metric", "per_sample"), CASES)
def test_each_form_of_a_metric_gets_the_net_its_behaviour_needs(metric, per_sample):
    base = ClassificationTask(6)
    task = base.for_metric(as_metric(metric, None, BUILTINS))
    assert task.metric_probe.per_sample is per_sample
    assert task.class_averaged is (not per_sample)
    assert task.imbalanced_share == (0.0 if per_sample else 0.5)
    assert task.default_net_config().get("kind") == (None if per_sample else "batch")
    assert isinstance(task.build_net(**task.default_net_config()),
                      ClassificationNet if per_sample else BatchClassificationNet)
    assert base.metric_probe is None and not base.class_averaged  # a copy: the caller's task is unchanged


def test_the_decision_is_the_same_under_any_name():
    task = ClassificationTask(5)
    results = {name: task.probe_metric(BatchMetric(name, BUILTINS["macro_f1"].fn))
               for name in ("macro_f1", "accuracy", "my_metric", "<lambda>")}
    assert len(set(results.values())) == 1 and not results["accuracy"].per_sample
    results = {name: task.probe_metric(BatchMetric(name, BUILTINS["accuracy"].fn))
               for name in ("macro_f1", "mcc", "accuracy")}
    assert len(set(results.values())) == 1 and results["mcc"].per_sample


def test_probe_against_hand_made_metrics():
    """Per-sample means pass with any per-sample function; a sum, a median, a max and a ratio of batch totals do
    not."""
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(6, 40, 4, generator=g), torch.randint(0, 4, (6, 40), generator=g)

    def ce_mean(p, t):
        return F.cross_entropy(p.double(), t)

    def ce_sum(p, t):
        return F.cross_entropy(p.double(), t, reduction="sum")

    def ce_median(p, t):
        return F.cross_entropy(p.double(), t, reduction="none").median()

    def ce_max(p, t):
        return F.cross_entropy(p.double(), t, reduction="none").max()

    def hits_per_prediction_of_class0(p, t):  # a precision: ratio of two batch totals
        chosen = p.argmax(-1) == 0
        return float((chosen & (t == 0)).sum()) / max(float(chosen.sum()), 1.0)

    expected = {ce_mean: True, _accuracy_loop: True, ce_sum: False, ce_median: False, ce_max: False,
                hits_per_prediction_of_class0: False}
    for fn, per_sample in expected.items():
        got = probe_decomposability(as_metric(fn), pred, target)
        assert got.per_sample is per_sample, fn.__name__
        assert got.calls == 6 * 4 and got.batches == 6 and got.parts == 3


def test_probe_gap_is_the_size_weighted_identity():
    """For the sum of per-sample losses, the gap of each batch is sum(whole) - sum_j |X_j|/|X| sum(X_j), which a loop
    computes from the same permutations."""
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(3, 30, 5, generator=g), torch.randint(0, 5, (3, 30), generator=g)
    per_sample = F.cross_entropy(pred.double().flatten(0, 1), target.flatten(), reduction="none").view(3, 30)
    got = probe_decomposability(as_metric(lambda p, t: F.cross_entropy(p.double(), t, reduction="sum")),
                                pred, target, seed=4)
    # sum over a part of size n_j weighted by n_j / B: its expectation under random parts is sum * sum_j n_j^2 / B^2;
    # every gap is between 0 and the whole sum, and the largest whole sum bounds the scale.
    totals = per_sample.sum(dim=1)
    assert 0 < got.gap < float(totals.max()) and got.scale == pytest.approx(float(totals.max()))
    assert not got.per_sample and math.isfinite(got.gap)


def test_probe_is_deterministic_bounded_and_leaves_the_global_rng_alone():
    calls = []

    def counted(p, t):
        calls.append(1)
        return macro_f1(p, t)

    task = ClassificationTask(7)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = task.for_metric(as_metric(counted)).metric_probe
    assert torch.equal(torch.get_rng_state(), state)
    second = task.for_metric(as_metric(counted)).metric_probe
    assert first == second and len(calls) == 2 * first.calls <= 2 * 64
    assert first.calls == PROBE_BATCHES * 4


def test_a_metric_that_refuses_a_sub_batch_is_batch_level():
    def needs_a_full_batch(p, t):
        if len(t) < 60:
            raise ValueError("needs 60 samples")
        return _accuracy_loop(p, t)

    pred, target = torch.randn(2, 60, 6), torch.randint(0, 6, (2, 60))
    got = probe_decomposability(as_metric(needs_a_full_batch), pred, target)
    assert not got.per_sample and got.refused is not None and "needs 60 samples" in got.refused
    assert "raised on a sub-batch" in got.describe()


def test_ordinal_measures_mae_per_sample_and_kappa_batch_level():
    task = get_task("ordinal", num_classes=5)
    mae = task.for_metric(as_metric("mae", None, task.metrics))
    qwk = task.for_metric(as_metric(lambda p, t: task.metrics["quadratic_kappa"].fn(p, t)))
    assert mae.metric_probe.per_sample and not qwk.metric_probe.per_sample
    choice = qwk.net_choice(qwk.default_net_config())
    assert choice["metric"] == "batch-level" and choice["chosen_by"] == "measurement" and "deepsets" in choice["net"]


def test_families_with_one_net_do_not_probe():
    calls = []
    task = get_task("set")
    assert task.for_metric(as_metric(lambda p, t: calls.append(1) or 0.0)) is task and not calls
    assert task.net_choice(task.default_net_config())["chosen_by"] == "family"


def test_learn_reports_the_net_and_why(tmp_path, capsys):
    sur = ml.learn(lambda z, y: macro_f1(z, y), num_classes=5, **TINY)
    assert isinstance(sur.net, BatchClassificationNet)
    choice = sur.report.net_choice
    assert choice["chosen_by"] == "measurement" and choice["metric"] == "batch-level"
    assert choice["probe"]["gap"] > 1e-3 and choice["probe"]["calls"] == PROBE_BATCHES * 4
    assert "Net: the batch net" in sur.report.to_markdown() and "batch-level" in sur.report.to_markdown()
    path = tmp_path / "f1.safetensors"
    sur.save(path)
    assert ml.load(path).report.net_choice == choice
    assert Decomposability.from_dict(choice["probe"]).per_sample is False
    # `metricloss evaluate` shows it (on fresh batches: a lambda cannot be named on the command line)
    assert cli.main(["evaluate", str(path), "--metric", "macro_f1", "--batches", "16", "--batch-size", "32"]) == 0
    assert "Net: the batch net" in capsys.readouterr().out

    given = ml.learn("macro_f1", num_classes=5, net={"features": ["target_prob"], "hidden": 8, "depth": 1}, **TINY)
    assert isinstance(given.net, ClassificationNet)
    assert given.report.net_choice["chosen_by"] == "net=" and given.report.net_choice["metric"] == "batch-level"


def test_reports_saved_before_net_choice_read_with_none():
    sur = ml.pretrained("classification-accuracy")
    data = sur.report.to_dict()
    data.pop("net_choice", None)
    old = Report.from_dict(data)
    assert old.net_choice == {} and old.net_line() is None and "Net:" not in old.to_markdown()
