"""The ordinal task family: metrics against scikit-learn and naive loops, checks, surrogate net, G_R, learning."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score, mean_absolute_error

import metricloss as ml
from metricloss import Surrogate
from metricloss.metrics import ordinal as M
from metricloss.tasks import get_task
from metricloss.tasks import ordinal as O
from profiles import examples

K = 6
QUICK = {"steps": 20, "batches_per_step": 16, "batch_size": 32, "pool_size": 128, "validation_batches": 32,
         "eval_every": 10, "gradient_probe": 0, "progress": False}


def _logits_for(classes: list[int], k: int = K) -> torch.Tensor:
    """Logits whose arg-max is ``classes``, with noise that never changes it."""
    return F.one_hot(torch.tensor(classes), k).float() * 3 + torch.rand(len(classes), k)


def _sk_kappa(pred: list[int], target: list[int], k: int = K) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = cohen_kappa_score(target, pred, weights="quadratic", labels=list(range(k)))
    return 1.0 if np.isnan(value) else float(value)  # 0/0 only when all agree on one class: defined as 1


def _reference(name: str, pred: list[int], target: list[int]) -> float:
    if name == "mae":
        return mean_absolute_error(target, pred)
    if name == "within1_accuracy":
        return sum(abs(p - t) <= 1 for p, t in zip(pred, target, strict=True)) / len(pred)
    return _sk_kappa(pred, target)


@pytest.mark.parametrize("name", list(M.BUILTINS))
def test_metrics_match_independent_references(name):
    gen = torch.Generator().manual_seed(len(name))
    metric = M.BUILTINS[name]
    for b in (1, 2, 3, 10, 50):
        for _ in range(10):
            target = torch.randint(0, K, (b,), generator=gen)
            pred = torch.randint(0, K, (b,), generator=gen)
            if bool(torch.rand((), generator=gen) < 0.3):  # a batch with a single target class
                target[:] = target[0]
            value = metric(_logits_for(pred.tolist()), target)
            assert value == pytest.approx(_reference(name, pred.tolist(), target.tolist()), abs=1e-12)


@settings(max_examples=examples(80), deadline=None)
@given(st.lists(st.tuples(st.integers(0, K - 1), st.integers(0, K - 1)), min_size=1, max_size=25))
def test_metric_properties(pairs):
    pred = [p for p, _ in pairs]
    target = [t for _, t in pairs]
    logits = _logits_for(pred)
    y = torch.tensor(target)
    mae, w1, kappa = (float(M.BUILTINS[n](logits, y)) for n in ("mae", "within1_accuracy", "quadratic_kappa"))
    assert kappa == pytest.approx(_sk_kappa(pred, target), abs=1e-9)
    assert 0 <= mae <= K - 1 and 0 <= w1 <= 1 and -1 - 1e-12 <= kappa <= 1 + 1e-12
    assert (mae == 0) == (pred == target)
    assert w1 >= 1 - mae  # a sample off by >= 2 costs mae at least 2/B
    if pred == target:
        assert kappa == 1.0


def test_known_values():
    logits = _logits_for([0, 2, 1], k=3)
    y = torch.tensor([0, 1, 1])
    assert float(M.mae(logits, y)) == pytest.approx(1 / 3)
    assert float(M.quadratic_kappa(logits, y)) == pytest.approx(2 / 3)
    # all targets one class, predictions spread: the formula gives 0, as scikit-learn
    assert float(M.quadratic_kappa(_logits_for([0, 1, 2]), torch.tensor([1, 1, 1]))) == pytest.approx(0.0)
    # every prediction and target the same class: 0/0, defined as 1
    assert float(M.quadratic_kappa(_logits_for([4, 4]), torch.tensor([4, 4]))) == 1.0
    # mirrored predictions over a balanced batch: kappa -1
    assert float(M.quadratic_kappa(_logits_for([0, 5]), torch.tensor([5, 0]))) == pytest.approx(-1.0)


def test_stacked_equals_per_batch():
    task = O.OrdinalTask(K)
    pred, target = task.random_batches(20, 16, torch.Generator().manual_seed(3))
    target[0] = 2  # a single-class batch
    pred[0] = F.one_hot(torch.full((16,), 2), K).float()  # ... predicted perfectly: kappa's 0/0 case
    for name, metric in task.metrics.items():
        stacked = metric.evaluate(pred, target)
        loop = torch.tensor([metric(p, t) for p, t in zip(pred, target, strict=True)], dtype=torch.float64)
        torch.testing.assert_close(stacked, loop, rtol=0, atol=1e-12, msg=name)
    assert float(task.metrics["quadratic_kappa"].evaluate(pred[:1], target[:1])) == 1.0


# ---- task ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 0, 3.0, True, None])
def test_task_arguments_are_validated(value):
    with pytest.raises(ValueError, match="`num_classes`"):
        get_task("ordinal", num_classes=value)


def test_config_is_json_able_and_round_trips():
    task = get_task("ordinal", num_classes=7)
    assert get_task("ordinal", **json.loads(json.dumps(task.config()))).config() == {"num_classes": 7}
    json.dumps(task.default_net_config())


T = O.OrdinalTask(K)


@pytest.mark.parametrize("pred, target, stacked, exc, match", [
    (np.zeros((2, K)), torch.tensor([0, 1]), False, TypeError, "`pred` must be a torch.Tensor"),
    (torch.zeros(2, K, dtype=torch.long), torch.tensor([0, 1]), False, TypeError, "`pred` must be a floating-point"),
    (torch.randn(2, K), torch.tensor([0.0, 1.0]), False, TypeError, "`target` must be an integer tensor"),
    (torch.randn(2, 1), torch.tensor([0, 0]), False, ValueError, r"K >= 2 classes, got \(2, 1\)"),
    (torch.randn(2, K), torch.tensor([0, 1, 2]), False, ValueError, r"`target` must have shape \(2,\)"),
    (torch.randn(2, K), torch.tensor([0, K]), False, ValueError, "outside"),
    (torch.randn(2, K), torch.tensor([-1, 0]), False, ValueError, "outside"),
    (torch.full((2, K), float("nan")), torch.tensor([0, 1]), False, ValueError, "`pred` contains NaN"),
    (torch.randn(0, K), torch.zeros(0, dtype=torch.long), False, ValueError, "empty batch"),
    (torch.randn(2, K), torch.tensor([0, 1]), True, ValueError, r"\(N, B, K\)"),
])
def test_check_rejects_bad_inputs(pred, target, stacked, exc, match):
    with pytest.raises(exc, match=match):
        T.check(pred, target, stacked=stacked)


def test_check_accepts_valid_inputs():
    pred, target = T.random_batches(2, 8, torch.Generator().manual_seed(0))
    T.check(pred, target, stacked=True)
    T.check(pred[0], target[0].int())


def test_baseline_is_cross_entropy_per_batch():
    pred, target = T.random_batches(3, 5, torch.Generator().manual_seed(1))
    expect = [float(-torch.log_softmax(p.double(), -1)[torch.arange(5), t].mean()) for p, t in zip(pred, target,
                                                                                                   strict=True)]
    torch.testing.assert_close(T.baseline(pred, target).double(), torch.tensor(expect, dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [3, 5, 10])
def test_random_batches_spread_every_metric(k):
    task = O.OrdinalTask(k)
    pred, target = task.random_batches(800, 64, torch.Generator().manual_seed(0))
    assert pred.shape == (800, 64, k) and target.dtype == torch.int64
    assert int(target.min()) == 0 and int(target.max()) == k - 1
    ranges = {"mae": (0.0, k - 1.0), "within1_accuracy": (0.0, 1.0), "quadratic_kappa": (-1.0, 1.0)}
    for name, metric in task.metrics.items():
        v = metric.evaluate(pred, target)
        lo, hi = ranges[name]
        if name == "mae":  # most batches have MAE far below K - 1: ask for a spread of at least one class
            assert float(v.quantile(0.95) - v.quantile(0.05)) >= 1.0 and float(v.min()) == 0.0
            continue
        assert float(v.quantile(0.95) - v.quantile(0.05)) >= 0.5 * (hi - lo), name
        assert float(v.min()) <= lo + 0.25 * (hi - lo) and float(v.max()) == hi, name


def test_displace_and_relabel():
    gen = torch.Generator().manual_seed(2)
    classes = torch.randint(0, K, (300, 40), generator=gen)
    moved = O.displace(classes, K, gen)
    assert moved.dtype == torch.int64 and int(moved.min()) >= 0 and int(moved.max()) <= K - 1
    frac = (moved != classes).float().mean(1)
    assert float(frac.min()) == 0.0 and float(frac.max()) > 0.7
    pred, target = T.random_batches(30, 20, gen)
    p2, t2 = T.relabel(pred, target, gen)
    assert p2 is pred and t2.shape == target.shape and t2.dtype == torch.int64
    # relabelled targets are the arg-max moved: some batches keep all of them
    assert bool(((t2 == pred.argmax(-1)).all(1)).any())


# ---- surrogate network -------------------------------------------------------------------------------------


def test_features_match_a_naive_loop():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 5, K, generator=gen, dtype=torch.float64) * 2
    target = torch.randint(0, K, (2, 5), generator=gen)
    got = O.ordinal_features(logits, target, O.FEATURES, sharpness=3.0)
    for n in range(2):
        for b in range(5):
            z = logits[n, b].tolist()
            y = int(target[n, b])
            e = np.exp(np.array(z) - max(z))
            p = e / e.sum()
            sd = max(float(np.std(z)), O.SPREAD_FLOOR)  # the default floor of the spread
            eq = np.exp(3.0 * (np.array(z) - max(z)) / sd)
            q = eq / eq.sum()
            ks = np.arange(K)
            want = [
                ((p * ks).sum() - y) / (K - 1), p[y], p[:y].sum(), p[y + 1:].sum(),
                p[max(y - 1, 0): y + 2].sum(), (p * ks).sum() / (K - 1), y / (K - 1),
                ((q * ks).sum() - y) / (K - 1), q[max(y - 1, 0): y + 2].sum(), (q * ks).sum() / (K - 1),
                np.log(K - 1),
            ]
            torch.testing.assert_close(got[n, b], torch.tensor(want, dtype=torch.float64))


@pytest.mark.parametrize("pool", ["mean", "deepsets"])
def test_net_equals_a_naive_loop(pool):
    torch.manual_seed(0)
    net = T.build_net(**{**T.default_net_config(), "pool": pool}).double()
    pred, target = T.random_batches(3, 7, torch.Generator().manual_seed(5))
    pred = pred.double()
    got = net(pred, target)
    assert got.shape == (3,)
    for n in range(3):
        emb = torch.stack([net.phi(O.ordinal_features(pred[n, b], target[n, b], net.features, net.sharpness,
                                                      net.spread_floor)) for b in range(7)])
        want = emb.squeeze(-1).mean() if pool == "mean" else net.rho(emb.mean(0)).squeeze(-1)
        torch.testing.assert_close(got[n], want)
    perm = torch.randperm(7)
    torch.testing.assert_close(net(pred[:, perm], target[:, perm]), got)


@pytest.mark.parametrize("pool", ["mean", "deepsets"])
def test_net_gradcheck_and_double_backward_in_float64(pool):
    torch.manual_seed(1)
    net = T.build_net(pool=pool, hidden=6, depth=1, embedding=4).double()
    pred, target = T.random_batches(2, 4, torch.Generator().manual_seed(6))
    x = pred.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: net(p, target), (x,))
    assert torch.autograd.gradgradcheck(lambda p: net(p, target), (x,))


def _spread(pred: torch.Tensor) -> torch.Tensor:
    return pred.std(dim=-1, correction=0)


def test_default_net_is_invariant_to_the_logit_scale_and_shift_above_the_floor():
    torch.manual_seed(2)
    net = T.build_net(**T.default_net_config()).double()
    assert net.spread_floor == O.SPREAD_FLOOR
    pred, target = T.random_batches(4, 9, torch.Generator().manual_seed(7))
    pred = pred.double()
    pred = pred * (1.01 * net.spread_floor / _spread(pred).min())  # every sample's spread just above the floor
    torch.testing.assert_close(net(pred * 7.5 - 3.0, target), net(pred, target))


def test_below_the_floor_the_sharp_softmax_has_a_fixed_temperature():
    pred, target = T.random_batches(2, 9, torch.Generator().manual_seed(8))
    pred = pred.double()
    pred = pred * (0.5 / _spread(pred).max())  # every spread below a floor of 1
    got = O.ordinal_features(pred, target, ("sharp_expected",), sharpness=4.0, spread_floor=1.0)[..., 0]
    q = (4.0 * pred / 1.0).softmax(dim=-1)
    torch.testing.assert_close(got, (q * torch.arange(K, dtype=torch.float64)).sum(-1) / (K - 1))


@pytest.mark.parametrize("floor", [1e-3, 0.3, 1.0])
def test_sharp_feature_gradient_is_bounded_by_sharpness_over_the_floor(floor):
    # ||d f / d z|| <= beta / (2 max(sd, floor)) per feature of range 1 (docs/reliability.md), at any logit scale,
    # identical logits included (sd = 0: the floor alone keeps it finite).
    feats = ("sharp_error", "sharp_near", "sharp_expected")
    pred, target = T.random_batches(1, 64, torch.Generator().manual_seed(9))
    for scale in (0.0, 1e-4, 1e-2, 1.0, 1e3):
        z = (pred[0].double() * scale).requires_grad_(True)
        for i in range(len(feats)):
            f = O.ordinal_features(z, target[0], feats, sharpness=4.0, spread_floor=floor)[..., i]
            jac = torch.stack([torch.autograd.grad(f[b], z, retain_graph=True)[0][b] for b in range(64)])
            assert torch.isfinite(jac).all()
            bound = 4.0 / (2 * torch.maximum(_spread(z.detach()), torch.tensor(floor, dtype=torch.float64)))
            assert (jac.norm(dim=-1) <= bound * (1 + 1e-9)).all()


def test_nets_saved_without_a_floor_keep_the_old_one():
    # Surrogates saved before `spread_floor` was stored have no such key: they must behave as before (1e-3), while
    # a net built without the key (a user's `net=` dict) gets the bounded default.
    config = {k: v for k, v in T.default_net_config().items() if k != "spread_floor"}
    loaded = ml.Surrogate.from_config(config, task=T)
    assert loaded.net.spread_floor == 1e-3 and loaded.config()["spread_floor"] == 1e-3  # re-saved explicitly
    assert T.build_net(**config).spread_floor == O.SPREAD_FLOOR


def test_net_config_errors():
    with pytest.raises(ValueError, match="`features`"):
        T.build_net(features=["nope"])
    with pytest.raises(ValueError, match="`features`"):
        T.build_net(features=[])
    with pytest.raises(ValueError, match="`pool`"):
        T.build_net(pool="max")
    with pytest.raises(ValueError, match="`sharpness`"):
        T.build_net(sharpness=-1.0)
    with pytest.raises(ValueError, match="`spread_floor`"):
        T.build_net(spread_floor=0.0)
    with pytest.raises(ValueError, match="`depth`"):
        T.build_net(depth=0)


# ---- learning end to end -----------------------------------------------------------------------------------


def test_learn_end_to_end_save_and_load(tmp_path):
    sur = ml.learn("mae", task="ordinal", num_classes=K, seed=0, **QUICK)
    rep = sur.report
    assert rep.task == "ordinal" and rep.metric == "mae" and not rep.higher_is_better
    assert rep.baseline == "cross-entropy" and -1 <= rep.spearman <= 1
    assert 0 < rep.metric_seconds < rep.learn_seconds
    pred, target = sur.task.random_batches(1, 12, torch.Generator().manual_seed(9))
    x = pred[0].clone().requires_grad_(True)
    loss = sur(x, target[0])
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    path = tmp_path / "mae.safetensors"
    sur.save(path)
    back = ml.load(path)
    assert isinstance(back, Surrogate) and back.task.config() == {"num_classes": K}
    assert back.report.spearman == rep.spearman
    torch.testing.assert_close(back(pred[0], target[0]), sur(pred[0], target[0]))


def test_learn_kappa_with_model_outputs():
    gen = torch.Generator().manual_seed(3)
    outputs = [(torch.randn(64, K, generator=gen) * 2, torch.randint(0, K, (64,), generator=gen)) for _ in range(8)]
    sur = ml.learn("quadratic_kappa", task="ordinal", num_classes=K, outputs=outputs, seed=1, **QUICK)
    assert sur.report.metric == "quadratic_kappa" and sur.report.validation == "held-out model outputs"
