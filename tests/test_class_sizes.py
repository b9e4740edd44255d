"""Classification and ordinal surrogates at any number of classes (issue 13): the shipped ones at C = 2 .. 1000 and
K = 3 .. 20, the error of a net tied to one C, ranges of ``num_classes`` in G_R (absent classes padded with -inf), and
the features against independent references (the formulas they replaced)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import metricloss as ml
from metricloss.metrics import classification as CM
from metricloss.metrics import ordinal as OM
from metricloss.tasks import get_task
from metricloss.tasks.classification import class_features
from metricloss.tasks.ordinal import ordinal_features


def _reference_class_features(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Target probability and margin the way the first implementation computed them: full softmax, the target
    masked out, the largest other probability."""
    p = logits.softmax(dim=-1)
    p_y = p.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    other = p.scatter(-1, target.unsqueeze(-1), float("-inf")).amax(dim=-1)
    return torch.stack([p_y, p_y - other], dim=-1)


def _reference_ordinal_features(logits: torch.Tensor, target: torch.Tensor, sharpness: float = 4.0,
                                spread_floor: float = 1.0) -> torch.Tensor:
    """The default ordinal features by the first implementation's formulas (torch.std, one K for the batch)."""
    k = logits.shape[-1]
    classes = torch.arange(k, dtype=logits.dtype)
    y = target.to(logits.dtype)
    sd = logits.std(dim=-1, keepdim=True, correction=0).clamp_min(spread_floor)
    q = (sharpness * logits / sd).softmax(dim=-1)
    e = (q * classes).sum(-1)
    near = (q * ((classes - y.unsqueeze(-1)).abs() <= 1)).sum(-1)
    return torch.stack([y / (k - 1), (e - y) / (k - 1), near, e / (k - 1)], dim=-1)


def _batch(b: int, c: int, seed: int = 0, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, generator=gen, dtype=torch.float64) * scale, torch.randint(0, c, (b,), generator=gen)


@pytest.mark.parametrize("name", ["classification-accuracy", "classification-top5-accuracy"])
@pytest.mark.parametrize("c, b", [(2, 1), (2, 64), (100, 7), (1000, 256)])
def test_shipped_classification_surrogates_serve_any_c(name, c, b):
    sur = ml.pretrained(name)
    logits, target = _batch(b, c, seed=c + b)
    logits = logits.float().requires_grad_(True)
    loss = sur(logits, target)
    loss.backward()
    assert loss.shape == () and torch.isfinite(loss)
    assert logits.grad.shape == (b, c) and bool(torch.isfinite(logits.grad).all())
    assert float(logits.grad.abs().sum()) > 0


@pytest.mark.parametrize("k", [3, 20])
def test_shipped_ordinal_surrogate_serves_k_3_to_20(k):
    sur = ml.pretrained("ordinal-mae")
    logits, target = _batch(32, k, seed=k)
    logits = logits.float().requires_grad_(True)
    loss = sur(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(logits.grad).all())
    assert float(logits.grad.abs().sum()) > 0


def test_values_at_the_learned_c_match_the_first_formulas():
    sur = ml.pretrained("classification-accuracy")
    logits, target = _batch(64, 10, seed=1)
    logits = logits.float()
    ref = _reference_class_features(logits, target)
    assert torch.allclose(class_features(logits, target, ("target_prob", "margin")), ref, atol=1e-6)
    expected = sur.net.mlp(ref).squeeze(-1).abs().mean()
    assert torch.allclose(sur(logits, target), expected, atol=1e-6)

    ordinal = ml.pretrained("ordinal-mae")
    logits, target = _batch(64, 5, seed=2)
    feats = ordinal_features(logits, target, ordinal.net.features, 4.0, 1.0)
    assert torch.allclose(feats, _reference_ordinal_features(logits, target), atol=1e-12)


def test_class_features_gradient_float64():
    logits, target = _batch(6, 9, seed=3, scale=1.0)
    logits.requires_grad_(True)
    for feats in [("target_prob",), ("margin",), ("log_target_prob",), ("target_prob", "margin")]:
        assert torch.autograd.gradcheck(lambda z, f=feats: class_features(z, target, f), (logits,))
    # the same gradient as the first formulas' (no ties among the logits here)
    g1 = torch.autograd.grad(class_features(logits, target, ("target_prob", "margin")).square().sum(), logits)[0]
    g2 = torch.autograd.grad(_reference_class_features(logits, target).square().sum(), logits)[0]
    assert torch.allclose(g1, g2, atol=1e-12)


def test_ordinal_features_gradient_float64():
    logits, target = _batch(5, 6, seed=4, scale=2.0)
    logits.requires_grad_(True)
    feats = ("target", "sharp_error", "sharp_near", "sharp_expected", "expected_error", "near")
    assert torch.autograd.gradcheck(lambda z: ordinal_features(z, target, feats), (logits,))


def test_lsed_is_tied_to_its_c_and_names_the_fix():
    task = get_task("classification", num_classes=5)
    sur = ml.Surrogate(task, task.build_net(kind="lsed"), {"kind": "lsed"})
    logits, target = _batch(8, 5)
    assert torch.isfinite(sur(logits.float(), target))
    with pytest.raises(ValueError, match=r"C = 7 classes, but LS-ED's class embedding is tied to C = num_classes = 5"
                                         r".*`num_classes=7`.*size-agnostic"):
        sur(torch.randn(8, 7), torch.randint(0, 7, (8,)))
    with pytest.raises(ValueError, match=r"'lsed'.*serves one C.*\[2, 9\]"):
        get_task("classification", num_classes=(2, 9)).build_net(kind="lsed")


