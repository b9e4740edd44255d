"""Small training helpers used by the demo and the benchmarks: models, a fit loop with checkpoints, outputs.

They are deliberately plain PyTorch, so a user can read exactly how a surrogate enters a training step::

    loss = F.cross_entropy(logits, y) + sur(logits, y)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LossFn", "checkpoint_steps", "fit", "mlp", "predict", "small_cnn"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mlp(in_features: int, num_classes: int, hidden: int = 128) -> nn.Module:
    """A two-layer ReLU perceptron over flattened inputs."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def small_cnn(in_channels: int = 3, num_classes: int = 10, width: int = 32) -> nn.Module:
    """A small conv net for 32x32 inputs (three conv blocks, global pooling, linear head)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(4 * width, num_classes),
    )


def checkpoint_steps(total: int, count: int) -> list[int]:
    """About ``count`` step numbers in ``[0, total]``, spaced geometrically (dense early, when accuracy moves)."""
    if total < 1 or count < 1:
        return [0]
    raw = torch.logspace(0, torch.log10(torch.tensor(float(total))), count).round().long().tolist()
    return sorted({0, *raw, total})


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Model outputs for ``x`` in eval mode, in chunks."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(part) for part in x.split(chunk)])
    model.train(was_training)
    return out


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn = F.cross_entropy,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    checkpoints: list[int] | None = None,
    on_checkpoint: Callable[[int, nn.Module], None] | None = None,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> nn.Module:
    """Train ``model`` with Adam on ``loss_fn(model(x_batch), y_batch)``.

    Args:
        checkpoints: global step numbers (0 = before training) at which ``on_checkpoint(step, model)`` runs.
        on_epoch: called after every epoch with the epoch number (1-based), e.g. to refresh a surrogate on
            the current model's outputs (alternate training).
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    marks = set(checkpoints or [])
    step = 0
    if 0 in marks and on_checkpoint is not None:
        on_checkpoint(0, model)
    model.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(x.shape[0], generator=gen)
        for idx in order.split(batch_size):
            if len(idx) < 2:
                continue
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step in marks and on_checkpoint is not None:
                on_checkpoint(step, model)
        if on_epoch is not None:
            on_epoch(epoch, model)
    return model
