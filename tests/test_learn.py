"""`metricloss.learn` end to end on small settings: the surrogate, its report, determinism and argument errors."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import kendalltau, spearmanr
from torch import nn

import metricloss as ml
from metricloss import Report, Surrogate
from metricloss.evaluation import agreement
from metricloss.metrics.classification import accuracy
from metricloss.tasks.classification import ClassificationTask

C = 5
SMALL = {
    "num_classes": C,
    "steps": 30,
    "batches_per_step": 32,
    "batch_size": 32,
    "pool_size": 128,
    "validation_batches": 32,
    "eval_every": 10,
    "progress": False,
}
TINY = {**SMALL, "steps": 20, "batches_per_step": 16}


@pytest.fixture(scope="module")
def sur() -> Surrogate:
    return ml.learn("accuracy", seed=0, **SMALL)


@pytest.fixture(scope="module")
def fresh() -> tuple[torch.Tensor, torch.Tensor]:
    """Random batches the surrogate never saw (another seed than learning's)."""
    return ClassificationTask(C).random_batches(256, 32, torch.Generator().manual_seed(1234))


def _model_outputs(n_batches: int, batch_size: int = 32, seed: int = 99, dtype=torch.int64):
    """Stand-in for a model's outputs on a data set: a list of (logits, target) batches of mixed quality."""
    g = torch.Generator().manual_seed(seed)
    pred, target = ClassificationTask(C).random_batches(n_batches, batch_size, g)
    return [(p, t.to(dtype)) for p, t in zip(pred, target, strict=True)]


# ---------------------------------------------------------------------------------------------------------
# the surrogate


def test_learn_returns_a_surrogate(sur):
    assert isinstance(sur, Surrogate)
    assert isinstance(sur.task, ClassificationTask) and sur.task.num_classes == C
    assert sur.net_config == ClassificationTask(C).default_net_config()
    assert "accuracy" in repr(sur)


def test_surrogate_loss_is_a_differentiable_scalar(sur):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(32, C, generator=g).requires_grad_(True)
    target = torch.randint(0, C, (32,), generator=g)
    loss = sur(logits, target)
    assert loss.shape == () and loss.requires_grad and math.isfinite(float(loss.detach()))
    loss.backward()
    assert logits.grad.shape == logits.shape
    assert bool(torch.isfinite(logits.grad).all()) and float(logits.grad.abs().sum()) > 0
    # other batch sizes and float64 work too
    assert sur(torch.randn(3, C, dtype=torch.float64), torch.tensor([0, 1, 2])).shape == ()


def test_surrogate_is_lower_for_better_batches(sur):
    g = torch.Generator().manual_seed(2)
    good, random = [], []
    for _ in range(20):
        target = torch.randint(0, C, (32,), generator=g)
        confident = torch.randn(32, C, generator=g) + 6 * nn.functional.one_hot(target, C)
        assert float(accuracy(confident, target)) == 1.0
        good.append(float(sur(confident, target)))
        random.append(float(sur(torch.randn(32, C, generator=g) * 3, target)))
    assert sum(good) / 20 < sum(random) / 20
    assert max(good) < min(random)


def test_surrogate_ranks_fresh_batches_like_the_metric(sur, fresh):
    pred, target = fresh
    rho = spearmanr(-sur.batch_losses(pred, target).numpy(), accuracy(pred, target).numpy()).statistic
    assert rho > 0.7
    # the report measured on its own held-out batches is representative
    assert abs(rho - sur.report.spearman) < 0.2


def test_surrogate_is_frozen(sur, fresh):
    params = list(sur.parameters())
    assert params and not any(p.requires_grad for p in params)
    # its mode follows the surrounding model's (Lightning warns about modules left in eval mode at `fit`) ...
    model = nn.ModuleDict({"head": nn.Linear(4, C), "loss": sur})
    model.eval()
    assert not any(m.training for m in sur.modules())
    pred, target = fresh
    in_eval = sur.batch_losses(pred, target)
    model.train()
    assert model.training and all(m.training for m in sur.modules())
    # ... and its output does not depend on it, nor does training mode unfreeze it
    assert torch.equal(sur.batch_losses(pred, target), in_eval)
    assert not any(p.requires_grad for p in sur.parameters())


def test_training_a_model_that_holds_the_surrogate_does_not_change_it(sur):
    before = {k: v.clone() for k, v in sur.state_dict().items()}
    model = nn.ModuleDict({"head": nn.Linear(4, C), "loss": sur})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    logits = model["head"](torch.randn(16, 4))
    sur(logits, torch.randint(0, C, (16,))).backward()
    opt.step()
    assert model["head"].weight.grad is not None
    try:
        assert all(torch.equal(before[k], v) for k, v in sur.state_dict().items())
        assert all(p.grad is None for p in sur.parameters())
    finally:
        sur.load_state_dict(before)  # keep the shared fixture intact for the other tests


# ---------------------------------------------------------------------------------------------------------
# determinism


SHORT = {**TINY, "steps": 6, "eval_every": 3}


def test_same_seed_gives_bit_identical_weights():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    one = ml.learn("accuracy", seed=3, **SHORT)
    torch.manual_seed(456)  # the global RNG plays no part
    two = ml.learn("accuracy", seed=3, **SHORT)
    a, b = one.state_dict(), two.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert two.report.spearman == one.report.spearman
    assert two.report.history == one.report.history
    # and learning does not consume the caller's global RNG
    torch.manual_seed(123)
    ml.learn("accuracy", seed=3, **{**SHORT, "steps": 1})
    assert torch.equal(state, torch.random.get_rng_state())


def test_different_seed_gives_different_weights():
    one = ml.learn("accuracy", seed=3, **SHORT)
    other = ml.learn("accuracy", seed=4, **SHORT)
    a, b = one.state_dict(), other.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------------------
# the report


def test_report_fields(sur):
    r = sur.report
    assert isinstance(r, Report)
    assert r.task == "classification" and r.task_config == {"num_classes": C}
    assert r.metric == "accuracy" and r.higher_is_better is True and r.method == "spearman"
    assert r.baseline == "cross-entropy"
    assert r.validation == "random batches (G_R)"
    assert r.n_validation_batches == 32 and r.batch_size == 32
    assert r.library_version == ml.__version__
    for name in ("spearman", "kendall", "baseline_spearman", "baseline_kendall"):
        value = getattr(r, name)
        assert isinstance(value, float) and math.isfinite(value) and -1 <= value <= 1, name
    for name in ("learn_seconds", "metric_seconds"):
        assert math.isfinite(getattr(r, name)) and getattr(r, name) >= 0
    assert r.spearman > r.baseline_spearman  # measured: 0.91 against cross-entropy's 0.58
    assert 1 <= r.best_step <= r.steps <= SMALL["steps"]
    assert r.settings["seed"] == 0 and r.settings["pool_size"] == 128 and r.settings["max_steps"] == 30
    assert r.settings["net"] == sur.net_config
    assert r.history and all(math.isfinite(h["score"]) and math.isfinite(h["objective"]) for h in r.history)
    assert [h["step"] for h in r.history] == [10, 20, 30][: len(r.history)]
    assert Report.from_dict(r.to_dict()) == r
    text = r.to_markdown()
    assert "accuracy" in text and "cross-entropy" in text and f"{r.spearman:.4f}" in text
    assert str(r) == text


def test_report_spearman_is_the_selected_checkpoint(sur):
    """The reported Spearman is that of the kept (best) weights, as measured during validation."""
    r = sur.report
    best = [h for h in r.history if h["step"] == r.best_step]
    assert len(best) == 1
    assert r.spearman == pytest.approx(best[0]["score"], abs=1e-9)
    assert r.spearman >= max(h["score"] for h in r.history) - 1e-4


def test_agreement_matches_scipy(sur, fresh):
    pred, target = fresh
    losses = sur.batch_losses(pred, target)
    acc = accuracy(pred, target)  # batches of 32: many ties, which scipy averages
    ours = agreement(losses, acc, True)
    assert ours["spearman"] == pytest.approx(spearmanr(-losses.numpy(), acc.numpy()).statistic, abs=1e-9)
    assert ours["kendall"] == pytest.approx(kendalltau(-losses.numpy(), acc.numpy()).statistic, abs=1e-9)
    # lower-is-better metrics are turned around first
    err = 1 - acc
    flipped = agreement(losses, err, False)
    assert flipped["spearman"] == pytest.approx(ours["spearman"], abs=1e-12)
    assert flipped["kendall"] == pytest.approx(ours["kendall"], abs=1e-12)
    # baseline loss on the same batches, as the report does
    ce = ClassificationTask(C).baseline(pred, target)
    assert agreement(ce, acc, True)["spearman"] == pytest.approx(
        spearmanr(-ce.numpy(), acc.numpy()).statistic, abs=1e-9
    )
    with pytest.raises(ValueError, match="at least 2"):
        agreement(losses[:1], acc[:1], True)


def test_batch_losses_equal_per_batch_calls(sur, fresh):
    pred, target = fresh[0][:10], fresh[1][:10]
    per_batch = torch.stack([sur(p, t) for p, t in zip(pred, target, strict=True)])
    assert torch.allclose(sur.batch_losses(pred, target), per_batch, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# variants


def test_learn_with_model_outputs():
    outputs = _model_outputs(24)
    s = ml.learn("accuracy", outputs=outputs, seed=0, **TINY)
    r = s.report
    assert r.validation == "held-out model outputs"
    assert r.n_validation_batches == 24 // 4  # a quarter is held out
    assert r.settings["p_random"] == 0.5
    assert r.spearman > r.baseline_spearman  # measured 0.83 against 0.43
    # outputs may be given as any iterable of pairs, in batches of any size: they are re-cut
    flat_p = torch.cat([p for p, _ in outputs])
    flat_t = torch.cat([t for _, t in outputs])
    gen = ((p, t) for p, t in zip(flat_p.split(50), flat_t.split(50), strict=True))
    s2 = ml.learn("accuracy", outputs=gen, seed=0, **{**TINY, "steps": 2})
    assert s2.report.validation == "held-out model outputs"


def test_learn_outputs_errors():
    with pytest.raises(ValueError, match="`outputs` is too small"):
        ml.learn("accuracy", outputs=_model_outputs(4), **TINY)
    with pytest.raises(ValueError, match="`outputs` is empty"):
        ml.learn("accuracy", outputs=[], **TINY)
    with pytest.raises(TypeError, match=r"`outputs` must yield \(pred, target\) pairs; item 0"):
        ml.learn("accuracy", outputs=[torch.randn(32, C)], **TINY)
    with pytest.raises(ValueError, match=r"`pred`.*num_classes"):
        ml.learn("accuracy", outputs=[(torch.randn(32, C + 1), torch.zeros(32, dtype=torch.long))] * 10, **TINY)
    with pytest.raises(ValueError, match=r"`p_random` must be in \[0, 1\]"):
        ml.learn("accuracy", outputs=_model_outputs(16), p_random=2, **TINY)


def test_learn_with_int32_targets_works():
    s = ml.learn("accuracy", outputs=_model_outputs(16, dtype=torch.int32), **{**TINY, "steps": 2})
    assert isinstance(s, Surrogate) and s.report.validation == "held-out model outputs"
    assert math.isfinite(s.report.spearman)


# The approximation objectives are Grabocka et al.'s fits, without ReLoss's gradient penalty: with lambda = 10
# an L1 fit measured -0.50 held-out Spearman after 20 steps and 0.36 after 40 (cross-entropy 0.58), without it 0.93.
@pytest.mark.parametrize(
    ("objective", "penalty"), [("kendall", 10.0), ("l2", 10.0), ("l2", 0.0), ("l1", 0.0), ("spearman", 0.0)]
)
def test_other_objectives_and_no_penalty_beat_the_baseline(objective, penalty):
    # The L1 fit without penalty from seed 0 needs more than 20 steps with the default net's three features (issue 22:
    # -0.04 held-out Spearman at 20 steps, 0.976 at 60; seeds 1 and 2 reach 0.977 and 0.899 at 20).
    steps = 60 if (objective, penalty) == ("l1", 0.0) else TINY["steps"]
    s = ml.learn("accuracy", objective=objective, penalty=penalty, seed=0, **{**TINY, "steps": steps})
    r = s.report
    assert r.method == objective and r.settings["penalty"] == penalty
    assert all(math.isfinite(v) for v in (r.spearman, r.kendall, r.baseline_spearman, r.baseline_kendall))
    assert r.spearman > r.baseline_spearman and r.kendall > r.baseline_kendall


def test_top5_builtin_metric():
    s = ml.learn("top5_accuracy", seed=0, **{**TINY, "num_classes": 10, "steps": 10})
    assert s.report.metric == "top5_accuracy" and s.report.task_config == {"num_classes": 10}


def test_lower_is_better_callable_metric():
    def error_rate(pred, target):
        return 1.0 - float((pred.argmax(-1) == target).float().mean())

    s = ml.learn(error_rate, higher_is_better=False, seed=0, **TINY)
    r = s.report
    assert r.metric == "error_rate" and r.higher_is_better is False
    assert r.spearman > r.baseline_spearman  # the loss agrees with the metric once both say "lower is better"
    pred, target = ClassificationTask(C).random_batches(128, 32, torch.Generator().manual_seed(7))
    losses = s.batch_losses(pred, target)
    err = 1 - accuracy(pred, target)
    assert spearmanr(losses.numpy(), err.numpy()).statistic > 0.5  # loss rises with the error rate


# ---------------------------------------------------------------------------------------------------------
# argument errors


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"task": "regression"}, ValueError, r"`task` must be one of .*'classification'.*; got 'regression'"),
        ({"objective": "mse"}, ValueError, r"`objective` must be one of 'spearman', 'kendall', 'l2', 'l1'"),
        ({"num_classes": 1}, ValueError, r"`num_classes` must be an integer >= 2"),
        ({"steps": 0}, ValueError, r"`steps` must be an integer >= 1, got 0"),
        ({"steps": 2.5}, ValueError, r"`steps`"),
        ({"steps": True}, ValueError, r"`steps`"),
        ({"batch_size": 0}, ValueError, r"`batch_size`"),
        ({"batches_per_step": 1}, ValueError, r"`batches_per_step` must be an integer >= 2"),
        ({"validation_batches": 1}, ValueError, r"`validation_batches`"),
        ({"pool_size": 1}, ValueError, r"`pool_size`"),
        ({"eval_every": 0}, ValueError, r"`eval_every`"),
        ({"patience": 0}, ValueError, r"`patience`"),
        ({"penalty": -1.0}, ValueError, r"`penalty` must be a finite number >= 0"),
        ({"penalty": float("nan")}, ValueError, r"`penalty`"),
        ({"lr": 0.0}, ValueError, r"`lr` must be a positive"),
        ({"lr": "fast"}, TypeError, r"`lr`"),
        ({"rank_strength": -1.0}, ValueError, r"`rank_strength`"),
        ({"net": {"hidden": 8, "layers": 2}}, TypeError, r"layers"),
        ({"num_clases": 5}, TypeError, r"task 'classification'.*num_clases"),
    ],
)
def test_bad_arguments(kwargs, exc, message):
    args = {**TINY, **kwargs}
    if "num_clases" in kwargs:
        del args["num_classes"]
    with pytest.raises(exc, match=message):
        ml.learn("accuracy", **args)


