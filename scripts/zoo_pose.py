"""Learn the shipped ``pose-pck`` surrogate and write its model card (``src/metricloss/zoo/pose-pck.*``).

Reproduce with::

    .venv/bin/python scripts/zoo_pose.py              # G_M + G_R (shipped)
    .venv/bin/python scripts/zoo_pose.py --gr-only    # G_R alone

As in the paper, the surrogate is learned on G_M, outputs of a model trained with the baseline loss (here the
small conv net of ``benchmarks/downstream_pose.py``, K = 4 keypoints, 16×16 heatmaps, trained with MSE; its
training-set heatmaps after several epochs), mixed with G_R (σ = 2, batches of 8, library defaults otherwise).
``--gr-only`` learns from G_R alone (K = 8). The card reports rank correlations measured here on 512 fresh G_R
batches and on held-out real outputs: test-set heatmaps of another net (another seed) trained with MSE, taken
at the same epochs. Every number in the card is measured when this script runs.
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
TASK = {"num_keypoints": 8, "heatmap_size": [16, 16], "sigma": 2.0}


def _random_row(sur: ml.Surrogate, seed: int = 777) -> tuple[str, str, dict, dict]:
    task = sur.task
    pred, target = task.random_batches(512, task.default_batch_size, torch.Generator().manual_seed(seed))
    values = task.metrics["pck"].evaluate(pred, target)
    return (f"512 random batches of {task.default_batch_size} (G_R, unseen seed)", task.baseline_name,
            agreement(task.baseline(pred, target), values, True), agreement(sur.batch_losses(pred, target), values,
                                                                            True))


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
    task = ml.tasks.get_task("pose", **{**sur.task.config(), "num_keypoints": ds.K})
    values = task.metrics["pck"].evaluate(pred, target)
    with torch.no_grad():
        ours = sur.net(pred, target)
    return (f"{pred.shape[0]} batches of {b}: test-set heatmaps (K = {ds.K}) of a conv net trained with MSE (seed 0), "
            f"after epochs {', '.join(map(str, EPOCHS))} (benchmarks/downstream_pose.py data)", task.baseline_name,
            agreement(task.baseline(pred, target), values, True), agreement(ours, values, True))


USAGE = """\
import torch, metricloss as ml
from metricloss.tasks import pose  # registers task="pose"
sur = ml.pretrained("pose-pck")                              # K = 4; ml.pretrained("pose-pck", num_keypoints=K)
heatmaps = torch.rand(8, 4, 16, 16, requires_grad=True)     # (B, K, H, W), a model's output
keypoints = torch.tensor([[[3.0, 4.0, 2.0]] * 4] * 8)        # (B, K, 3): x, y in heatmap pixels, visibility
loss = pose.heatmap_mse(heatmaps, keypoints) + sur(heatmaps, keypoints)
loss.backward()
"""
NOTE = """\
The net compares each keypoint's heatmap with its Gaussian target one keypoint at a time, so
`ml.pretrained("pose-pck", num_keypoints=K)` accepts any number of keypoints; it is built for 16×16
heatmaps. The numbers above were measured for the shapes stated with them."""


def main() -> None:
    torch.set_num_threads(2)
    gr_only = "--gr-only" in sys.argv[1:]
    t0 = time.perf_counter()
    if gr_only:
        task = TASK
        outputs = None
        data = "G_R only: "
    else:
        # G_M: training-set heatmaps of a downstream net trained with MSE (seed 1: not the held-out row's net).
        g = torch.Generator().manual_seed(ds.DATA_SEED)
        x_train, k_train = ds.make_data(ds.N_TRAIN, g)
        outputs = [(h, k_train) for h in _mse_checkpoint_heatmaps(x_train, seed=1)]
        task = {**TASK, "num_keypoints": ds.K}
        data = (f"G_M: training-set heatmaps of the downstream conv net (K = {ds.K}) trained with MSE, seed 1, after "
                f"epochs {', '.join(map(str, EPOCHS))}, half of them relabelled (targets at the arg-max, a random "
                "fraction displaced); and G_R: ")
    sur = ml.learn("pck", task="pose", outputs=outputs, seed=0, progress=False, **task)
    seconds = time.perf_counter() - t0
    sur.save(ZOO / f"{NAME}.safetensors")
    rows = [_random_row(sur), _model_output_row(sur)]
    command = "python scripts/zoo_pose.py" + (" --gr-only" if gr_only else "")
    write_card(NAME, sur, seconds, rows,
               data + "random heatmaps around the target keypoints, peaks displaced by random amounts (so PCK "
               "spreads over [0, 1]), with random widths, amplitudes, background, pixel noise, extra peaks and "
               f"unlabelled keypoints (see `metricloss.tasks.pose`); net `{sur.net_config}`.",
               command=command, usage=USAGE, note=NOTE)


if __name__ == "__main__":
    main()
