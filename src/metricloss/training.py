"""Small training helpers used by the demo and the benchmarks: models, a fit loop with checkpoints, outputs.

They are deliberately plain PyTorch, so a user can read exactly how a surrogate enters a training step::

    loss = F.cross_entropy(logits, y) + sur(logits, y)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .learn import learn

__all__ = ["LossFn", "SurrogateRefresher", "checkpoint_steps", "fit", "mlp", "predict", "small_cnn"]

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


class SurrogateRefresher:
    """Alternate training (ReLoss, Table 11): after every epoch, continue learning the surrogate on the current
    model's outputs, so it stays accurate where the model now is.

    Use it as the ``on_epoch`` callback of :func:`fit` and call the refresher itself as the loss::

        refresher = SurrogateRefresher(sur, "accuracy", x_train, y_train, steps=50)
        fit(model, x, y, lambda z, t: F.cross_entropy(z, t) + refresher(z, t), on_epoch=refresher.on_epoch)

    Args:
        surrogate: the surrogate to start from (it is replaced, never modified in place).
        metric: the metric it was learned for (name, callable or torchmetrics object).
        x, y: data whose model outputs feed the refresh (G_M).
        steps: learning steps per refresh; ``batches``: bootstrap batches of the current outputs per refresh
            (a quarter is held out for validation); ``learn_kwargs`` go to :func:`metricloss.learn`.
    """

    def __init__(self, surrogate, metric, x: torch.Tensor, y: torch.Tensor, steps: int = 50, batches: int = 64,
                 **learn_kwargs):
        self.surrogate = surrogate
        self.batches = batches
        self.batch_size = learn_kwargs.get("batch_size", surrogate.task.default_batch_size)
        self.metric = metric
        self.x, self.y = x, y
        self.steps = steps
        self.learn_kwargs = {"progress": False, "gradient_probe": 0, **learn_kwargs}
        self.refreshes = 0

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.surrogate(pred, target)

    def on_epoch(self, epoch: int, model: nn.Module) -> None:
        # Bootstrap the current outputs into many batches, so held-out validation has more than a couple.
        logits = predict(model, self.x)
        gen = torch.Generator().manual_seed(epoch)
        idx = torch.randint(0, self.y.shape[0], (self.batches * self.batch_size,), generator=gen)
        outputs = [(logits[idx], self.y[idx])]
        task = self.surrogate.task
        self.surrogate = learn(self.metric, task.name, outputs=outputs, init=self.surrogate, steps=self.steps,
                               seed=epoch, **{**task.config(), **self.learn_kwargs})
        self.refreshes += 1
