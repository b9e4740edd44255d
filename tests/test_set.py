"""The set task family: metrics against scikit-learn, checks, DeepSets surrogate, G_R, learning end to end."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    matthews_corrcoef,
    roc_auc_score,
)

import metricloss as ml
from metricloss import Surrogate
from metricloss.metrics import set as M
from metricloss.tasks import get_task
from metricloss.tasks import set as S
from profiles import examples

QUICK = {"steps": 20, "batches_per_step": 16, "batch_size": 24, "pool_size": 128, "validation_batches": 32,
         "eval_every": 10, "gradient_probe": 0, "progress": False}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors on a busy machine: one thread avoids synchronisation overhead.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- independent references: scikit-learn, label by label ------------------------------------------------


def _sk_label(name: str, s: np.ndarray, y: np.ndarray) -> float | None:
    """scikit-learn's value for one label, or None where the metric is undefined (AP / AUROC)."""
    hat = (s > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "f1":
            return f1_score(y, hat, zero_division=0)
        if name == "mcc":
            return matthews_corrcoef(y, hat)
        if name == "balanced_accuracy":
            return balanced_accuracy_score(y, hat)
        if name == "average_precision":
            return average_precision_score(y, s) if y.sum() > 0 else None
        if name == "auroc":
            return roc_auc_score(y, s) if 0 < y.sum() < len(y) else None
    raise AssertionError(name)


def _sk(name: str, pred: torch.Tensor, target: torch.Tensor) -> float:
    s, y = pred.double().numpy(), target.long().numpy()
    if s.ndim == 1:
        s, y = s[:, None], y[:, None]
    values = [_sk_label(name, s[:, i], y[:, i]) for i in range(s.shape[1])]
    defined = [v for v in values if v is not None]
    if not defined:
        return M.CHANCE[name]
    return float(np.mean(defined))


def _batch(gen: torch.Generator, b: int, labels: int | None, ties: bool):
    shape = (b,) if labels is None else (b, labels)
    scores = torch.randn(shape, generator=gen) * 2
    if ties:  # few distinct values: many ties, and scores exactly at the threshold 0
        scores = scores.round()
    target = (torch.rand(shape, generator=gen) < torch.rand((), generator=gen)).long()
    return scores, target


@pytest.mark.parametrize("name", list(M.BUILTINS))
@pytest.mark.parametrize("labels", [None, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_metrics_match_scikit_learn(name, labels, ties):
    gen = torch.Generator().manual_seed(hash((name, labels, ties)) % 2**31)
    metric = M.BUILTINS[name]
    for b in (1, 2, 5, 17, 40):
        for _ in range(6):
            pred, target = _batch(gen, b, labels, ties)
            assert metric(pred, target) == pytest.approx(_sk(name, pred, target), abs=1e-12)


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=1, max_size=30))
def test_metrics_property_against_scikit_learn(pairs):
    pred = torch.tensor([float(s) for s, _ in pairs])
    target = torch.tensor([int(t) for _, t in pairs])
    for name, metric in M.BUILTINS.items():
        value = metric(pred, target)
        assert value == pytest.approx(_sk(name, pred, target), abs=1e-12)
        lo = -1.0 if name == "mcc" else 0.0
        assert lo <= value <= 1.0


def test_known_values_and_undefined_batches():
    s = torch.tensor([3.0, 2.0, 1.0, -1.0])
    y = torch.tensor([1, 1, 0, 0])
    assert float(M.auroc(s, y)) == 1.0 and float(M.average_precision(s, y)) == 1.0
    assert float(M.auroc(-s, y)) == 0.0
    # AP with no positive: 0; AUROC with one class: 0.5 (documented chance values)
    assert float(M.average_precision(s, torch.zeros(4))) == 0.0
    assert float(M.auroc(s, torch.ones(4))) == 0.5
    # multi-label: a label without positives is left out of AP's macro mean
    s2 = torch.stack([s, s], dim=1)
    y2 = torch.stack([y, torch.zeros(4, dtype=torch.long)], dim=1)
    assert float(M.average_precision(s2, y2)) == 1.0
    # F1 with no positives and no positive predictions: 0 (zero_division=0)
    assert float(M.f1(-s.abs(), torch.zeros(4))) == 0.0
    # float, bool and int targets give the same value
    for name, metric in M.BUILTINS.items():
        assert metric(s, y.float()) == metric(s, y.bool()) == metric(s, y), name


@pytest.mark.parametrize("labels", [None, 4])
def test_stacked_equals_per_batch(labels):
    task = S.SetTask(labels)
    pred, target = task.random_batches(12, 20, torch.Generator().manual_seed(3))
    pred = pred.round()  # ties too
    for name, metric in task.metrics.items():
        stacked = metric.evaluate(pred, target)
        loop = torch.tensor([metric(p, t) for p, t in zip(pred, target, strict=True)], dtype=torch.float64)
        torch.testing.assert_close(stacked, loop, rtol=0, atol=1e-12, msg=name)


# ---- task ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"num_labels": 0}, "`num_labels`"), ({"num_labels": 2.0}, "`num_labels`"), ({"num_labels": True}, "`num_labels`"),
])
def test_task_arguments_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_task("set", **kwargs)


