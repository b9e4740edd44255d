"""The non-parametric surrogate: kernel interpolation against a naive loop and its limits, gradcheck, the grid's
argmax recomputed from public pieces, configs and errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import metricloss as ml
from metricloss import uniloss as U
from metricloss.anchored import AnchoredLoss
from metricloss.evaluation import gradient_agreement
from metricloss.nonparametric import (
    OPTIONS,
    NonParametricLoss,
    fit_nonparametric,
    kernel_interpolation,
    nonparametric_loss,
)
from metricloss.tasks.classification import ClassificationTask
from profiles import examples


def naive_nadaraya_watson(point: list[float], anchors: list[list[float]], values: list[float], h: float) -> float:
    n = len(point)
    d2 = [sum((p - a) ** 2 for p, a in zip(point, anchor, strict=True)) for anchor in anchors]
    logits = [-d / (2 * h * h * n) for d in d2]
    top = max(logits)
    weights = [math.exp(x - top) for x in logits]
    return sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights)


def _anchors(a: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    bits = torch.rand(a, n, generator=gen) < 0.5
    values = torch.rand(a, generator=gen, dtype=torch.float64)
    return bits, values


@settings(max_examples=examples(40), deadline=None)
@given(a=st.integers(1, 8), n=st.integers(1, 12), h=st.floats(0.05, 5.0), seed=st.integers(0, 10_000))
def test_kernel_interpolation_matches_a_naive_loop(a, n, h, seed):
    bits, values = _anchors(a, n, seed)
    point = torch.rand(n, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    ours = float(kernel_interpolation(point, bits, values, h))
    ref = naive_nadaraya_watson(point.tolist(), bits.double().tolist(), values.tolist(), h)
    assert ours == pytest.approx(ref, rel=1e-10, abs=1e-12)
    assert float(values.min()) - 1e-12 <= ours <= float(values.max()) + 1e-12


def test_at_an_anchor_the_estimate_tends_to_its_value_as_h_goes_to_zero():
    bits, values = _anchors(12, 20, seed=3)
    bits = torch.unique(bits, dim=0)  # distinct anchors: the nearest one is unique
    values = values[: bits.shape[0]]
    for k in range(bits.shape[0]):
        point = bits[k].double()
        errors = [abs(float(kernel_interpolation(point, bits, values, h)) - float(values[k]))
                  for h in (1.0, 0.3, 0.1, 0.03, 0.01)]
        assert all(e2 <= e1 + 1e-15 for e1, e2 in itertools.pairwise(errors)), errors
        assert errors[-1] < 1e-12
    # and a large bandwidth averages every anchor
    far = float(kernel_interpolation(bits[0].double(), bits, values, 1e4))
    assert far == pytest.approx(float(values.mean()), abs=1e-6)


def test_loss_at_its_hard_configuration_is_one_minus_accuracy_as_h_goes_to_zero():
    ref = U.Accuracy(num_classes=4)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=gen, dtype=torch.float64) * 40  # |c| / tau huge: u is the hard configuration
    target = torch.randint(0, 4, (6,), generator=gen)
    c, _ = ref.compare(logits, target)
    hard = (c > 0).reshape(1, -1)
    others = torch.rand(5, hard.shape[1], generator=gen) < 0.5
    bits = torch.cat([hard, others, torch.ones_like(hard)])
    values = ref.evaluate(bits.view(bits.shape[0], *c.shape), None)
    anchors = U.AnchorSet(bits, values, float(values[-1]))
    acc = float((logits.argmax(1) == target).double().mean())
    loss = nonparametric_loss(logits, target, ref, temperature=0.01, bandwidth=1e-3, anchors=anchors)
    assert float(loss) == pytest.approx(1.0 - acc, abs=1e-12)


@pytest.mark.parametrize("name", ["accuracy", "average_precision", "pck"])
def test_gradcheck_float64_with_fixed_anchors(name):
    gen = torch.Generator().manual_seed(1)
    if name == "accuracy":
        pred = torch.randn(5, 3, generator=gen, dtype=torch.float64)
        target = torch.randint(0, 3, (5,), generator=gen)
        loss_fn = NonParametricLoss("accuracy", num_classes=3, temperature=0.7, bandwidth=0.4, seed=0)
    elif name == "average_precision":
        pred = torch.randn(6, generator=gen, dtype=torch.float64)
        target = torch.tensor([1, 0, 1, 0, 0, 1])
        loss_fn = NonParametricLoss("average_precision", temperature=0.5, bandwidth=0.3, seed=0)
    else:
        pred = torch.randn(1, 2, 4, 4, generator=gen, dtype=torch.float64)
        target = torch.tensor([[[1.0, 2.0, 2.0], [3.0, 0.0, 2.0]]], dtype=torch.float64)
        loss_fn = NonParametricLoss("pck", alpha=0.3, temperature=0.8, bandwidth=0.2, seed=0)
    anchors = loss_fn.anchors(pred, target)
    pred.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: loss_fn(p, target, anchors=anchors), (pred,))


def test_gradient_points_where_accuracy_improves():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(64, 5, generator=gen)
    target = torch.randint(0, 5, (64,), generator=gen)
    before = float((logits.argmax(1) == target).double().mean())
    loss_fn = NonParametricLoss("accuracy", num_classes=5, temperature=1.0, bandwidth=1.0, scale=300.0, seed=0)
    z = logits.clone().requires_grad_(True)
    opt = torch.optim.SGD([z], lr=3.0)
    for _ in range(30):
        opt.zero_grad()
        loss_fn(z, target).backward()
        opt.step()
    after = float((z.detach().argmax(1) == target).double().mean())
    assert after > before + 0.2, (before, after)


def test_scale_multiplies_loss_and_gradient():
    logits = torch.randn(8, 4, dtype=torch.float64)
    target = torch.randint(0, 4, (8,))
    plain = NonParametricLoss("accuracy", temperature=0.5, bandwidth=0.3, seed=0)
    scaled = NonParametricLoss("accuracy", temperature=0.5, bandwidth=0.3, scale=7.0, seed=0)
    anchors = plain.anchors(logits, target)
    outs = []
    for fn in (plain, scaled):
        z = logits.clone().requires_grad_(True)
        loss = fn(z, target, anchors=anchors)
        loss.backward()
        outs.append((loss.detach(), z.grad))
    assert torch.allclose(outs[1][0], 7.0 * outs[0][0]) and torch.allclose(outs[1][1], 7.0 * outs[0][1])


def test_lower_is_better_refactoring_flips_the_sign():
    def f(scores, y):
        return torch.where(y.bool(), scores, -scores)

    def g(bits, y):
        return 1.0 - bits.double().mean(-1)  # error rate: lower is better

    ref = U.FunctionRefactoring(f, g, name="error_rate", higher_is_better=False)
    loss_fn = NonParametricLoss(ref, temperature=0.5, bandwidth=0.5, seed=0)
    scores = torch.tensor([2.0, -1.0, 0.5, -3.0], requires_grad=True)
    y = torch.tensor([1, 0, 0, 1])
    loss = loss_fn(scores, y)
    loss.backward()
    assert float(loss.detach()) >= 0.0  # the estimate never beats the best anchor's value 0
    assert bool(scores.grad[3] < 0) and bool(scores.grad[2] > 0)


def test_seeded_losses_repeat_and_configs_round_trip():
    logits = torch.randn(16, 10)
    target = torch.randint(0, 10, (16,))
    a = NonParametricLoss("accuracy", num_classes=10, temperature=0.3, bandwidth=0.1, num_bad=8, seed=5)
    b = NonParametricLoss.from_config(a.config())
    assert b.config() == a.config() and a.config()["method"] == "nonparametric"
    assert [float(a(logits, target)) for _ in range(3)] == [float(b(logits, target)) for _ in range(3)]
    assert set(OPTIONS) <= set(a.config())


def _recompute_grid(loss_fn, task, metric, seed, validation_batches, batch_size, directions, sigma, grid):
    pred, target = task.random_batches(validation_batches, batch_size, torch.Generator().manual_seed(seed))
    half = validation_batches // 2
    scores = {}
    for tau in grid["temperature"]:
        for h in grid["bandwidth"]:
            cand = NonParametricLoss("accuracy", num_classes=task.num_classes, temperature=tau, bandwidth=h, seed=seed)
            scores[tau, h] = gradient_agreement(cand.batch_losses, metric, pred[:half].double(), target[:half],
                                                directions=directions, sigma=sigma, seed=seed)
    return scores


def test_chosen_hyperparameters_are_the_grid_argmax():
    grid = {"temperature": [0.3, 3.0], "bandwidth": [0.03, 1.0]}
    kw = {"seed": 4, "validation_batches": 10, "batch_size": 24, "directions": 6, "sigma": 0.3}
    loss_fn = fit_nonparametric("accuracy", num_classes=6, grid=grid, **kw)
    task = ClassificationTask(6)
    scores = _recompute_grid(loss_fn, task, task.metrics["accuracy"], kw["seed"], kw["validation_batches"],
                             kw["batch_size"], kw["directions"], kw["sigma"], grid)
    best = max(scores, key=scores.get)
    assert (loss_fn.temperature, loss_fn.bandwidth) == best
    stored = {(s["temperature"], s["bandwidth"]): s["gradient_agreement"] for s in loss_fn.report.settings["grid"]}
    assert stored == pytest.approx(scores, abs=1e-12)
    assert len(set(scores.values())) > 1  # the grid points really differ: the test could pick a wrong one
    rep = loss_fn.report
    assert rep.method == "nonparametric" and rep.n_validation_batches == 5 and rep.settings["selection_batches"] == 5
    assert -1 <= rep.spearman <= 1
    assert rep.gradient_agreement is not None and rep.baseline_gradient_agreement is not None
    # the chosen loss is scaled so that its median gradient norm on the selection batches is 1
    pred, target = task.random_batches(10, 24, torch.Generator().manual_seed(4))
    x = pred[:5].double().requires_grad_(True)
    (grads,) = torch.autograd.grad(NonParametricLoss.from_config(loss_fn.config()).batch_losses(x, target[:5]).sum(), x)
    assert float(grads.flatten(1).norm(dim=1).median()) == pytest.approx(1.0, rel=1e-6)
    unscaled = fit_nonparametric("accuracy", num_classes=6, grid=grid, gradient_norm=None, **kw)
    assert unscaled.scale == 1.0 and (unscaled.temperature, unscaled.bandwidth) == best


def test_fit_on_model_outputs():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(8 * 16, 4, generator=gen)
    y = torch.randint(0, 4, (8 * 16,), generator=gen)
    loss_fn = fit_nonparametric("accuracy", num_classes=4, outputs=[(logits, y)], batch_size=16,
                                grid={"temperature": [1.0], "bandwidth": [0.3]}, directions=4)
    assert loss_fn.report.validation == "held-out model outputs" and loss_fn.report.n_validation_batches == 4


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"grid": {"temperature": [1.0]}}, ValueError, "`grid` must be a dict with the keys"),
        ({"grid": {"temperature": [], "bandwidth": [1.0]}}, ValueError, r"`grid\['temperature'\]` is empty"),
        ({"grid": {"temperature": [1.0], "bandwidth": [-0.1]}}, ValueError,
         r"`grid\['bandwidth'\]` must be a positive"),
        ({"grid": {"temperature": 1.0, "bandwidth": [0.1]}}, TypeError, r"`grid\['temperature'\]` must be a sequence"),
        ({"validation_batches": 3}, ValueError, "`validation_batches` must be an integer >= 4"),
        ({"options": {"bandwidth": 0.2}}, ValueError, "must not set 'temperature' or 'bandwidth'"),
        ({"options": {"num_bad": -1}}, ValueError, "`num_bad` must be an integer >= 0"),
        ({"sigma": 0}, ValueError, "`sigma` must be a positive"),
        ({"options": {"scale": 2.0}}, ValueError, "pass gradient_norm=None"),
        ({"gradient_norm": -1.0}, ValueError, "`gradient_norm` must be a positive"),
        ({"outputs": [(torch.randn(20, 3), torch.randint(0, 3, (20,)))], "batch_size": 16}, ValueError,
         "fewer than 2 batches"),
        ({"outputs": [(torch.randn(48, 3), torch.randint(0, 3, (48,)))], "batch_size": 16}, ValueError,
         "need at least 4"),
    ],
)
def test_fit_errors_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        fit_nonparametric("accuracy", num_classes=3, **kwargs)


def test_metric_without_refactoring_is_a_clear_error():
    with pytest.raises(ValueError, match="refactored into comparisons"):
        fit_nonparametric("top5_accuracy", num_classes=10)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"bandwidth": 0.0}, ValueError, "`bandwidth` must be a positive finite number"),
        ({"bandwidth": float("nan")}, ValueError, "`bandwidth` must be a positive finite number"),
        ({"temperature": "warm"}, TypeError, "`temperature` must be a positive number"),
        ({"scale": -2.0}, ValueError, "`scale` must be a positive finite number"),
        ({"fraction": 1.5}, ValueError, r"`fraction` must be in \(0, 1\]"),
        ({"seed": 1.5}, TypeError, "`seed` must be an integer or None"),
        ({"colour": 1}, TypeError, "refactoring 'accuracy'"),
    ],
)
def test_module_errors_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        NonParametricLoss("accuracy", **kwargs)


def test_other_errors():
    with pytest.raises(ValueError, match="`refactoring` must be one of"):
        NonParametricLoss("f1")
    with pytest.raises(TypeError, match=r"`refactoring` must be a metricloss\.uniloss\.Refactoring"):
        nonparametric_loss(torch.randn(2, 3), torch.tensor([0, 1]), "accuracy")
    with pytest.raises(ValueError, match="not 'nonparametric'"):
        NonParametricLoss.from_config({"method": "uniloss", "refactoring": "accuracy"})
    ref = U.FunctionRefactoring(lambda s, y: s, lambda b, y: b.double().mean(-1), name="mine")
    cfg = NonParametricLoss(ref, seed=0).config()
    with pytest.raises(ValueError, match="pass it as `refactoring=`"):
        NonParametricLoss.from_config(cfg)
    assert NonParametricLoss.from_config(cfg, refactoring=ref).config() == cfg
    with pytest.raises(ValueError, match="`values` must have shape"):
        kernel_interpolation(torch.rand(3), torch.ones(2, 3, dtype=torch.bool), torch.rand(3), 0.1)
    with pytest.raises(ValueError, match="`anchors` is empty"):
        kernel_interpolation(torch.rand(3), torch.ones(0, 3, dtype=torch.bool), torch.rand(0), 0.1)
    with pytest.raises(ValueError, match="`pred` must be logits of shape"):
        NonParametricLoss("accuracy", num_classes=4)(torch.randn(2, 3), torch.tensor([0, 1]))


def test_config_scaffolding_is_shared_with_uniloss_and_keeps_each_class_rules():
    for cls, method in ((NonParametricLoss, "nonparametric"), (U.UniLoss, "uniloss")):
        loss_fn = cls("accuracy", num_classes=4, seed=3)
        assert isinstance(loss_fn, AnchoredLoss) and isinstance(loss_fn, ml.MetricLoss)
        cfg = loss_fn.config()
        assert cfg["method"] == method and cfg["refactoring_config"] == {"num_classes": 4}
        assert cls.from_config(cfg).config() == cfg
        assert type(cls.from_config(cfg)) is cls
        with pytest.raises(TypeError, match=rf"`config` must be a dict from {cls.__name__}\.config\(\), got list"):
            cls.from_config([cfg])
        z = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
        y = torch.randint(0, 4, (3, 5), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            assert loss_fn.batch_losses(z, y).shape == (3,) and not loss_fn.batch_losses(z, y).requires_grad
        assert loss_fn.anchors(z[0], y[0]).bits.shape[1] == 5 * 3  # (num_classes - 1) comparisons per sample
    # the non-parametric loss rejects other keys; UniLoss has always passed them on to the refactoring
    with pytest.raises(ValueError, match=r"`config` has unknown key\(s\) \['num_classes'\]"):
        NonParametricLoss.from_config({"refactoring": "accuracy", "num_classes": 4})
    assert U.UniLoss.from_config({"refactoring": "accuracy", "num_classes": 4}).refactoring.config() == {
        "num_classes": 4}
