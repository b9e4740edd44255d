"""Issue 13, item 6: the small defects users hit (each test failed before its fix)."""

from __future__ import annotations

import io
import threading
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score
from torchmetrics.classification import (
    BinaryAveragePrecision,
    BinaryF1Score,
    MulticlassAccuracy,
    MultilabelAveragePrecision,
)

import metricloss as ml
from metricloss.learning.batches import INVERTED_SPEARMAN, check_direction
from metricloss.metrics.base import MetricError, as_metric
from metricloss.tasks.base import get_task
from metricloss.zoo import available

FAMILIES = {
    "classification": {"num_classes": 10},
    "ordinal": {"num_classes": 5},
    "set": {},
    "pose": {"num_keypoints": 4, "heatmap_size": (16, 16)},
    "sequence": {"vocab_size": 32, "max_length": 24},
}
SMALL = {"steps": 2, "batches_per_step": 8, "validation_batches": 8, "pool_size": 16, "gradient_probe": 0,
         "progress": False}


def _batches(family, n=6, b=32, seed=0):
    task = get_task(family, **FAMILIES[family])
    return task, task.random_batches(n, b, torch.Generator().manual_seed(seed))


# --- torchmetrics objects on every family's targets --------------------------------------------------------------

def test_torchmetrics_binary_on_set_float_targets_matches_sklearn():
    task, (pred, target) = _batches("set")
    assert target.is_floating_point()  # the set task's targets are {0., 1.}
    ap = as_metric(BinaryAveragePrecision(), None, task.metrics)
    f1 = as_metric(BinaryF1Score(), None, task.metrics)
    for p, t in zip(pred, target, strict=True):
        y = t.numpy().astype(int)
        assert ap(p, t) == pytest.approx(average_precision_score(y, p.numpy()), abs=1e-5)
        assert f1(p, t) == pytest.approx(f1_score(y, (torch.sigmoid(p) > 0.5).numpy()), abs=1e-6)


def test_torchmetrics_multilabel_on_set_float_targets():
    task = get_task("set", num_labels=3)
    pred, target = task.random_batches(3, 32, torch.Generator().manual_seed(1))
    ap = as_metric(MultilabelAveragePrecision(num_labels=3, average="macro"), None, task.metrics)
    for p, t in zip(pred, target, strict=True):
        y = t.numpy().astype(int)
        ref = np.mean([average_precision_score(y[:, j], p[:, j].numpy()) for j in range(3)])
        assert ap(p, t) == pytest.approx(ref, abs=1e-5)


@pytest.mark.parametrize("family", ["classification", "ordinal"])
def test_torchmetrics_on_class_index_families(family):
    task, (pred, target) = _batches(family)
    k = FAMILIES[family]["num_classes"]
    acc = as_metric(MulticlassAccuracy(num_classes=k, average="micro"), None, task.metrics)
    for p, t in zip(pred, target, strict=True):
        assert acc(p, t) == pytest.approx(float((p.argmax(-1) == t).float().mean()), abs=1e-6)


def test_learn_with_torchmetrics_on_set():
    sur = ml.learn(BinaryAveragePrecision(), task="set", **SMALL)
    assert sur.report.metric == "BinaryAveragePrecision"


def test_float_targets_of_a_regression_torchmetric_stay_float():
    from torchmetrics.regression import MeanSquaredError

    m = as_metric(MeanSquaredError(), higher_is_better=False)
    assert m(torch.tensor([0.5, 1.5]), torch.tensor([1.0, 1.0])) == pytest.approx(0.25)


# --- pickling ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", available())
def test_every_shipped_surrogate_pickles(name):
    sur = ml.pretrained(name)
    buf = io.BytesIO()
    torch.save(sur, buf)
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    assert again.task.config() == sur.task.config()
    assert sorted(again.task.metrics) == sorted(sur.task.metrics)


# --- a metric returning numpy ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [np.array([0.25]), np.array(0.25), np.float32(0.25), np.array([[0.25]])])
def test_numpy_one_element_accepted_like_a_tensor(value):
    m = as_metric(lambda p, t: value)
    assert m(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)) == pytest.approx(0.25)


def test_numpy_many_elements_rejected_with_shape():
    m = as_metric(lambda p, t: np.array([0.25, 0.5]))
    with pytest.raises(MetricError, match=r"shape \(2,\)"):
        m(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))


# --- the direction warning ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_direction_check_silent_for_default_metrics_and_fires_when_inverted(family):
    task = get_task(family, **FAMILIES[family])
    metric = task.metrics[task.default_metric]
    pred, target = task.random_batches(64, task.default_batch_size, torch.Generator().manual_seed(0))
    values = metric.oriented(metric.evaluate(pred, target))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rho = check_direction(task, metric, pred, target, values)
    assert rho > 0
    flipped = as_metric(metric, not metric.higher_is_better)
    with pytest.warns(UserWarning, match="higher_is_better"):
        rho_flipped = check_direction(task, flipped, pred, target, flipped.oriented(metric.evaluate(pred, target)))
    assert rho_flipped == pytest.approx(-rho) and rho_flipped < INVERTED_SPEARMAN


def test_learn_warns_for_an_error_rate_without_direction():
    def error_rate(p, t):
        return float((p.argmax(-1) != t).float().mean())

    with pytest.warns(UserWarning, match="higher_is_better=False"):
        ml.learn(error_rate, num_classes=10, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ml.learn(error_rate, num_classes=10, higher_is_better=False, **SMALL)


# --- meta-device inputs ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_meta_device_inputs_get_a_library_error(family):
    task, (pred, target) = _batches(family, n=1, b=4)
    sur = ml.Surrogate(task, task.build_net(**task.default_net_config()), task.default_net_config())
    with pytest.raises(ValueError, match="`pred` is on the meta device"):
        sur(pred[0].to("meta"), target[0].to("meta"))


# --- the global RNG ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", available())
def test_pretrained_and_load_leave_the_global_rng_alone(name, tmp_path):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    sur = ml.pretrained(name)
    assert torch.equal(before, torch.get_rng_state())
    sur.save(tmp_path / "s.safetensors")
    ml.load(tmp_path / "s.safetensors")
    assert torch.equal(before, torch.get_rng_state())


def test_learn_in_threads_same_seed_same_weights_and_caller_rng_alone():
    torch.manual_seed(7)
    before = torch.get_rng_state()
    results: dict[int, ml.Surrogate] = {}

    def run(i):
        results[i] = ml.learn("accuracy", num_classes=10, seed=3, **SMALL)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert torch.equal(before, torch.get_rng_state())
    reference = ml.learn("accuracy", num_classes=10, seed=3, **SMALL)
    for sur in results.values():
        for a, b in zip(sur.net.state_dict().values(), reference.net.state_dict().values(), strict=True):
            assert torch.equal(a, b)
