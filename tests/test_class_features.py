"""``class_features``'s own forward and backward (the classification surrogates' cost at C = 1000, issue 13) against a
slow reference: log-softmax over all classes and the runner-up class found by a Python loop. Values, gradients and
second derivatives (the gradient penalty of learning differentiates the gradient), ties, ``-inf`` padded classes, and
the shipped surrogates' losses and gradients unchanged."""

from __future__ import annotations

import pytest
import torch

import metricloss as ml
from metricloss.objectives import gradient_penalty
from metricloss.tasks import classification
from metricloss.tasks.classification import class_features

FEATURE_SETS = [("target_prob",), ("margin",), ("log_target_prob",), ("target_prob", "margin"),
                ("margin", "log_target_prob", "target_prob"), ("logit_margin",),
                ("target_prob", "margin", "logit_margin")]


@pytest.fixture(params=["fused", "composite"])
def path(request, monkeypatch):
    """Both ways ``class_features`` computes its log-probabilities, whatever the size: the custom autograd Function
    (``fused``, from ``FUSED_MIN_LOGITS`` logits on) and the log-softmax formula (``composite``, below)."""
    monkeypatch.setattr(classification, "FUSED_MIN_LOGITS", 0 if request.param == "fused" else 2 ** 62)
    return request.param


