r"""The relaxed step :math:`\tilde h` of UniLoss (section 3.4), shared by every anchored loss.

A comparison :math:`c` (a difference of two scores whose sign is a binary variable :math:`b = [c > 0]`) is relaxed
on the :math:`\{0, 1\}` scale as

.. math:: \tilde b = \sigma(c / \tau),

with temperature :math:`\tau` (default 1, the paper's eq. 5). The authors' code relaxes on the :math:`\pm 1` scale
instead, :math:`2\sigma(c) - 1`, with anchors in :math:`\{-1, 1\}^l`. That map is affine (:math:`x \mapsto 2x - 1`),
so it doubles every distance, and inverse-distance weights are invariant to a common scale of the distances: both
choices give the same estimate and the same gradients.
"""

from __future__ import annotations

import torch

from .._checks import check_float_tensor, check_positive

__all__ = ["relax"]


def relax(comparisons: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    r"""Relaxed binary variables :math:`\sigma(c / \tau)` of comparisons :math:`c`, any shape.

    Args:
        comparisons: score differences whose sign is the binary variable, any shape.
        temperature: :math:`\tau > 0`; smaller is closer to the step function.

    Returns:
        A tensor of the same shape with values in :math:`(0, 1)`.

    Example:
        >>> relax(torch.tensor([-2.0, 0.0, 2.0]), temperature=0.5)
        tensor([0.0180, 0.5000, 0.9820])
    """
    comparisons = check_float_tensor(comparisons, "comparisons")
    temperature = check_positive(temperature, "temperature")
    return torch.sigmoid(comparisons / temperature)