def test_missing_num_classes():
    args = {k: v for k, v in TINY.items() if k != "num_classes"}
    with pytest.raises(TypeError, match=r"task 'classification'.*num_classes"):
        ml.learn("accuracy", **args)
    # a Task object carries its own shape arguments, and then none may be given
    assert isinstance(ml.learn("accuracy", task=ClassificationTask(C), **{**args, "steps": 1}), Surrogate)
    with pytest.raises(TypeError, match="already a Task"):
        ml.learn("accuracy", task=ClassificationTask(C), **{**args, "num_classes": C})


def test_unknown_metric_name():
    with pytest.raises(ValueError, match=r"`metric`: unknown built-in metric 'acc'.*accuracy"):
        ml.learn("acc", **TINY)


def test_constant_metric_is_refused():
    with pytest.raises(ValueError, match="constant") as info:
        ml.learn(lambda p, t: 1.0, **TINY)
    assert "rank correlation" in str(info.value)


def test_invalid_p_random_without_outputs_is_refused():
    with pytest.raises(ValueError, match="`p_random`"):
        ml.learn("accuracy", p_random=2, **{**TINY, "steps": 1})


# ---------------------------------------------------------------------------------------------------------
# learn(method=...): deprecated forwards to the builders


@pytest.mark.parametrize("method", ["uniloss", "nonparametric"])
@pytest.mark.parametrize(("kwargs", "named"), [
    ({"lr": -5}, "`lr`"), ({"steps": 100, "objective": "l2"}, "`objective`, `steps`"),
    ({"checkpoint": "x.safetensors"}, "`checkpoint`"),
])
def test_method_refuses_learning_arguments_it_would_ignore(method, kwargs, named):
    with pytest.raises(ValueError, match=f"{named} would be ignored.*metricloss\\.(build_uniloss|fit_nonparametric)"):
        ml.learn("accuracy", num_classes=C, method=method, **kwargs)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match=r"`method` must be one of 'reloss', 'uniloss', 'nonparametric'"):
        ml.learn("accuracy", num_classes=C, method="relos")


def test_method_uniloss_warns_and_forwards_to_the_builder():
    kw = {"num_classes": C, "batch_size": 16, "validation_batches": 8, "seed": 1}
    with pytest.warns(DeprecationWarning, match="build_uniloss"):
        old = ml.learn("accuracy", method="uniloss", net={"fraction": 0.2}, progress=False, **kw)
    new = ml.build_uniloss("accuracy", options={"fraction": 0.2}, **kw)
    assert old.config() == new.config()
    assert (old.report.spearman, old.report.baseline_spearman) == (new.report.spearman, new.report.baseline_spearman)
