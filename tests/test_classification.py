"""The classification task family: input checks, surrogate network, G_R, baseline, and the objectives."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torchmetrics.classification import MulticlassF1Score

from metricloss import Surrogate
from metricloss.metrics.base import as_metric
from metricloss.metrics.classification import BUILTINS, accuracy, macro_f1
from metricloss.objectives import approximation_objective, gradient_penalty, rank_objective
from metricloss.tasks import get_task
from metricloss.tasks.classification import (
    BATCH_NET,
    CLASS_FEATURES,
    FEATURES,
    MODEL_SCALES,
    MODEL_SHARE,
    BatchClassificationNet,
    ClassificationNet,
    ClassificationTask,
    class_features,
    class_statistics,
)

C = 5


@pytest.fixture(scope="module")
def task() -> ClassificationTask:
    return ClassificationTask(C)


@pytest.fixture(scope="module")
def sur(task) -> Surrogate:
    """An untrained surrogate: enough to check that calls validate their inputs."""
    config = task.default_net_config()
    torch.manual_seed(0)
    return Surrogate(task, task.build_net(**config), config)


def _batch(b: int = 8, c: int = C, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, generator=g), torch.randint(0, c, (b,), generator=g)


# ---------------------------------------------------------------------------------------------------------
# construction and checks


@pytest.mark.parametrize("bad", [1, 0, -3, True, 2.0, "10", None])
def test_num_classes_must_be_an_integer_at_least_2(bad):
    with pytest.raises(ValueError, match="`num_classes` must be an integer >= 2"):
        ClassificationTask(bad)
    with pytest.raises(ValueError, match="`num_classes`"):
        get_task("classification", num_classes=bad)


def test_get_task_by_name_and_config(task):
    t = get_task("classification", num_classes=7)
    assert isinstance(t, ClassificationTask) and t.config() == {"num_classes": 7}
    assert get_task(task) is task
    with pytest.raises(TypeError, match="already a Task"):
        get_task(task, num_classes=3)
    with pytest.raises(ValueError, match="`task` must be one of 'classification'"):
        get_task("no_such_family")


def test_check_accepts_valid_inputs(task):
    p, t = _batch()
    task.check(p, t)
    task.check(p.double(), t)
    task.check(p.unsqueeze(0).expand(3, -1, -1), t.unsqueeze(0).expand(3, -1), stacked=True)
    task.check(torch.randn(1, C), torch.tensor([C - 1]))  # B = 1, top label


P, T = _batch()
BAD_INPUTS = [
    # (pred, target, stacked, exception, message)
    pytest.param(P[0], T, False, ValueError, r"`pred` must be logits of shape \(B, C\).*got \(5,\)", id="pred-1d"),
    pytest.param(P[None], T[None], False, ValueError, r"`pred` must be logits of shape \(B, C\)", id="pred-3d"),
    pytest.param(P, T, True, ValueError, r"`pred` must be logits of shape \(N, B, C\)", id="stacked-2d"),
    pytest.param(torch.randn(8, 1), T.clamp_max(0), False, ValueError, r"`pred`.*C >= 2 classes.*\(8, 1\)",
                 id="one-class"),
    pytest.param(torch.randn(8, 2), T, False, ValueError, r"`target` holds class indices outside \[0, 1\]",
                 id="too-few-classes"),
    pytest.param(P, T[:5], False, ValueError, r"`target` must have shape \(8,\).*got \(5,\)", id="target-short"),
    pytest.param(P, T[None], False, ValueError, r"`target` must have shape \(8,\)", id="target-2d"),
    pytest.param(P[None], T[None, :3], True, ValueError, r"`target` must have shape \(1, 8\)", id="stacked-target"),
    pytest.param(P, T.float(), False, TypeError, r"`target` must be an integer tensor.*torch.float32",
                 id="float-target"),
    pytest.param(P, T.bool(), False, TypeError, r"`target` must be an integer tensor.*torch.bool", id="bool-target"),
    pytest.param(P, T.tolist(), False, TypeError, r"`target` must be a torch.Tensor, got list", id="list-target"),
    pytest.param(P, torch.full((8,), C), False, ValueError, r"`target` holds class indices outside \[0, 4\]",
                 id="label-too-big"),
    pytest.param(P, torch.full((8,), -1), False, ValueError, r"`target` holds class indices outside.*min -1",
                 id="label-negative"),
    pytest.param(P.long(), T, False, TypeError, r"`pred` must be a floating-point tensor.*torch.int64",
                 id="int-pred"),
    pytest.param(P.numpy(), T, False, TypeError, r"`pred` must be a torch.Tensor, got ndarray", id="numpy-pred"),
    pytest.param(torch.where(torch.arange(C) == 2, float("nan"), P), T, False, ValueError,
                 r"`pred` contains NaN values", id="nan-pred"),
    pytest.param(torch.where(torch.arange(C) == 2, float("inf"), P), T, False, ValueError,
                 r"`pred` contains infinite values", id="inf-pred"),
    pytest.param(torch.randn(0, C), torch.zeros(0, dtype=torch.long), False, ValueError, r"`pred` is an empty batch",
                 id="empty-batch"),
]


@pytest.mark.parametrize(("pred", "target", "stacked", "exc", "message"), BAD_INPUTS)
def test_check_errors_name_the_argument(task, pred, target, stacked, exc, message):
    with pytest.raises(exc, match=message):
        task.check(pred, target, stacked=stacked)


@pytest.mark.parametrize(("pred", "target", "stacked", "exc", "message"),
                         [p for p in BAD_INPUTS if not p.values[2]])
def test_surrogate_call_validates_inputs(sur, pred, target, stacked, exc, message):
    with pytest.raises(exc, match=message):
        sur(pred, target)


def test_surrogate_batch_losses_validate_stacked_inputs(sur):
    p, t = _batch()
    with pytest.raises(ValueError, match=r"`pred` must be logits of shape \(N, B, C\)"):
        sur.batch_losses(p, t)
    with pytest.raises(ValueError, match="`pred` contains NaN"):
        sur.batch_losses(torch.full((2, 8, C), float("nan")), t.expand(2, -1))


@pytest.mark.parametrize("dtype", [torch.int16, torch.uint8])
def test_small_integer_targets_work_or_are_rejected_clearly(task, sur, dtype):
    p, t = _batch()
    try:
        loss = sur(p, t.to(dtype))
    except (TypeError, ValueError) as err:
        assert "`target`" in str(err)
    else:
        assert torch.allclose(loss, sur(p, t))


def test_baseline_accepts_int32_targets(task):
    p, t = _batch()
    assert torch.allclose(task.baseline(p[None], t.int()[None]), task.baseline(p[None], t[None]))


# ---------------------------------------------------------------------------------------------------------
# the surrogate network


def _elu(x: float) -> float:
    return x if x > 0 else math.expm1(x)


def _naive_net(net: ClassificationNet, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The surrogate loss of each batch, one sample at a time, in plain Python floats."""
    linears = [m for m in net.mlp if isinstance(m, torch.nn.Linear)]
    weights = [(lin.weight.detach().double().tolist(), lin.bias.detach().double().tolist()) for lin in linears]
    out = []
    for batch_logits, batch_target in zip(logits.tolist(), target.tolist(), strict=True):
        total = 0.0
        for z, y in zip(batch_logits, batch_target, strict=True):
            top = max(z)
            exps = [math.exp(v - top) for v in z]
            probs = [e / sum(exps) for e in exps]
            p_y = probs[y]
            feats = []
            for name in net.features:
                if name == "target_prob":
                    feats.append(p_y)
                elif name == "margin":
                    feats.append(p_y - max(p for j, p in enumerate(probs) if j != y))
                elif name == "log_target_prob":
                    feats.append(max(math.log(p_y), -30.0) / 10)
                elif name == "logit_margin":
                    feats.append(math.tanh(z[y] - max(v for j, v in enumerate(z) if j != y)))
            h = feats
            for i, (w, b) in enumerate(weights):
                h = [sum(wi * hi for wi, hi in zip(row, h, strict=True)) + bi for row, bi in zip(w, b, strict=True)]
                if i < len(weights) - 1:
                    h = [_elu(v) for v in h]
            total += abs(h[0])
        out.append(total / len(batch_target))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("features", [("target_prob",), ("target_prob", "margin"), FEATURES, ("margin",)])
