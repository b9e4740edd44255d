"""Segmentation metrics against independent references: torchmetrics (JaccardIndex, DiceScore), scipy.ndimage
(boundaries, bands, distance transforms), naive per-pixel loops on tiny maps, and MONAI; property tests; bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from metricloss import metrics
from metricloss.metrics import as_metric
from metricloss.metrics.segmentation import (
    BUILTINS,
    _sliding_max,
    _square_max,
    boundary_f1,
    boundary_iou,
    check_segmentation,
    dice,
    hd95,
    miou,
    per_image_miou,
    pixel_accuracy,
    surface_dice,
)
from profiles import examples

IGNORE = 255


def _scene(seed: int, b: int, c: int, h: int, w: int, ignore: float = 0.15, blobs: bool = True):
    """Logits and targets with some structure (blocky label maps, so boundaries are not everywhere)."""
    g = torch.Generator().manual_seed(seed)
    if blobs:  # labels constant on 2 x 2 or 3 x 3 cells, upsampled: regions with edges
        cell = 2 + seed % 2
        small = torch.randint(0, c, (b, -(-h // cell), -(-w // cell)), generator=g)
        target = small.repeat_interleave(cell, 1).repeat_interleave(cell, 2)[:, :h, :w].contiguous()
    else:
        target = torch.randint(0, c, (b, h, w), generator=g)
    flip = torch.rand(b, h, w, generator=g) < 0.3
    labels = torch.where(flip, torch.randint(0, c, (b, h, w), generator=g), target)
    logits = F.one_hot(labels, c).permute(0, 3, 1, 2).float() * 2 + 0.5 * torch.randn(b, c, h, w, generator=g)
    if ignore:
        target = target.masked_fill(torch.rand(b, h, w, generator=g) < ignore, IGNORE)
    return logits, target


def _argmax(logits: torch.Tensor) -> np.ndarray:
    return (logits[:, 0] > 0).long().numpy() if logits.shape[1] == 1 else logits.argmax(1).numpy()


# ----------------------------------------------------------------------------------------- naive references


def _naive_counts(p: np.ndarray, t: np.ndarray, c: int):
    inter, pa, ta = [0] * c, [0] * c, [0] * c
    for pv, tv in zip(p.ravel().tolist(), t.ravel().tolist(), strict=True):
        if tv == IGNORE:
            continue
        pa[pv] += 1
        ta[tv] += 1
        inter[tv] += pv == tv
    return inter, pa, ta


def _naive_miou(p, t, c):
    inter, pa, ta = _naive_counts(p, t, c)
    ious = [inter[k] / (pa[k] + ta[k] - inter[k]) for k in range(c) if pa[k] + ta[k] > 0]
    return sum(ious) / len(ious) if ious else 1.0


def _naive_dice(p, t, c, background):
    inter, pa, ta = _naive_counts(p, t, c)
    ks = [k for k in range(0 if background else 1, c) if pa[k] + ta[k] > 0]
    return sum(2 * inter[k] / (pa[k] + ta[k]) for k in ks) / len(ks) if ks else 1.0


def _naive_edges(lab: np.ndarray) -> np.ndarray:
    b, h, w = lab.shape
    out = np.zeros(lab.shape, bool)
    for i, y, x in itertools.product(range(b), range(h), range(w)):
        for dy, dx in itertools.product((-1, 0, 1), repeat=2):
            yy, xx = y + dy, x + dx
            if 0 <= yy < h and 0 <= xx < w and lab[i, yy, xx] != lab[i, y, x]:
                out[i, y, x] = True
    return out


def _naive_boundary_f1(p, t, c, tol):
    scored = t != IGNORE
    p = np.where(scored, p, IGNORE)  # ignored pixels: one more label in both maps
    bp, bt = _naive_edges(p) & scored, _naive_edges(t) & scored
    pts_p = [(i, y, x, p[i, y, x]) for i, y, x in zip(*np.nonzero(bp), strict=True)]
    pts_t = [(i, y, x, t[i, y, x]) for i, y, x in zip(*np.nonzero(bt), strict=True)]

    def matched(a, others):
        return any(o[0] == a[0] and o[3] == a[3] and max(abs(o[1] - a[1]), abs(o[2] - a[2])) <= tol for o in others)

    f1s = []
    for k in range(c):
        ap = [q for q in pts_p if q[3] == k]
        at = [q for q in pts_t if q[3] == k]
        if not ap and not at:
            continue
        prec = sum(matched(q, pts_t) for q in ap) / len(ap) if ap else 0.0
        rec = sum(matched(q, pts_p) for q in at) / len(at) if at else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0)
    return sum(f1s) / len(f1s) if f1s else 1.0


def _naive_band(lab: np.ndarray, d: int) -> np.ndarray:
    """Pixels within Chebyshev distance d of another label or of the outside of the image."""
    b, h, w = lab.shape
    out = np.zeros(lab.shape, bool)
    for i, y, x in itertools.product(range(b), range(h), range(w)):
        for yy, xx in itertools.product(range(y - d, y + d + 1), range(x - d, x + d + 1)):
            if not (0 <= yy < h and 0 <= xx < w) or lab[i, yy, xx] != lab[i, y, x]:
                out[i, y, x] = True
                break
    return out


def _naive_boundary_iou(p, t, c, d):
    scored = t != IGNORE
    p = np.where(scored, p, IGNORE)
    bp, bt = _naive_band(p, d) & scored, _naive_band(t, d) & scored
    ious = []
    for k in range(c):
        gp, gt = bp & (p == k), bt & (t == k)
        union = (gp | gt).sum()
        if union:
            ious.append((gp & gt).sum() / union)
    return sum(ious) / len(ious) if ious else 1.0


# ------------------------------------------------------------------------ region metrics against references


@pytest.mark.parametrize(("c", "seed"), [(2, 0), (3, 1), (5, 2), (21, 3)])
def test_miou_is_torchmetrics_macro_jaccard_with_ignore_index(c, seed):
    from torchmetrics.classification import MulticlassJaccardIndex

    logits, target = _scene(seed, 3, c, 12, 10)
    # average="macro" gives absent classes (no prediction, no target) weight 0, and ignore_index drops pixels:
    # exactly the batch-pooled mIoU with absent classes skipped
    ref = MulticlassJaccardIndex(c, average="macro", ignore_index=IGNORE)(logits, target)
    assert float(miou(logits, target)) == pytest.approx(float(ref), abs=1e-6)


@pytest.mark.parametrize(("c", "background", "seed"), [(2, False, 0), (2, True, 1), (4, True, 2), (4, False, 3)])
def test_dice_is_torchmetrics_global_macro_dice_score(c, background, seed):
    from torchmetrics.segmentation import DiceScore

    logits, target = _scene(seed, 3, c, 9, 11)
    scored = target != IGNORE  # DiceScore has no ignore_index: hand it the scored pixels only, as one row
    p, t = logits.argmax(1)[scored].view(1, -1), target[scored].view(1, -1)
    ref = DiceScore(c, include_background=background, average="macro", aggregation_level="global",
                    input_format="index")(p, t)
    assert float(dice(logits, target, include_background=background)) == pytest.approx(float(ref), abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_region_metrics_match_naive_loops(seed):
    c = 2 + seed
    logits, target = _scene(seed, 2, c, 5, 6, blobs=False)
    p, t = _argmax(logits), target.numpy()
    assert float(miou(logits, target)) == pytest.approx(_naive_miou(p, t, c))
    assert float(dice(logits, target, include_background=True)) == pytest.approx(_naive_dice(p, t, c, True))
    assert float(dice(logits, target)) == pytest.approx(_naive_dice(p, t, c, c > 2))
    inter, _, ta = _naive_counts(p, t, c)
    assert float(pixel_accuracy(logits, target)) == pytest.approx(sum(inter) / sum(ta))
    per_image = [_naive_miou(p[i : i + 1], t[i : i + 1], c) for i in range(2)]
    assert float(per_image_miou(logits, target)) == pytest.approx(sum(per_image) / 2)


def test_binary_one_logit_is_two_classes_with_foreground_where_the_logit_is_positive():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(3, 1, 7, 8, generator=g)
    target = (torch.rand(3, 7, 8, generator=g) < 0.4).long()
    two = torch.cat([torch.zeros_like(z), z], dim=1)  # class 1 wins exactly where z > 0
    for name, metric in BUILTINS.items():
        assert float(metric(z, target)) == pytest.approx(float(metric(two, target)), abs=1e-9), name
    p, t = _argmax(z), target.numpy()
    assert float(dice(z, target)) == pytest.approx(_naive_dice(p, t, 2, False))  # foreground Dice by default


def test_absent_classes_and_empty_foreground_conventions():
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    logits = torch.zeros(1, 5, 2, 2)
    logits[:, 0] = 1.0  # everything background, predicted background: classes 1..4 absent
    assert float(miou(logits, target)) == 1.0
    assert float(dice(logits[:, :2], target)) == 1.0  # binary, empty foreground predicted empty
    logits[0, 3, 0, 0] = 5.0  # one pixel predicted as an absent class: class 3 has IoU 0 and counts
    assert float(miou(logits, target)) == pytest.approx((3 / 4 + 0) / 2)


def test_per_image_miou_skips_images_that_are_all_ignored():
    logits, target = _scene(5, 3, 3, 6, 6)
    target[1] = IGNORE
    ref = (float(miou(logits[:1], target[:1])) + float(miou(logits[2:], target[2:]))) / 2
    assert float(per_image_miou(logits, target)) == pytest.approx(ref)


# --------------------------------------------------------------------------------------- boundary metrics


@pytest.mark.parametrize(("seed", "tol"), [(0, 0), (1, 1), (2, 2), (3, 3)])
def test_boundary_f1_matches_naive_loops(seed, tol):
    c = 3 + seed % 2
    logits, target = _scene(seed, 2, c, 7, 9)
    expected = _naive_boundary_f1(_argmax(logits), target.numpy(), c, tol)
    assert float(boundary_f1(logits, target, tolerance=tol)) == pytest.approx(expected)


def test_boundary_f1_matches_scipy_morphology_at_a_larger_size():
    c, tol = 4, 2
    logits, target = _scene(7, 2, c, 40, 56, ignore=0.02)
    p, t = _argmax(logits), target.numpy()
    scored = t != IGNORE
    p = np.where(scored, p, IGNORE)
    square, window = np.ones((3, 3), bool), np.ones((2 * tol + 1,) * 2, bool)
    f1s = []
    for k in range(c):
        stats = []
        for a, b in ((p, t), (t, p)):  # boundary of class k in a, matched against b's
            hit = tot = 0
            for i in range(2):
                edge_a = (a[i] == k) & ~ndimage.binary_erosion(a[i] == k, square, border_value=1) & scored[i]
                edge_b = (b[i] == k) & ~ndimage.binary_erosion(b[i] == k, square, border_value=1) & scored[i]
                hit += (edge_a & ndimage.binary_dilation(edge_b, window)).sum()
                tot += edge_a.sum()
            stats.append((hit, tot))
        (hp, tp_), (hr, tr) = stats
        if tp_ + tr:
            prec, rec = hp / max(tp_, 1), hr / max(tr, 1)
            f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    assert float(boundary_f1(logits, target, tolerance=tol)) == pytest.approx(np.mean(f1s))


@pytest.mark.parametrize(("seed", "d"), [(0, 1), (1, 2), (2, 3)])
def test_boundary_iou_matches_naive_loops(seed, d):
    c = 3
    logits, target = _scene(seed, 2, c, 8, 9)
    expected = _naive_boundary_iou(_argmax(logits), target.numpy(), c, d)
    assert float(boundary_iou(logits, target, dilation=d)) == pytest.approx(expected)


@pytest.mark.parametrize("dilation", [None, 8])
def test_boundary_iou_matches_the_authors_erosion_recipe_at_a_larger_size(dilation):
    # Cheng et al.'s mask_to_boundary: pad the mask with one zero pixel, erode with a 3 x 3 kernel d times, crop,
    # subtract; here with scipy instead of OpenCV, per class, pooled over the batch. d from the 2 % default (2 px,
    # max-pools) or 8 px (the running maximum).
    c = 3
    logits, target = _scene(11, 2, c, 48, 64, ignore=0.0)
    p, t = _argmax(logits), target.numpy()
    d = max(1, round(0.02 * math.hypot(48, 64))) if dilation is None else dilation

    def band(mask):
        padded = np.pad(mask, 1)
        eroded = ndimage.binary_erosion(padded, np.ones((3, 3), bool), iterations=d, border_value=0)[1:-1, 1:-1]
        return mask & ~eroded

    ious = []
    for k in range(c):
        inter = union = 0
        for i in range(2):
            gp, gt = band(p[i] == k), band(t[i] == k)
            inter += (gp & gt).sum()
            union += (gp | gt).sum()
        if union:
            ious.append(inter / union)
    assert d == (2 if dilation is None else dilation)
    assert float(boundary_iou(logits, target, dilation=dilation)) == pytest.approx(np.mean(ious))


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 13])
def test_sliding_max_is_the_window_maximum(k):
    x = torch.randn(3, 20, generator=torch.Generator().manual_seed(k))
    expected = x.unfold(-1, k, 1).amax(-1)
    assert torch.equal(_sliding_max(x, k), expected)


@pytest.mark.parametrize("radius", [1, 6, 7, 12])
def test_square_max_is_the_window_maximum_both_ways(radius):
    x = torch.randn(2, 30 + 2 * radius, 41 + 2 * radius, generator=torch.Generator().manual_seed(radius))
    k = 2 * radius + 1
    expected = x.unfold(-2, k, 1).unfold(-2, k, 1).amax((-1, -2))
    assert torch.equal(_square_max(x, radius), expected)


# -------------------------------------------------------------------------------------------- MONAI metrics


def _scipy_surface(p_mask: np.ndarray, t_mask: np.ndarray):
    """MONAI's recipe written with scipy: edges = mask XOR its (cross) erosion, image border outside; Euclidean
    distances from each edge pixel to the other's edges."""
    ep = p_mask & ~ndimage.binary_erosion(np.pad(p_mask, 1))[1:-1, 1:-1]
    et = t_mask & ~ndimage.binary_erosion(np.pad(t_mask, 1))[1:-1, 1:-1]
    dp = ndimage.distance_transform_edt(~et)[ep] if et.any() else np.full(ep.sum(), np.inf)
    dt = ndimage.distance_transform_edt(~ep)[et] if ep.any() else np.full(et.sum(), np.inf)
    return dp, dt


