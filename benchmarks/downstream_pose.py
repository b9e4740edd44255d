"""Downstream: keypoint localisation on synthetic images, trained with MSE vs MSE + the shipped PCK surrogate.

Images are 32×32 grey-level pictures of K = 4 shapes (disc, ring, cross, square outline: keypoint k is the
centre of shape k) at random positions, with two distracting dots, a random brightness gradient and pixel
noise; 15 % of the keypoints are marked unlabelled (COCO v = 0). Everything is generated from a seeded
``torch.Generator`` (no download). A small fully convolutional net (4 conv layers, stride 2) predicts K
heatmaps of 16×16; the targets are the keypoints in heatmap pixels.

Each seed trains the same net from the same initialisation twice, with

- ``MSE``: :func:`metricloss.tasks.pose.heatmap_mse` (Gaussian targets, σ = 2 px, labelled keypoints only);
- ``MSE + surrogate``: the same plus ``weight`` × the shipped ``pose-pck`` surrogate
  (``metricloss.pretrained("pose-pck", num_keypoints=4)``: its net is per keypoint, so it accepts any K),

and reports test-set PCK@0.05 (of the 16-pixel heatmap: the arg-max must be the nearest pixel), PCKh@0.5
and the MSE, mean ± std over 3 seeds. Reproduce with::

    .venv/bin/python benchmarks/downstream_pose.py            # 3 seeds, 5 epochs: 4.3 min measured on 2 shared cores

Options: ``--seeds N``, ``--epochs N``, ``--weight W``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import metricloss as ml
from metricloss.metrics.pose import percentage_correct_keypoints, percentage_correct_keypoints_head
from metricloss.tasks.pose import heatmap_mse

K = 4
IMAGE = 32
HEATMAP = 16
N_TRAIN, N_TEST = 1536, 512
DATA_SEED = 1234


def _shape(k: int, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Intensity of shape ``k`` at offsets ``(dx, dy)`` from its centre (smooth edges)."""
    d = (dx.square() + dy.square()).sqrt()
    if k == 0:  # filled disc
        return torch.sigmoid((2.5 - d) * 3)
    if k == 1:  # ring
        return torch.exp(-(d - 3).square() / 0.5)
    if k == 2:  # cross
        arm = torch.sigmoid((3.5 - torch.maximum(dx.abs(), dy.abs())) * 3)
        return arm * torch.maximum(torch.exp(-dx.square() / 0.6), torch.exp(-dy.square() / 0.6))
    return torch.exp(-(torch.maximum(dx.abs(), dy.abs()) - 3).square() / 0.5)  # square outline