def _runner_up_loop(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The first class with the largest logit among the classes other than the target, row by row in Python."""
    rows, targets = logits.detach().reshape(-1, logits.shape[-1]).tolist(), target.reshape(-1).tolist()
    best = []
    for row, y in zip(rows, targets, strict=True):
        others = [(v, c) for c, v in enumerate(row) if c != y]
        top = max(v for v, _ in others)
        best.append(next(c for v, c in others if v == top))
    return torch.tensor(best).view(target.shape)


def reference_features(logits: torch.Tensor, target: torch.Tensor, features: tuple[str, ...]) -> torch.Tensor:
    """The features from the full log-softmax (autograd's own backward) and the loop's runner-up."""
    logp = logits.log_softmax(dim=-1)
    logp_y = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    logp_o = logp.gather(-1, _runner_up_loop(logits, target).unsqueeze(-1)).squeeze(-1)
    out = {"target_prob": logp_y.exp(), "log_target_prob": logp_y.clamp_min(-30.0) / 10,
           "margin": logp_y.exp() - logp_o.exp(), "logit_margin": torch.tanh(logp_y - logp_o)}
    return torch.stack([out[name] for name in features], dim=-1)


def _batch(shape: tuple[int, ...], c: int, seed: int, dtype: torch.dtype = torch.float64, scale: float = 3.0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, c, generator=gen, dtype=dtype) * scale
    return logits, torch.randint(0, c, shape, generator=gen)


def _value_and_grad(fn, logits, target, features, weight):
    z = logits.clone().requires_grad_(True)
    out = fn(z, target, features)
    (grad,) = torch.autograd.grad((out * weight).sum(), z)
    return out.detach(), grad


@pytest.mark.parametrize("features", FEATURE_SETS)
@pytest.mark.parametrize("shape, c, dtype", [((7,), 2, torch.float64), ((16,), 10, torch.float64),
                                             ((3, 5), 37, torch.float64), ((64,), 1000, torch.float32)])
def test_values_and_gradients_match_the_log_softmax_reference(features, shape, c, dtype, path):
    logits, target = _batch(shape, c, seed=c, dtype=dtype)
    weight = torch.randn(*shape, len(features), generator=torch.Generator().manual_seed(1), dtype=dtype)
    out, grad = _value_and_grad(class_features, logits, target, features, weight)
    ref, ref_grad = _value_and_grad(reference_features, logits, target, features, weight)
    tol = {"rtol": 1e-5, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-14}
    assert out.shape == (*shape, len(features))
    torch.testing.assert_close(out, ref, **tol)
    torch.testing.assert_close(grad, ref_grad, **tol)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # gradcheck's own vmap
@pytest.mark.parametrize("features", FEATURE_SETS)
def test_gradcheck_and_gradgradcheck_float64(features, path):
    logits, target = _batch((5,), 8, seed=3, scale=1.0)  # no ties: the runner-up is unique
    logits.requires_grad_(True)
    fn = lambda z: class_features(z, target, features)  # noqa: E731
    # forward mode (the jvp rule) and batched gradients (the vmap rule) too
    assert torch.autograd.gradcheck(fn, (logits,), check_forward_ad=True, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(fn, (logits,), check_fwd_over_rev=True, check_batched_grad=True)


def test_stacked_gradcheck_float64(path):
    logits, target = _batch((2, 3), 6, seed=4, scale=2.0)
    logits.requires_grad_(True)
    fn = lambda z: class_features(z, target, ("target_prob", "margin"))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (logits,)) and torch.autograd.gradgradcheck(fn, (logits,))


def test_torch_func_transforms_give_the_reference_derivatives(path):
    """``torch.func``: per-sample gradients (vmap of grad), forward mode (jvp) and the Hessian (jacfwd of jacrev),
    as the plain formula gave them. The reference reads the loop's runner-up, fixed (no ties here)."""
    logits, target = _batch((6,), 7, seed=9, scale=1.5)
    other = _runner_up_loop(logits, target)
    features = ("target_prob", "margin", "log_target_prob")

    def ref(z, y, o):
        logp = z.log_softmax(dim=-1)
        lp_y, lp_o = logp.gather(-1, y.unsqueeze(-1))[..., 0], logp.gather(-1, o.unsqueeze(-1))[..., 0]
        return torch.stack([lp_y.exp(), lp_y.exp() - lp_o.exp(), lp_y.clamp_min(-30.0) / 10], dim=-1)

    weight = torch.tensor([0.7, -1.3, 2.0], dtype=torch.float64)

    def ours_sample(z, y, o):
        return (class_features(z[None], y[None], features)[0] * weight).sum()

    def ref_sample(z, y, o):
        return (ref(z[None], y[None], o[None])[0] * weight).sum()

    per_sample = torch.func.vmap(torch.func.grad(ours_sample))(logits, target, other)
    torch.testing.assert_close(per_sample, torch.func.vmap(torch.func.grad(ref_sample))(logits, target, other))
    tangent = torch.randn(logits.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    _, jvp = torch.func.jvp(lambda z: class_features(z, target, features), (logits,), (tangent,))
    _, ref_jvp = torch.func.jvp(lambda z: ref(z, target, other), (logits,), (tangent,))
    torch.testing.assert_close(jvp, ref_jvp)
    hessian = torch.func.hessian(ours_sample)(logits[0], target[0], other[0])
    torch.testing.assert_close(hessian, torch.func.hessian(ref_sample)(logits[0], target[0], other[0]))


def test_ties_pick_the_first_class_as_the_reference_does(path):
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0],     # the target (1) ties with class 2 for the arg-max
                           [2.0, 0.0, 2.0, 2.0],     # three others tie for the runner-up: class 0 is first
                           [5.0, 5.0, 5.0, 5.0],     # all equal, target 0: the runner-up is class 1
                           [0.0, 4.0, -1.0, 4.0],    # the arg-max ties, the target (0) is not among them
                           [4.0, 1.0, 1.0, -2.0]],   # the target is the arg-max, the runner-up tie goes to class 1
                          dtype=torch.float64)
    target = torch.tensor([1, 1, 0, 0, 0])
    assert _runner_up_loop(logits, target).tolist() == [2, 0, 1, 1, 1]
    features = ("target_prob", "margin")
    weight = torch.tensor([[0.3, -1.2]], dtype=torch.float64).expand(5, 2)
    out, grad = _value_and_grad(class_features, logits, target, features, weight)
    ref, ref_grad = _value_and_grad(reference_features, logits, target, features, weight)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inf_padded_classes_get_probability_and_gradient_zero(dtype, path):
    logits, target = _batch((6,), 5, seed=5, dtype=dtype)
    padded = torch.cat([logits, torch.full((6, 4), float("-inf"), dtype=dtype)], dim=-1)
    features = ("target_prob", "margin", "log_target_prob")
    weight = torch.randn(6, 3, generator=torch.Generator().manual_seed(2), dtype=dtype)
    out, grad = _value_and_grad(class_features, padded, target, features, weight)
    ref, ref_grad = _value_and_grad(reference_features, logits, target, features, weight)
    tol = {"rtol": 1e-5, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-14}
    torch.testing.assert_close(out, ref, **tol)
    torch.testing.assert_close(grad[:, :5], ref_grad, **tol)
    assert bool((grad[:, 5:] == 0).all()) and bool(torch.isfinite(grad).all())
    # the second derivative (learning's gradient penalty) is finite and zero at the absent classes too
    z = padded.clone().requires_grad_(True)
    (g,) = torch.autograd.grad((class_features(z, target, features) * weight).sum(), z, create_graph=True)
    (gg,) = torch.autograd.grad(g.square().sum(), z)
    assert bool(torch.isfinite(gg).all()) and bool((gg[:, 5:] == 0).all())


def test_a_row_of_one_present_class_is_handled_like_the_reference(path):
    # Not a valid input (C >= 2 present classes), but unvalidated it must not index out of range: the runner-up of a
    # row whose other classes are all -inf is class 0, as max() gives it, with probability 0.
    logits = torch.tensor([[float("-inf"), 1.0, float("-inf")]], dtype=torch.float64)
    out = class_features(logits, torch.tensor([1]), ("target_prob", "margin"))
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0]], dtype=torch.float64))


