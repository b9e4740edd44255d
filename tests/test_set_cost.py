"""Issue 22, item 5: the set net's faster forward (each set sorted once, phi's last layer after the pooling) computes
what the shipped file computed: the documented formula, evaluated plainly, on the same weights."""

from __future__ import annotations

import pytest
import torch

import metricloss as ml
from metricloss.tasks import set as set_task


def _reference(net: set_task.SetNet, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L = mean over labels of rho(mean_{y=1} phi(f), mean_{y=0} phi(f), pi), with the features in the samples' own
    order (no sort) and phi applied to every sample."""
    if scores.dim() == 2:
        scores, target = scores.unsqueeze(-1), target.unsqueeze(-1)
    losses = []
    for n in range(scores.shape[0]):
        per_label = []
        for label in range(scores.shape[-1]):
            s, y = scores[n, :, label][None], target[n, :, label][None].to(scores.dtype)
            f = set_task.set_features(s, y, net.features, net.temperatures, net.sharpness, net.sign_floor,
                                      net.rank_floor, net.kernel)[0]
            emb = net.phi(f)
            pos = emb[y[0] == 1].mean(0) if bool((y == 1).any()) else emb.new_zeros(emb.shape[-1])
            neg = emb[y[0] == 0].mean(0) if bool((y == 0).any()) else emb.new_zeros(emb.shape[-1])
            per_label.append(net.rho(torch.cat([pos, neg, y.mean().view(1)]))[0])
        losses.append(torch.stack(per_label).mean())
    return torch.stack(losses)


def _cases():
    g = torch.Generator().manual_seed(3)
    task = ml.tasks.get_task("set")
    pred, target = task.random_batches(3, 300, g)
    yield "G_R batches", pred, target
    tied = torch.randint(-2, 3, (2, 64), generator=g).double()  # many ties
    yield "ties", tied, (torch.rand(2, 64, generator=g) < 0.4).double()
    one_class = torch.randn(2, 40, generator=g)
    yield "one class", one_class, torch.stack([torch.ones(40), torch.zeros(40)])
    yield "B = 1", torch.randn(2, 1, generator=g), torch.tensor([[1.0], [0.0]])
    multi = ml.tasks.get_task("set", num_labels=3).random_batches(2, 50, g)
    yield "multi-label", *multi


@pytest.mark.parametrize("name,scores,target", list(_cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_shipped_set_net_matches_the_plain_formula_in_float64(name, scores, target):
    sur = ml.pretrained("set-f1")
    net = set_task.SetNet(**sur.net_config).double()
    net.load_state_dict({k: v.double() for k, v in sur.net.state_dict().items()})
    x = scores.double().clone().requires_grad_(True)
    got = net(x, target)
    (grad,) = torch.autograd.grad(got.sum(), x)
    x_ref = scores.double().clone().requires_grad_(True)
    want = _reference(net, x_ref, target)
    (grad_ref,) = torch.autograd.grad(want.sum(), x_ref)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-8, atol=1e-12)


def test_shipped_set_f1_at_4096_matches_the_plain_formula_in_float32():
    sur = ml.pretrained("set-f1")
    pred, target = ml.tasks.get_task("set").random_batches(1, 4096, torch.Generator().manual_seed(0))
    x = pred[0].clone().requires_grad_(True)
    loss = sur(x, target[0])
    loss.backward()
    x_ref = pred.clone().requires_grad_(True)
    want = _reference(sur.net, x_ref, target)[0]
    want.backward()
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x_ref.grad[0], rtol=1e-3, atol=1e-3 * float(x_ref.grad.abs().max()))


def test_the_order_of_the_samples_does_not_change_the_loss():
    sur = ml.pretrained("set-f1")
    pred, target = ml.tasks.get_task("set").random_batches(1, 500, torch.Generator().manual_seed(1))
    perm = torch.randperm(500, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(sur(pred[0], target[0]), sur(pred[0, perm], target[0, perm]), rtol=1e-5, atol=1e-6)
