"""Building blocks shared by the task families' surrogate networks."""

from __future__ import annotations

from torch import nn

__all__ = ["mlp"]


def mlp(width: int, hidden: int, depth: int, out: int) -> nn.Sequential:
    """``depth`` hidden layers of ``hidden`` units with ELU activations, then a linear map to ``out`` features.

    Example:
        >>> net = mlp(3, 8, 2, 1)
        >>> [type(m).__name__ for m in net]
        ['Linear', 'ELU', 'Linear', 'ELU', 'Linear']
    """
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ELU()]
        width = hidden
    layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers)