def _scipy_surface_scores(logits, target, c, tol):
    p, t = _argmax(logits), target.numpy()
    nsd, hd = [], []
    diag = math.hypot(*t.shape[1:])
    for i, k in itertools.product(range(t.shape[0]), range(1, c)):
        scored = t[i] != IGNORE
        pm, tm = (p[i] == k) & scored, (t[i] == k) & scored
        if not pm.any() and not tm.any():
            continue
        dp, dt = _scipy_surface(pm, tm)
        nsd.append(((dp <= tol).sum() + (dt <= tol).sum()) / (len(dp) + len(dt)))
        hd.append(max(np.percentile(dp, 95), np.percentile(dt, 95)) if pm.any() and tm.any() else diag)
    return np.mean(nsd), np.mean(hd)


@pytest.mark.parametrize(("seed", "c", "tol"), [(0, 2, 1.0), (1, 3, 2.0), (2, 4, 1.5)])
def test_surface_dice_and_hd95_match_a_scipy_distance_transform(seed, c, tol):
    pytest.importorskip("monai", reason="surface_dice and hd95 need MONAI (the segmentation extra)")
    logits, target = _scene(seed, 2, c, 14, 17, ignore=0.05)
    nsd, hd = _scipy_surface_scores(logits, target, c, tol)
    assert float(surface_dice(logits, target, tolerance=tol)) == pytest.approx(nsd)
    assert float(hd95(logits, target)) == pytest.approx(hd, rel=1e-5)