def test_net_equals_naive_per_sample_loop(features):
    torch.manual_seed(1)
    net = ClassificationNet(features, hidden=16, depth=2).double()
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 6, C, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, C, (3, 6), generator=g)
    got = net(logits, target)
    assert got.shape == (3,)
    assert torch.allclose(got, _naive_net(net, logits, target), rtol=1e-10, atol=1e-12)


def test_net_handles_extreme_logits():
    torch.manual_seed(3)
    net = ClassificationNet(FEATURES, hidden=8, depth=1)
    logits = torch.tensor([[[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 0.0]]])
    out = net(logits, torch.tensor([[1, 1]]))
    assert bool(torch.isfinite(out).all())


def test_net_structure_and_bad_features():
    net = ClassificationNet(["target_prob", "margin"], hidden=32, depth=3)
    linears = [m for m in net.mlp if isinstance(m, torch.nn.Linear)]
    assert [lin.in_features for lin in linears] == [2, 32, 32, 32] and linears[-1].out_features == 1
    for bad in ([], ("entropy",), ("target_prob", "nope")):
        with pytest.raises(ValueError, match="`features` must be a non-empty subset"):
            ClassificationNet(bad)


def test_surrogate_call_equals_stacked_net(sur):
    g = torch.Generator().manual_seed(4)
    p, t = torch.randn(4, 9, C, generator=g), torch.randint(0, C, (4, 9), generator=g)
    per_batch = torch.stack([sur(pi, ti) for pi, ti in zip(p, t, strict=True)])
    assert torch.allclose(per_batch, sur.batch_losses(p, t, chunk=3), atol=1e-6)
    assert torch.allclose(per_batch, sur.net(p, t), atol=1e-6)