def test_second_derivatives_match_the_reference(path):
    """What learning computes: the gradient in the logits with ``create_graph=True``, the gradient penalty on it,
    differentiated in the logits and in the net's weights."""
    torch.manual_seed(0)
    net = classification.ClassificationNet(("target_prob", "margin")).double()
    logits, target = _batch((4, 16), 50, seed=6)
    results = []
    for fn in (class_features, reference_features):
        z = logits.clone().requires_grad_(True)
        losses = net.mlp(fn(z, target, net.features)).squeeze(-1).abs().mean(dim=-1)
        (grads,) = torch.autograd.grad(losses.sum(), z, create_graph=True)
        penalty = gradient_penalty(grads)
        results.append((grads.detach(), *torch.autograd.grad(penalty, [z, *net.parameters()])))
    for ours, ref in zip(*results, strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-13)


def test_backward_twice_with_retain_graph_gives_the_same_gradient(monkeypatch):
    monkeypatch.setattr(classification, "FUSED_MIN_LOGITS", 0)  # the Function's backward reuses its buffer once
    logits, target = _batch((8,), 30, seed=7, dtype=torch.float32)
    z = logits.requires_grad_(True)
    out = class_features(z, target, ("target_prob", "margin")).sum()
    out.backward(retain_graph=True)
    first = z.grad.clone()
    out.backward(retain_graph=True)  # the backward reuses its forward's buffer once; later calls recompute it
    torch.testing.assert_close(z.grad, 2 * first)
    (again,) = torch.autograd.grad(out, z, retain_graph=True)
    torch.testing.assert_close(again, first)
    (second,) = torch.autograd.grad(out, z, create_graph=True)  # the differentiable backward, after the others
    torch.testing.assert_close(second.detach(), first)


def test_no_grad_and_inference_mode_give_the_values(path):
    logits, target = _batch((8,), 30, seed=8, dtype=torch.float32)
    ref = reference_features(logits, target, ("target_prob", "margin"))
    with torch.no_grad():
        torch.testing.assert_close(class_features(logits, target, ("target_prob", "margin")), ref)
    with torch.inference_mode():
        torch.testing.assert_close(class_features(logits, target, ("target_prob", "margin")), ref)


@pytest.mark.parametrize("name", ["classification-accuracy", "classification-top5-accuracy",
                                  "classification-macro-f1"])
@pytest.mark.parametrize("b, c", [(32, 10), (64, 100), (256, 1000)])
def test_shipped_surrogates_give_the_reference_losses_and_gradients(name, b, c, monkeypatch):
    """The zoo's cards stay valid: each shipped surrogate that reads these features gives the losses and gradients
    it gives with the reference features (float32, rtol 1e-5), on single batches and on a stack."""
    sur = ml.pretrained(name)
    logits, target = _batch((b,), c, seed=b + c, dtype=torch.float32)
    stack, stack_target = _batch((3, b), c, seed=b + c + 1, dtype=torch.float32)

    def run():
        z = logits.clone().requires_grad_(True)
        loss = sur(z, target)
        (grad,) = torch.autograd.grad(loss, z)
        return loss.detach(), grad, sur.batch_losses(stack, stack_target).detach()

    ours = run()
    monkeypatch.setattr(classification, "class_features", reference_features)
    ref = run()
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(ours[2], ref[2], rtol=1e-5, atol=1e-8)
    # Gradients: elementwise rtol 1e-5 beside an absolute 1e-5 of the largest entry. At the target and runner-up
    # classes the gradient is a difference of two terms near the largest entry's size, so float32 rounds both
    # implementations there at that scale; both are that close to the float64 gradient.
    scale = float(ref[1].abs().max())
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-5, atol=1e-5 * scale)
    sur.double()
    logits, stack = logits.double(), stack.double()
    exact = run()[1]
    for grad in (ours[1], ref[1]):
        assert float((grad - exact).abs().max()) <= 1e-5 * scale


@pytest.mark.parametrize("name", ["classification-accuracy", "classification-top5-accuracy"])
def test_a_surrogate_as_a_loss_computes_no_gradient_for_its_own_weights(name):
    """The weights are frozen for the user (no weight-gradient matmul in their backward), after train() too."""
    sur = ml.pretrained(name)
    sur.train()
    logits, target = _batch((16,), 50, seed=10, dtype=torch.float32)
    logits.requires_grad_(True)
    sur(logits, target).backward()
    assert logits.grad is not None and sur.training
    assert all(not p.requires_grad and p.grad is None for p in sur.parameters())