@pytest.mark.parametrize("value, match", [
    ((5, 3), r"low <= high"), ((1, 5), r"`num_classes` must be an integer >= 2"), ([2, 3, 4], r"\(low, high\) range"),
    (1, r"`num_classes` must be an integer >= 2"),
])
def test_num_classes_ranges_are_checked(value, match):
    with pytest.raises(ValueError, match=match):
        get_task("classification", num_classes=value)


def _present(pred: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(pred).sum(-1)


@pytest.mark.parametrize("family, low, high", [("classification", 2, 60), ("ordinal", 3, 20)])
def test_a_range_draws_one_c_per_batch_padded_with_absent_classes(family, low, high):
    task = get_task(family, num_classes=(low, high))
    assert task.config() == {"num_classes": [low, high]}
    assert get_task(family, **task.config()).config() == task.config()
    pred, target = task.random_batches(200, 16, torch.Generator().manual_seed(0))
    assert pred.shape == (200, 16, high) and target.dtype == torch.int64
    sizes = _present(pred)
    assert bool((sizes == sizes[:, :1]).all()), "every row of a batch has the same classes"
    c = sizes[:, 0]
    assert int(c.min()) >= low and int(c.max()) <= high and len(set(c.tolist())) > 10
    assert bool((target < c.unsqueeze(-1)).all())
    # the classes present are the first C: the padding is at the end
    assert bool((torch.isfinite(pred) == (torch.arange(high) < c.view(-1, 1, 1))).all())
    # a fixed size draws what it always did: no -inf, and the same batches for the same seed
    fixed = get_task(family, num_classes=high)
    a, b = fixed.random_batches(4, 8, torch.Generator().manual_seed(1)), fixed.random_batches(
        4, 8, torch.Generator().manual_seed(1))
    assert bool(torch.isfinite(a[0]).all()) and torch.equal(a[0], b[0])


def _unpadded(pred: torch.Tensor, target: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    return pred[..., :c], target


@pytest.mark.parametrize("family, metrics", [
    ("classification", {"accuracy": CM.accuracy, "top5": lambda p, t: CM.top_k_accuracy(p, t, 5)}),
    ("ordinal", {"mae": OM.mae, "within1": OM.within1_accuracy, "kappa": OM.quadratic_kappa}),
])
def test_padded_batches_have_the_values_of_unpadded_ones(family, metrics):
    """Metrics, surrogate losses and their gradients on a batch padded with absent classes equal those on the batch
    cut to its own classes (the padding only makes stacks of different C one tensor)."""
    task = get_task(family, num_classes=(3, 12))
    pred, target = task.random_batches(40, 16, torch.Generator().manual_seed(5))
    sur = ml.pretrained("classification-accuracy" if family == "classification" else "ordinal-mae")
    for i in range(40):
        c = int(_present(pred[i])[0])
        small_pred, small_target = _unpadded(pred[i], target[i], c)
        for fn in metrics.values():
            assert float(fn(pred[i], target[i])) == pytest.approx(float(fn(small_pred, small_target)), abs=1e-12)
        padded = pred[i].clone().requires_grad_(True)
        cut = small_pred.clone().requires_grad_(True)
        sur.validate_args = False  # -inf padding is for G_R stacks; the user-facing check rejects it
        lp, lc = sur(padded, target[i]), sur(cut, small_target)
        (gp,), (gc,) = torch.autograd.grad(lp, padded), torch.autograd.grad(lc, cut)
        assert float(lp.detach()) == pytest.approx(float(lc.detach()), abs=1e-5)
        assert torch.allclose(gp[:, :c], gc, atol=1e-6) and float(gp[:, c:].abs().sum()) == 0.0
        base = task.baseline(pred[i].unsqueeze(0), target[i].unsqueeze(0))
        assert float(base) == pytest.approx(float(F.cross_entropy(small_pred, small_target)), abs=1e-5)


def test_learn_with_a_range_of_classes(tmp_path):
    sur = ml.learn("accuracy", num_classes=(2, 30), steps=10, batches_per_step=16, batch_size=32, pool_size=64,
                   validation_batches=32, eval_every=5, gradient_probe=0, progress=False, seed=0)
    assert sur.report.task_config == {"num_classes": [2, 30]}
    for c in (2, 30, 300):
        logits = torch.randn(16, c, requires_grad=True)
        sur(logits, torch.randint(0, c, (16,))).backward()
        assert bool(torch.isfinite(logits.grad).all())
    sur.save(tmp_path / "range.safetensors")
    back = ml.load(tmp_path / "range.safetensors")
    assert back.task.config() == {"num_classes": [2, 30]} and (back.task.min_classes, back.task.num_classes) == (2, 30)
    logits, target = torch.randn(8, 77), torch.randint(0, 77, (8,))
    assert torch.equal(back(logits, target), sur(logits, target))


def test_stacks_may_mark_absent_classes_but_batches_and_nan_are_refused():
    task = get_task("classification", num_classes=(2, 6))
    pred, target = task.random_batches(8, 4, torch.Generator().manual_seed(0))
    task.check(pred, target, stacked=True)
    with pytest.raises(ValueError, match="`pred` contains infinite"):
        task.check(pred[0].clone().fill_(float("-inf")).index_fill_(-1, torch.tensor([0, 1]), 0.0), target[0])
    for bad, what in ((float("nan"), "NaN"), (float("inf"), "infinite")):
        worse = pred.clone()
        worse[0, 0, 0] = bad
        with pytest.raises(ValueError, match=f"`pred` contains {what}"):
            task.check(worse, target, stacked=True)