def test_hd95_of_a_missed_object_is_the_image_diagonal():
    pytest.importorskip("monai", reason="hd95 needs MONAI (the segmentation extra)")
    target = torch.zeros(1, 6, 8, dtype=torch.long)
    target[0, 2:4, 2:4] = 1
    logits = torch.zeros(1, 2, 6, 8)
    logits[:, 0] = 1.0  # predicts background everywhere
    assert float(hd95(logits, target)) == pytest.approx(10.0)  # hypot(6, 8)
    assert float(surface_dice(logits, target)) == 0.0


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI's SurfaceDiceMetric calls its own deprecated argument
def test_monai_metric_objects_are_accepted_as_metrics():
    monai_metrics = pytest.importorskip("monai.metrics", reason="MONAI metric objects need MONAI")
    logits, target = _scene(3, 2, 3, 12, 12, ignore=0.0)
    dm = as_metric(monai_metrics.DiceMetric(include_background=True, reduction="mean"))
    assert dm.higher_is_better and dm.name == "DiceMetric"
    # DiceMetric averages per (image, class): compare with our Dice of each image, all classes present here
    per = [float(dice(logits[i : i + 1], target[i : i + 1], include_background=True)) for i in range(2)]
    assert dm(logits, target) == pytest.approx(np.mean(per), abs=1e-6)
    hd = as_metric(monai_metrics.HausdorffDistanceMetric(percentile=95))
    assert not hd.higher_is_better
    assert hd(logits, target) == pytest.approx(float(hd95(logits, target)), rel=1e-5)
    nsd = as_metric(monai_metrics.SurfaceDiceMetric([2.0, 2.0]))
    assert nsd(logits, target) == pytest.approx(float(surface_dice(logits, target)), rel=1e-5)
    # ignored pixels arrive as all-zero rows; MONAI masks them when its ignore_index is not a class
    _, with_ignore = _scene(3, 2, 3, 12, 12, ignore=0.2)
    masked = as_metric(monai_metrics.DiceMetric(include_background=True, ignore_index=IGNORE))
    keep = with_ignore != IGNORE
    changed = logits.clone()
    changed[:, 0][~keep] = 50.0  # the prediction under ignored pixels does not matter
    assert masked(changed, with_ignore) == pytest.approx(masked(logits, with_ignore))