def test_config_is_json_able_and_round_trips():
    import json

    for labels in (None, 3):
        task = get_task("set", num_labels=labels)
        again = get_task("set", **json.loads(json.dumps(task.config())))
        assert again.config() == task.config()
        json.dumps(task.default_net_config())


@pytest.mark.parametrize("labels", [None, 3])
def test_check_accepts_valid_inputs(labels):
    task = S.SetTask(labels)
    pred, target = task.random_batches(2, 8, torch.Generator().manual_seed(0))
    task.check(pred, target, stacked=True)
    for dtype in (torch.long, torch.int32, torch.bool, torch.float32, torch.float64):
        task.check(pred[0], target[0].to(dtype))


BIN = S.SetTask()
ML = S.SetTask(3)


@pytest.mark.parametrize("task, pred, target, stacked, exc, match", [
    (BIN, [0.1, 0.2], torch.tensor([0, 1]), False, TypeError, "`pred` must be a torch.Tensor"),
    (BIN, torch.tensor([1, 2]), torch.tensor([0, 1]), False, TypeError, "`pred` must be a floating-point"),
    (BIN, torch.randn(4, 3), torch.zeros(4, 3), False, ValueError, r"`pred` must be logits of shape \(B\)"),
    (BIN, torch.randn(4), torch.zeros(5), False, ValueError, "`target` must have the shape of `pred`"),
    (BIN, torch.randn(4), torch.tensor([0, 1, 2, 0]), False, ValueError, "only 0 and 1, found 2"),
    (BIN, torch.randn(4), torch.tensor([0.0, 0.5, 1.0, 0.0]), False, ValueError, "only 0 and 1, found 0.5"),
    (BIN, torch.randn(4), torch.tensor([0.0, float("nan"), 1.0, 0.0]), False, ValueError, "`target`.*non-finite"),
    (BIN, torch.tensor([0.0, float("inf")]), torch.tensor([0, 1]), False, ValueError, "`pred` contains infinite"),
    (BIN, torch.randn(0), torch.zeros(0), False, ValueError, "empty batch"),
    (BIN, torch.randn(4), torch.zeros(4), True, ValueError, r"\(N, B\)"),
    (ML, torch.randn(4, 2), torch.zeros(4, 2), False, ValueError, "L = num_labels = 3"),
    (ML, torch.randn(4), torch.zeros(4), False, ValueError, r"\(B, L\)"),
    (ML, torch.randn(2, 4, 3), torch.zeros(2, 4, 3), False, ValueError, r"\(B, L\)"),
    (ML, torch.randn(4, 3), torch.zeros(4, 3, dtype=torch.complex64), False, TypeError, "`target` must hold 0 and 1"),
])
def test_check_rejects_bad_inputs(task, pred, target, stacked, exc, match):
    with pytest.raises(exc, match=match):
        task.check(pred, target, stacked=stacked)