@pytest.mark.parametrize("features", [("target_prob",), FEATURES])
def test_net_gradcheck_in_logits(features):
    torch.manual_seed(5)
    net = ClassificationNet(features, hidden=8, depth=2).double()
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 4, C, generator=g, dtype=torch.float64).requires_grad_(True)
    target = torch.randint(0, C, (2, 4), generator=g)

    def f(z):
        return net(z, target)

    assert torch.autograd.gradcheck(f, (logits,), eps=1e-6, atol=1e-6)
    # learning differentiates the gradient again (gradient penalty): second derivatives too
    assert torch.autograd.gradgradcheck(f, (logits,), eps=1e-6, atol=1e-5, fast_mode=True)


# ---------------------------------------------------------------------------------------------------------
# G_R and the baseline


def test_random_batches_shapes_and_dtypes(task):
    pred, target = task.random_batches(17, 11, torch.Generator().manual_seed(0))
    assert pred.shape == (17, 11, C) and pred.dtype == torch.float32
    assert target.shape == (17, 11) and target.dtype == torch.int64
    assert bool(torch.isfinite(pred).all())
    assert int(target.min()) >= 0 and int(target.max()) < C
    task.check(pred, target, stacked=True)


def test_random_batches_are_deterministic_for_a_seeded_generator(task):
    a = task.random_batches(32, 16, torch.Generator().manual_seed(7))
    b = task.random_batches(32, 16, torch.Generator().manual_seed(7))
    c = task.random_batches(32, 16, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # drawing from the generator does not touch the global RNG
    state = torch.random.get_rng_state()
    task.random_batches(4, 4, torch.Generator().manual_seed(9))
    assert torch.equal(state, torch.random.get_rng_state())


def test_random_batch_accuracy_spreads_over_its_range():
    """The property G_R exists for: batch accuracies cover [1/C, 1], not a narrow band."""
    c = 10
    pred, target = ClassificationTask(c).random_batches(512, 128, torch.Generator().manual_seed(0))
    acc = accuracy(pred, target)
    assert float(acc.min()) < 0.3 and float(acc.max()) > 0.9
    # every tenth of [0.1, 1] holds at least 2 % of the batches
    hist = torch.histc(acc.float(), bins=9, min=0.1, max=1.0)
    assert bool((hist >= 0.02 * 512).all()), hist.tolist()


def test_relabel_keeps_predictions_and_draws_valid_labels(task):
    g = torch.Generator().manual_seed(10)
    pred = torch.randn(64, 32, C, generator=g)
    target = torch.randint(0, C, (64, 32), generator=g)
    p2, t2 = task.relabel(pred, target, torch.Generator().manual_seed(11))
    assert p2 is pred and t2.shape == target.shape and t2.dtype == torch.int64
    assert int(t2.min()) >= 0 and int(t2.max()) < C
    acc = accuracy(p2, t2)
    assert float(acc.min()) < 0.5 and float(acc.max()) > 0.9


@pytest.mark.parametrize("shape", [(1, 1), (3, 16), (5, 7)])
def test_baseline_is_mean_cross_entropy_per_batch(task, shape):
    g = torch.Generator().manual_seed(12)
    pred = torch.randn(*shape, C, generator=g) * 4
    target = torch.randint(0, C, shape, generator=g)
    got = task.baseline(pred, target)
    assert got.shape == (shape[0],)
    want = torch.stack([F.cross_entropy(p, t) for p, t in zip(pred, target, strict=True)])
    assert torch.allclose(got, want, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# objectives


def test_gradient_penalty_equals_naive_loop():
    g = torch.Generator().manual_seed(13)
    grads = torch.randn(6, 4, C, generator=g, dtype=torch.float64) * 0.5
    total = 0.0
    for grad in grads.tolist():
        norm = math.sqrt(sum(v * v for row in grad for v in row))
        total += (norm - 1) ** 2
    assert float(gradient_penalty(grads)) == pytest.approx(total / 6, rel=1e-12)
    # zero when every gradient has unit norm
    unit = grads / grads.flatten(1).norm(dim=1)[:, None, None]
    assert float(gradient_penalty(unit)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("offset", [0.0, 1.0, 2.5])
def test_approximation_objective_equals_naive_formulas(offset):
    g = torch.Generator().manual_seed(14)
    losses = torch.rand(20, generator=g, dtype=torch.float64) * 3
    metric = torch.rand(20, generator=g, dtype=torch.float64)
    errs = [li - (offset - mi) for li, mi in zip(losses.tolist(), metric.tolist(), strict=True)]
    l2 = approximation_objective(losses, metric, "l2", offset)
    l1 = approximation_objective(losses, metric, "l1", offset)
    assert float(l2) == pytest.approx(sum(e * e for e in errs) / 20, rel=1e-12)
    assert float(l1) == pytest.approx(sum(abs(e) for e in errs) / 20, rel=1e-12)
    # an exact fit of the "error" offset - metric costs nothing
    assert float(approximation_objective(offset - metric, metric, "l2", offset)) == pytest.approx(0.0, abs=1e-24)


@pytest.mark.parametrize("kind", ["spearman", "kendall"])
def test_rank_objective_is_near_minus_one_for_perfectly_anti_ordered_losses(kind):
    metric = torch.rand(64, generator=torch.Generator().manual_seed(15), dtype=torch.float64)
    losses = (-3 * metric + 1).requires_grad_(True)  # lower loss exactly where the metric is higher
    obj = rank_objective(losses, metric, kind)
    assert float(obj.detach()) < -0.95
    assert float(rank_objective(losses.detach(), metric, kind, strength=100.0)) < -0.99
    assert float(rank_objective(-losses.detach(), metric, kind)) > 0.95
    obj.backward()
    assert losses.grad is not None and bool(torch.isfinite(losses.grad).all())


def test_rank_objective_tends_to_exact_spearman():
    g = torch.Generator().manual_seed(16)
    losses = torch.randn(50, generator=g, dtype=torch.float64)
    metric = torch.randn(50, generator=g, dtype=torch.float64)
    exact = spearmanr(losses.numpy(), metric.numpy()).statistic
    assert float(rank_objective(losses, metric, "spearman", strength=1e4)) == pytest.approx(exact, abs=1e-3)


# ---------------------------------------------------------------------------------------------------------
# the batch-level net (soft confusion matrix) and the imbalanced G_R


def _naive_class_statistics(logits: torch.Tensor, target: torch.Tensor, sharpness: float = 1.0) -> list[list[float]]:
    """Per-class soft TP, FP, FN, support, recall, precision, F1, present of one batch, in Python floats."""
    rows = logits.double().tolist()
    probs = []
    for row in rows:  # softmax(sharpness * z), written out
        top = max(row)
        e = [math.exp(sharpness * (v - top)) for v in row]
        probs.append([v / sum(e) for v in e])
    labels = target.tolist()
    b, c = len(labels), len(probs[0])
    rows = []
    for k in range(c):
        tp = sum(p[k] for p, y in zip(probs, labels, strict=True) if y == k)
        predicted = sum(p[k] for p in probs)
        n = sum(1 for y in labels if y == k)
        rows.append([tp / b, (predicted - tp) / b, (n - tp) / b, n / b, tp / max(n, 1), tp / max(predicted, 1),
                     2 * tp / max(predicted + n, 1), float(n > 0)])
    return rows


@pytest.mark.parametrize("sharpness", [1.0, 4.0, 0.25])
@pytest.mark.parametrize(("b", "c", "seed"), [(1, 2, 0), (7, 5, 1), (40, 12, 2)])
def test_class_statistics_equal_naive_loop(b, c, seed, sharpness):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, b, c, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, min(c, 3), (3, b), generator=g)  # classes >= 3 absent
    stats = class_statistics(logits, target, sharpness) if sharpness != 1.0 else class_statistics(logits, target)
    assert stats.shape == (3, c, len(CLASS_FEATURES))
    for i in range(3):
        expected = torch.tensor(_naive_class_statistics(logits[i], target[i], sharpness), dtype=torch.float64)
        assert torch.allclose(stats[i], expected, atol=1e-12)


#: The first batch net (per-sample term, sharpness 1) and the default's shape (batch term alone, two sharpnesses).
BATCH_VARIANTS = ({}, {"sample": False, "sharpness": (1.0, 4.0)})


def _batch_net(seed: int = 0, **config) -> BatchClassificationNet:
    torch.manual_seed(seed)
    net = BatchClassificationNet(hidden=16, depth=2, class_hidden=8, **config).double()
    with torch.no_grad():  # the batch term starts at zero; give it weights so the tests see it
        net.rho[-1].weight.normal_()
        net.rho[-1].bias.normal_()
    return net


@pytest.mark.parametrize("config", BATCH_VARIANTS)
def test_batch_net_is_permutation_invariant_over_samples_and_equivariant_over_classes(config):
    net = _batch_net(**config)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 24, 6, generator=g, dtype=torch.float64) * 2
    target = torch.randint(0, 4, (4, 24), generator=g)
    out = net(logits, target)
    samples = torch.randperm(24, generator=g)
    assert torch.allclose(net(logits[:, samples], target[:, samples]), out, atol=1e-12)
    classes = torch.randperm(6, generator=g)  # new class j is old class classes[j]
    inverse = classes.argsort()
    assert torch.allclose(net(logits[..., classes], inverse[target]), out, atol=1e-12)


@pytest.mark.parametrize("config", BATCH_VARIANTS)
@pytest.mark.parametrize(("b", "c"), [(1, 2), (3, 7), (64, 10), (256, 1000)])
def test_batch_net_serves_any_batch_size_and_class_count(b, c, config):
    net = _batch_net(**config).float()
    g = torch.Generator().manual_seed(2)
    out = net(torch.randn(2, b, c, generator=g), torch.randint(0, c, (2, b), generator=g))
    assert out.shape == (2,) and bool(torch.isfinite(out).all())


def test_untrained_batch_net_equals_its_per_sample_term():
    torch.manual_seed(3)
    net = BatchClassificationNet(hidden=16, depth=2, class_hidden=8)
    logits, target = torch.randn(3, 9, 4), torch.randint(0, 4, (3, 9))
    assert torch.equal(net(logits, target), net.sample(logits, target))


def test_batch_net_without_per_sample_term_is_rho_of_pooled_class_statistics():
    """``sample=False``: the loss is the batch term alone, computed here step by step from the statistics."""
    net = _batch_net(7, sample=False, sharpness=(1.0, 4.0))
    assert net.sample is None
    g = torch.Generator().manual_seed(8)
    logits = torch.randn(3, 20, 5, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, 3, (3, 20), generator=g)  # classes 3, 4 absent
    for i in range(3):
        stats = torch.cat([class_statistics(logits[i], target[i], t) for t in (1.0, 4.0)], dim=-1)  # (C, 16)
        h = net.psi(stats)
        present = target[i].bincount(minlength=5) > 0
        pooled = torch.cat([h.mean(dim=0), h[present].mean(dim=0)])
        assert torch.allclose(net(logits[i], target[i]), net.rho(pooled).squeeze(-1), atol=1e-12)


@pytest.mark.parametrize("bad", [(), [0.0], [1.0, -4.0], [float("inf")], "14", 4.0, [None]])
def test_batch_net_rejects_bad_sharpness(bad):
    with pytest.raises(ValueError, match="`sharpness` must be a non-empty list of positive numbers"):
        BatchClassificationNet(sharpness=bad)


def test_batch_net_configs_saved_before_its_options_build_the_first_net():
    """A ``kind="batch"`` config without ``sample`` / ``sharpness`` (the shipped file's) builds the first version:
    per-sample term, statistics at sharpness 1, batch term starting at zero."""
    torch.manual_seed(9)
    net = ClassificationTask(4).build_net(kind="batch", features=["target_prob", "margin"], class_hidden=8)
    assert net.sample is not None and net.sharpness == (1.0,) and net.psi[0][0].in_features == len(CLASS_FEATURES)
    logits, target = torch.randn(3, 9, 4), torch.randint(0, 4, (3, 9))
    assert torch.equal(net(logits, target), net.sample(logits, target))


@pytest.mark.parametrize("config", BATCH_VARIANTS)
def test_batch_net_gradcheck_in_logits(config):
    net = _batch_net(4, **config)
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 5, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    target = torch.tensor([[0, 0, 1, 1, 0], [2, 2, 2, 0, 1]])

    def f(z):
        return net(z, target)

    assert torch.autograd.gradcheck(f, (logits,), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradgradcheck(f, (logits,), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("scale", [1e-2, 1.0, 1e2, 1e4])
@pytest.mark.parametrize("b", [1, 16, 4096])
def test_class_statistics_gradient_is_bounded_for_any_scale_and_batch(scale, b):
    """Every statistic's gradient in the logits stays O(1): the denominators are counts floored at one sample."""
    g = torch.Generator().manual_seed(6)
    logits = (torch.randn(b, 10, generator=g, dtype=torch.float64) * scale).requires_grad_(True)
    target = torch.randint(0, 3, (b,), generator=g)  # most classes absent: the floors are exercised
    stats = class_statistics(logits, target)
    for j in range(len(CLASS_FEATURES) - 1):
        (grad,) = torch.autograd.grad(stats[:, j].sum(), logits, retain_graph=True)
        assert bool(torch.isfinite(grad).all()) and float(grad.norm()) <= 10.0, (CLASS_FEATURES[j], grad.norm())


def test_default_net_is_per_sample_and_batch_net_config_builds_the_batch_net(task):
    assert type(task.build_net(**task.default_net_config())) is ClassificationNet
    net = task.build_net(**BATCH_NET)
    assert isinstance(net, BatchClassificationNet) and net.sample is None and net.sharpness == (1.0, 4.0)
    with pytest.raises(ValueError, match="kind must be 'batch', 'mlp' or 'lsed'"):
        task.build_net(kind="deepsets")


def test_shipped_accuracy_surrogates_keep_their_per_sample_net():
    import metricloss as ml

    for name in ("classification-accuracy", "classification-top5-accuracy"):
        sur = ml.pretrained(name)
        assert type(sur.net) is ClassificationNet and "kind" not in sur.net_config


def test_imbalanced_random_batches_make_accuracy_and_macro_f1_disagree():
    """Half of G_R is long-tailed: minority classes go missing and accuracy no longer orders batches by macro F1."""
    c = 10
    task = ClassificationTask(c).for_metric(as_metric("macro_f1", None, BUILTINS))
    pred, target = task.random_batches(1024, 128, torch.Generator().manual_seed(0))
    present = F.one_hot(target, c).amax(dim=1).sum(dim=-1)
    assert float((present < c).float().mean()) > 0.25  # many batches miss a class
    counts = F.one_hot(target, c).sum(dim=1).sort(dim=-1, descending=True).values.float()
    assert float((counts[:, 0] / 128 > 0.4).float().mean()) > 0.15  # many have a dominant class
    acc, f1 = accuracy(pred, target), macro_f1(pred, target)
    assert float(spearmanr(acc, f1)[0]) < 0.9
    # the frequent-class bias: batches where accuracy is high but macro F1 far lower exist
    assert bool(((acc > 0.7) & (f1 < acc - 0.2)).any())


def test_shipped_macro_f1_surrogate_is_the_batch_net_and_serves_other_class_counts():
    import metricloss as ml

    sur = ml.pretrained("classification-macro-f1")
    assert isinstance(sur.net, BatchClassificationNet) and sur.report.metric == "macro_f1"
    task = ClassificationTask(10).for_metric(as_metric("macro_f1", None, BUILTINS))
    pred, target = task.random_batches(256, 128, torch.Generator().manual_seed(31))
    f1 = macro_f1(pred, target)
    ours = spearmanr(-sur.batch_losses(pred, target), f1)[0]
    ce = spearmanr(-task.baseline(pred, target), f1)[0]
    assert ours > ce  # its card: 0.70 against CE's 0.58 on 512 such batches
    wide = ml.pretrained("classification-macro-f1", num_classes=20)
    logits = torch.randn(64, 20, requires_grad=True)
    wide(logits, torch.randint(0, 20, (64,))).backward()
    assert bool(torch.isfinite(logits.grad).all())


@pytest.mark.parametrize(("metric", "share", "kind"), [
    ("accuracy", 0.0, None), ("top5_accuracy", 0.0, None), ("macro_f1", 0.5, "batch"), ("mcc", 0.5, "batch"),
    (MulticlassF1Score(num_classes=4, average="macro"), 0.5, "batch"), (lambda p, t: 0.0, 0.0, None),
])
def test_learn_configures_the_task_for_its_metric(metric, share, kind):
    base = ClassificationTask(4)
    task = base.for_metric(as_metric(metric, None, BUILTINS))
    assert (task.imbalanced_share, task.default_net_config().get("kind")) == (share, kind)
    assert task.model_share == (0.0 if share else MODEL_SHARE)  # batch-level: the imbalanced mix as before
    assert task.config() == base.config() and base.imbalanced_share == 0.0  # a copy: the caller's task is unchanged
    if share == 0.0:  # without the model regime: the authors' regime alone, draw for draw
        task.model_share = 0.0
        a = task.random_batches(8, 16, torch.Generator().manual_seed(3))
        b = task._uniform_batches(8, 16, torch.Generator().manual_seed(3))
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    else:  # the batch-level mix draws what it drew before the model regime existed: one pick, then each regime
        g = torch.Generator().manual_seed(3)
        pick = torch.rand(8, generator=g) < 0.5
        k = int(pick.sum())
        uniform, imbalanced = task._uniform_batches(8 - k, 16, g), task._imbalanced_batches(k, 16, g)
        pred, target = task.random_batches(8, 16, torch.Generator().manual_seed(3))
        assert torch.equal(pred[~pick], uniform[0]) and torch.equal(target[pick], imbalanced[1])

@pytest.mark.parametrize("c", [2, 10, 1000])
def test_model_regime_covers_temperatures_accuracies_and_confident_errors(c):
    """The model regime (issue 22): a random linear model's logits at scales over MODEL_SCALES, labels from a noisier
    copy. At every C, flat and confident batches both occur, accuracy spreads, and some confident batches are wrong
    on most samples."""
    task = ClassificationTask(c)
    pred, target = task.model_batches(96, 64, torch.Generator().manual_seed(5))
    assert pred.shape == (96, 64, c) and target.shape == (96, 64) and target.dtype == torch.long
    assert int(target.min()) >= 0 and int(target.max()) < c
    acc = accuracy(pred, target)
    spread = pred.std(dim=-1).mean(dim=-1)  # the logits' scale per batch
    assert float(spread.min()) < 3 * MODEL_SCALES[0] and float(spread.max()) > MODEL_SCALES[1] / 3
    assert float(acc.max()) > 0.8 and float(acc.min()) < max(0.2, 2.0 / c)
    confident = pred.softmax(dim=-1).amax(dim=-1).mean(dim=-1) > 0.8
    assert bool((confident & (acc < 0.5)).any())  # confident but wrong


def test_model_regime_labels_follow_the_models_own_scores():
    """Labels come from a noisier copy of the model: its errors are correlated with its scores, so the target's rank
    among the model's logits is far better than a random label's (mean rank well below C / 2), and the runner-up is
    over-represented among the errors."""
    c = 50
    pred, target = ClassificationTask(c).model_batches(64, 64, torch.Generator().manual_seed(6))
    rank = (pred > pred.gather(-1, target.unsqueeze(-1))).sum(dim=-1).float()  # 0: the arg-max
    wrong = rank > 0
    assert float(rank.mean()) < c / 6
    assert float((rank[wrong] == 1).float().mean()) > 5.0 / c  # runner-up errors far above a uniform 1/(C-1)


def test_model_regime_draws_each_batch_class_count_from_a_range():
    task = ClassificationTask((3, 40))
    pred, target = task.model_batches(40, 32, torch.Generator().manual_seed(7))
    present = torch.isfinite(pred[:, 0]).sum(dim=-1)
    assert int(present.min()) >= 3 and int(present.max()) <= 40 and len(set(present.tolist())) > 5
    assert bool(torch.isfinite(pred.gather(-1, target.unsqueeze(-1))).all())  # no target on an absent class


def test_random_batches_mix_the_model_regime_at_its_share():
    task = ClassificationTask(10)
    g = torch.Generator().manual_seed(8)
    u = torch.rand(200, generator=g)
    model = u < MODEL_SHARE
    authors = task._uniform_batches(int((~model).sum()), 16, g)
    ours = task.model_batches(int(model.sum()), 16, g)
    pred, target = task.random_batches(200, 16, torch.Generator().manual_seed(8))
    assert torch.equal(pred[~model], authors[0]) and torch.equal(target[model], ours[1])


@pytest.mark.parametrize("shape", [(3, 16, 7), (1, 128, 1000)])  # the composite and the fused (>= 65536 logits) paths
def test_logit_margin_feature_is_the_tanh_of_the_logit_gap(shape):
    g = torch.Generator().manual_seed(9)
    z = torch.randn(*shape, generator=g, dtype=torch.float64) * 0.3
    y = torch.randint(0, shape[-1], shape[:-1], generator=g)
    got = class_features(z, y, ("logit_margin", "margin"))
    other = z.scatter(-1, y.unsqueeze(-1), float("-inf")).amax(dim=-1)
    expected = torch.tanh(z.gather(-1, y.unsqueeze(-1))[..., 0] - other)
    assert torch.allclose(got[..., 0], expected, atol=1e-12)
    # flat logits: the logit margin keeps the sign of a right / wrong sample at a size the probability margin lacks
    right = z.argmax(dim=-1) == y
    assert bool((got[..., 0][right] > 0).all() and (got[..., 0][~right] < 0).all())
    if shape[-1] == 1000:  # at C = 1000 the probability margin of flat logits is about 1e-4
        assert float(got[..., 0].abs().mean()) > 100 * float(got[..., 1].abs().mean())
    small = z[:1, :4, :].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: class_features(x, y[:1, :4], ("logit_margin",)), (small,))