def test_torchmetrics_segmentation_objects_are_accepted_as_metrics():
    from torchmetrics.classification import MulticlassJaccardIndex
    from torchmetrics.segmentation import MeanIoU

    logits, target = _scene(4, 3, 4, 10, 10, ignore=0.0)
    per_image = MeanIoU(num_classes=4, input_format="index", per_class=False)
    # torchmetrics' MeanIoU averages per image; with every class in each image it is our per-image mIoU
    assert as_metric(per_image)(logits, target) == pytest.approx(float(per_image_miou(logits, target)), abs=1e-6)
    one_hot = MeanIoU(num_classes=4, input_format="one-hot")
    assert as_metric(one_hot)(logits, target) == pytest.approx(float(per_image_miou(logits, target)), abs=1e-6)
    _, with_ignore = _scene(4, 3, 4, 10, 10)
    jac = as_metric(MulticlassJaccardIndex(4, ignore_index=IGNORE))
    assert jac(logits, with_ignore) == pytest.approx(float(miou(logits, with_ignore)), abs=1e-6)


# ---------------------------------------------------------------------------------------- stacks and names


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_stack_gives_each_batch_its_value(name):
    if name in ("surface_dice", "hd95"):
        pytest.importorskip("monai", reason=f"{name} needs MONAI (the segmentation extra)")
    metric = BUILTINS[name]
    pairs = [_scene(s, 2, 3, 9, 10) for s in range(3)]
    logits, target = torch.stack([p for p, _ in pairs]), torch.stack([t for _, t in pairs])
    stacked = metric.evaluate(logits, target)
    assert stacked.shape == (3,) and stacked.dtype == torch.float64
    assert stacked.tolist() == pytest.approx([metric(p, t) for p, t in pairs], abs=1e-12)


