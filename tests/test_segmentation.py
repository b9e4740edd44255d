"""Issue 23 (task side): ``task="segmentation"`` -- call shapes and bad inputs, the size-agnostic surrogate net (its
statistics against plain loops and autograd, gradients in float64, bounded gradient norm), the scene generator G_R,
learning, shape inference and the command line."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import metricloss as ml
from metricloss import cli
from metricloss.learning.shapes import infer_shapes
from metricloss.metrics.segmentation import miou
from metricloss.tasks import segmentation as seg
from metricloss.tasks.base import get_task
from metricloss.tasks.segmentation import (
    FULL_FEATURES,
    SegmentationNet,
    SegmentationTask,
    pixel_cross_entropy,
    segmentation_statistics,
)

QUICK = {"steps": 3, "batch_size": 2, "batches_per_step": 8, "pool_size": 16, "validation_batches": 8,
         "progress": False}


def _batch(b=2, c=4, h=16, w=12, seed=0, ignore=True, stack=None):
    g = torch.Generator().manual_seed(seed)
    lead = () if stack is None else (stack,)
    z = torch.randn(*lead, b, c, h, w, generator=g) * 2
    y = torch.randint(0, c, (*lead, b, h, w), generator=g)
    if ignore:
        y[..., :2, :] = 255
    return z, y


# ----- call shapes and bad inputs ---------------------------------------------------------------------------------


def test_task_is_registered_with_its_config():
    task = get_task("segmentation", num_classes=21)
    assert isinstance(task, SegmentationTask)
    assert task.config() == {"num_classes": 21, "image_size": [64, 64], "ignore_index": 255}
    assert task.default_metric == "miou" and "miou" in task.metrics and task.baseline_name == "cross-entropy"


@pytest.mark.parametrize("make, match", [
    (lambda: (torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 6, dtype=torch.long)), "same spatial size"),
    (lambda: (torch.randn(2, 3, 8, 8), torch.full((2, 8, 8), 3)), "class index 3, outside 0..2"),
    (lambda: (torch.randn(2, 1, 8, 8), torch.full((2, 8, 8), 2)), "binary"),
    (lambda: (torch.randn(2, 3, 8, 8), torch.full((2, 8, 8), 255)), "all ignore_index"),
    (lambda: (torch.randn(2, 3, 8, 8).index_put_((torch.tensor(0),) * 4, torch.tensor(float("nan"))),
              torch.zeros(2, 8, 8, dtype=torch.long)), "NaN"),
    (lambda: (torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 8)), "integer"),
    (lambda: (torch.randn(2, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long)), r"\(B, C, H, W\)"),
])
def test_bad_inputs_are_named_errors(make, match):
    task = SegmentationTask(3)
    pred, target = make()
    with pytest.raises((ValueError, TypeError), match=match):
        task.check(pred, target)


def test_bad_inputs_reach_the_user_through_a_surrogate():
    task = SegmentationTask(3, image_size=16)
    sur = ml.Surrogate(task, task.build_net(**task.default_net_config()), task.default_net_config())
    with pytest.raises(ValueError, match="same spatial size"):
        sur(torch.randn(2, 3, 16, 16), torch.zeros(2, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="all ignore_index"):
        sur(torch.randn(2, 3, 16, 16), torch.full((2, 16, 16), 255))


def test_task_arguments_are_checked():
    with pytest.raises(ValueError, match="`ignore_index` = 2 is a class index"):
        SegmentationTask(3, ignore_index=2)
    with pytest.raises(ValueError, match="`image_size`"):
        SegmentationTask(3, image_size=(4, 64))
    with pytest.raises(ValueError, match="`num_classes`"):
        SegmentationTask(0)
    with pytest.raises(ValueError, match="`scales`"):
        SegmentationNet(scales=[4, 6])


def test_other_ignore_index_reaches_metrics_checks_and_net():
    task = SegmentationTask(3, image_size=16, ignore_index=-100)
    z, y = _batch(c=3, h=16, w=16, ignore=False)
    y255 = y.clone()
    y255[:, :4] = 255
    ym = torch.where(y255 == 255, -100, y255)
    assert float(task.metrics["miou"](z, ym)) == float(miou(z, y255))
    task.check(z, ym)
    net = task.build_net(**task.default_net_config())
    ref = SegmentationTask(3, image_size=16).build_net(**task.default_net_config())
    ref.load_state_dict(net.state_dict())
    assert torch.allclose(net(z[None], ym[None]), ref(z[None], y255[None]))


def test_baseline_is_cross_entropy_over_the_labelled_pixels_of_each_batch():
    z, y = _batch(stack=3)
    want = torch.stack([F.cross_entropy(z[i], y[i], ignore_index=255) for i in range(3)])
    assert torch.allclose(SegmentationTask(4).baseline(z, y), want, atol=1e-6)
    # binary: one logit is binary cross-entropy with logits
    zb = torch.randn(2, 1, 5, 5)
    yb = torch.randint(0, 2, (2, 5, 5))
    bce = F.binary_cross_entropy_with_logits(zb[:, 0], yb.float())
    assert torch.allclose(pixel_cross_entropy(zb, yb), bce, atol=1e-6)


# ----- the surrogate net ---------------------------------------------------------------------------------------------


def _naive_full(z, y, ignore=255):
    """The full-resolution statistics of one batch by explicit loops over classes and pixels."""
    b, c, h, w = z.shape
    p = z.double().softmax(dim=1)
    rows = []
    valid = [(i, r, s) for i in range(b) for r in range(h) for s in range(w) if int(y[i, r, s]) != ignore]
    n = len(valid)
    for k in range(c):
        inter = sum(float(p[i, k, r, s]) for i, r, s in valid if int(y[i, r, s]) == k)
        mass = sum(float(p[i, k, r, s]) for i, r, s in valid)
        supp = sum(1.0 for i, r, s in valid if int(y[i, r, s]) == k)
        rows.append([inter / n, (mass - inter) / n, (supp - inter) / n, supp / n, inter / max(supp, 1),
                     inter / max(mass, 1), 2 * inter / max(mass + supp, 1), inter / max(mass + supp - inter, 1),
                     float(supp > 0), (max(math.log(supp / n), -14.0) + 14) / 14 if supp else 0.0])
    return torch.tensor(rows)


def test_full_resolution_statistics_match_a_naive_loop():
    z, y = _batch(b=2, c=3, h=7, w=9)
    stats = segmentation_statistics(z.double(), y, scales=(4,))
    assert torch.allclose(stats[:, :len(FULL_FEATURES)], _naive_full(z, y).to(stats.dtype), atol=1e-9)


def _naive_scale(z, y, f):
    """The pooled-scale statistics of one batch (one factor ``f``, sides multiples of ``f``) by explicit loops."""
    b, c, h, w = z.shape
    p = z.double().softmax(dim=1) * (y != 255).unsqueeze(1)
    onehot = torch.zeros(b, c, h, w, dtype=torch.float64)
    for i in range(b):
        for r in range(h):
            for s in range(w):
                if int(y[i, r, s]) != 255:
                    onehot[i, int(y[i, r, s]), r, s] = 1.0
    hh, ww = h // f, w // f

    def blocks(x):
        return torch.tensor([[[[float(x[i, k, r * f:(r + 1) * f, s * f:(s + 1) * f].mean()) for s in range(ww)]
                               for r in range(hh)] for k in range(c)] for i in range(b)], dtype=torch.float64)

    def band(x):
        out = torch.zeros_like(x)
        for r in range(hh):
            for s in range(ww):
                for dr, ds in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                    if 0 <= r + dr < hh and 0 <= s + ds < ww:
                        out[..., r, s] += (x[..., r, s] - x[..., r + dr, s + ds]).abs()
        return out

    q, t = blocks(p), blocks(onehot)
    bt, bp = band(t), band(q)

    def tot(x):
        return x.sum(dim=(0, 2, 3))

    def ratio(a, d):
        return a / d.clamp_min(1.0)

    it, ip = tot(bt * q * t), tot(bp * q * t)
    pt, tt, pp, tp = tot(bt * q), tot(bt * t), tot(bp * q), tot(bp * t)
    both = tot(bp * bt)
    cols = [ratio(tot(q * t), tot(q * q) + tot(t * t) - tot(q * t)), ratio(it, tt), ratio(it, pt),
            ratio(it, pt + tt - it), ratio(ip, tp), ratio(ip, pp), ratio(ip, pp + tp - ip), ratio(both, tot(bp)),
            ratio(both, tot(bt)), ratio(tot(bt), tot(t)), ratio(tot(bp), tot(q))]
    return torch.stack(cols, dim=-1)


def test_pooled_scale_statistics_match_a_naive_loop():
    z, y = _batch(b=2, c=3, h=16, w=8)
    stats = segmentation_statistics(z.double(), y, scales=(4,))
    assert torch.allclose(stats[:, len(FULL_FEATURES):], _naive_scale(z, y, 4), atol=1e-9)


def test_large_images_pool_by_larger_factors_to_the_grid():
    z, y = _batch(b=1, c=3, h=64, w=32)
    big_z = z.repeat_interleave(4, -1).repeat_interleave(4, -2)
    big_y = y.repeat_interleave(4, -1).repeat_interleave(4, -2)
    # at 256 x 128 with grid 16 the factors 4, 8 become 16, 32: the same pooled maps as 4, 8 on the image 4x smaller
    small = segmentation_statistics(z, y, scales=(4, 8))
    large = segmentation_statistics(big_z, big_y, scales=(4, 8), grid=16)
    assert torch.allclose(small, large, atol=1e-5)


def test_fused_full_resolution_pass_matches_autograd_values_and_gradients():
    z, y = _batch(b=2, c=5, h=10, w=13)  # 10 x 13 is not a multiple of 4: padded blocks
    z = z.double().requires_grad_()
    for sharpness in (1.0, 3.0):
        valid = y != 255
        yc = torch.where(valid, y, 0)
        q, py = seg._PooledSoftmax.apply(z, yc, valid.double(), 4, sharpness)
        weights = torch.randn_like(q), torch.randn_like(py)
        (g_fused,) = torch.autograd.grad((q * weights[0]).sum() + (py * weights[1]).sum(), z)
        p = (z * sharpness).softmax(dim=1) * valid.unsqueeze(1)
        q_ref, py_ref = seg._pool(p, 4), p.gather(1, yc.unsqueeze(1)).squeeze(1)
        (g_ref,) = torch.autograd.grad((q_ref * weights[0]).sum() + (py_ref * weights[1]).sum(), z)
        assert torch.allclose(q, q_ref) and torch.allclose(py, py_ref)
        assert torch.allclose(g_fused, g_ref, atol=1e-12)


def test_statistics_gradcheck_and_gradgradcheck_in_float64():
    z, y = _batch(b=1, c=2, h=4, w=4, ignore=False)
    y[0, 0, :3] = 255
    z = z.double().requires_grad_()
    weights = torch.randn(2, len(FULL_FEATURES) + 2 * 11, dtype=torch.float64)

    def fn(x):
        return (segmentation_statistics(x, y, scales=(2, 4), sharpness=2.0) * weights).sum()

    assert torch.autograd.gradcheck(fn, (z,))
    assert torch.autograd.gradgradcheck(fn, (z,), fast_mode=True)  # the learning's gradient penalty path


def test_net_gradcheck_in_float64():
    torch.manual_seed(0)
    net = SegmentationNet(scales=(2,), class_hidden=8).double()
    z, y = _batch(b=2, c=3, h=4, w=4, stack=1, ignore=False)
    y[0, 0, 0] = 255
    z = z.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: net(x, y), (z,))


def test_binary_one_logit_is_the_two_logits_zero_and_z():
    torch.manual_seed(0)
    net = SegmentationNet(class_hidden=8)
    z = torch.randn(1, 2, 1, 16, 16)
    y = torch.randint(0, 2, (1, 2, 16, 16))
    two = torch.cat([torch.zeros_like(z), z], dim=2)
    assert torch.allclose(net(z, y), net(two, y), atol=1e-6)


@pytest.mark.parametrize("c", [2, 21, 150])
def test_one_net_serves_any_size_and_any_number_of_classes(c):
    torch.manual_seed(0)
    net = SegmentationNet(class_hidden=16)
    for h, w in ((32, 32), (64, 96)):
        z, y = _batch(b=2, c=c, h=h, w=w, stack=2)
        y = y % min(c, 5)  # at C = 150 most classes are absent
        z.requires_grad_()
        loss = net(z, y)
        (grad,) = torch.autograd.grad(loss.sum(), z)
        assert loss.shape == (2,) and bool(torch.isfinite(loss).all()) and bool(torch.isfinite(grad).all())


def test_absent_classes_change_nothing():
    """Classes no pixel is labelled with and no probability reaches (logits -inf, as a stack pads classes) add
    exactly nothing: the loss is the one without them."""
    torch.manual_seed(0)
    net = SegmentationNet(class_hidden=16)
    z, y = _batch(b=2, c=4, h=32, w=32, stack=3)
    padded = torch.cat([z, torch.full((3, 2, 146, 32, 32), float("-inf"))], dim=2)
    assert torch.allclose(net(z, y), net(padded, y), atol=1e-6)


def test_full_statistics_do_not_change_when_the_image_is_upsampled():
    """The full-resolution statistics are shares of pixels: the same scene at twice the size (nearest) gives them
    exactly."""
    z, y = _batch(b=2, c=4, h=16, w=12)
    z2 = z.repeat_interleave(2, -1).repeat_interleave(2, -2)
    y2 = y.repeat_interleave(2, -1).repeat_interleave(2, -2)
    s1, s2 = segmentation_statistics(z, y), segmentation_statistics(z2, y2)
    k = len(FULL_FEATURES)
    assert torch.allclose(s1[:, :k], s2[:, :k], atol=1e-5)


def test_gradient_norm_is_bounded_whatever_the_size_and_scale():
    """Every statistic is a ratio with a denominator of at least one pixel: the gradient's norm does not grow with the
    batch, the image or the logit scale (a random net; the bound is the largest norm on the smallest input)."""
    torch.manual_seed(0)
    net = SegmentationNet(class_hidden=16)
    norms = {}
    for b, h, w in ((1, 32, 32), (4, 64, 64), (8, 128, 96)):
        for scale in (0.1, 1.0, 30.0, 1000.0):
            z, y = _batch(b=b, c=6, h=h, w=w, stack=1, seed=b)
            z = (z * scale).requires_grad_()
            (grad,) = torch.autograd.grad(net(z, y).sum(), z)
            norms[b, scale] = float(grad.norm())
    assert all(math.isfinite(v) for v in norms.values())
    small = max(v for (b, _), v in norms.items() if b == 1)
    assert max(norms.values()) <= 2 * small, norms


# ----- G_R ---------------------------------------------------------------------------------------------------------


def test_random_batches_spread_miou_are_deterministic_and_leave_the_global_rng_alone():
    task = SegmentationTask(8, image_size=(32, 40))
    before = torch.get_rng_state()
    pred, target = task.random_batches(48, 4, torch.Generator().manual_seed(3))
    assert torch.equal(before, torch.get_rng_state())
    assert pred.shape == (48, 4, 8, 32, 40) and target.shape == (48, 4, 32, 40) and target.dtype == torch.int64
    task.check(pred, target, stacked=True)
    again = task.random_batches(48, 4, torch.Generator().manual_seed(3))
    assert torch.equal(pred, again[0]) and torch.equal(target, again[1])
    values = miou(pred, target)
    assert float(values.quantile(0.1)) < 0.3 and float(values.quantile(0.9)) > 0.8, values
    assert bool((target == 255).any())  # ignore regions occur
    # long-tailed classes: the most frequent class of a batch covers far more pixels than the rarest present one
    counts = torch.stack([torch.bincount(t[t != 255], minlength=8) for t in target]).float()
    assert float((counts.max(dim=1).values / counts.masked_fill(counts == 0, 1e9).min(dim=1).values).median()) > 5


def test_binary_random_batches_have_one_logit():
    pred, target = SegmentationTask(1, image_size=16).random_batches(4, 2, torch.Generator().manual_seed(0))
    assert pred.shape == (4, 2, 1, 16, 16) and set(target.unique().tolist()) <= {0, 1, 255}


def test_batch_nbytes_is_a_stored_batch():
    task = SegmentationTask(5, image_size=(16, 24))
    pred, target = task.random_batches(1, 3, torch.Generator().manual_seed(0))
    assert task.batch_nbytes(3) == pred[0].nbytes + target[0].nbytes


def test_default_sizes_follow_the_batch_size():
    small, large = SegmentationTask(21), SegmentationTask(21, image_size=(512, 512))
    assert small.default_batches_per_step > large.default_batches_per_step == 8
    assert small.default_steps > large.default_steps >= 50


# ----- learning, shapes, CLI ---------------------------------------------------------------------------------------


def test_learn_saves_loads_and_reports(tmp_path):
    sur = ml.learn("miou", task="segmentation", num_classes=4, image_size=(32, 32), seed=0, **QUICK)
    assert sur.report is not None and sur.report.metric == "miou" and math.isfinite(sur.report.spearman)
    path = tmp_path / "seg.safetensors"
    sur.save(path)
    back = ml.load(path)
    z, y = _batch(b=2, c=7, h=48, w=40)  # any C, any size
    assert torch.allclose(back(z, y), sur(z, y))


@pytest.mark.filterwarnings("ignore::metricloss.verdict.WeakSurrogateWarning")  # 3 steps: nothing to judge
def test_shapes_are_inferred_from_outputs_and_learn_uses_them():
    task = SegmentationTask(3, image_size=(24, 32))
    pred, target = task.random_batches(12, 2, torch.Generator().manual_seed(1))
    outputs = list(zip(pred, target, strict=True))
    assert infer_shapes("segmentation", outputs, {}) == {"num_classes": 3, "image_size": (24, 32)}
    with pytest.raises(ValueError, match="num_classes"):
        infer_shapes("segmentation", outputs, {"num_classes": 5})
    sur = ml.learn("miou", task="segmentation", outputs=outputs, seed=0, **QUICK)
    assert sur.task.config() == {"num_classes": 3, "image_size": [24, 32], "ignore_index": 255}


def test_cli_learn_and_evaluate_segmentation(tmp_path, capsys):
    out = tmp_path / "seg.safetensors"
    args = ["learn", "--task", "segmentation", "--num-classes", "3", "--image-size", "16", "16", "--batch-size", "2",
            "--steps", "2", "--batches-per-step", "8", "--pool-size", "16", "--validation-batches", "8", "--quiet",
            "--out", str(out)]
    assert cli.main(args) == 0
    sur = ml.load(out)
    assert sur.task.config() == {"num_classes": 3, "image_size": [16, 16], "ignore_index": 255}
    assert cli.main(["evaluate", str(out), "--batches", "8", "--metric", "pixel_accuracy"]) == 0
    assert "pixel_accuracy" in capsys.readouterr().out


def test_the_memory_budget_holds_at_a_larger_size():
    """The pool and the held-out batches are sized by ``batch_nbytes`` against the budget (a small budget at 128 x 128
    stands for the default one at 1024 x 2048, where one batch of 8 is 1.4 GB); a budget too small for two batches is
    an error that says what to pass."""
    task = SegmentationTask(4, image_size=128)
    nbytes = task.batch_nbytes(2)
    assert nbytes == 2 * 128 * 128 * (4 * 4 + 8)
    budget = 12 * nbytes  # the pool may take 6 batches, the held-out set 3
    sur = ml.learn("miou", task="segmentation", num_classes=4, image_size=128, batch_size=2, steps=2,
                   batches_per_step=4, validation_batches=8, memory_budget=budget, progress=False, seed=0)
    assert sur.report.settings["pool_size"] == 6 and sur.report.n_validation_batches == 3
    with pytest.raises(ValueError, match=r"`memory_budget` .* too small"):
        ml.learn("miou", task="segmentation", num_classes=4, image_size=128, batch_size=2, steps=1, progress=False,
                 memory_budget=3 * nbytes)


def test_relabel_makes_new_label_maps_around_the_models_prediction():
    task = SegmentationTask(5, image_size=32)
    pred, target = task.random_batches(24, 2, torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    out_pred, out_target = task.relabel(pred, target, torch.Generator().manual_seed(1))
    again = task.relabel(pred, target, torch.Generator().manual_seed(1))[1]
    assert torch.equal(state, torch.get_rng_state()) and torch.equal(out_target, again)
    assert out_pred is pred and out_target.shape == target.shape and out_target.dtype == torch.int64
    assert torch.equal(out_target == 255, target == 255)  # ignored pixels stay ignored, no new ones
    task.check(out_pred, out_target, stacked=True)
    values = miou(out_pred, out_target)
    assert float(values.max()) > 0.9 and float(values.min()) < 0.7  # from the model's own map to many changes


def test_few_errors_changes_that_many_regions_of_the_predicted_labels():
    task = SegmentationTask(4, image_size=32)
    pred, target = task.random_batches(6, 2, torch.Generator().manual_seed(0))
    errors = torch.tensor([0, 1, 2, 3, 0, 3])
    _, new = task.few_errors(pred, target, errors, torch.Generator().manual_seed(2))
    predicted = torch.where(target == 255, target, pred.argmax(dim=2))
    changed = (new != predicted).flatten(1).sum(dim=1)
    assert bool((changed[errors == 0] == 0).all()) and bool((changed[errors > 0] > 0).all())
    assert torch.equal(new == 255, target == 255)
    values = miou(pred, new)
    assert bool((values[errors == 0] == 1).all()) and bool((values[errors > 0] < 1).all())
