"""UniLoss: refactorings against independent references, interpolation, anchors, gradients, errors, configs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from metricloss import uniloss as U
from metricloss.anchored import anchors as anchors_mod
from profiles import examples

# --------------------------------------------------------------------------------------- naive references


def naive_accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    correct = 0
    for row, y in zip(logits.tolist(), target.tolist(), strict=True):
        best = max(range(len(row)), key=lambda j: row[j])
        correct += best == y
    return correct / len(target)


def naive_pck(heatmaps: torch.Tensor, keypoints: torch.Tensor, alpha: float) -> float:
    b_, k_, h, w = heatmaps.shape
    radius = alpha * max(h, w)
    hits = total = 0
    for b in range(b_):
        for k in range(k_):
            x, y, vis = keypoints[b, k].tolist()
            if vis <= 0:
                continue
            flat = heatmaps[b, k].flatten().tolist()
            best = max(range(h * w), key=lambda i: flat[i])
            row, col = divmod(best, w)
            total += 1
            hits += math.hypot(col - x, row - y) <= radius
    return hits / total


def random_keypoints(b: int, k: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    kp = torch.rand(b, k, 3, generator=gen, dtype=torch.float64)
    kp[..., 0] *= w - 1
    kp[..., 1] *= h - 1
    kp[..., 2] = (torch.rand(b, k, generator=gen) < 0.7).double() * 2
    kp[0, 0, 2] = 2.0  # at least one labelled keypoint
    return kp


def peaked_heatmaps(kp: torch.Tensor, h: int, w: int, gen: torch.Generator, jitter: float = 2.0) -> torch.Tensor:
    """Heatmaps whose peak lies near the keypoint (within ``jitter`` pixels), so PCK is neither 0 nor 1."""
    b, k, _ = kp.shape
    rows = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1)
    cols = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w)
    centre = kp[..., :2] + jitter * torch.randn(b, k, 2, generator=gen, dtype=torch.float64)
    d2 = (cols - centre[..., 0, None, None]) ** 2 + (rows - centre[..., 1, None, None]) ** 2
    return torch.exp(-d2 / 2) + 0.05 * torch.randn(b, k, h, w, generator=gen, dtype=torch.float64)


# ------------------------------------------------------------------------- refactored metric == true metric


@settings(max_examples=examples(40), deadline=None)
@given(b=st.integers(1, 12), c=st.integers(2, 7), seed=st.integers(0, 10_000))
def test_accuracy_refactoring_equals_naive_loop(b, c, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, generator=gen)
    target = torch.randint(0, c, (b,), generator=gen)
    target[: b // 2] = logits[: b // 2].argmax(1)  # make some samples right
    assert U.Accuracy(num_classes=c).metric(logits, target) == pytest.approx(naive_accuracy(logits, target), abs=1e-12)


@settings(max_examples=examples(40), deadline=None)
@given(
    data=st.lists(st.tuples(st.floats(-50, 50, allow_nan=False), st.booleans()), min_size=1, max_size=30,
                  unique_by=lambda t: t[0]),
)
def test_average_precision_refactoring_equals_sklearn(data):
    scores = torch.tensor([s for s, _ in data], dtype=torch.float64)
    target = torch.tensor([int(y) for _, y in data])
    if target.sum() == 0:
        target[0] = 1
    expected = average_precision_score(target.numpy(), scores.numpy())
    assert U.AveragePrecision().metric(scores, target) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.25, 2.0])
def test_pck_refactoring_equals_naive_loop(alpha):
    gen = torch.Generator().manual_seed(1)
    for h, w in ((9, 9), (8, 13)):
        kp = random_keypoints(5, 3, h, w, gen)
        hm = peaked_heatmaps(kp, h, w, gen)
        assert U.PCK(alpha).metric(hm, kp) == pytest.approx(naive_pck(hm, kp, alpha), abs=1e-12)


def test_pck_keypoint_outside_the_heatmap_is_wrong_like_the_naive_loop():
    hm = torch.rand(1, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    kp = torch.tensor([[[40.0, 40.0, 2.0], [2.0, 3.0, 2.0]]])
    hm[0, 1, 3, 2] = 5.0
    assert U.PCK(0.1).metric(hm, kp) == naive_pck(hm, kp, 0.1) == 0.5


def test_pck_radius_is_inclusive():
    # Pixel (row 2, col 4) lies exactly 2 pixels from the keypoint (2, 2); the radius is 0.2 * 10 = 2.
    hm = torch.zeros(1, 1, 10, 10)
    hm[0, 0, 2, 4] = 1.0
    kp = torch.tensor([[[2.0, 2.0, 1.0]]])
    assert U.PCK(0.2).metric(hm, kp) == naive_pck(hm, kp, 0.2) == 1.0
    assert U.PCK(0.19).metric(hm, kp) == naive_pck(hm, kp, 0.19) == 0.0


def _hard_anchor_set(loss_fn, pred, target):
    """The loss's anchors plus the batch's own hard configuration as one more anchor."""
    anchors = loss_fn.anchors(pred, target)
    comparisons, _ = loss_fn.refactoring.compare(pred, target)
    hard = (comparisons.reshape(1, -1) > 0)
    value = torch.tensor([loss_fn.metric(pred, target)], dtype=torch.float64)
    return U.AnchorSet(torch.cat([anchors.bits, hard]), torch.cat([anchors.values, value]), anchors.best_value)


def test_relaxed_path_at_a_hard_configuration_equals_the_true_metric():
    gen = torch.Generator().manual_seed(2)
    # Scores far from ties: with a tiny temperature the relaxed configuration is exactly the hard one.
    logits = torch.randn(16, 5, generator=gen, dtype=torch.float64) * 50
    target = torch.randint(0, 5, (16,), generator=gen)
    scores = torch.randn(40, generator=gen, dtype=torch.float64) * 50
    labels = (torch.rand(40, generator=gen) < 0.3).long()
    labels[0] = 1
    kp = random_keypoints(3, 2, 9, 9, gen)
    hm = peaked_heatmaps(kp, 9, 9, gen) * 1000
    cases = [
        ("accuracy", logits, target, naive_accuracy(logits, target)),
        ("average_precision", scores, labels, average_precision_score(labels.numpy(), scores.numpy())),
        ("pck", hm, kp, naive_pck(hm, kp, 0.1)),
    ]
    for name, pred, target_, expected in cases:
        loss_fn = U.build(name, temperature=1e-3, seed=0, **({"alpha": 0.1} if name == "pck" else {}))
        anchors = _hard_anchor_set(loss_fn, pred, target_)
        loss = loss_fn(pred, target_, anchors=anchors)
        assert 1.0 - loss.item() == pytest.approx(expected, abs=1e-12), name


# --------------------------------------------------------------------------------------------- interpolation


def test_interpolation_returns_the_anchor_value_at_every_anchor():
    gen = torch.Generator().manual_seed(3)
    bits = torch.rand(9, 12, generator=gen) < 0.5
    bits[4] = bits[2]  # a duplicated anchor (same value, as g is a function)
    values = torch.rand(9, generator=gen, dtype=torch.float64)
    values[4] = values[2]
    for i in range(9):
        point = bits[i].double().requires_grad_(True)
        for anchors in (bits, bits.double()):
            est = U.inverse_distance_weighting(point, anchors, values, power=1.0)
            assert est.item() == values[i].item()
        est.backward()
        assert bool(torch.isfinite(point.grad).all())


@pytest.mark.parametrize("power", [0.5, 1.0, 2.0, 3.0])
def test_interpolation_matches_shepards_formula(power):
    gen = torch.Generator().manual_seed(4)
    bits = torch.rand(7, 10, generator=gen) < 0.5
    values = torch.rand(7, generator=gen, dtype=torch.float64)
    u = torch.rand(10, generator=gen, dtype=torch.float64)
    weights = [1.0 / math.dist(u.tolist(), a.double().tolist()) ** power for a in bits]
    expected = sum(w * v for w, v in zip(weights, values.tolist(), strict=True)) / sum(weights)
    assert U.inverse_distance_weighting(u, bits, values, power).item() == pytest.approx(expected, rel=1e-12)
    dist = U.squared_distances(u, bits)
    assert torch.allclose(dist, ((u - bits.double()) ** 2).sum(1), atol=1e-12)


def test_relaxation_scales_are_equivalent():
    # The authors' ±1 encoding (2σ - 1, anchors in {-1, 1}) doubles all distances: same IDW estimate.
    gen = torch.Generator().manual_seed(5)
    c = torch.randn(15, generator=gen, dtype=torch.float64)
    bits = torch.rand(6, 15, generator=gen) < 0.5
    values = torch.rand(6, generator=gen, dtype=torch.float64)
    ours = U.inverse_distance_weighting(U.relax(c), bits, values)
    theirs = U.inverse_distance_weighting(2 * torch.sigmoid(c) - 1, bits.double() * 2 - 1, values)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)


# ------------------------------------------------------------------------------------------------ anchors


def test_anchor_kinds():
    gen = torch.Generator().manual_seed(6)
    hard = torch.rand(200, generator=gen) < 0.6
    a = U.sample_anchors(hard, num_good=5, num_bad=300, num_nearby=5, good_flips=3, nearby_flips=2, generator=gen)
    assert a.shape == (311, 200) and a.dtype == torch.bool
    assert bool(a[0].all())
    good, bad, near = a[1:6], a[6:306], a[306:]
    assert ((~good).sum(1) <= 3).all() and ((~good).sum(1) >= 1).all()
    assert abs(bad.double().mean().item() - 0.5) < 0.01  # fair bits
    assert (near | ~hard == near | ~hard).all() and (near & hard == hard).all()  # only 0 -> 1 flips
    flipped = (near & ~hard).sum(1)
    assert ((flipped >= 1) & (flipped <= 2)).all()


def test_fraction_draws_anchors_in_the_subspace_of_selected_variables():
    gen = torch.Generator().manual_seed(7)
    logits, target = torch.randn(20, 6, generator=gen), torch.randint(0, 6, (20,), generator=gen)
    ref = U.Accuracy()
    comparisons, ctx = ref.compare(logits, target)
    a = U.draw_anchors(ref, comparisons, ctx, fraction=0.2, generator=gen)
    hard = comparisons.reshape(-1) > 0
    assert a.bits.shape == (49, int(a.selected.sum())) and 0.1 < a.selected.double().mean().item() < 0.3
    assert bool(a.bits[0].all()) and a.best_value == 1.0
    for row, value in zip(a.bits, a.values, strict=True):  # each value is g of the full configuration
        full = hard.clone()
        full[a.selected] = row
        assert value.item() == naive_accuracy_from_bits(full.view(20, 5))


def naive_accuracy_from_bits(bits: torch.Tensor) -> float:
    return sum(all(r) for r in bits.tolist()) / bits.shape[0]


def test_pck_nearby_anchor_sets_every_comparison_of_one_pixel():
    gen = torch.Generator().manual_seed(8)
    kp = random_keypoints(2, 2, 7, 7, gen)
    hm = peaked_heatmaps(kp, 7, 7, gen)
    ref = U.PCK(0.15)
    comparisons, layout = ref.compare(hm, kp)
    hard = comparisons.reshape(-1) < -1e9  # all zeros: every flip is visible
    near = ref.nearby(hard, 12, 1, gen, layout)
    for row in near:
        on = row.nonzero().squeeze(1)
        # one row (a positive pixel: q bits, stride 1) or one column (a negative pixel: p bits, stride q)
        blocks = [(o, c, p, q) for o, c, p, q in layout.blocks if o <= on[0] < o + c * p * q]
        _, _, p, q = blocks[0]
        steps = set(torch.diff(on).tolist())
        assert (on.numel() == q and steps <= {1}) or (on.numel() == p and steps <= {q})


# ------------------------------------------------------------------------------------ vectorised evaluation


def _naive_g(name: str, bits: torch.Tensor, context) -> float:
    """One configuration at a time, in plain Python."""
    if name == "accuracy":
        return sum(all(r) for r in bits.tolist()) / bits.shape[0]
    if name == "average_precision":
        p, q = bits.shape
        above = sorted(q - sum(r) for r in bits.tolist())
        return sum((k + 1) / (k + 1 + n) for k, n in enumerate(above)) / p
    flat = bits.tolist()
    correct = 0
    for offset, count, p, q in context.blocks:
        for j in range(count):
            start = offset + j * p * q
            if q == 0:
                correct += p > 0
                continue
            correct += any(all(flat[start + i * q : start + (i + 1) * q]) for i in range(p))
    return correct / context.num_labelled


def test_vectorised_anchor_values_equal_a_per_anchor_loop():
    gen = torch.Generator().manual_seed(9)
    kp = random_keypoints(3, 2, 8, 8, gen)
    cases = {
        "accuracy": (torch.randn(10, 4, generator=gen), torch.randint(0, 4, (10,), generator=gen)),
        "average_precision": (torch.randn(20, generator=gen), (torch.arange(20) % 3 == 0).long()),
        "pck": (peaked_heatmaps(kp, 8, 8, gen), kp),
    }
    for name, (pred, target) in cases.items():
        loss_fn = U.build(name, seed=1, nearby_flips=2, good_flips=2)
        anchors = loss_fn.anchors(pred, target)
        comparisons, context = loss_fn.refactoring.compare(pred, target)
        stack = anchors.bits.view(-1, *comparisons.shape)
        loop = [_naive_g(name, b, context) for b in stack]
        assert anchors.values.tolist() == pytest.approx(loop, abs=1e-12), name
        one_by_one = torch.cat([loss_fn.refactoring.evaluate(b.unsqueeze(0), context) for b in stack])
        assert torch.equal(one_by_one, anchors.values), name


def test_function_refactoring_vectorised_and_plain_agree():
    def f(scores, target):
        return torch.where(target.bool(), scores, -scores)

    vec = U.FunctionRefactoring(f, lambda bits, y: bits.double().mean(-1))
    plain = U.FunctionRefactoring(f, lambda bits, y: sum(bits.tolist()) / len(bits), vectorized=False)
    scores = torch.randn(30, generator=torch.Generator().manual_seed(10), requires_grad=True)
    target = torch.arange(30) % 2
    a = U.UniLoss(vec, seed=3)(scores, target)
    b = U.UniLoss(plain, seed=3)(scores, target)
    assert a.item() == pytest.approx(b.item(), abs=1e-6)


# ----------------------------------------------------------------------------------------------- gradients


def _fixed(name: str, pred: torch.Tensor, target: torch.Tensor, **opts):
    loss_fn = U.build(name, seed=0, **opts)
    anchors = loss_fn.anchors(pred, target)
    return lambda x: loss_fn(x, target, anchors=anchors)


def test_gradcheck_float64_with_a_fixed_anchor_set():
    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 4, (6,), generator=gen)
    scores = torch.randn(10, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = (torch.arange(10) % 3 == 0).long()
    kp = random_keypoints(2, 2, 5, 5, gen)
    hm = peaked_heatmaps(kp, 5, 5, gen).requires_grad_(True)
    for name, pred, target_, opts in (
        ("accuracy", logits, target, {}),
        ("accuracy", logits, target, {"power": 2.0, "temperature": 0.5}),
        ("average_precision", scores, labels, {}),
        ("pck", hm, kp, {"alpha": 0.2}),
    ):
        assert torch.autograd.gradcheck(_fixed(name, pred.detach(), target_, **opts), (pred,)), name


def test_gradcheck_with_a_fraction_of_the_variables():
    gen = torch.Generator().manual_seed(12)
    logits = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 4, (6,), generator=gen)
    assert torch.autograd.gradcheck(_fixed("accuracy", logits.detach(), target, fraction=0.4), (logits,))


def test_only_selected_variables_receive_gradient():
    ref = U.FunctionRefactoring(lambda c, _: c, lambda bits, _: bits.double().mean(-1))
    loss_fn = U.UniLoss(ref, fraction=0.3, seed=0)
    c = torch.randn(50, generator=torch.Generator().manual_seed(13), dtype=torch.float64, requires_grad=True)
    anchors = loss_fn.anchors(c, None)
    loss_fn(c, None, anchors=anchors).backward()
    assert (c.grad[~anchors.selected] == 0).all()
    assert (c.grad[anchors.selected] != 0).any()
    assert 0.1 < anchors.selected.double().mean().item() < 0.5


def _mean_improvement(name, make_batch, metric, step, trials=40, **opts):
    gen = torch.Generator().manual_seed(14)
    loss_fn = U.build(name, seed=0, **opts)
    deltas = []
    for _ in range(trials):
        pred, target = make_batch(gen)
        pred.requires_grad_(True)
        loss_fn(pred, target).backward()
        grad = pred.grad
        assert bool(torch.isfinite(grad).all())
        moved = (pred - step * grad / grad.norm()).detach()
        deltas.append(metric(moved, target) - metric(pred.detach(), target))
    return float(np.mean(deltas)), deltas


def test_one_gradient_step_increases_accuracy_on_average():
    def batch(gen):
        return torch.randn(64, 5, generator=gen), torch.randint(0, 5, (64,), generator=gen)

    mean, deltas = _mean_improvement("accuracy", batch, naive_accuracy, step=2.0)
    assert mean > 0.02 and sum(d < 0 for d in deltas) < len(deltas) / 4


def test_one_gradient_step_increases_average_precision_on_average():
    def batch(gen):
        y = (torch.rand(64, generator=gen) < 0.2).long()
        y[0] = 1
        return torch.randn(64, generator=gen) + y, y

    def ap(scores, y):
        return average_precision_score(y.numpy(), scores.numpy())

    mean, _ = _mean_improvement("average_precision", batch, ap, step=2.0)
    assert mean > 0.01


def test_one_gradient_step_increases_pck_on_average():
    def batch(gen):
        kp = random_keypoints(4, 2, 12, 12, gen)
        return peaked_heatmaps(kp, 12, 12, gen, jitter=3.0).float(), kp.float()

    mean, _ = _mean_improvement("pck", batch, lambda h, k: naive_pck(h, k, 0.1), step=3.0, alpha=0.1)
    assert mean > 0.1


def test_gradients_are_finite_on_extreme_and_low_precision_inputs():
    loss_fn = U.build("accuracy", seed=0)
    target = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(15))
    wild = (torch.randn(32, 10) * 1e4, torch.zeros(32, 10), torch.randn(32, 10).half(), torch.randn(32, 10).bfloat16())
    for logits in wild:
        logits.requires_grad_(True)
        loss = loss_fn(logits, target)
        loss.backward()
        assert bool(torch.isfinite(loss)) and bool(torch.isfinite(logits.grad).all())


def test_ap_batch_without_negatives_has_zero_loss_and_zero_gradient():
    scores = torch.randn(5, requires_grad=True)
    loss = U.build("average_precision")(scores, torch.ones(5, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and bool((scores.grad == 0).all())


# ------------------------------------------------------------------------------------------------- errors


def test_bad_inputs_give_clear_errors():
    acc, ap, pck = U.build("accuracy", num_classes=4), U.build("average_precision"), U.build("pck")
    logits, target = torch.randn(3, 4), torch.tensor([0, 1, 2])
    cases = [
        (lambda: acc(logits.long(), target), TypeError, "`pred`"),
        (lambda: acc(logits, target.float()), TypeError, "`target`"),
        (lambda: acc(torch.randn(3, 5), target), ValueError, "num_classes = 4"),
        (lambda: acc(logits, torch.tensor([0, 1, 4])), ValueError, "outside"),
        (lambda: acc(logits, torch.tensor([0, 1])), ValueError, "`target` must have shape"),
        (lambda: acc(logits * float("nan"), target), ValueError, "NaN"),
        (lambda: ap(torch.randn(4, 2), torch.ones(4, 2)), ValueError, "shape \\(B,\\)"),
        (lambda: ap(torch.randn(4), torch.tensor([0, 1, 2, 0])), ValueError, "only 0 and 1"),
        (lambda: ap(torch.randn(4), torch.zeros(4)), ValueError, "no positive"),
        (lambda: pck(torch.randn(2, 3, 8), torch.zeros(2, 3, 3)), ValueError, "\\(B, K, H, W\\)"),
        (lambda: pck(torch.randn(2, 3, 8, 8), torch.zeros(2, 3, 2)), ValueError, "\\(B, K, 3\\)"),
        (lambda: pck(torch.randn(2, 3, 8, 8), torch.zeros(2, 3, 3)), ValueError, "no labelled keypoint"),
        (lambda: acc([[1.0]], target), TypeError, "`pred` must be a torch.Tensor"),
    ]
    for call, kind, match in cases:
        with pytest.raises(kind, match=match):
            call()


def test_bad_options_give_clear_errors():
    for kwargs, kind, match in [
        ({"temperature": 0}, ValueError, "`temperature`"),
        ({"power": -1}, ValueError, "`power`"),
        ({"fraction": 0.0}, ValueError, "`fraction`"),
        ({"fraction": "a"}, TypeError, "`fraction`"),
        ({"num_good": -1}, ValueError, "`num_good`"),
        ({"good_flips": 0}, ValueError, "`good_flips`"),
        ({"num_bad": 2.5}, ValueError, "`num_bad`"),
        ({"seed": "x"}, TypeError, "`seed`"),
        ({"colour": 1}, TypeError, "colour"),
    ]:
        with pytest.raises(kind, match=match):
            U.build("accuracy", **kwargs)
    with pytest.raises(ValueError, match="`refactoring` must be one of"):
        U.build("f1")
    with pytest.raises(TypeError, match="`refactoring` must be"):
        U.UniLoss(object())
    with pytest.raises(ValueError, match="`alpha`"):
        U.build("pck", alpha=0)
    with pytest.raises(TypeError, match="`f` and `g` must be callables"):
        U.FunctionRefactoring(1, lambda b, t: 0)
    bad_g = U.FunctionRefactoring(lambda s, t: s, lambda bits, t: bits.double().mean())
    with pytest.raises(ValueError, match="one value per configuration"):
        U.UniLoss(bad_g)(torch.randn(4), None)
    nan_g = U.FunctionRefactoring(lambda s, t: s, lambda bits, t: bits.double().mean(-1) * float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        U.UniLoss(nan_g)(torch.randn(4), None)
    with pytest.raises(ValueError, match="this batch has"):
        loss_fn = U.build("accuracy")
        anchors = loss_fn.anchors(torch.randn(3, 4), torch.tensor([0, 1, 2]))
        loss_fn(torch.randn(2, 4), torch.tensor([0, 1]), anchors=anchors)


# --------------------------------------------------------------------------------------- config and entry


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("accuracy", {"num_classes": 10, "fraction": 0.2}), ("average_precision", {"power": 2.0}),
     ("pck", {"alpha": 0.05, "num_bad": 4, "temperature": 0.5})],
)
def test_config_round_trip(name, kwargs):
    loss_fn = U.build(name, seed=7, **kwargs)
    cfg = json.loads(json.dumps(loss_fn.config()))
    again = U.UniLoss.from_config(cfg)
    assert again.config() == loss_fn.config()
    assert type(again.refactoring) is type(loss_fn.refactoring)
    gen = torch.Generator().manual_seed(0)
    if name == "accuracy":
        pred, target = torch.randn(8, 10, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    elif name == "average_precision":
        pred, target = torch.randn(8, generator=gen), torch.arange(8) % 2
    else:
        target = random_keypoints(2, 2, 10, 10, gen).float()
        pred = torch.randn(2, 2, 10, 10, generator=gen)
    assert again(pred, target).item() == loss_fn(pred, target).item()  # same seed, same anchors


def test_user_refactoring_config_needs_the_object_back():
    ref = U.FunctionRefactoring(lambda s, t: s, lambda bits, t: bits.double().mean(-1), name="mine")
    cfg = U.UniLoss(ref, num_bad=3).config()
    with pytest.raises(ValueError, match="pass it as `refactoring=`"):
        U.UniLoss.from_config(cfg)
    assert U.UniLoss.from_config(cfg, refactoring=ref).config() == cfg
    with pytest.raises(ValueError, match="not 'uniloss'"):
        U.UniLoss.from_config({**cfg, "method": "spearman"}, refactoring=ref)


def test_seeded_losses_are_reproducible_and_unseeded_ones_follow_torch_seed():
    logits, target = torch.randn(16, 5), torch.randint(0, 5, (16,))
    a = [U.build("accuracy", seed=3)(logits, target).item() for _ in range(2)]
    torch.manual_seed(0)
    b = U.build("accuracy")(logits, target).item()
    torch.manual_seed(0)
    c = U.build("accuracy")(logits, target).item()
    assert a[0] == a[1] and b == c


def test_build_uniloss_reports_agreement_beside_cross_entropy():
    loss_fn = U.build_uniloss("accuracy", num_classes=10, validation_batches=48, batch_size=64, seed=0)
    rep = loss_fn.report
    assert rep.method == "uniloss" and rep.baseline == "cross-entropy" and rep.n_validation_batches == 48
    assert rep.spearman > 0.5  # a loss unrelated to accuracy would be near 0
    assert -1 <= rep.baseline_spearman <= 1 and json.dumps(rep.to_dict())
    assert loss_fn.task.name == "classification" and loss_fn.task.config() == {"num_classes": 10}
    with pytest.raises(ValueError, match="FunctionRefactoring"):
        U.build_uniloss("top5_accuracy", num_classes=10, validation_batches=4, batch_size=8)


def test_learn_uniloss_is_a_deprecated_alias_of_build_uniloss():
    kw = {"num_classes": 5, "validation_batches": 8, "batch_size": 16, "seed": 3}
    with pytest.warns(DeprecationWarning, match="build_uniloss"):
        old = U.learn_uniloss("accuracy", uniloss={"fraction": 0.5}, **kw)
    new = U.build_uniloss("accuracy", options={"fraction": 0.5}, **kw)
    assert old.config() == new.config() and old.options["fraction"] == 0.5
    assert (old.report.spearman, old.report.kendall) == (new.report.spearman, new.report.kendall)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"batch_size": 0}, ValueError, "`batch_size` must be an integer >= 1"),
        ({"validation_batches": 1}, ValueError, "`validation_batches` must be an integer >= 2"),
        ({"seed": 1.5}, TypeError, "`seed` must be an integer"),
        ({"options": {"fraction": 2.0}}, ValueError, r"`fraction` must be in \(0, 1\]"),
        ({"options": {"temperature": -1}}, ValueError, "`temperature` must be a positive"),
        ({"options": [1]}, TypeError, "`options` must be a dict"),
        ({"options": {"bogus": 1}}, TypeError, "bogus"),
    ],
)
def test_build_uniloss_validates_its_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        U.build_uniloss("accuracy", num_classes=4, **{"validation_batches": 4, "batch_size": 8, **kwargs})


def test_anchor_module_helpers():
    assert anchors_mod.random_bits(3, 17).shape == (3, 17)
    assert U.flip_toward_best(torch.ones(4, dtype=torch.bool), 2).all()
