"""`Surrogate`: a frozen, drop-in loss module learned for a metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .report import Report
from .tasks.base import Task

__all__ = ["Surrogate"]


class Surrogate(nn.Module):
    """A learned surrogate loss: ``sur(pred, target)`` is a scalar, lower is better, differentiable in ``pred``.

    Its weights are frozen (no parameter requires grad) and it starts in eval mode, so adding it to a
    training loss never updates it. ``report`` holds its measured agreement with the metric beside the
    baseline loss's. Built by :func:`metricloss.learn`, :func:`metricloss.load` or
    :func:`metricloss.pretrained`.

    Example:
        >>> import torch, metricloss as ml
        >>> sur = ml.pretrained("classification-accuracy")
        >>> logits = torch.randn(32, 10, requires_grad=True)
        >>> target = torch.randint(0, 10, (32,))
        >>> loss = sur(logits, target)
        >>> loss.backward()
        >>> logits.grad.shape
        torch.Size([32, 10])
    """

    def __init__(
        self, task: Task, net: nn.Module, net_config: dict[str, Any], report: Report | None = None
    ) -> None:
        super().__init__()
        self.task = task
        self.net = net
        self.net_config = dict(net_config)
        self.report = report
        for param in self.parameters():
            param.grad = None  # no gradient left from learning: an optimizer holding us must not move us
        self.requires_grad_(False)
        self.eval()

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.task.check(pred, target)
        param = next(self.net.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        # Low-precision inputs or autocast (bfloat16 / float16): the surrogate is tiny, so it always runs in its
        # own precision (float16 overflowed in the pose surrogate); gradients flow back through the cast in the
        # caller's dtype.
        with torch.autocast(device_type=pred.device.type, enabled=False):
            return self.net(pred.to(dtype).unsqueeze(0), target.unsqueeze(0)).squeeze(0)

    def batch_losses(self, pred: torch.Tensor, target: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Losses of a stack of batches ``(N, ...)`` -> ``(N,)``, without autograd, in chunks."""
        self.task.check(pred, target, stacked=True)
        with torch.no_grad():
            return torch.cat([self.net(p, t) for p, t in zip(pred.split(chunk), target.split(chunk), strict=True)])

    def train(self, mode: bool = True) -> Surrogate:
        # A surrogate is frozen: it stays in eval mode whatever the surrounding model does.
        return super().train(False)

    def save(self, path: str | Path) -> None:
        """Write weights (safetensors) and metadata (JSON) atomically to ``path``."""
        from .io import save

        save(self, path)

    def extra_repr(self) -> str:
        metric = self.report.metric if self.report else "?"
        return f"task={self.task.name!r}, metric={metric!r}"