def test_segmentation_metrics_are_exported():
    assert metrics.FAMILIES["segmentation"] is BUILTINS
    assert metrics.miou is miou and metrics.dice is dice and metrics.pixel_accuracy is pixel_accuracy
    assert metrics.boundary_f1 is boundary_f1 and metrics.hd95 is hd95
    assert not BUILTINS["hd95"].higher_is_better
    assert all(m.higher_is_better for n, m in BUILTINS.items() if n != "hd95")


# ------------------------------------------------------------------------------------------------ properties


@settings(max_examples=examples(25), deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6), st.integers(1, 3))
def test_a_perfect_prediction_scores_best(seed, c, b):
    _, target = _scene(seed, b, c, 9, 8)
    labels = target.where(target != IGNORE, 0)
    logits = F.one_hot(labels, c).permute(0, 3, 1, 2).float()
    for name in ("miou", "per_image_miou", "dice", "pixel_accuracy", "boundary_f1", "boundary_iou"):
        assert float(BUILTINS[name](logits, target)) == 1.0, name


@settings(max_examples=examples(25), deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6))
def test_relabelling_the_classes_changes_nothing(seed, c):
    logits, target = _scene(seed, 2, c, 8, 9)
    perm = torch.randperm(c, generator=torch.Generator().manual_seed(seed))
    inverse = torch.argsort(perm)  # class k becomes perm[k]: logits of new class j are those of old inverse[j]
    logits2 = logits[:, inverse]
    target2 = target.where(target == IGNORE, perm[target.clamp_max(c - 1)])
    for name in ("miou", "per_image_miou", "pixel_accuracy", "boundary_f1", "boundary_iou"):
        assert float(BUILTINS[name](logits2, target2)) == pytest.approx(float(BUILTINS[name](logits, target))), name
    assert float(dice(logits2, target2, include_background=True)) == pytest.approx(
        float(dice(logits, target, include_background=True)))


