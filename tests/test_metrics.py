"""Built-in batch metrics against naive loops and scikit-learn; the `as_metric` adapter and its errors."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    matthews_corrcoef,
    top_k_accuracy_score,
)

import metricloss as ml
from metricloss.metrics import BatchMetric, MetricError, accuracy, as_metric, top_k_accuracy
from metricloss.metrics.classification import BUILTINS, balanced_accuracy, cohen_kappa, macro_f1, mcc
from metricloss.tasks.classification import ClassificationTask


def _logits(n: int, b: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous random logits (no ties) and random labels, stacked ``(n, b, c)`` / ``(n, b)``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, b, c, generator=g), torch.randint(0, c, (n, b), generator=g)


def _naive_top_k(logits: torch.Tensor, target: torch.Tensor, k: int) -> float:
    rows, labels = logits.tolist(), target.tolist()
    hits = 0
    for row, y in zip(rows, labels, strict=True):
        order = sorted(range(len(row)), key=lambda j: row[j], reverse=True)
        hits += y in order[:k]
    return hits / len(rows)


def _naive_accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    rows, labels = logits.tolist(), target.tolist()
    hits = 0
    for row, y in zip(rows, labels, strict=True):
        best = max(range(len(row)), key=lambda j: row[j])
        hits += best == y
    return hits / len(rows)


# ---------------------------------------------------------------------------------------------------------
# built-in metrics


@pytest.mark.parametrize(("b", "c", "seed"), [(1, 3, 0), (7, 3, 1), (32, 10, 2), (64, 100, 3)])
def test_accuracy_matches_naive_loop_and_sklearn(b, c, seed):
    pred, target = _logits(6, b, c, seed)
    for p, t in zip(pred, target, strict=True):
        value = accuracy(p, t)
        assert value.dim() == 0 and value.dtype == torch.float64
        assert float(value) == pytest.approx(_naive_accuracy(p, t), abs=1e-12)
        assert float(value) == pytest.approx(accuracy_score(t.numpy(), p.argmax(-1).numpy()), abs=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize(("b", "c", "seed"), [(16, 6, 0), (33, 10, 1), (64, 20, 2)])
def test_top_k_accuracy_matches_naive_loop_and_sklearn(k, b, c, seed):
    pred, target = _logits(5, b, c, seed)
    for p, t in zip(pred, target, strict=True):
        value = float(top_k_accuracy(p, t, k))
        assert value == pytest.approx(_naive_top_k(p, t, k), abs=1e-12)
        sk = top_k_accuracy_score(t.numpy(), p.numpy(), k=k, labels=list(range(c)))
        assert value == pytest.approx(sk, abs=1e-12)


def test_top_1_accuracy_is_accuracy_and_top_c_is_one():
    pred, target = _logits(8, 32, 7, 4)
    assert torch.equal(top_k_accuracy(pred, target, 1), accuracy(pred, target))
    assert torch.equal(top_k_accuracy(pred, target, 7), torch.ones(8, dtype=torch.float64))
    # k larger than the number of classes is clamped: every target is in the top C
    assert torch.equal(top_k_accuracy(pred, target, 50), torch.ones(8, dtype=torch.float64))


def test_top_k_accuracy_is_monotone_in_k():
    pred, target = _logits(16, 32, 10, 5)
    values = torch.stack([top_k_accuracy(pred, target, k) for k in range(1, 11)])
    assert bool((values.diff(dim=0) >= 0).all())


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_stacked_form_equals_per_batch_form(name):
    pred, target = _logits(12, 24, 10, 6)
    metric = BUILTINS[name]
    stacked = metric.evaluate(pred, target)
    assert stacked.shape == (12,) and stacked.dtype == torch.float64
    per_batch = torch.tensor([metric(p, t) for p, t in zip(pred, target, strict=True)], dtype=torch.float64)
    assert torch.equal(stacked, per_batch)
    # the direct functions agree with the Metric object too
    fns = {"accuracy": accuracy, "top5_accuracy": lambda p, t: top_k_accuracy(p, t, 5), "macro_f1": macro_f1,
           "balanced_accuracy": balanced_accuracy, "cohen_kappa": cohen_kappa, "mcc": mcc}
    assert torch.equal(fns[name](pred, target), stacked)


def test_builtin_evaluate_without_stacked_form_equals_stacked_form():
    pred, target = _logits(10, 16, 8, 7)
    looped = BatchMetric("accuracy", accuracy, True)  # no vectorised form: evaluated batch by batch
    assert torch.equal(looped.evaluate(pred, target), BUILTINS["accuracy"].evaluate(pred, target))


def test_task_exposes_the_builtins():
    task = ClassificationTask(10)
    assert set(task.metrics) >= {"accuracy", "top5_accuracy", "macro_f1", "balanced_accuracy", "cohen_kappa", "mcc"}
    assert all(m.higher_is_better for m in task.metrics.values())
    assert task.default_metric in task.metrics


def _imbalanced_stack(n: int, b: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batches with classes absent from targets, from predictions, from both, one-class batches and B = 1."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, b, c, generator=g) * 3
    target = torch.randint(0, c, (n, b), generator=g)
    q = n // 5
    target[:q] = torch.randint(0, 2, (q, b), generator=g)  # only classes 0, 1 present
    logits[q:2 * q, :, 2:] -= 20  # only classes 0, 1 predicted
    logits[2 * q:3 * q, :, 2:] -= 20  # ... and present: classes 2.. absent from both
    target[2 * q:3 * q] = torch.randint(0, 2, (q, b), generator=g)
    target[3 * q] = 0  # one class everywhere: kappa and MCC undefined
    logits[3 * q, :, 0] += 100
    return logits, target


SKLEARN_REFERENCES = {
    "macro_f1": (macro_f1, lambda t, p: f1_score(t, p, average="macro", zero_division=0)),
    "balanced_accuracy": (balanced_accuracy, balanced_accuracy_score),
    "cohen_kappa": (cohen_kappa, cohen_kappa_score),
    "mcc": (mcc, matthews_corrcoef),
}


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", sorted(SKLEARN_REFERENCES))
@pytest.mark.parametrize(("b", "c", "seed"), [(1, 3, 0), (5, 4, 1), (32, 8, 2), (128, 10, 3)])
def test_imbalance_metrics_match_sklearn_with_absent_classes(name, b, c, seed):
    fn, reference = SKLEARN_REFERENCES[name]
    pred, target = _imbalanced_stack(25, b, c, seed)
    stacked = fn(pred, target)
    assert stacked.shape == (25,) and stacked.dtype == torch.float64
    for i, (p, t) in enumerate(zip(pred, target, strict=True)):
        one = fn(p, t)
        assert one.dim() == 0 and float(one) == float(stacked[i])
        expected = reference(t.numpy(), p.argmax(-1).numpy())
        # sklearn's kappa is NaN when undefined (a single class everywhere); ours is 0, like sklearn's MCC
        assert float(one) == pytest.approx(0.0 if math.isnan(expected) else expected, abs=1e-6)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_balanced_accuracy_ignores_predicted_but_absent_classes_unlike_torchmetrics_macro_recall():
    from torchmetrics.functional.classification import multiclass_recall

    logits = torch.tensor([[5.0, 0, 0], [5.0, 0, 0], [0, 0, 5.0], [0, 5.0, 0]])
    target = torch.tensor([0, 0, 0, 1])  # class 2 is predicted once but absent from the targets
    assert float(balanced_accuracy(logits, target)) == pytest.approx((2 / 3 + 1) / 2)
    assert float(balanced_accuracy(logits, target)) == pytest.approx(balanced_accuracy_score(target, logits.argmax(-1)))
    tm = multiclass_recall(logits, target, 3, average="macro")
    assert float(tm) == pytest.approx((2 / 3 + 1 + 0) / 3)  # torchmetrics counts class 2 with recall 0


def test_macro_f1_leaves_out_classes_absent_from_targets_and_predictions():
    logits = torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [5.0, 0, 0, 0]])
    target = torch.tensor([0, 1, 1])  # classes 2, 3 never occur: F1 of classes 0 (2/3) and 1 (2/3) only
    assert float(macro_f1(logits, target)) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("cls", "name", "kwargs"),
    [("MulticlassF1Score", "macro_f1", {"average": "macro"}), ("MulticlassCohenKappa", "cohen_kappa", {}),
     ("MulticlassMatthewsCorrCoef", "mcc", {})],
)
def test_torchmetrics_objects_of_imbalance_metrics_are_accepted_as_they_are(cls, name, kwargs):
    import torchmetrics.classification as tmc

    c = 6
    m = as_metric(getattr(tmc, cls)(num_classes=c, **kwargs))
    assert m.higher_is_better is True and m.name == cls
    pred, target = _logits(10, 48, c, 13)
    target[:4] = target[:4] % 3  # some batches without classes 3..5
    assert torch.allclose(m.evaluate(pred, target), BUILTINS[name].evaluate(pred, target), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# as_metric


def test_as_metric_by_name():
    m = as_metric("accuracy", builtins=BUILTINS)
    assert isinstance(m, BatchMetric)
    assert m.name == "accuracy" and m.higher_is_better is True
    pred, target = _logits(4, 16, 5, 8)
    assert torch.equal(m.evaluate(pred, target), accuracy(pred, target))
    flipped = as_metric("accuracy", False, BUILTINS)
    assert flipped.higher_is_better is False and flipped.name == "accuracy"
    assert torch.equal(flipped.oriented(m.evaluate(pred, target)), -accuracy(pred, target))


def test_as_metric_passes_metric_objects_through():
    m = BUILTINS["accuracy"]
    assert as_metric(m) is m
    assert as_metric(m, True) is m
    assert as_metric(m, False).higher_is_better is False
    assert m.higher_is_better is True  # the original is not modified


def test_as_metric_plain_callable_defaults_to_higher_is_better():
    def my_acc(pred, target):
        return float((pred.argmax(-1) == target).float().mean())

    m = as_metric(my_acc)
    assert m.name == "my_acc" and m.higher_is_better is True
    pred, target = _logits(6, 20, 4, 9)
    assert torch.allclose(m.evaluate(pred, target), accuracy(pred, target))
    values = m.evaluate(pred, target)
    assert torch.equal(m.oriented(values), values)


def test_as_metric_plain_callable_direction_override():
    def error_rate(pred, target):
        return 1.0 - float((pred.argmax(-1) == target).float().mean())

    m = as_metric(error_rate, higher_is_better=False)
    assert m.higher_is_better is False
    pred, target = _logits(6, 20, 4, 10)
    values = m.evaluate(pred, target)
    assert torch.allclose(values, 1 - accuracy(pred, target))
    assert torch.equal(m.oriented(values), -values)


def test_as_metric_accepts_callable_objects_and_number_like_returns():
    class Acc:
        def __call__(self, pred, target):
            return (pred.argmax(-1) == target).to(torch.float32).mean().reshape(1)  # 1-element tensor

    m = as_metric(Acc())
    assert m.name == "Acc"
    pred, target = _logits(3, 16, 4, 11)
    assert torch.allclose(m.evaluate(pred, target), accuracy(pred, target))
    # an int is a number too
    assert as_metric(lambda p, t: 1)(pred[0], target[0]) == 1.0


def test_as_metric_torchmetrics_object_matches_builtin_accuracy():
    from torchmetrics.classification import MulticlassAccuracy

    c = 6
    tm = MulticlassAccuracy(num_classes=c, average="micro")
    m = as_metric(tm)
    assert m.higher_is_better is True and m.name == "MulticlassAccuracy"
    pred, target = _logits(10, 32, c, 12)
    values = m.evaluate(pred, target)
    assert torch.allclose(values, accuracy(pred, target), atol=1e-6)
    # every batch is scored on its own: state does not accumulate between calls
    again = m.evaluate(pred.flip(0), target.flip(0))
    assert torch.allclose(again, values.flip(0), atol=1e-6)


def test_as_metric_torchmetrics_direction():
    from torchmetrics.aggregation import MeanMetric
    from torchmetrics.classification import MulticlassAccuracy

    assert as_metric(MulticlassAccuracy(num_classes=3), higher_is_better=False).higher_is_better is False
    with pytest.raises(ValueError, match="higher_is_better"):
        as_metric(MeanMetric())
    assert as_metric(MeanMetric(), higher_is_better=False).higher_is_better is False


@pytest.mark.parametrize("name", ["acuracy", "top5", "f1", ""])
def test_as_metric_unknown_name(name):
    with pytest.raises(ValueError, match=r"`metric`.*unknown built-in metric") as info:
        as_metric(name, builtins=BUILTINS)
    assert "accuracy" in str(info.value)  # the known names are listed
    with pytest.raises(ValueError, match="`metric`"):
        as_metric(name)


@pytest.mark.parametrize("obj", [42, 0.5, None, [1, 2], torch.tensor(1.0)])
def test_as_metric_non_callable(obj):
    with pytest.raises(TypeError, match="`metric` must be"):
        as_metric(obj)


# ---------------------------------------------------------------------------------------------------------
# user metrics that misbehave


def _raises(pred, target):
    return 1 / 0


def _nan(pred, target):
    return float("nan")


def _inf(pred, target):
    return torch.tensor(float("inf"))


def _vector(pred, target):
    return (pred.argmax(-1) == target).float()


def _text(pred, target):
    return "good"


def _none(pred, target):
    return None


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (_raises, r"metric '_raises' raised ZeroDivisionError"),
        (_nan, r"metric '_nan' returned a non-finite value \(nan\)"),
        (_inf, r"metric '_inf' returned a non-finite value \(inf\)"),
        (_vector, r"metric '_vector' must return one number per batch, got a tensor of shape \(16,\)"),
        (_text, r"metric '_text' must return a number, got str"),
        (_none, r"metric '_none' must return a number, got NoneType"),
    ],
)
def test_bad_user_metric_is_a_metric_error(fn, message):
    m = as_metric(fn)
    pred, target = _logits(3, 16, 4, 13)
    with pytest.raises(MetricError, match=message):
        m(pred[0], target[0])
    with pytest.raises(MetricError, match=message):
        m.evaluate(pred, target)


def test_metric_error_keeps_the_original_exception():
    with pytest.raises(MetricError) as info:
        as_metric(_raises)(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert isinstance(info.value, ValueError)


def test_non_finite_stacked_form_is_a_metric_error():
    m = BatchMetric("stacked_nan", accuracy, True, stacked=lambda p, t: torch.full((p.shape[0],), float("nan")))
    pred, target = _logits(3, 8, 4, 14)
    with pytest.raises(MetricError, match="'stacked_nan' returned a non-finite value"):
        m.evaluate(pred, target)


def test_bad_metric_surfaces_from_learn():
    with pytest.raises(MetricError, match="'_nan'"):
        ml.learn(_nan, num_classes=4, steps=2, batches_per_step=4, batch_size=8, pool_size=8,
                 validation_batches=4, progress=False)


def test_numeric_string_is_not_a_number():
    with pytest.raises(MetricError, match="must return a number, got str"):
        as_metric(lambda p, t: "0.5")(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))


def test_values_are_python_floats():
    pred, target = _logits(1, 16, 4, 15)
    v = BUILTINS["accuracy"](pred[0], target[0])
    assert type(v) is float and math.isfinite(v)
