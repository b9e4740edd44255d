"""Learn the shipped ``pose-pck`` surrogate and write its model card (``src/metricloss/zoo/pose-pck.*``).

Reproduce with::

    .venv/bin/python scripts/zoo_pose.py

The surrogate is the size-agnostic default net (``kind="features"``: resolution-independent features of each
heatmap about its target keypoint, one per-keypoint MLP), learned with default settings from G_R at COCO's size,
K = 17 keypoints on 64×48 heatmaps (σ = 2, batches of 8). The card reports rank correlations measured when this
script runs: on fresh G_R batches at 16×16 with K = 4, 64×48 and 96×72 with K = 17 (the sizes it was checked at),
side by side with the heatmap MSE on the same batches, and on held-out real outputs at 16×16 (test-set heatmaps of
the small conv net of ``benchmarks/downstream_pose.py``, K = 4, trained with MSE, at several epochs). The shipped
file before this one (kind ``"embedding"``, 16×16 only) is kept as ``tests/data/pose-v1/pose-pck-embedding.*``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

import metricloss as ml
from metricloss.evaluation import agreement
from metricloss.tasks import pose

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import downstream_pose as ds
from make_zoo import ZOO, write_card

NAME = "pose-pck"
EPOCHS = (1, 2, 4, 8)
TASK = {"num_keypoints": 17, "heatmap_size": [64, 48], "sigma": 2.0}
#: The sizes of the G_R rows of the card: (K, (H, W), batches).
CHECKED = ((4, (16, 16), 512), (17, (64, 48), 256), (17, (96, 72), 256))
CHUNK = 32


def _random_row(sur: ml.Surrogate, k: int, size: tuple[int, int], n: int, seed: int = 777) -> tuple[str, str, dict,
                                                                                                      dict]:
    """``n`` fresh G_R batches of 8 at ``k`` keypoints and ``size``, drawn and measured in chunks (bounded memory)."""
    task = pose.PoseTask(k, size)
    g = torch.Generator().manual_seed(seed)
    values, base, ours = [], [], []
    for _ in range(0, n, CHUNK):
        pred, target = task.random_batches(CHUNK, task.default_batch_size, g)
        values.append(task.metrics["pck"].evaluate(pred, target))
        base.append(task.baseline(pred, target))
        with torch.no_grad():
            ours.append(sur.batch_losses(pred, target))
    values_t = torch.cat(values)
    return (f"{n} random batches of {task.default_batch_size} (G_R, unseen seed), K = {k}, {size[0]}×{size[1]}",
            task.baseline_name, agreement(torch.cat(base), values_t, True), agreement(torch.cat(ours), values_t, True))


def _mse_checkpoint_heatmaps(images: torch.Tensor, seed: int, epochs: tuple[int, ...] = EPOCHS) -> list[torch.Tensor]:
    """Heatmaps of ``images`` by the downstream conv net trained with MSE (seed ``seed``) after each of ``epochs``."""
    g = torch.Generator().manual_seed(ds.DATA_SEED)
    x_train, k_train = ds.make_data(ds.N_TRAIN, g)
    torch.manual_seed(seed)
    net = ds.make_net()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    order = torch.Generator().manual_seed(seed)
    heat = []
    for epoch in range(1, max(epochs) + 1):
        for idx in torch.randperm(x_train.shape[0], generator=order).split(32):
            loss = pose.heatmap_mse(net(x_train[idx]), k_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if epoch in epochs:
            with torch.no_grad():
                heat.append(torch.cat([net(x) for x in images.split(256)]))
    return heat


def _model_output_row(sur: ml.Surrogate) -> tuple[str, str, dict, dict]:
    """Test-set heatmaps of a downstream net (seed 0) trained with MSE, at checkpoints, in batches of 8."""
    g = torch.Generator().manual_seed(ds.DATA_SEED)
    ds.make_data(ds.N_TRAIN, g)  # the test set follows the training set in the data stream
    x_test, k_test = ds.make_data(ds.N_TEST, g)
    heat = _mse_checkpoint_heatmaps(x_test, seed=0)
    b = 8
    n = x_test.shape[0] // b
    pred = torch.cat([h[: n * b].reshape(n, b, *h.shape[1:]) for h in heat])
    target = k_test[: n * b].reshape(n, b, *k_test.shape[1:]).repeat(len(heat), 1, 1, 1)
    task = pose.PoseTask(ds.K, (ds.HEATMAP, ds.HEATMAP))
    values = task.metrics["pck"].evaluate(pred, target)
    with torch.no_grad():
        ours = sur.net(pred, target)
    return (f"{pred.shape[0]} batches of {b}: test-set heatmaps (K = {ds.K}) of a conv net trained with MSE (seed 0), "
            f"after epochs {', '.join(map(str, EPOCHS))} (benchmarks/downstream_pose.py data)", task.baseline_name,
            agreement(task.baseline(pred, target), values, True), agreement(ours, values, True))


USAGE = """\
import torch, metricloss as ml
from metricloss.tasks import pose  # registers task="pose"
sur = ml.pretrained("pose-pck")                               # any K, any heatmap size
heatmaps = torch.rand(8, 17, 64, 48, requires_grad=True)     # (B, K, H, W), a model's output
keypoints = torch.tensor([[[30.0, 20.0, 2.0]] * 17] * 8)      # (B, K, 3): x, y in heatmap pixels, visibility
loss = pose.heatmap_mse(heatmaps, keypoints) + sur(heatmaps, keypoints)
loss.backward()
"""
NOTE = """\
The net reads resolution-independent features of each heatmap about its target keypoint (lengths in units of
max(H, W), values relative to the heatmap's mean and maximum; heatmaps above 32 pixels a side are average-pooled to
about 32 first) and averages a per-keypoint loss over the labelled keypoints, so it serves any number of keypoints
and any heatmap size without re-targeting. The numbers above were measured at the sizes stated with them."""


def main() -> None:
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    sur = ml.learn("pck", task="pose", seed=0, progress=False, **TASK)
    seconds = time.perf_counter() - t0
    sur.save(ZOO / f"{NAME}.safetensors")
    rows = [_random_row(sur, k, size, n) for k, size, n in CHECKED] + [_model_output_row(sur)]
    write_card(NAME, sur, seconds, rows,
               "G_R only, at K = 17 and 64×48: random heatmaps around the target keypoints, peaks displaced by random "
               "amounts (so PCK spreads over [0, 1]), with random widths (up to those of a 32-pixel heatmap "
               "upsampled), amplitudes, background, pixel noise, extra peaks and unlabelled keypoints (see "
               f"`metricloss.tasks.pose`); library defaults; net `{sur.net_config}`.",
               command="python scripts/zoo_pose.py", usage=USAGE, note=NOTE)


if __name__ == "__main__":
    main()