@settings(max_examples=examples(25), deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 5))
def test_predictions_under_ignored_pixels_do_not_matter(seed, c):
    logits, target = _scene(seed, 2, c, 8, 8, ignore=0.3)
    noise = torch.randn(logits.shape, generator=torch.Generator().manual_seed(seed + 1)) * 5
    changed = torch.where((target == IGNORE).unsqueeze(1), noise, logits)
    for name in ("miou", "per_image_miou", "dice", "pixel_accuracy", "boundary_f1", "boundary_iou"):
        assert float(BUILTINS[name](changed, target)) == float(BUILTINS[name](logits, target)), name


@settings(max_examples=examples(20), deadline=None)
@given(st.integers(0, 10_000))
def test_more_tolerance_never_lowers_boundary_f1(seed):
    logits, target = _scene(seed, 2, 3, 10, 10)
    values = [float(boundary_f1(logits, target, tolerance=t)) for t in range(4)]
    assert values == sorted(values)


# ---------------------------------------------------------------------------------------------- bad input


def test_sizes_that_differ_are_an_error_nothing_is_resized():
    with pytest.raises(ValueError, match=r"same spatial size.*nothing is resized"):
        miou(torch.randn(2, 3, 8, 8), torch.zeros(2, 4, 4, dtype=torch.long))


