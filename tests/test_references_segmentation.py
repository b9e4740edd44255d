"""Hand-made segmentation losses: Lovász-softmax against the Lovász extension by its integral definition and against
1 - IoU on hard predictions, gradcheck; soft Dice against a loop and MONAI; the MONAI wrappers against MONAI."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from metricloss.references import segmentation as refs
from metricloss.references.segmentation import (
    REFERENCES,
    LovaszSoftmaxLoss,
    SoftDiceLoss,
    lovasz_grad,
    lovasz_softmax,
    soft_dice_loss,
)
from profiles import examples

IGNORE = 255


def _batch(seed: int, b: int = 2, c: int = 3, h: int = 3, w: int = 4, ignore: float = 0.2, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, h, w, generator=g, dtype=dtype) * 2
    target = torch.randint(0, max(c, 2), (b, h, w), generator=g)
    if ignore:
        target = target.masked_fill(torch.rand(b, h, w, generator=g) < ignore, IGNORE)
    return logits, target


def _jaccard_loss_of_set(errors_set: set[int], gt: list[int]) -> float:
    """Delta_J(S) = 1 - |gt minus S| / |gt union S| for the set S of mispredicted pixels, by its definition."""
    g = {i for i, v in enumerate(gt) if v}
    union = g | errors_set
    return 1.0 - len(g - errors_set) / len(union) if union else 0.0


def _lovasz_by_integral(m: list[float], gt: list[int]) -> float:
    """The Lovász extension as the integral over thresholds t of the set function of {i : m_i >= t} (independent of
    the sorted-increments formula)."""
    levels = sorted({0.0, *m})
    total = 0.0
    for lo, hi in itertools.pairwise(levels):
        total += (hi - lo) * _jaccard_loss_of_set({i for i, v in enumerate(m) if v >= hi}, gt)
    return total


def _naive_lovasz(p: torch.Tensor, target: torch.Tensor, classes: str = "present") -> float:
    """p (B, K, H, W) probabilities; the per-class Lovász extension by the integral, averaged over classes."""
    k = p.shape[1]
    flat_p = p.movedim(1, -1).reshape(-1, k)
    flat_t = target.flatten()
    keep = flat_t != IGNORE
    flat_p, flat_t = flat_p[keep], flat_t[keep]
    terms = []
    for c in range(k):
        gt = (flat_t == c).long().tolist()
        if classes == "present" and not any(gt):
            continue
        m = [abs(g - float(q)) for g, q in zip(gt, flat_p[:, c].tolist(), strict=True)]
        terms.append(_lovasz_by_integral(m, gt))
    return sum(terms) / len(terms)


# ------------------------------------------------------------------------------------------------- Lovász


def test_lovasz_grad_is_the_increment_of_the_jaccard_loss():
    gt = [1, 0, 1, 1, 0]
    expected = [_jaccard_loss_of_set(set(range(i + 1)), gt) - _jaccard_loss_of_set(set(range(i)), gt)
                for i in range(len(gt))]
    assert lovasz_grad(torch.tensor(gt, dtype=torch.float64)).tolist() == pytest.approx(expected)


@settings(max_examples=examples(30), deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 4), st.sampled_from(["present", "all"]))
def test_lovasz_softmax_is_the_lovasz_extension_by_its_definition(seed, c, classes):
    logits, target = _batch(seed, b=2, c=c, h=2, w=3)
    if bool((target == IGNORE).all()):
        target[0, 0, 0] = 0
    expected = _naive_lovasz(torch.softmax(logits, 1), target, classes)
    assert float(lovasz_softmax(logits, target, classes=classes)) == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_lovasz_on_hard_predictions_is_one_minus_iou_of_present_classes(seed):
    c = 3 + seed % 2
    logits, target = _batch(seed, b=2, c=c, h=4, w=5)
    hard = F.one_hot(logits.argmax(1), c).movedim(-1, 1).to(torch.float64) * 2000 - 1000  # softmax exactly 0 / 1
    labels, t = logits.argmax(1).flatten().tolist(), target.flatten().tolist()
    ious = []
    for k in set(t) - {IGNORE}:
        inter = sum(p == k and q == k for p, q in zip(labels, t, strict=True))
        union = sum((p == k or q == k) and q != IGNORE for p, q in zip(labels, t, strict=True))
        ious.append(inter / union)
    assert float(lovasz_softmax(hard, target)) == pytest.approx(1 - sum(ious) / len(ious), abs=1e-12)


def test_lovasz_softmax_gradcheck():
    logits, target = _batch(1, b=1, c=3, h=2, w=3)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: lovasz_softmax(z, target), (logits,))
    z1 = torch.randn(1, 1, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: lovasz_softmax(z, target.clamp_max(1)), (z1,))


def test_lovasz_per_image_averages_each_images_loss_and_skips_all_ignored_images():
    logits, target = _batch(3, b=3, c=3, h=3, w=3)
    target[1] = IGNORE
    expected = (float(lovasz_softmax(logits[:1], target[:1])) + float(lovasz_softmax(logits[2:], target[2:]))) / 2
    assert float(lovasz_softmax(logits, target, per_image=True)) == pytest.approx(expected)
    assert float(LovaszSoftmaxLoss(per_image=True)(logits, target)) == pytest.approx(expected)


def test_binary_one_logit_is_two_classes_for_the_written_losses():
    z = torch.randn(2, 1, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    target = torch.randint(0, 2, (2, 3, 4), generator=torch.Generator().manual_seed(6))
    two = torch.cat([torch.zeros_like(z), z], dim=1)  # softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]
    assert float(lovasz_softmax(z, target)) == pytest.approx(float(lovasz_softmax(two, target)))
    assert float(soft_dice_loss(z, target)) == pytest.approx(float(soft_dice_loss(two, target)))


# ------------------------------------------------------------------------------------------------ soft Dice


@pytest.mark.parametrize(("seed", "c", "background", "smooth"), [(0, 3, None, 1.0), (1, 2, None, 0.5),
                                                                 (2, 4, False, 1e-3), (3, 2, True, 1.0)])
def test_soft_dice_matches_a_loop(seed, c, background, smooth):
    logits, target = _batch(seed, c=c)
    p = torch.softmax(logits, 1)
    first = 0 if (c > 2 if background is None else background) else 1
    terms = []
    for k in range(first, c):
        inter = total = 0.0
        for b, y, x in itertools.product(*map(range, target.shape)):
            if target[b, y, x] == IGNORE:
                continue
            pk, yk = float(p[b, k, y, x]), float(target[b, y, x] == k)
            inter += pk * yk
            total += pk + yk
        terms.append((2 * inter + smooth) / (total + smooth))
    expected = 1 - sum(terms) / len(terms)
    assert float(soft_dice_loss(logits, target, include_background=background, smooth=smooth)) == pytest.approx(
        expected)
    assert float(SoftDiceLoss(include_background=background, smooth=smooth)(logits, target)) == pytest.approx(expected)


def test_soft_dice_gradcheck():
    logits, target = _batch(4, b=1, c=3, h=2, w=3)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: soft_dice_loss(z, target), (logits,))


def test_soft_dice_is_monai_batch_dice_loss():
    monai_losses = pytest.importorskip("monai.losses", reason="the MONAI comparison needs MONAI")
    logits, target = _batch(5, c=4, h=5, w=6)
    ref = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, batch=True, smooth_nr=1.0, smooth_dr=1.0,
                                ignore_index=IGNORE)(logits, target.unsqueeze(1))
    assert float(soft_dice_loss(logits, target, include_background=True)) == pytest.approx(float(ref), rel=1e-6)


# ------------------------------------------------------------------------------------------ MONAI wrappers


@pytest.mark.parametrize(
    ("wrapper", "name", "kwargs"),
    [
        ("MonaiDiceLoss", "DiceLoss", {"softmax": True, "to_onehot_y": True}),
        ("MonaiTverskyLoss", "TverskyLoss", {"softmax": True, "to_onehot_y": True}),
        ("MonaiFocalLoss", "FocalLoss", {"use_softmax": True, "to_onehot_y": True}),
    ],
)
@pytest.mark.parametrize("ignore", [0.0, 0.3])
def test_monai_wrappers_are_monai_called_directly(wrapper, name, kwargs, ignore):
    monai_losses = pytest.importorskip("monai.losses", reason="the MONAI baselines need MONAI")
    logits, target = _batch(6, c=3, h=5, w=6, ignore=ignore, dtype=torch.float32)
    ours = getattr(refs, wrapper)(include_background=False)(logits, target)
    theirs = getattr(monai_losses, name)(include_background=False, ignore_index=IGNORE, **kwargs)(
        logits, target.unsqueeze(1))
    assert float(ours) == pytest.approx(float(theirs), rel=1e-6)


def test_monai_binary_wrappers_use_the_sigmoid():
    monai_losses = pytest.importorskip("monai.losses", reason="the MONAI baselines need MONAI")
    z = torch.randn(2, 1, 5, 6, generator=torch.Generator().manual_seed(7))
    target = torch.randint(0, 2, (2, 5, 6), generator=torch.Generator().manual_seed(8))
    ours = refs.MonaiDiceLoss()(z, target)
    theirs = monai_losses.DiceLoss(sigmoid=True)(z, target.unsqueeze(1).float())
    assert float(ours) == pytest.approx(float(theirs), rel=1e-6)


def test_monai_dice_ce_is_monai_dice_ce_loss_and_ignores_ignored_pixels():
    monai_losses = pytest.importorskip("monai.losses", reason="the MONAI baselines need MONAI")
    logits, target = _batch(9, c=3, h=5, w=6, ignore=0.0, dtype=torch.float32)
    theirs = monai_losses.DiceCELoss(softmax=True, to_onehot_y=True, lambda_ce=0.5)(logits, target.unsqueeze(1))
    assert float(refs.MonaiDiceCELoss(lambda_ce=0.5)(logits, target)) == pytest.approx(float(theirs), rel=1e-6)
    z = torch.randn(2, 1, 5, 6, generator=torch.Generator().manual_seed(10))
    tb = target.clamp_max(1)
    theirs_b = monai_losses.DiceCELoss(sigmoid=True)(z, tb.unsqueeze(1).float())
    assert float(refs.MonaiDiceCELoss()(z, tb)) == pytest.approx(float(theirs_b), rel=1e-6)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_every_reference_ignores_predictions_under_ignored_pixels_and_has_gradients(name):
    if name.startswith("monai"):
        pytest.importorskip("monai", reason="the MONAI baselines need MONAI")
    logits, target = _batch(11, c=3, h=5, w=6, ignore=0.3, dtype=torch.float32)
    changed = torch.where((target == IGNORE).unsqueeze(1), torch.randn(logits.shape) * 10, logits)
    loss = REFERENCES[name]()
    assert float(loss(changed, target)) == pytest.approx(float(loss(logits, target)), rel=1e-5)
    z = logits.clone().requires_grad_(True)
    loss(z, target).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert (z.grad * (target == IGNORE).unsqueeze(1)).abs().max() < 1e-6  # no gradient where nothing is scored


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_references_refuse_bad_input(name):
    if name.startswith("monai"):
        pytest.importorskip("monai", reason="the MONAI baselines need MONAI")
    loss = REFERENCES[name]()
    with pytest.raises(ValueError, match="same spatial size"):
        loss(torch.randn(1, 3, 8, 8), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="all ignore_index"):
        loss(torch.randn(1, 3, 4, 4), torch.full((1, 4, 4), IGNORE))
    with pytest.raises(ValueError, match="NaN"):
        loss(torch.full((1, 3, 4, 4), float("nan")), torch.zeros(1, 4, 4, dtype=torch.long))


def test_bad_keywords():
    logits, target = _batch(0)
    with pytest.raises(ValueError, match="`classes`"):
        lovasz_softmax(logits, target, classes="some")
    with pytest.raises(ValueError, match="`smooth`"):
        soft_dice_loss(logits, target, smooth=-1.0)


def test_lovasz_gives_the_same_loss_and_gradient_with_classes_in_chunks(monkeypatch):
    logits, target = _batch(12, c=5, h=4, w=5)
    z = logits.clone().requires_grad_(True)
    whole = lovasz_softmax(z, target, classes="all")
    (g_whole,) = torch.autograd.grad(whole, z)
    monkeypatch.setattr(refs, "_LOVASZ_CHUNK", 1)  # one class a chunk
    chunked = lovasz_softmax(z, target, classes="all")
    (g_chunked,) = torch.autograd.grad(chunked, z)
    assert chunked.item() == pytest.approx(whole.item(), abs=1e-12)
    assert torch.allclose(g_chunked, g_whole, atol=1e-12)
