"""The set task family: metrics against scikit-learn, checks, DeepSets surrogate, G_R, learning end to end."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

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


def test_relabel_redraws_labels_or_perturbs_scores_around_real_outputs():
    task = S.SetTask(2)
    pred, target = task.random_batches(60, 32, torch.Generator().manual_seed(2))
    p2, t2 = task.relabel(pred, target.long(), torch.Generator().manual_seed(3))
    assert p2.shape == pred.shape and p2.dtype == pred.dtype and t2.dtype == torch.long and t2.shape == target.shape
    assert set(t2.unique().tolist()) <= {0, 1}
    kept = (p2 == pred).all(dim=2).all(dim=1)
    assert 5 <= int(kept.sum()) <= 40  # about a third keep their scores and re-draw labels
    changed = (t2 != target.long()).float().mean(dim=(1, 2))
    assert float(changed[kept].max()) > 0.2
    # the others: scores moved (temperature, shift, noise), at most 3 labels per label column flipped, each among
    # the quarter of the (moved) scores nearest the threshold
    moved = ~kept
    flips = (t2 != target.long())[moved]
    assert int(flips.sum(dim=1).max()) <= 3 and int(flips.sum()) > 0
    near = p2[moved].abs().argsort(dim=1)[:, :8]
    in_near = torch.zeros_like(flips).scatter(1, near, torch.ones_like(near, dtype=torch.bool))
    assert bool((flips <= in_near).all())
    binary = S.SetTask()
    p1, t1 = binary.relabel(pred[..., 0], target[..., 0], torch.Generator().manual_seed(4))
    assert p1.shape == pred[..., 0].shape and t1.dtype == target.dtype


@pytest.mark.parametrize("labels", [None, 3])
def test_trained_batches_are_well_separated_with_few_errors(labels):
    task = S.SetTask(labels)
    pred, target = task.trained_batches(400, 64, torch.Generator().manual_seed(0))
    assert pred.shape == target.shape == ((400, 64) if labels is None else (400, 64, labels))
    f1 = task.metrics["f1"].evaluate(pred, target)
    spread = task.metrics["f1"].evaluate(*task.spread_batches(400, 64, torch.Generator().manual_seed(0)))
    assert float(f1.median()) > 0.9 > float(spread.median())
    errors = ((pred > 0).float() != target).float().sum(1)
    assert float(errors.float().median()) <= 4 and float((errors == 0).float().mean()) > 0.02
    assert float(f1.std()) > 0.03  # the metric still varies between batches


def test_flip_near_threshold_flips_zero_to_three_of_the_nearest_quarter():
    gen = torch.Generator().manual_seed(5)
    scores = torch.randn(300, 20, 2, generator=gen)
    target = (torch.rand(300, 20, 2, generator=gen) < 0.5).float()
    out = S.SetTask._flip_near_threshold(scores, target, gen)
    flips = out != target
    counts = flips.sum(dim=1)
    assert set(counts.unique().tolist()) == {0, 1, 2, 3}
    nearest = scores.abs().argsort(dim=1)[:, :5]
    allowed = torch.zeros_like(flips).scatter(1, nearest, torch.ones_like(nearest, dtype=torch.bool))
    assert bool((flips <= allowed).all())


# ---- surrogate network -------------------------------------------------------------------------------------


def _logistic_step(d: float, tau: float) -> float:
    return 1 / (1 + np.exp(-d / tau))


def _spline_step(d: float, tau: float) -> float:
    """The triangular distribution function on [-4 tau, 4 tau], written out piece by piece."""
    x = d / (4 * tau)
    if x <= -1:
        return 0.0
    if x <= 0:
        return (1 + x) ** 2 / 2
    if x <= 1:
        return 1 - (1 - x) ** 2 / 2
    return 1.0


def _naive_features(s: list[float], y: list[int], temps: tuple[float, ...], beta: float,
                    step=_logistic_step) -> list[list[float]]:
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
            neg_below = sum(step((s[i] - s[j]) / sd, tau) for j in range(b) if j != i and y[j] == 0)
            pos_above = sum(step((s[j] - s[i]) / sd, tau) for j in range(b) if j != i and y[j] == 1)
            all_above = sum(step((s[j] - s[i]) / sd, tau) for j in range(b) if j != i)
            row += [neg_below / max(n_neg, 1), pos_above / max(n_pos, 1), all_above / max(b - 1, 1)]
        rows.append(row)
    return rows


def test_set_features_match_a_naive_loop():
    gen = torch.Generator().manual_seed(4)
    s = torch.randn(3, 7, generator=gen, dtype=torch.float64) * 3
    y = (torch.rand(3, 7, generator=gen) < 0.4).double()
    y[2] = 0  # a set without positives
    temps = (0.2, 1.0)
    got = S.set_features(s, y, ("prob", "sign", "rank"), temps, sharpness=2.5, kernel="logistic")
    for m in range(3):
        want = torch.tensor(_naive_features(s[m].tolist(), y[m].long().tolist(), temps, 2.5), dtype=torch.float64)
        torch.testing.assert_close(got[m], want)


@pytest.mark.parametrize("b", [1, 2, 7, 40])
def test_spline_features_match_a_naive_pairwise_loop(b):
    # The O(B log B) features against the O(B^2) definition, exactly (float64), ties and empty groups included.
    gen = torch.Generator().manual_seed(b)
    s = torch.randn(3, b, generator=gen, dtype=torch.float64) * 3
    s[1] = torch.round(s[1])  # ties, and pairs exactly one window apart
    y = (torch.rand(3, b, generator=gen) < 0.4).double()
    y[2] = 0  # a set without positives
    temps = (0.05, 0.2, 1.0)
    got = S.set_features(s, y, ("prob", "sign", "rank"), temps, sharpness=2.5, sign_floor=1e-9, rank_floor=1e-3,
                         kernel="spline")
    for m in range(3):
        want = _naive_features(s[m].tolist(), y[m].long().tolist(), temps, 2.5, _spline_step)
        torch.testing.assert_close(got[m], torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-10)


def test_spline_below_in_float32_at_large_batches_and_linear_memory():
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(2, 3000, generator=gen, dtype=torch.float64) * 4
    w = (torch.rand(2, 3000, 2, generator=gen) < 0.3).double()
    d = u.unsqueeze(-1) - u.unsqueeze(-2)
    k = torch.where(d <= -1, 0.0, torch.where(d <= 0, (1 + d) ** 2 / 2, torch.where(d <= 1, 1 - (1 - d) ** 2 / 2, 1.0)))
    want = k @ w  # the pairwise definition
    got = S.spline_below(u.float(), w.float()).double()
    assert float((got - want).abs().max() / w.sum(1).max()) < 1e-5  # as a fraction of the group
    # O(B) memory: the pairwise matrix of 300,000 scores would take 360 GB
    s = torch.randn(1, 300_000, generator=gen)
    f = S.set_features(s, (s > 0.3).float(), ("sign", "rank"), (0.1, 0.5))
    assert f.shape == (1, 300_000, 8) and bool(torch.isfinite(f).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_spline_features_in_half_precision_sum_in_float32(dtype):
    # bfloat16 prefix sums over 4096 samples would be off by whole counts; the kernel promotes them to float32, so
    # only the rounding of the inputs and of the returned features remains.
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(1, 4096, generator=gen) * 3
    y = (torch.rand(1, 4096, generator=gen) < 0.3).float()
    want = S.set_features(s.to(dtype).double(), y.double(), ("rank",), (0.1, 0.5))
    x = s.to(dtype).requires_grad_(True)
    got = S.set_features(x, y.to(dtype), ("rank",), (0.1, 0.5))
    got.float().sum().backward()
    assert got.dtype == dtype and float((got.detach().double() - want).abs().max()) < 0.01
    assert bool(torch.isfinite(x.grad).all())


def test_spline_features_at_low_temperature_are_the_exact_fractions():
    # Scores further apart than the kernel's support: "negatives below" averaged over the positives is the AUROC,
    # and "samples above" is the exact rank fraction.
    gen = torch.Generator().manual_seed(3)
    s = torch.randperm(60, generator=gen).double()
    y = (torch.rand(60, generator=gen) < 0.4).double()
    f = S.set_features(s[None], y[None], ("rank",), (1e-3,), kernel="spline")[0]
    assert float(f[y > 0, 1].mean()) == pytest.approx(roc_auc_score(y.numpy(), s.numpy()), abs=1e-12)
    above = (s[None, :] > s[:, None]).double().sum(1) / 59
    torch.testing.assert_close(f[:, 3], above)


def test_spline_features_stay_within_0_025_of_the_logistic_ones():
    # K(d / 4 tau) and sigma(d / tau) share their value and slope at 0 and differ by at most ~0.02 anywhere.
    s, y = S.SetTask().random_batches(8, 50, torch.Generator().manual_seed(8))
    args = (s.double(), y.double(), ("rank",), (0.1, 0.5))
    diff = S.set_features(*args, kernel="spline") - S.set_features(*args, kernel="logistic")
    assert float(diff.abs().max()) <= 0.025 and float(diff.abs().max()) > 1e-3


def test_spline_below_gradcheck_in_float64():
    gen = torch.Generator().manual_seed(2)
    u = (torch.randn(2, 9, generator=gen, dtype=torch.float64) * 0.8).requires_grad_(True)
    w = (torch.rand(2, 9, 2, generator=gen) < 0.5).double()
    assert torch.autograd.gradcheck(lambda v: S.spline_below(v, w), (u,))


def test_net_is_finite_at_batch_sizes_1_2_and_4096():
    task = S.SetTask()
    torch.manual_seed(0)
    net = task.build_net(**task.default_net_config())
    assert net.kernel == "spline"
    for b in (1, 2, 4096):
        pred, target = task.random_batches(2, b, torch.Generator().manual_seed(b))
        for scores in (pred, torch.zeros_like(pred), pred * 1e4):
            x = scores.clone().requires_grad_(True)
            loss = net(x, target)
            loss.sum().backward()
            assert bool(torch.isfinite(loss).all()) and bool(torch.isfinite(x.grad).all()), b


def test_surrogates_saved_with_the_logistic_kernel_give_the_values_they_gave():
    # tests/data/set_logistic: written by metricloss at dbf06ea (before `kernel` existed), with the losses it gave.
    data = Path(__file__).parent / "data" / "set_logistic"
    sur = ml.load(data / "set-f1-logistic.safetensors")
    assert sur.net.kernel == "logistic"
    for b, case in json.loads((data / "values.json").read_text()).items():
        got = sur(torch.tensor(case["scores"]), torch.tensor(case["target"]))
        assert float(got) == pytest.approx(case["loss"], abs=1e-6), b


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
                               net.sign_floor, net.rank_floor, net.kernel)[0]
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
    got = S.set_features(s, y.double(), ("sign", "rank"), (0.1,), sharpness=3.0, sign_floor=0.3, rank_floor=0.5,
                         kernel="logistic")
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