def test_target_values_outside_the_classes_are_an_error():
    with pytest.raises(ValueError, match=r"class index 7, outside 0\.\.2 or ignore_index = 255"):
        miou(torch.randn(1, 3, 4, 4), torch.full((1, 4, 4), 7))
    with pytest.raises(ValueError, match=r"class index -1"):
        dice(torch.randn(1, 3, 4, 4), torch.full((1, 4, 4), -1))
    with pytest.raises(ValueError, match=r"class index 2, outside \{0, 1\}"):
        dice(torch.randn(1, 1, 4, 4), torch.full((1, 4, 4), 2))
    with pytest.raises(ValueError, match=r"class index 255, outside 0\.\.2;"):  # ignore_index=None: 255 is a label
        check_segmentation(torch.randn(1, 3, 4, 4), torch.full((1, 4, 4), 255), ignore_index=None)


def test_a_batch_of_ignored_pixels_is_an_error():
    with pytest.raises(ValueError, match="all ignore_index = 255: no pixel to score"):
        pixel_accuracy(torch.randn(2, 3, 4, 4), torch.full((2, 4, 4), IGNORE))
    logits, target = _scene(0, 2, 3, 4, 4)
    stack_t = torch.stack([target, torch.full_like(target, IGNORE)])
    with pytest.raises(ValueError, match=r"\(batch 1 of the stack\)"):
        miou(torch.stack([logits, logits]), stack_t)


def test_nan_logits_are_an_error():
    logits, target = _scene(0, 1, 3, 4, 4)
    logits[0, 1, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="`pred` contains NaN logits"):
        boundary_f1(logits, target)
    logits[0, 1, 2, 2] = float("inf")
    with pytest.raises(ValueError, match="`pred` contains infinite"):
        miou(logits, target)


@pytest.mark.parametrize(
    ("pred", "target", "error", "match"),
    [
        (torch.randn(3, 4, 4), torch.zeros(3, 4, 4, dtype=torch.long), ValueError, r"\(B, C, H, W\)"),
        (torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4), TypeError, "integer tensor"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.long), torch.zeros(2, 4, 4, dtype=torch.long), TypeError,
         "floating-point"),
        (torch.randn(2, 3, 4, 4), torch.zeros(3, 4, 4, dtype=torch.long), ValueError, r"must have shape \(2, 4, 4\)"),
        (torch.randn(2, 3, 4, 4), torch.zeros(2, 1, 4, 4, dtype=torch.long), ValueError, r"shape \(B, H, W\)"),
        (torch.randn(0, 3, 4, 4), torch.zeros(0, 4, 4, dtype=torch.long), ValueError, "empty dimension"),
    ],
)
def test_malformed_inputs_name_the_argument(pred, target, error, match):
    with pytest.raises(error, match=match):
        miou(pred, target)


def test_num_classes_and_bad_keywords():
    with pytest.raises(ValueError, match="C = num_classes = 4"):
        check_segmentation(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), num_classes=4)
    logits, target = _scene(0, 1, 3, 6, 6)
    with pytest.raises(ValueError, match="tolerance"):
        boundary_f1(logits, target, tolerance=-1)
    with pytest.raises(ValueError, match="dilation"):
        boundary_iou(logits, target, dilation=0)


def test_predicted_label_is_the_first_maximum_on_ties_as_argmax():
    from metricloss.metrics.segmentation import segmentation_labels

    logits = torch.randint(0, 3, (2, 7, 9, 11), generator=torch.Generator().manual_seed(0)).float()  # many ties
    assert torch.equal(segmentation_labels(logits), logits.argmax(1))
    assert torch.equal(segmentation_labels(torch.zeros(1, 4, 2, 2)), torch.zeros(1, 2, 2, dtype=torch.long))


def test_region_counts_agree_through_the_confusion_matrix_and_per_class(monkeypatch):
    from metricloss.metrics import segmentation as seg

    logits, target = _scene(8, 3, 6, 9, 10)
    before = [float(f(logits, target)) for f in (miou, per_image_miou, dice, pixel_accuracy)]
    monkeypatch.setattr(seg, "_CONFUSION_BINS", 0)  # force the per-class counts
    after = [float(f(logits, target)) for f in (miou, per_image_miou, dice, pixel_accuracy)]
    assert after == pytest.approx(before, abs=1e-15)
