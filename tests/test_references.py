"""The reference losses against independent references: naive per-sample loops, sklearn, the packages themselves."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score, f1_score

import metricloss as ml
from metricloss.evaluation import measure
from metricloss.references import Reference, for_task
from metricloss.references import classification as rc
from metricloss.references import pose as rp
from metricloss.references import sequence as rs
from metricloss.references import set as rset
from metricloss.tasks.base import get_task
from metricloss.tasks.pose import gaussian_heatmaps

GEN = torch.Generator().manual_seed(0)
Z = torch.randn(6, 5, generator=GEN, dtype=torch.float64)
Y = torch.tensor([0, 1, 1, 4, 4, 4])
COUNTS = torch.tensor([50.0, 20.0, 1.0, 5.0, 100.0])


def _log_softmax_row(z: torch.Tensor) -> list[float]:
    m = max(float(v) for v in z)
    lse = m + math.log(sum(math.exp(float(v) - m) for v in z))
    return [float(v) - lse for v in z]


def test_label_smoothing_is_the_smoothed_target_cross_entropy():
    eps, total = 0.1, 0.0
    for z, y in zip(Z, Y, strict=True):
        lp = _log_softmax_row(z)
        total += -(1 - eps) * lp[y] - eps * sum(lp) / len(lp)
    assert float(rc.label_smoothing_cross_entropy(Z, Y, eps)) == pytest.approx(total / len(Y), rel=1e-10)


def test_focal_is_the_focal_formula():
    pytest.importorskip("monai", reason="focal comes from MONAI: pip install 'metricloss[references]'")
    expected = 0.0
    for z, y in zip(Z, Y, strict=True):
        p = math.exp(_log_softmax_row(z)[y])
        expected += -((1 - p) ** 2) * math.log(p)
    assert float(rc.focal_loss(Z, Y)) == pytest.approx(expected / len(Y), rel=1e-6)


def test_logit_adjusted_is_cross_entropy_of_shifted_logits():
    prior = [float(c) / float(COUNTS.sum()) for c in COUNTS]
    expected = sum(-_log_softmax_row([float(v) + math.log(p) for v, p in zip(z, prior, strict=True)])[y]
                   for z, y in zip(Z, Y, strict=True)) / len(Y)
    assert float(rc.logit_adjusted_cross_entropy(Z, Y, COUNTS)) == pytest.approx(expected, rel=1e-10)


def test_class_balanced_weights_follow_the_effective_number():
    beta = 0.99
    raw = [(1 - beta) / (1 - beta ** float(n)) for n in COUNTS]
    w = [r * len(raw) / sum(raw) for r in raw]
    expected = sum(-w[y] * _log_softmax_row(z)[y] for z, y in zip(Z, Y, strict=True)) / len(Y)
    assert float(rc.class_balanced_cross_entropy(Z, Y, COUNTS, beta)) == pytest.approx(expected, rel=1e-10)


def test_ldam_lowers_the_target_logit_by_its_margin():
    raw = [float(n) ** -0.25 for n in COUNTS]
    margin = [0.5 * r / max(raw) for r in raw]
    expected = 0.0
    for z, y in zip(Z, Y, strict=True):
        shifted = [3.0 * (float(v) - (margin[y] if c == y else 0.0)) for c, v in enumerate(z)]
        expected += -_log_softmax_row(shifted)[y]
    assert float(rc.ldam_loss(Z, Y, COUNTS, 0.5, 3.0)) == pytest.approx(expected / len(Y), rel=1e-10)


def test_class_counts_are_at_least_one_and_ignore_out_of_range():
    assert rc.class_counts(torch.tensor([0, 0, 2, 7, -100]), 3).tolist() == [2.0, 1.0, 1.0]
    assert rc.class_counts(None, 2).tolist() == [1.0, 1.0]


@settings(max_examples=30)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=40))
def test_soft_f1_of_confident_scores_is_f1(pairs):
    y = torch.tensor([float(a) for a, _ in pairs], dtype=torch.float64)
    yhat = torch.tensor([float(b) for _, b in pairs], dtype=torch.float64)
    logits = (yhat * 2 - 1) * 60
    expected = f1_score(y.numpy(), yhat.numpy(), zero_division=0.0)
    assert 1 - float(rset.soft_f1(logits, y)) == pytest.approx(expected, abs=1e-6)


def test_sigmoid_f1_is_macro_over_labels_and_soft_f1_for_one_label():
    s = torch.randn(20, 3, generator=GEN, dtype=torch.float64)
    y = (torch.rand(20, 3, generator=GEN) > 0.5).double()
    per_label = torch.stack([rset.soft_f1(s[:, j], y[:, j]) for j in range(3)])
    assert float(rset.sigmoid_f1(s, y)) == pytest.approx(float(per_label.mean()), rel=1e-10)
    shifted = rset.sigmoid_f1(s[:, 0], y[:, 0], beta=2.0, eta=0.5)
    assert float(shifted) == pytest.approx(float(rset.soft_f1(2.0 * (s[:, 0] + 0.5), y[:, 0])), rel=1e-10)


def test_heatmap_l1_is_the_masked_mean_absolute_difference():
    kp = torch.tensor([[[3.0, 4.0, 2.0], [1.0, 1.0, 0.0]], [[5.0, 2.0, 1.0], [6.0, 6.0, 2.0]]])
    h = torch.rand(2, 2, 8, 8, generator=GEN)
    g = gaussian_heatmaps(kp, (8, 8), 2.0)
    terms = [float((h[b, k] - g[b, k]).abs().mean()) for b in range(2) for k in range(2) if kp[b, k, 2] > 0]
    assert float(rp.heatmap_l1(h, kp)) == pytest.approx(sum(terms) / len(terms), rel=1e-6)


def test_sequence_label_smoothing_averages_each_batchs_own_tokens():
    z = torch.randn(2, 2, 4, 7, generator=GEN, dtype=torch.float64)  # a stack of 2 batches of 2 sentences
    t = torch.tensor([[[1, 2, -100, -100], [3, 3, 3, 0]], [[5, -100, -100, -100], [6, 1, -100, -100]]])
    stack = rs.label_smoothing_token_cross_entropy(z, t)
    for i in range(2):
        valid = t[i] != -100
        expected = F.cross_entropy(z[i][valid], t[i][valid], label_smoothing=0.1)
        assert float(stack[i]) == pytest.approx(float(expected), rel=1e-10)
        assert float(rs.label_smoothing_token_cross_entropy(z[i], t[i])) == pytest.approx(float(expected), rel=1e-10)


@pytest.mark.parametrize("fn", [
    lambda z, y: rc.logit_adjusted_cross_entropy(z, y, COUNTS),
    lambda z, y: rc.class_balanced_cross_entropy(z, y, COUNTS),
    lambda z, y: rc.ldam_loss(z, y, COUNTS),
    rc.label_smoothing_cross_entropy,
])
def test_written_classification_losses_gradcheck(fn):
    z = Z.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: fn(x, Y), (z,))


def test_set_losses_gradcheck():
    s = torch.randn(12, 2, generator=GEN, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(12, 2, generator=GEN) > 0.5).double()
    assert torch.autograd.gradcheck(lambda x: rset.sigmoid_f1(x, y, 1.5, 0.2), (s,))
    assert torch.autograd.gradcheck(lambda x: rset.soft_f1(x, y), (s,))


def test_weighted_kappa_reference_is_one_minus_qwk_on_confident_logits():
    pytest.importorskip("dlordinal", reason="install with `pip install --no-deps dlordinal deprecated pandas`")
    task = get_task("ordinal", num_classes=5)
    y = torch.tensor([0, 1, 2, 3, 4, 4, 2, 1])
    yhat = torch.tensor([0, 2, 2, 3, 3, 4, 1, 1])
    wk = next(r for r in for_task(task, y) if r.name == "WK (QWK)")
    value = float(wk((F.one_hot(yhat, 5).float() * 40).unsqueeze(0), y.unsqueeze(0))[0])
    assert value == pytest.approx(1 - cohen_kappa_score(y, yhat, weights="quadratic"), abs=1e-5)


def test_sord_reference_matches_the_package_per_batch():
    losses = pytest.importorskip("dlordinal.losses", reason="pip install --no-deps dlordinal deprecated pandas")
    task = get_task("ordinal", num_classes=4)
    targets = torch.tensor([0, 0, 0, 1, 2, 3, 3])
    sord = next(r for r in for_task(task, targets) if r.name == "SORD")
    z, y = torch.randn(3, 6, 4, generator=GEN), torch.randint(0, 4, (3, 6), generator=GEN)
    direct = losses.SORDLoss(alpha=1.0, num_classes=4, train_targets=targets)
    assert torch.allclose(sord(z, y), torch.stack([direct(z[i], y[i]).float() for i in range(3)]))


@pytest.mark.parametrize(("family", "kwargs"), [("classification", {"num_classes": 5}), ("ordinal", {"num_classes": 5}),
                                                 ("set", {}), ("pose", {"num_keypoints": 2, "heatmap_size": 8}),
                                                 ("sequence", {"vocab_size": 11, "max_length": 6})])
def test_every_ranking_reference_gives_one_finite_value_per_batch(family, kwargs):
    task = get_task(family, **kwargs)
    pred, target = task.random_batches(3, 8, torch.Generator().manual_seed(1))
    refs = for_task(task, target)
    assert refs and all(isinstance(r, Reference) and r.family == family and r.ranks_outputs for r in refs)
    for ref in refs:
        values = ref(pred, target)
        assert values.shape == (3,) and bool(torch.isfinite(values).all()), ref.name


def test_training_only_references_say_what_they_need_and_are_left_out_of_ranking():
    task = get_task("ordinal", num_classes=5)
    everything = for_task(task, ranking_only=False)
    training_only = [r for r in everything if not r.ranks_outputs]
    if not training_only:
        pytest.skip("coral-pytorch / LibAUC are not installed: pip install 'metricloss[references]'")
    assert all(r.training for r in training_only)
    assert {r.name for r in for_task(task)}.isdisjoint(r.name for r in training_only)


def test_unknown_family_has_no_references():
    assert for_task(object()) == []


@pytest.mark.parametrize("name", ["label smoothing", "focal", "logit-adjusted CE", "class-balanced CE", "LDAM"])
def test_padded_absent_classes_give_the_value_of_the_cut_batch(name):
    if name == "focal":
        pytest.importorskip("monai", reason="focal comes from MONAI")
    z = torch.randn(2, 6, 3, generator=GEN, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 6), generator=GEN)
    padded = torch.cat([z, torch.full((2, 6, 2), float("-inf"), dtype=torch.float64)], dim=-1)
    counts = torch.tensor([0, 0, 1, 2, 2, 2, 2])          # the classes a recorded run saw; 3 and 4 never
    cut = next(r for r in for_task(get_task("classification", num_classes=3), counts[counts < 3]) if r.name == name)
    wide = next(r for r in for_task(get_task("classification", num_classes=5), counts) if r.name == name)
    if name in {"logit-adjusted CE", "class-balanced CE", "LDAM"}:   # frequencies of unseen classes differ: finite
        assert bool(torch.isfinite(wide(padded, y)).all())
    else:
        assert torch.allclose(wide(padded, y), cut(z, y), atol=1e-10)


def test_a_reference_that_cannot_score_the_batches_is_left_out_of_the_verdict_with_a_warning():
    task = get_task("classification", num_classes=4)
    pred, target = task.random_batches(8, 16, torch.Generator().manual_seed(0))
    metric = ml.metrics.base.as_metric("accuracy", None, task.metrics)
    broken = Reference("broken", "classification", "here", lambda p, t: torch.full((p.shape[0],), float("inf")))
    raising = Reference("raising", "classification", "here", lambda p, t: 1 / 0)
    with pytest.warns(UserWarning, match="'broken' left out of the verdict"):
        report = measure(task.baseline, task, metric, (pred, target), method="baseline", validation="random",
                         references=[broken, raising, *for_task(task)])
    names = {c.against for c in report.verdict.references}
    assert "broken" not in names and "raising" not in names and "label smoothing" in names