def make_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images ``(n, 1, 32, 32)`` and keypoints ``(n, K, 3)`` in heatmap pixels (x, y, visibility)."""
    g = generator
    grid = torch.arange(IMAGE, dtype=torch.float32)
    xy = 4 + torch.rand(n, K, 2, generator=g) * (IMAGE - 9)  # image pixels, centres at integers
    img = torch.zeros(n, IMAGE, IMAGE)
    for k in range(K):
        dx = grid.view(1, 1, -1) - xy[:, k, 0].view(-1, 1, 1)
        dy = grid.view(1, -1, 1) - xy[:, k, 1].view(-1, 1, 1)
        img = img + (0.6 + 0.4 * torch.rand(n, 1, 1, generator=g)) * _shape(k, dx, dy)
    for _ in range(2):  # distracting dots
        c = torch.rand(n, 2, 1, 1, generator=g) * (IMAGE - 1)
        dd = (grid.view(1, 1, -1) - c[:, 0]).square() + (grid.view(1, -1, 1) - c[:, 1]).square()
        img = img + (0.4 + 0.6 * torch.rand(n, 1, 1, generator=g)) * torch.exp(-dd / 2.0)
    slope = torch.randn(n, 2, 1, 1, generator=g) * 0.02
    img = img + slope[:, 0] * grid.view(1, 1, -1) + slope[:, 1] * grid.view(1, -1, 1)
    img = img + 0.3 * torch.randn(n, IMAGE, IMAGE, generator=g)
    vis = torch.where(torch.rand(n, K, generator=g) < 0.15, 0.0, 2.0)
    # image pixel centre x maps to heatmap coordinate (x - 0.5) / 2 (heatmap pixel u covers 2u, 2u + 1)
    heat_xy = (xy - 0.5) / (IMAGE // HEATMAP)
    keypoints = torch.cat([heat_xy * (vis > 0).unsqueeze(-1), vis.unsqueeze(-1)], dim=-1)
    return img.unsqueeze(1), keypoints


def make_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=2, dilation=2), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, K, 1),
    )


def evaluate(net: nn.Module, images: torch.Tensor, keypoints: torch.Tensor) -> dict[str, float]:
    net.eval()
    with torch.no_grad():
        heat = torch.cat([net(x) for x in images.split(256)])
    net.train()
    return {"pck": float(percentage_correct_keypoints(heat, keypoints, 0.05)),
            "pckh": float(percentage_correct_keypoints_head(heat, keypoints, 0.5)),
            "mse": float(heatmap_mse(heat, keypoints))}


def train(seed: int, data: tuple, surrogate: ml.Surrogate | None, weight: float, epochs: int,
          batch_size: int = 32, lr: float = 2e-3) -> dict[str, float]:
    x_train, k_train, x_test, k_test = data
    torch.manual_seed(seed)
    net = make_net()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(x_train.shape[0], generator=order).split(batch_size):
            heat = net(x_train[idx])
            loss = heatmap_mse(heat, k_train[idx])
            if surrogate is not None:
                loss = loss + weight * surrogate(heat, k_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return evaluate(net, x_test, k_test)


#: Epochs after which :func:`checkpoint_heatmaps` records the net's heatmaps (the zoo's G_M and held-out outputs).
CHECKPOINT_EPOCHS = (1, 2, 4, 8)


def checkpoint_heatmaps(images: torch.Tensor, seed: int,
                        epochs: tuple[int, ...] = CHECKPOINT_EPOCHS) -> list[torch.Tensor]:
    """Heatmaps of ``images`` by the net trained with MSE alone (seed ``seed``) after each of ``epochs``."""
    x_train, k_train = make_data(N_TRAIN, torch.Generator().manual_seed(DATA_SEED))
    torch.manual_seed(seed)
    net = make_net()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    order = torch.Generator().manual_seed(seed)
    heat = []
    for epoch in range(1, max(epochs) + 1):
        for idx in torch.randperm(x_train.shape[0], generator=order).split(32):
            loss = heatmap_mse(net(x_train[idx]), k_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if epoch in epochs:
            with torch.no_grad():
                heat.append(torch.cat([net(x) for x in images.split(256)]))
    return heat


def _fmt(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--weight", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(DATA_SEED)
    data = (*make_data(N_TRAIN, g), *make_data(N_TEST, g))
    sur = ml.pretrained("pose-pck", num_keypoints=K)
    results: dict[str, list[dict[str, float]]] = {"MSE": [], f"MSE + {args.weight:g} × surrogate": []}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        for (name, runs), s in zip(results.items(), (None, sur), strict=True):
            runs.append(train(seed, data, s, args.weight, args.epochs))
            print(f"seed {seed} {name}: {runs[-1]}", flush=True)
    minutes = (time.perf_counter() - t0) / 60
    print(f"\n{args.seeds} seeds, {args.epochs} epochs of {N_TRAIN} images, test set of {N_TEST}; "
          f"{minutes:.1f} min on {torch.get_num_threads()} threads (shared machine)\n")
    print("| training loss | test PCK@0.05 | test PCKh@0.5 | test MSE |")
    print("| --- | --- | --- | --- |")
    for name, runs in results.items():
        cols = [_fmt([r[m] for r in runs]) for m in ("pck", "pckh", "mse")]
        print(f"| {name} | {' | '.join(cols)} |")


if __name__ == "__main__":
    main()