def test_surrogate_call_checks_inputs():
    task = S.SetTask()
    sur = Surrogate(task, task.build_net(**task.default_net_config()), task.default_net_config())
    with pytest.raises(ValueError, match="only 0 and 1"):
        sur(torch.randn(5), torch.tensor([0, 1, 2, 0, 1]))


def test_baseline_is_bce_per_batch():
    task = S.SetTask(2)
    pred, target = task.random_batches(3, 6, torch.Generator().manual_seed(1))
    expect = []
    for p, t in zip(pred.double(), target.double(), strict=True):
        q = 1 / (1 + torch.exp(-p))
        expect.append(float(-(t * q.log() + (1 - t) * (1 - q).log()).mean()))
    torch.testing.assert_close(task.baseline(pred, target).double(), torch.tensor(expect, dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("labels", [None, 4])
def test_random_batches_spread_every_metric_and_stay_defined(labels):
    task = S.SetTask(labels)
    pred, target = task.random_batches(600, 48, torch.Generator().manual_seed(0))
    assert pred.dtype == torch.float32 and target.shape == pred.shape
    t = target if labels is not None else target.unsqueeze(-1)
    assert bool((t.sum(1) >= 1).all()) and bool((t.sum(1) <= 47).all())  # AP and AUROC defined everywhere
    for name, metric in task.metrics.items():
        v = metric.evaluate(pred, target)
        lo, hi = (-1.0, 1.0) if name == "mcc" else (0.0, 1.0)
        q05, q95 = float(v.quantile(0.05)), float(v.quantile(0.95))
        # the middle 90 % of batches covers at least half the range; the extremes reach its quarters
        assert q95 - q05 >= 0.5 * (hi - lo), (name, q05, q95)
        assert float(v.min()) <= lo + 0.25 * (hi - lo) and float(v.max()) >= hi - 0.1 * (hi - lo), name


def test_relabel_keeps_scores_and_redraws_some_labels():
    task = S.SetTask(2)
    pred, target = task.random_batches(40, 30, torch.Generator().manual_seed(2))
    p2, t2 = task.relabel(pred, target.long(), torch.Generator().manual_seed(3))
    assert p2 is pred and t2.dtype == torch.long and t2.shape == target.shape
    assert set(t2.unique().tolist()) <= {0, 1}
    changed = (t2 != target.long()).float().mean(dim=(1, 2))
    assert float(changed.max()) > 0.2 and float(changed.min()) < 0.05


# ---- surrogate network -------------------------------------------------------------------------------------


def _naive_features(s: list[float], y: list[int], temps: tuple[float, ...], beta: float) -> list[list[float]]:
    b = len(s)
    mean = sum(s) / b
    rms = (sum(v * v for v in s) / b) ** 0.5
    sd = max((sum((v - mean) ** 2 for v in s) / b) ** 0.5, 1e-3)
    n_pos = sum(y)
    n_neg = b - n_pos
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    rows = []
    for i in range(b):
        row = [sig(s[i]), sig(beta * s[i] / rms), n_pos / b]
        for tau in temps:
            neg_below = sum(sig((s[i] - s[j]) / (tau * sd)) for j in range(b) if j != i and y[j] == 0)
            pos_above = sum(sig((s[j] - s[i]) / (tau * sd)) for j in range(b) if j != i and y[j] == 1)
            all_above = sum(sig((s[j] - s[i]) / (tau * sd)) for j in range(b) if j != i)
            row += [neg_below / max(n_neg, 1), pos_above / max(n_pos, 1), all_above / max(b - 1, 1)]
        rows.append(row)
    return rows


def test_set_features_match_a_naive_loop():
    gen = torch.Generator().manual_seed(4)
    s = torch.randn(3, 7, generator=gen, dtype=torch.float64) * 3
    y = (torch.rand(3, 7, generator=gen) < 0.4).double()
    y[2] = 0  # a set without positives
    temps = (0.2, 1.0)
    got = S.set_features(s, y, ("prob", "sign", "rank"), temps, sharpness=2.5)
    for m in range(3):
        want = torch.tensor(_naive_features(s[m].tolist(), y[m].long().tolist(), temps, 2.5), dtype=torch.float64)
        torch.testing.assert_close(got[m], want)


@pytest.mark.parametrize("labels", [None, 3])
def test_net_equals_a_naive_loop_and_is_permutation_invariant(labels):
    task = S.SetTask(labels)
    torch.manual_seed(0)
    net = task.build_net(**task.default_net_config()).double()
    pred, target = task.random_batches(4, 9, torch.Generator().manual_seed(5))
    pred = pred.double()
    got = net(pred, target)
    assert got.shape == (4,)
    for n in range(4):
        per_label = []
        cols = [(pred[n], target[n])] if labels is None else [(pred[n, :, i], target[n, :, i]) for i in range(labels)]
        for s, y in cols:
            f = S.set_features(s[None], y[None].double(), net.features, net.temperatures, net.sharpness,
                               net.sign_floor, net.rank_floor)[0]
            emb = net.phi(f)
            pos = emb[y > 0.5].mean(0)
            neg = emb[y < 0.5].mean(0)
            per_label.append(net.rho(torch.cat([pos, neg, y.double().mean()[None]])))
        torch.testing.assert_close(got[n], torch.stack(per_label).mean())
    perm = torch.randperm(9)
    torch.testing.assert_close(net(pred[:, perm], target[:, perm]), got)


def test_default_net_is_invariant_to_the_logit_scale_above_the_floor():
    task = S.SetTask(2)
    torch.manual_seed(2)
    net = task.build_net(**task.default_net_config()).double()
    assert (net.sign_floor, net.rank_floor) == (S.SIGN_FLOOR, S.RANK_FLOOR)
    pred, target = task.random_batches(4, 9, torch.Generator().manual_seed(7))
    pred = pred.double()
    floor = max(net.sign_floor, net.rank_floor)
    pred = pred * (1.01 * floor / pred.std(dim=1, correction=0).min())  # sd (<= rms) just above both floors
    torch.testing.assert_close(net(pred * 20.0, target), net(pred, target))


def test_below_the_floor_scores_are_divided_by_the_floor():
    s, y = S.SetTask().random_batches(3, 16, torch.Generator().manual_seed(4))
    s = s.double() * (0.2 / s.double().square().mean(-1, keepdim=True).sqrt())  # sd <= rms = 0.2 < both floors
    got = S.set_features(s, y.double(), ("sign", "rank"), (0.1,), sharpness=3.0, sign_floor=0.3, rank_floor=0.5)
    torch.testing.assert_close(got[..., 0], torch.sigmoid(3.0 * s / 0.3))
    diff = (s.unsqueeze(-1) - s.unsqueeze(-2)) / 0.5
    all_above = ((16 - torch.sigmoid(diff / 0.1).sum(-1)) - 0.5) / 15
    torch.testing.assert_close(got[..., -1], all_above)


@pytest.mark.parametrize("floor", [1e-3, 0.5])
def test_feature_jacobians_are_finite_and_bounded_at_any_scale(floor):
    # docs/reliability.md: the soft sign's Jacobian has norm <= beta / (4 max(rms, floor)); a comparison feature
    # (here "negatives below me" at tau) has row sums <= 1/(2 tau) and column sums <= (1 + (B-1)/n_neg)/(4 tau)
    # with respect to s / max(sd, floor), so its norm is <= sqrt(product) / max(sd, floor). Identical scores
    # (sd = rms = 0) included: there the floor alone keeps the Jacobian finite.
    s, y = S.SetTask().random_batches(1, 24, torch.Generator().manual_seed(5))
    s, y = s[0].double(), y[0].double()
    b, n_neg, tau, beta = 24, float((1 - y).sum()), 0.1, 3.0
    for scale, shift in ((0.0, 0.25), (1e-6, 0.0), (1e-2, 0.0), (1.0, 0.0), (1e3, 0.0)):
        x = s * scale + shift
        jac = torch.autograd.functional.jacobian(
            lambda v: S.set_features(v[None], y[None], ("sign", "rank"), (tau,), beta, floor, floor)[0], x)
        assert torch.isfinite(jac).all()
        rms = max(float(x.square().mean().sqrt()), floor)
        sd = max(float(x.std(correction=0)), floor)
        assert float(torch.linalg.matrix_norm(jac[:, 0], 2)) <= beta / (4 * rms) * (1 + 1e-9)
        comparison = ((1 / (2 * tau)) * (1 + (b - 1) / n_neg) / (4 * tau)) ** 0.5 / sd
        assert float(torch.linalg.matrix_norm(jac[:, 2], 2)) <= comparison * (1 + 1e-9)


def test_nets_saved_without_a_floor_keep_the_old_one():
    # Files saved before the floors were stored rebuild with 1e-3; a `net=` dict without them gets the defaults.
    task = S.SetTask()
    config = {k: v for k, v in task.default_net_config().items() if not k.endswith("_floor")}
    net = ml.Surrogate.from_config(config, task=task).net
    assert (net.sign_floor, net.rank_floor) == (1e-3, 1e-3)
    assert (task.build_net(**config).sign_floor, task.build_net(**config).rank_floor) == (S.SIGN_FLOOR, S.RANK_FLOOR)


def test_net_gradcheck_and_double_backward_in_float64():
    task = S.SetTask(2)
    torch.manual_seed(1)
    net = task.build_net(features=["prob", "sign", "rank"], temperatures=[0.3], hidden=6, depth=1, embedding=4,
                         sharpness=2.0).double()
    pred, target = task.random_batches(2, 5, torch.Generator().manual_seed(6))
    x = pred.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: net(p, target), (x,))
    assert torch.autograd.gradgradcheck(lambda p: net(p, target), (x,))


def test_net_config_errors():
    task = S.SetTask()
    with pytest.raises(ValueError, match="`features`"):
        task.build_net(features=["nope"])
    with pytest.raises(ValueError, match="`temperatures`"):
        task.build_net(temperatures=[0.0])
    with pytest.raises(ValueError, match="`hidden`"):
        task.build_net(hidden=0)
    with pytest.raises(ValueError, match="`sharpness`"):
        task.build_net(sharpness=float("inf"))
    with pytest.raises(ValueError, match="`sign_floor`"):
        task.build_net(sign_floor=-0.5)
    with pytest.raises(ValueError, match="`rank_floor`"):
        task.build_net(rank_floor=0.0)
    with pytest.raises(TypeError):
        task.build_net(width=3)


# ---- learning end to end -----------------------------------------------------------------------------------


def test_learn_end_to_end_save_and_load(tmp_path):
    sur = ml.learn("f1", task="set", seed=0, **QUICK)
    rep = sur.report
    assert rep.task == "set" and rep.metric == "f1" and rep.baseline == "binary cross-entropy"
    assert -1 <= rep.spearman <= 1 and -1 <= rep.baseline_spearman <= 1
    assert 0 < rep.metric_seconds < rep.learn_seconds
    pred, target = sur.task.random_batches(1, 10, torch.Generator().manual_seed(9))
    x = pred[0].clone().requires_grad_(True)
    loss = sur(x, target[0])
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    path = tmp_path / "f1.safetensors"
    sur.save(path)
    back = ml.load(path)
    assert isinstance(back, Surrogate) and back.task.config() == {"num_labels": None}
    assert back.report.spearman == rep.spearman
    torch.testing.assert_close(back(pred[0], target[0]), sur(pred[0], target[0]))


def test_learn_multilabel_average_precision():
    sur = ml.learn("average_precision", task="set", num_labels=3, seed=1, **QUICK)
    assert sur.report.task_config == {"num_labels": 3} and sur.report.metric == "average_precision"
    pred, target = sur.task.random_batches(1, 10, torch.Generator().manual_seed(9))
    assert sur(pred[0], target[0]).dim() == 0
