"""`ml.combine`: the auto weight against hand-computed gradient norms, the fixed-weight sum, safety, state."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

import metricloss as ml
from metricloss.combine import CombinedLoss, prediction_gradient_norms


def quadratic(p, t):  # gradient 2 p
    return (p * p).sum()


def make_linear(c):  # gradient c, whatever p is
    return lambda p, t: (p * c).sum()


@pytest.fixture(scope="module")
def sur():
    return ml.pretrained("classification-accuracy")


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(32, 10, generator=gen), torch.randint(0, 10, (32,), generator=gen)


def test_auto_weight_is_ratio_of_hand_computed_gradient_norms():
    p = torch.tensor([[3.0, 4.0]], requires_grad=True)  # grad of quadratic: (6, 8), norm 10
    c = torch.tensor([[0.0, 2.0]])                       # grad of the linear term: norm 2
    loss = ml.combine(quadratic, make_linear(c), ratio=0.3, momentum=0.0)
    value = loss(p, None)
    assert loss.weight == pytest.approx(0.3 * 10 / 2)
    assert loss.base_grad_norm == pytest.approx(10.0) and loss.surrogate_grad_norm == pytest.approx(2.0)
    assert value.item() == pytest.approx(25.0 + 1.5 * 8.0)


def test_auto_weight_ema_follows_its_recurrence():
    c = torch.tensor([[1.0, 0.0]])
    loss = ml.combine(quadratic, make_linear(c), ratio=1.0, momentum=0.75)
    expected = None
    for a in (1.0, 2.0, 5.0, 0.5):
        p = torch.tensor([[a, 0.0]], requires_grad=True)
        loss(p, None).backward()
        target = 2 * a / 1.0
        expected = target if expected is None else 0.75 * expected + 0.25 * target
        assert loss.weight == pytest.approx(expected)
    assert loss.step == 4 and loss.updates == 4


def test_surrogate_share_of_the_gradient_equals_ratio(sur, batch):
    logits, y = batch
    for ratio in (0.25, 0.5, 1.0):
        x = logits.clone().requires_grad_(True)
        loss = ml.combine(F.cross_entropy, sur, ratio=ratio, momentum=0.0)
        (g_total,) = torch.autograd.grad(loss(x, y), x)
        (g_base,) = torch.autograd.grad(F.cross_entropy(x, y), x)
        (g_sur,) = torch.autograd.grad(sur(x, y), x)
        share = (g_total - g_base).norm() / g_base.norm()
        assert share.item() == pytest.approx(ratio, rel=1e-4)
        # the surrogate part is the surrogate's own gradient, rescaled
        assert torch.allclose(g_total - g_base, loss.weight * g_sur, atol=1e-6)


def test_float_weight_equals_base_plus_weighted_surrogate(sur, batch):
    logits, y = batch
    x1 = logits.clone().requires_grad_(True)
    x2 = logits.clone().requires_grad_(True)
    combined = ml.combine(F.cross_entropy, sur, weight=0.7)(x1, y)
    reference = F.cross_entropy(x2, y) + 0.7 * sur(x2, y)
    assert combined.item() == pytest.approx(reference.item(), rel=1e-6)
    combined.backward()
    reference.backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-7)


def test_gradcheck_float64_fixed_weight(sur, batch):
    sur64 = ml.pretrained("classification-accuracy").double()
    logits, y = batch
    x = logits[:8].double().requires_grad_(True)
    loss = ml.combine(F.cross_entropy, sur64, weight=0.4)
    assert torch.autograd.gradcheck(lambda z: loss(z, y[:8]), (x,))
    # the auto weight, frozen in eval mode, is a constant too
    auto = ml.combine(F.cross_entropy, sur64)
    auto(x, y[:8]).backward()
    auto.eval()
    assert torch.autograd.gradcheck(lambda z: auto(z, y[:8]), (x,))


def test_zero_and_nan_surrogate_gradients_never_give_nan(batch):
    logits, y = batch
    zero = ml.combine(F.cross_entropy, lambda p, t: 0.0 * p.sum(), momentum=0.0)
    x = logits.clone().requires_grad_(True)
    value = zero(x, y)
    value.backward()
    assert zero.weight == 0.0 and value.item() == pytest.approx(F.cross_entropy(logits, y).item())
    assert torch.isfinite(x.grad).all()

    mode = {"nan": False}

    def flaky(p, t):  # a NaN gradient (sqrt at 0) when asked, else the sum of squares
        return torch.sqrt(p - p).sum() if mode["nan"] else (p * p).mean()

    loss = ml.combine(F.cross_entropy, flaky, momentum=0.0)
    loss(logits.clone().requires_grad_(True), y)
    before = loss.weight
    assert before > 0
    mode["nan"] = True
    loss(logits.clone().requires_grad_(True), y)
    assert loss.weight == before and math.isfinite(loss.weight)
    assert math.isnan(loss.surrogate_grad_norm)  # the measurement is logged, not used


def test_evaluation_uses_the_last_weight_and_updates_nothing(sur, batch):
    logits, y = batch
    loss = ml.combine(F.cross_entropy, sur, momentum=0.0)
    loss(logits.clone().requires_grad_(True), y).backward()
    w, state = loss.weight, loss.get_extra_state()
    other = logits * 3
    with torch.no_grad():
        value = loss(other, y)
    assert value.item() == pytest.approx((F.cross_entropy(other, y) + w * sur(other, y)).item(), rel=1e-6)
    loss(other, y)  # pred does not require grad
    loss.eval()
    loss(other.clone().requires_grad_(True), y)
    assert loss.weight == w
    assert torch.equal(loss.get_extra_state(), state) and loss.step == 1


def test_warmup_and_schedule_scale_the_weight():
    half = torch.tensor([0.5])
    loss = ml.combine(lambda p, t: p.sum(), lambda p, t: (p * 0 + 1).sum(), weight=2.0, warmup=4,
                      schedule=lambda step: 1.0 if step < 5 else 0.5)
    values = [loss(half.clone().requires_grad_(True), None).item() - 0.5 for _ in range(7)]
    assert values == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 1.0, 1.0])
    assert loss.weight == pytest.approx(1.0)


def test_reduction_sum_scales_by_batch_size(sur, batch):
    logits, y = batch
    mean = ml.combine(F.cross_entropy, sur, weight=0.5)(logits, y)
    total = ml.combine(F.cross_entropy, sur, weight=0.5, reduction="sum")(logits, y)
    assert total.item() == pytest.approx(32 * mean.item(), rel=1e-6)


def test_any_base_callable(sur, batch):
    logits, y = batch
    for base in (F.cross_entropy, sur.task.baseline, nn.CrossEntropyLoss(label_smoothing=0.1)):
        loss = ml.combine(base, sur)
        x = logits.clone().requires_grad_(True)
        loss(x, y).backward()
        assert loss.weight > 0 and torch.isfinite(x.grad).all()
    reg = ml.combine(nn.MSELoss(), nn.L1Loss(), momentum=0.0)
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    reg(p, torch.zeros(2)).backward()
    # MSE gradient 2p/n = (1, 2), norm sqrt(5); L1 gradient sign/n = (0.5, 0.5), norm sqrt(0.5)
    assert reg.weight == pytest.approx(0.5 * math.sqrt(5) / math.sqrt(0.5))


def test_state_dict_round_trip_and_repr(sur, batch, tmp_path):
    logits, y = batch
    loss = ml.combine(F.cross_entropy, sur, warmup=10)
    for _ in range(3):
        loss(logits.clone().requires_grad_(True), y)
    save_file(loss.state_dict(), tmp_path / "loss.safetensors")  # an all-tensor state dict
    fresh = ml.combine(F.cross_entropy, ml.pretrained("classification-accuracy"), warmup=10)
    fresh.load_state_dict(load_file(tmp_path / "loss.safetensors"))
    assert fresh.weight == loss.weight and fresh.step == 3 and fresh.updates == 3
    assert torch.equal(fresh.get_extra_state(), loss.get_extra_state())
    fixed = ml.combine(F.cross_entropy, ml.pretrained("classification-accuracy"), weight=0.25)
    fixed.load_state_dict(loss.state_dict())
    assert fixed.weight == 0.25 and fixed.step == 3
    with pytest.raises(ValueError, match="state"):
        fixed.set_extra_state(torch.zeros(2))
    loss.double()  # a dtype change leaves the state exact
    assert loss.weight == fresh.weight
    text = repr(loss)
    assert "weight='auto'" in text and "ratio=0.5" in text and "step=3" in text and "warmup=10" in text


def test_prediction_gradient_norms_does_not_reach_the_model():
    model = nn.Linear(4, 3)
    out = model(torch.randn(5, 4))
    gb, gs = prediction_gradient_norms(out.pow(2).sum(), out.sum(), out)
    assert gb == pytest.approx(float(2 * out.detach().norm())) and gs == pytest.approx(math.sqrt(15))
    assert model.weight.grad is None


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"weight": "max"}, ValueError, "`weight`"),
        ({"weight": -1.0}, ValueError, "`weight`"),
        ({"ratio": 0.0}, ValueError, "`ratio`"),
        ({"momentum": 1.0}, ValueError, "`momentum`"),
        ({"warmup": -2}, ValueError, "`warmup`"),
        ({"reduction": "none"}, ValueError, "`reduction`"),
        ({"schedule": 3}, TypeError, "`schedule`"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, words):
    with pytest.raises(error, match=words):
        ml.combine(F.cross_entropy, quadratic, **kwargs)


def test_bad_callables_and_outputs(batch):
    logits, y = batch
    with pytest.raises(TypeError, match="`surrogate`"):
        CombinedLoss(F.cross_entropy, "accuracy")
    loss = ml.combine(lambda p, t: F.cross_entropy(p, t, reduction="none"), quadratic)
    with pytest.raises(ValueError, match="scalar"):
        loss(logits, y)
    with pytest.raises(RuntimeError, match="process group"):
        ml.combine(F.cross_entropy, quadratic, distributed=True)(logits.requires_grad_(True), y)
