"""The pose task family: PCK / PCKh against naive loops, input checks, Gaussian targets and the MSE baseline,
the surrogate networks (naive loop, gradcheck, bounded gradients), G_R, relabel, and learn/save/load."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import metricloss as ml
from metricloss.metrics import pose as pm
from metricloss.tasks import get_task, pose
from metricloss.tasks.pose import PoseNet, PoseTask, gaussian_heatmaps, heatmap_mse
from profiles import examples

K, H, W = 4, 8, 10


@pytest.fixture(scope="module")
def task() -> PoseTask:
    return PoseTask(num_keypoints=K, heatmap_size=(H, W))


def _batch(b: int = 3, k: int = K, h: int = H, w: int = W, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    heat = torch.rand(b, k, h, w, generator=g)
    xy = torch.rand(b, k, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0])
    vis = torch.randint(0, 3, (b, k, 1), generator=g).float()
    vis[0, 0] = 2.0
    return heat, torch.cat([xy, vis], dim=-1)


# ---------------------------------------------------------------------------------------------------------
# metrics against naive loops


def _naive_pck(heat: np.ndarray, kp: np.ndarray, alpha: float, reference: tuple[int, int] | None = None,
               empty: float = 0.0) -> float:
    b_, k_, h, w = heat.shape
    hit = count = 0
    for b in range(b_):
        if reference is None:
            thr = alpha * max(h, w)
        else:
            i, j = reference
            if kp[b, i, 2] <= 0 or kp[b, j, 2] <= 0:
                continue
            thr = alpha * math.hypot(kp[b, i, 0] - kp[b, j, 0], kp[b, i, 1] - kp[b, j, 1])
        for k in range(k_):
            if kp[b, k, 2] <= 0:
                continue
            row, col = np.unravel_index(np.argmax(heat[b, k]), (h, w))  # first maximum, row-major
            count += 1
            hit += math.hypot(col - kp[b, k, 0], row - kp[b, k, 1]) <= thr
    return hit / count if count else empty


@pytest.mark.parametrize("alpha", [0.0, 0.05, 0.1, 0.3, 2.0])
@pytest.mark.parametrize("seed", range(4))
def test_pck_matches_a_naive_loop(alpha, seed):
    heat, kp = _batch(b=5, seed=seed)
    got = pm.percentage_correct_keypoints(heat, kp, alpha)
    assert got.dtype == torch.float64 and got.shape == ()
    assert float(got) == pytest.approx(_naive_pck(heat.numpy(), kp.numpy(), alpha), abs=1e-12)


@pytest.mark.parametrize("reference", [(0, 1), (2, 0), (3, 1)])
@pytest.mark.parametrize("alpha", [0.2, 0.5, 1.0])
def test_pckh_matches_a_naive_loop(reference, alpha):
    for seed in range(4):
        heat, kp = _batch(b=6, seed=seed)
        got = pm.percentage_correct_keypoints_head(heat, kp, alpha, reference)
        assert float(got) == pytest.approx(_naive_pck(heat.numpy(), kp.numpy(), alpha, reference), abs=1e-12)


@settings(max_examples=examples(60), deadline=None)
@given(b=st.integers(1, 4), k=st.integers(2, 5), h=st.integers(2, 7), w=st.integers(2, 7),
       alpha=st.floats(0.0, 1.5), seed=st.integers(0, 2**16), quantise=st.booleans())
def test_pck_and_pckh_properties(b, k, h, w, alpha, seed, quantise):
    heat, kp = _batch(b, k, h, w, seed)
    if quantise:  # many ties: the first maximum must win, as numpy's argmax
        heat = (heat * 3).floor()
    hn, kn = heat.numpy(), kp.numpy()
    v = float(pm.percentage_correct_keypoints(heat, kp, alpha))
    assert 0.0 <= v <= 1.0
    assert v == pytest.approx(_naive_pck(hn, kn, alpha), abs=1e-12)
    vh = float(pm.percentage_correct_keypoints_head(heat, kp, alpha))
    assert vh == pytest.approx(_naive_pck(hn, kn, alpha, (0, 1)), abs=1e-12)
    # PCK is monotone in alpha
    assert float(pm.percentage_correct_keypoints(heat, kp, alpha + 0.1)) >= v


def test_stacked_equals_per_batch(task):
    pred, target = task.random_batches(12, 5, torch.Generator().manual_seed(3))
    for metric in task.metrics.values():
        stacked = metric.evaluate(pred, target)
        loop = torch.tensor([metric(p, t) for p, t in zip(pred, target, strict=True)], dtype=torch.float64)
        assert stacked.shape == (12,)
        torch.testing.assert_close(stacked, loop, rtol=0, atol=1e-12)


def test_known_values_and_the_threshold_boundary():
    heat = torch.zeros(1, 3, 20, 20)
    heat[0, 0, 10, 10] = 1.0  # predicted (x, y) = (10, 10)
    heat[0, 1, 0, 0] = 1.0
    heat[0, 2, 4, 7] = 1.0
    # threshold 0.05 * 20 = 1 px: exactly 1 px away counts, 1.01 does not; keypoint 2 is unlabelled
    kp = torch.tensor([[[10.0, 11.0, 1.0], [1.01, 0.0, 2.0], [7.0, 4.0, 0.0]]])
    assert float(pm.percentage_correct_keypoints(heat, kp)) == 0.5
    assert pm.heatmap_argmax(heat)[0].tolist() == [[10.0, 10.0], [0.0, 0.0], [7.0, 4.0]]
    # PCKh: reference length |(10, 11) - (1.01, 0)| = 14.2 -> with alpha 0.1, 1.42 px: both labelled ones hit
    assert float(pm.percentage_correct_keypoints_head(heat, kp, 0.1)) == 1.0


def test_batches_without_labels_return_empty():
    heat, kp = _batch()
    kp[..., 2] = 0
    assert float(pm.percentage_correct_keypoints(heat, kp)) == 0.0
    assert float(pm.percentage_correct_keypoints(heat, kp, empty=1.0)) == 1.0
    # PCKh: labelled keypoints but no sample with both reference keypoints labelled
    kp[:, 2:, 2] = 2
    assert float(pm.percentage_correct_keypoints_head(heat, kp, empty=0.25)) == 0.25
    assert pm.pck(empty=0.5)(heat, torch.zeros_like(kp)) == 0.5


def test_metric_objects_and_factories():
    assert set(pm.BUILTINS) == {"pck", "pckh"}
    assert all(m.higher_is_better and m.stacked is not None for m in pm.BUILTINS.values())
    assert pm.pck(0.05).name == "pck" and pm.pck(0.1).name == "pck@0.1"
    assert pm.pckh().name == "pckh" and pm.pckh(0.3, (2, 5)).name == "pckh@0.3[2,5]"
    heat, kp = _batch(seed=5)
    assert pm.pck(0.2)(heat, kp) == pytest.approx(_naive_pck(heat.numpy(), kp.numpy(), 0.2))
    assert pm.pckh(0.7, (3, 2))(heat, kp) == pytest.approx(_naive_pck(heat.numpy(), kp.numpy(), 0.7, (3, 2)))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: pm.pck(-0.1), ValueError, "`alpha` must be a finite number >= 0"),
        (lambda: pm.pck("x"), TypeError, "`alpha` must be a number"),
        (lambda: pm.pck(float("inf")), ValueError, "`alpha`"),
        (lambda: pm.pckh(reference=(1, 1)), ValueError, "`reference` must be two distinct"),
        (lambda: pm.pckh(reference=(0,)), ValueError, "`reference`"),
        (lambda: pm.pckh(reference=(-1, 2)), ValueError, "`reference`"),
        (lambda: pm.pckh(reference=(0.5, 2)), ValueError, "`reference`"),
        (lambda: pm.percentage_correct_keypoints_head(*_batch(), reference=(0, K)), ValueError,
         r"`reference` must be two distinct keypoint indices in \[0, 4\)"),
    ],
)
def test_metric_arguments_are_checked(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------------------------------------------------
# task construction and checks


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_keypoints": 0, "heatmap_size": 8}, "`num_keypoints` must be an integer >= 1"),
        ({"num_keypoints": True, "heatmap_size": 8}, "`num_keypoints`"),
        ({"num_keypoints": 2.0, "heatmap_size": 8}, "`num_keypoints`"),
        ({"num_keypoints": 3, "heatmap_size": (8,)}, r"`heatmap_size` must be \(H, W\)"),
        ({"num_keypoints": 3, "heatmap_size": (8, 1)}, "`heatmap_size`"),
        ({"num_keypoints": 3, "heatmap_size": (8.0, 8)}, "`heatmap_size`"),
        ({"num_keypoints": 3, "heatmap_size": "16"}, "`heatmap_size`"),
        ({"num_keypoints": 3, "heatmap_size": 8, "sigma": 0}, "`sigma` must be a positive"),
        ({"num_keypoints": 3, "heatmap_size": 8, "reference": (0, 3)}, "`reference`"),
        ({"num_keypoints": 1, "heatmap_size": 8, "reference": (0, 2)}, "`reference` needs num_keypoints >= 2"),
    ],
)
def test_task_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_task("pose", **kwargs)


def test_config_is_json_and_round_trips(task):
    config = json.loads(json.dumps(task.config()))
    assert config == {"num_keypoints": K, "heatmap_size": [H, W], "sigma": 2.0, "reference": [0, 1]}
    assert get_task("pose", **config).config() == config
    assert PoseTask(3, 12).heatmap_size == (12, 12)
    assert set(PoseTask(1, 8).metrics) == {"pck"}  # no reference length with one keypoint
    assert PoseTask(5, 8, reference=(3, 4)).metrics["pckh"].name == "pckh[3,4]"


def test_check_accepts_valid_inputs(task):
    p, t = _batch()
    task.check(p, t)
    task.check(p.double(), t.half())
    task.check(p[None].expand(2, -1, -1, -1, -1), t[None].expand(2, -1, -1, -1), stacked=True)
    task.check(p[:1], t[:1])


P, T = _batch()
_bad_vis = T.clone()
_bad_vis[1, 2, 2] = 3.0
_nan = P.clone()
_nan[0, 0, 0, 0] = float("nan")
BAD_INPUTS = [
    pytest.param(P[0], T, False, ValueError, r"`pred` must be heatmaps of shape \(B, K, H, W\)", id="pred-3d"),
    pytest.param(P, T, True, ValueError, r"`pred` must be heatmaps of shape \(N, B, K, H, W\)", id="not-stacked"),
    pytest.param(P[None], T[None], False, ValueError, r"\(B, K, H, W\), got \(1, 3, 4, 8, 10\)", id="stacked"),
    pytest.param(P, T[:2], False, ValueError, r"`target` must be keypoints of shape \(3, 4, 3\)", id="target-B"),
    pytest.param(P, T[..., :2], False, ValueError, r"`target` must be keypoints", id="target-no-vis"),
    pytest.param(P, _bad_vis, False, ValueError, r"visibility.*0 \(not labelled\).*found 3.0", id="visibility"),
    pytest.param(P.long(), T, False, TypeError, "`pred` must be a floating-point tensor", id="int-pred"),
    pytest.param(P, T.long(), False, TypeError, "`target` must be a floating-point tensor", id="int-target"),
    pytest.param(P.numpy(), T, False, TypeError, "`pred` must be a torch.Tensor", id="numpy"),
    pytest.param(_nan, T, False, ValueError, "`pred` contains NaN", id="nan"),
    pytest.param(P[:0], T[:0], False, ValueError, r"empty batch \(B = 0\)", id="empty"),
]


@pytest.mark.parametrize(("pred", "target", "stacked", "error", "match"), BAD_INPUTS)
def test_check_rejects_bad_inputs(task, pred, target, stacked, error, match):
    with pytest.raises(error, match=match):
        task.check(pred, target, stacked=stacked)
    same_in_metrics = "num_keypoints" not in match and "heatmap_size" not in match
    if not stacked and isinstance(pred, torch.Tensor) and pred.dim() != 5 and same_in_metrics:
        with pytest.raises(error, match=match):  # the metrics check their inputs the same way
            pm.percentage_correct_keypoints(pred, target)


# ---------------------------------------------------------------------------------------------------------
# Gaussian targets and the baseline


def test_gaussian_heatmaps_match_the_formula():
    kp = torch.tensor([[[1.5, 2.25, 2.0], [6.0, 0.0, 1.0]]], dtype=torch.float64)
    g = gaussian_heatmaps(kp, (5, 7), sigma=1.3)
    assert g.shape == (1, 2, 5, 7) and g.dtype == torch.float64
    for k in range(2):
        for v in range(5):
            for u in range(7):
                want = math.exp(-((u - kp[0, k, 0]) ** 2 + (v - kp[0, k, 1]) ** 2) / (2 * 1.3**2))
                assert float(g[0, k, v, u]) == pytest.approx(want, rel=1e-12)


def test_heatmap_mse_matches_a_naive_loop(task):
    pred, target = task.random_batches(3, 4, torch.Generator().manual_seed(2))
    got = heatmap_mse(pred, target, 1.5)
    assert got.shape == (3,)
    for n in range(3):
        total, count = 0.0, 0
        for b in range(4):
            for k in range(K):
                if target[n, b, k, 2] > 0:
                    x, y = float(target[n, b, k, 0]), float(target[n, b, k, 1])
                    err = 0.0
                    for v in range(H):
                        for u in range(W):
                            gv = math.exp(-((u - x) ** 2 + (v - y) ** 2) / (2 * 1.5**2))
                            err += (float(pred[n, b, k, v, u]) - gv) ** 2
                    total += err / (H * W)
                    count += 1
        assert float(got[n]) == pytest.approx(total / count, rel=1e-5)
    torch.testing.assert_close(task.baseline(pred, target), heatmap_mse(pred, target, 2.0))
    _, kp = _batch()
    assert float(heatmap_mse(torch.rand(3, K, H, W), kp * torch.tensor([1.0, 1.0, 0.0]))) == 0.0


# ---------------------------------------------------------------------------------------------------------
# surrogate networks


@pytest.fixture(scope="module", params=["features", "embedding-softmax", "embedding-none", "weighted"])
def net(request, task) -> PoseNet:
    kind, _, norm = request.param.partition("-")
    config = {"kind": kind, "hidden": 6, **({"normalize": norm, "embed_dim": 5} if norm else {})}
    torch.manual_seed(0)
    return task.build_net(**config)


def _naive_features(heat: np.ndarray, kp: np.ndarray, beta: float, grid: int = pose.FEATURE_GRID) -> np.ndarray:
    """The features of ``heatmap_features``' docstring for one heatmap ``(H, W)`` and keypoint ``(3,)``, with loops."""
    h, w = heat.shape
    s = max(h, w)
    f = max(1, s // grid)
    rows, cols = -(-h // f), -(-w // f)
    pooled = np.zeros((rows, cols))
    for i in range(rows):  # average pooling; a border cell averages the pixels it holds
        for j in range(cols):
            pooled[i, j] = heat[i * f:(i + 1) * f, j * f:(j + 1) * f].mean()
    cu = np.arange(cols) * f + (f - 1) / 2  # cell centres in input pixels
    cv = np.arange(rows) * f + (f - 1) / 2
    top, mean = pooled.max(), pooled.mean()
    spread = top - mean + 1e-6
    logits = beta * pooled / spread
    p = np.exp(logits - logits.max())
    p /= p.sum()
    entropy = -(p * np.log(p)).sum()
    x, y = kp[0], kp[1]
    ex = sum(p[i, j] * (cu[j] - x) for i in range(rows) for j in range(cols)) / s
    ey = sum(p[i, j] * (cv[i] - y) for i in range(rows) for j in range(cols)) / s
    d2 = np.array([[((cu[j] - x) ** 2 + (cv[i] - y) ** 2) / s**2 for j in range(cols)] for i in range(rows)])
    feats = [math.sqrt(ex**2 + ey**2 + 1e-12), math.sqrt((p * d2).sum() + 1e-12),
             (entropy - math.log(rows * cols)) / 4]
    win = np.exp(-d2 / (2 * pose.VALUE_RADIUS**2))
    feats.append(((pooled * win).sum() / win.sum() - mean) / spread)
    feats += [(p * np.exp(-d2 / (2 * r**2))).sum() for r in pose.FEATURE_RADII]
    return np.array(feats)


@pytest.mark.parametrize(("shape", "grid"), [((8, 10), 32), ((7, 11), 3), ((64, 48), 32), ((20, 13), 4)])
def test_heatmap_features_match_a_naive_loop(shape, grid):
    g = torch.Generator().manual_seed(sum(shape) + grid)
    heat = torch.rand(2, 3, *shape, generator=g, dtype=torch.float64)
    kp = torch.cat([torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * torch.tensor(shape[::-1]) - 0.5,
                    torch.full((2, 3, 1), 2.0, dtype=torch.float64)], dim=-1)
    got = pose.heatmap_features(heat, kp, 7.0, grid=grid)
    assert got.shape == (2, 3, pose.NUM_FEATURES)
    for b in range(2):
        for k in range(3):
            want = _naive_features(heat[b, k].numpy(), kp[b, k].numpy(), 7.0, grid)
            np.testing.assert_allclose(got[b, k].numpy(), want, rtol=1e-9, atol=1e-12)


def test_heatmap_features_gradcheck_with_pooling():
    g = torch.Generator().manual_seed(3)
    heat = torch.rand(1, 2, 7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    kp = torch.tensor([[[1.0, 2.5, 2.0], [3.2, 6.0, 1.0]]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: pose.heatmap_features(x, kp, 5.0, grid=2), (heat,))


def _naive_net(net: PoseNet, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The formula of the module docstring, one keypoint at a time."""
    out = []
    for n in range(pred.shape[0]):
        total, count = 0.0, 0
        for b in range(pred.shape[1]):
            for k in range(pred.shape[2]):
                if target[n, b, k, 2] <= 0:
                    continue
                h = pred[n, b, k].reshape(-1)
                g = gaussian_heatmaps(target[n, b, k][None], (H, W), net.sigma)[0].reshape(-1)
                if net.kind == "features":
                    beta = float(net.log_temperature.exp())
                    f = _naive_features(pred[n, b, k].double().numpy(), target[n, b, k].double().numpy(), beta)
                    f = torch.as_tensor(f, dtype=pred.dtype)
                    loss = torch.sigmoid(net.head(f))[0]
                elif net.kind == "embedding":
                    def emb(x):
                        if net.normalize == "softmax":
                            x = torch.softmax(x * net.log_temperature.exp(), 0) * x.numel()
                        return net.encoder(x)
                    loss = ((emb(h) - emb(g)) ** 2).mean()
                else:
                    err = (h - g) ** 2
                    loss = net.weight_net(err)[0] * err.mean()
                total, count = total + loss, count + 1
        mean = net.log_scale.exp() * total / max(count, 1)
        out.append(torch.log1p(mean) if net.squash else mean)
    return torch.stack(out)


def test_net_equals_a_naive_loop(task, net):
    pred, target = task.random_batches(4, 3, torch.Generator().manual_seed(7))
    target[1, :, :, 2] = 0  # a batch without labels: loss 0
    with torch.no_grad():
        got = net(pred, target)
        assert got.shape == (4,)
        torch.testing.assert_close(got, _naive_net(net, pred, target), rtol=1e-5, atol=1e-6)
        assert float(got[1]) == 0.0
        # one batch at a time gives the same numbers
        torch.testing.assert_close(torch.cat([net(p[None], t[None]) for p, t in zip(pred, target, strict=True)]),
                                   got, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("config", [{"kind": "features"}, {"kind": "embedding"},
                                    {"kind": "embedding", "normalize": "none"}, {"kind": "weighted"},
                                    {"kind": "weighted", "squash": False}])
def test_gradcheck_in_float64(config):
    small = PoseTask(2, (4, 5), sigma=1.0)
    torch.manual_seed(0)
    net64 = small.build_net(hidden=4, **config).double()
    pred, target = small.random_batches(2, 2, torch.Generator().manual_seed(1))
    pred, target = pred.double().requires_grad_(True), target.double()
    assert torch.autograd.gradcheck(lambda p: net64(p, target), (pred,))
    # the learner's double backward (gradient penalty) works too
    assert torch.autograd.gradgradcheck(lambda p: net64(p, target), (pred,))


def test_net_gradient_stays_bounded_on_huge_heatmaps(task, net):
    pred, target = task.random_batches(1, 2, torch.Generator().manual_seed(0))
    norms = []
    for scale in (1.0, 1e2, 1e4):
        x = (pred * scale).requires_grad_(True)
        net(x, target).sum().backward()
        assert torch.isfinite(x.grad).all()
        norms.append(float(x.grad.norm()))
    # with squash, the gradient does not grow with the scale of the heatmaps
    assert norms[2] <= 10 * max(norms[0], 1e-3)


def test_net_arguments_are_checked(task):
    with pytest.raises(ValueError, match="`kind` must be one of 'features', 'embedding', 'weighted'"):
        task.build_net(kind="conv")
    with pytest.raises(ValueError, match="`normalize`"):
        task.build_net(normalize="max")
    with pytest.raises(ValueError, match="`hidden` must be an integer >= 1"):
        task.build_net(hidden=0)
    with pytest.raises(ValueError, match=r"built for heatmaps of size \(8, 10\), got \(8, 9\); learn one with "
                       r"heatmap_size=\(8, 9\), or use a surrogate of kind 'features'"):
        task.build_net(kind="embedding")(torch.rand(1, 1, K, H, W - 1), _batch(b=1)[1][None])


# ---------------------------------------------------------------------------------------------------------
# G_R and relabel


def test_random_batches_spread_over_the_metric_range():
    task = PoseTask(8, (16, 16))
    pred, target = task.random_batches(128, 8, torch.Generator().manual_seed(0))
    assert pred.shape == (128, 8, 8, 16, 16) and target.shape == (128, 8, 8, 3)
    task.check(pred, target, stacked=True)
    vis = target[..., 2]
    assert ((vis > 0).flatten(1).any(1)).all()  # every batch has a labelled keypoint
    assert 0.05 < float((vis == 0).float().mean()) < 0.45
    assert (target[..., :2][vis == 0] == 0).all()  # COCO stores unlabelled keypoints as (0, 0, 0)
    p = task.metrics["pck"].evaluate(pred, target)
    assert float(p.min()) < 0.1 and float(p.max()) > 0.85
    assert torch.histc(p.float(), 5, 0, 1).min() >= 5  # every fifth of [0, 1] is populated
    ph = task.metrics["pckh"].evaluate(pred, target)
    assert float(ph.min()) < 0.3 and float(ph.max()) == 1.0
    # deterministic given the generator
    one, two = (task.random_batches(3, 8, torch.Generator().manual_seed(1)) for _ in range(2))
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_random_batches_chunking_keeps_shapes():
    task = PoseTask(2, (64, 64))  # a chunk holds fewer batches than asked for
    pred, target = task.random_batches(5, 300, torch.Generator().manual_seed(0))
    assert pred.shape == (5, 300, 2, 64, 64) and target.shape == (5, 300, 2, 3)


def test_relabel_makes_targets_from_the_heatmaps(task):
    pred, target = task.random_batches(64, 6, torch.Generator().manual_seed(4))
    new_pred, new_target = task.relabel(pred, target, torch.Generator().manual_seed(5))
    assert new_pred is pred and new_target.shape == target.shape
    torch.testing.assert_close(new_target[..., 2], target[..., 2])
    task.check(new_pred, new_target, stacked=True)
    p = task.metrics["pck"].evaluate(new_pred, new_target)
    assert float(p.min()) < 0.2 and float(p.max()) > 0.9


# ---------------------------------------------------------------------------------------------------------
# learning end to end, save / load

SMALL = {"steps": 30, "batches_per_step": 16, "batch_size": 4, "pool_size": 128, "validation_batches": 32,
         "eval_every": 10, "progress": False, "gradient_probe": 8}


@pytest.mark.parametrize(("metric", "net_config"), [("pck", None), ("pckh", {"kind": "weighted"})])
def test_learn_runs_end_to_end_and_round_trips(tmp_path, metric, net_config):
    sur = ml.learn(metric, task="pose", num_keypoints=3, heatmap_size=(8, 8), net=net_config, **SMALL)
    rep = sur.report
    assert rep.task == "pose" and rep.metric == metric and rep.baseline == "MSE"
    assert rep.task_config == {"num_keypoints": 3, "heatmap_size": [8, 8], "sigma": 2.0, "reference": [0, 1]}
    assert all(-1 <= x <= 1 for x in (rep.spearman, rep.kendall, rep.baseline_spearman, rep.baseline_kendall))
    assert 0 < rep.metric_seconds < rep.learn_seconds

    task = sur.task
    pred, target = task.random_batches(1, 4, torch.Generator().manual_seed(9))
    x = pred[0].clone().requires_grad_(True)
    loss = sur(x, target[0])
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert not any(p.requires_grad for p in sur.parameters())

    path = tmp_path / "pose.safetensors"
    sur.save(path)
    back = ml.load(path)
    assert back.task.config() == task.config() and back.net_config == sur.net_config
    assert back.report.spearman == rep.spearman
    batch_p, batch_t = task.random_batches(5, 4, torch.Generator().manual_seed(1))
    torch.testing.assert_close(back.batch_losses(batch_p, batch_t), sur.batch_losses(batch_p, batch_t))
    if net_config is None:  # the default net serves other K and heatmap sizes than it was learned at
        other = sur(torch.rand(4, 2, 12, 9), target[0, :, :2])
        assert other.shape == () and torch.isfinite(other)
    else:  # a net built for (8, 8) names the fix
        with pytest.raises(ValueError, match=r"built for heatmaps of size \(8, 8\), got \(12, 9\); learn one with"):
            sur(torch.rand(4, 2, 12, 9), target[0, :, :2])


def test_pose_is_registered():
    assert pose.PoseTask is type(get_task("pose", num_keypoints=2, heatmap_size=4))
