"""The pose surrogate at every size: the default net (``kind="features"``) serves any K and heatmap size, its
losses obey the scaling law of resolution-independent features, files saved before it existed load and give the
values they gave, and sizes a surrogate cannot serve get errors that name the fix."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import metricloss as ml
from metricloss.tasks import pose
from metricloss.tasks.pose import PoseTask, gaussian_heatmaps

DATA = Path(__file__).parent / "data" / "pose-v1"  # written by metricloss at dbf06ea (before kind="features")
SIZES = [(4, (16, 16)), (17, (64, 48)), (17, (96, 72)), (5, (33, 20))]


@pytest.fixture(scope="module")
def net() -> pose.PoseNet:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return PoseTask(4, (16, 16)).build_net(**PoseTask(4, (16, 16)).default_net_config())


@pytest.mark.parametrize(("k", "size"), SIZES)
def test_default_net_serves_any_k_and_size_with_finite_gradients(net, k, size):
    task = PoseTask(k, size)
    pred, target = task.random_batches(3, 2, torch.Generator().manual_seed(k))
    x = pred.clone().requires_grad_(True)
    losses = net(x, target)
    assert losses.shape == (3,) and torch.isfinite(losses).all()
    losses.sum().backward()
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0
    # a frozen surrogate built at 16x16, K = 4 takes these shapes through its public call
    sur = ml.Surrogate(PoseTask(4, (16, 16)), net, {"kind": "features"})
    one = sur(pred[0], target[0])
    torch.testing.assert_close(one, losses[0].detach())


def _scene(scale: float, sigma: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps of one keypoint configuration drawn at 32x24 pixels times ``scale`` (peaks, widths, offsets and
    a second peak all scaled), with the targets."""
    g = torch.Generator().manual_seed(5)
    h, w = int(32 * scale), int(24 * scale)
    n, b, k = 6, 4, 3
    xy = (torch.rand(n, b, k, 2, generator=g) * torch.tensor([22.0, 30.0]) + 1.0)  # in 32x24 pixels
    offset = torch.randn(n, b, k, 2, generator=g) * torch.linspace(0.2, 4.0, n).view(n, 1, 1, 1)
    extra = torch.rand(n, b, k, 2, generator=g) * torch.tensor([22.0, 30.0]) + 1.0
    vis = torch.full((n, b, k, 1), 2.0)
    # pixel centres at integers: a point at p (small pixels) is at (p + 0.5) * scale - 0.5 (large pixels)
    to_large = lambda p: (p + 0.5) * scale - 0.5  # noqa: E731
    peak = gaussian_heatmaps(torch.cat([to_large(xy + offset), vis], -1), (h, w), sigma * scale)
    other = gaussian_heatmaps(torch.cat([to_large(extra), vis], -1), (h, w), sigma * scale)
    return peak + 0.6 * other, torch.cat([to_large(xy), vis], -1)


@pytest.fixture(scope="module", params=["initial", "shipped"])
def any_net(request, net) -> pose.PoseNet:
    return net if request.param == "initial" else ml.pretrained("pose-pck").net


def test_same_configuration_at_a_larger_size_gives_close_losses(any_net):
    """The scaling law of resolution-independent features: the same scene drawn at 2x and 3x the pixels gives
    losses within a small fraction of their spread across scenes (a net reading pixel distances would not); for a
    freshly initialised net and for the shipped one."""
    net = any_net
    small = net(*_scene(1.0))
    spread = float(small.max() - small.min())
    assert spread > 0.02  # the scenes differ, so the law has something to hold
    for scale in (2.0, 3.0):
        large = net(*_scene(scale))
        assert float((large - small).abs().max()) < 0.1 * spread, scale
    # the counter-check: the features move when only the pixel count changes but the scene does not scale
    pred, target = _scene(1.0)
    wider = torch.nn.functional.pad(pred, (0, 24, 0, 32))  # the same peaks on a canvas twice as large
    assert float((net(wider, target) - small).abs().max()) > 0.1 * spread


def test_old_files_load_and_give_the_same_values():
    expected = load_file(DATA / "expected.safetensors")
    for kind in ("embedding", "weighted"):
        name = "pose-pck-embedding" if kind == "embedding" else "pose-weighted"
        sur = ml.load(DATA / f"{name}.safetensors")
        assert sur.net.kind == kind and sur.task.heatmap_size == (16, 16)
        torch.testing.assert_close(sur.batch_losses(expected["pred"], expected["target"]), expected[kind],
                                   rtol=1e-6, atol=1e-6)
        with pytest.raises(ValueError, match=r"built for heatmaps of size \(16, 16\), got \(64, 48\); learn one with "
                           r"heatmap_size=\(64, 48\), or use a surrogate of kind 'features'.*pose-pck"):
            sur(torch.rand(2, 17, 64, 48), torch.zeros(2, 17, 3))


def test_a_stored_config_without_kind_rebuilds_the_old_default():
    task = PoseTask(2, (8, 8))
    config = task.stored_net_config({"hidden": 4})
    assert config["kind"] == "embedding" and isinstance(task.build_net(**config).encoder, torch.nn.Sequential)
    assert task.stored_net_config({"kind": "features"})["kind"] == "features"
    assert task.default_net_config()["kind"] == "features"


def test_default_batches_per_step_follows_the_heatmap_pixels():
    assert PoseTask(4, (16, 16)).default_batches_per_step == 128  # the paper's N, as before
    per_batch = 8 * 17 * 64 * 48
    assert PoseTask(17, (64, 48)).default_batches_per_step == max(16, pose.STEP_ELEMENTS // per_batch) == 16
    assert PoseTask(17, (96, 72)).default_batches_per_step == 16


def test_learn_at_one_size_serves_another():
    """Learned at 16x16 with K = 3, the surrogate ranks batches at 48x48 with K = 5 above chance."""
    sur = ml.learn("pck", task="pose", num_keypoints=3, heatmap_size=(16, 16), steps=40, batches_per_step=32,
                   pool_size=128, validation_batches=32, eval_every=10, progress=False, gradient_probe=0)
    task = PoseTask(5, (48, 48))
    pred, target = task.random_batches(64, 8, torch.Generator().manual_seed(2))
    values = task.metrics["pck"].evaluate(pred, target)
    rho = float(ml.ranking.spearman(-sur.batch_losses(pred, target).double(), values))
    assert rho > 0.5 and math.isfinite(rho)


def test_default_net_gradient_does_not_grow_with_the_heatmap_scale():
    """Without the log1p squash the default net's gradient stays bounded: its features do not change when the
    heatmaps are scaled, so the gradient shrinks as 1 / scale."""
    task = PoseTask(3, (64, 48))
    with torch.random.fork_rng():
        torch.manual_seed(1)
        net = task.build_net(**task.default_net_config())
    assert net.squash is False
    pred, target = task.random_batches(2, 2, torch.Generator().manual_seed(0))
    norms, losses = [], []
    for scale in (1.0, 1e2, 1e4):
        x = (pred * scale).requires_grad_(True)
        loss = net(x, target)
        loss.sum().backward()
        norms.append(float(x.grad.norm()))
        losses.append(loss.detach())
    assert norms[1] < norms[0] and norms[2] < norms[1]
    torch.testing.assert_close(losses[2], losses[0], rtol=1e-3, atol=1e-4)
