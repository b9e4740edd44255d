r"""Adaptive anchors of UniLoss (section 3.5): where the metric :math:`g` is evaluated exactly.

For a batch whose hard configuration is :math:`h = [c > 0] \in \{0, 1\}^l`, the anchors are, in this order:

- the **best** anchor :math:`\mathbf 1` (every comparison correct: the configuration of the ground truth, since
  refactorings orient each comparison so that positive means "as the ground truth wants");
- ``num_good`` **good** anchors: :math:`\mathbf 1` with ``good_flips`` random bits set to 0;
- ``num_bad`` **bad** anchors: uniformly random configurations (each bit 0 or 1 with probability 1/2);
- ``num_nearby`` **nearby** anchors: :math:`h` with ``nearby_flips`` of its 0-bits set to 1 (flipped toward the
  best anchor); a refactoring may replace this rule (PCK flips every bit of one pixel).

Flipped positions are drawn with replacement, so when two draws coincide fewer bits flip. The paper and the
authors' code use 16 anchors of each random kind. (Training a random fraction of the variables draws the
anchors in the subspace of the selected ones: see :func:`~metricloss.uniloss.draw_anchors`.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._checks import check_tensor

__all__ = ["AnchorSet", "flip_toward_best", "random_bits", "sample_anchors"]

#: ``nearby(hard, count, generator) -> (count, n)`` bool anchors near the hard configuration.
NearbyFn = Callable[[torch.Tensor, int, "torch.Generator | None"], torch.Tensor]


@dataclass
class AnchorSet:
    """Anchors of one batch and their exact metric values.

    Attributes:
        bits: anchor configurations ``(A, n)`` bool; with ``selected``, only the selected variables,
            ``(A, selected.sum())`` (the others equal the hard configuration in every anchor).
        values: :math:`g` at each anchor, ``(A,)`` float64.
        best_value: :math:`g(\\mathbf 1)`, the all-correct value the loss is measured from.
        selected: ``(n,)`` bool mask of the variables that are relaxed (``None``: all of them).
    """

    bits: torch.Tensor
    values: torch.Tensor
    best_value: float
    selected: torch.Tensor | None = None


def _positions(pool: torch.Tensor, rows: int, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """``(rows, k)`` indices drawn uniformly with replacement from the index tensor ``pool`` (non-empty)."""
    pick = torch.randint(0, pool.numel(), (rows, k), generator=generator, device=pool.device)
    return pool[pick]


def random_bits(rows: int, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
                ) -> torch.Tensor:
    """``(rows, n)`` independent fair random bits (bool), unpacked from random bytes (8 bits per draw).

    Example:
        >>> random_bits(2, 5, torch.Generator().manual_seed(0)).shape
        torch.Size([2, 5])
    """
    nbytes = (n + 7) // 8
    raw = torch.randint(0, 256, (rows, nbytes, 1), generator=generator, device=device, dtype=torch.uint8)
    weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=device)
    return (raw & weights).ne(0).view(rows, nbytes * 8)[:, :n]


def flip_toward_best(
    hard: torch.Tensor, count: int, flips: int = 1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``count`` copies of ``hard`` ``(n,)`` with ``flips`` of its 0-bits (drawn with replacement) set to 1.

    If ``hard`` has no 0-bit (it is the best configuration) the copies are unchanged.

    Example:
        >>> flip_toward_best(torch.tensor([True, False, True]), 2)
        tensor([[True, True, True],
                [True, True, True]])
    """
    out = hard.unsqueeze(0).repeat(count, 1)
    zeros = (~hard).nonzero().squeeze(-1)
    if count == 0 or zeros.numel() == 0:
        return out
    pos = _positions(zeros, count, flips, generator)
    out.scatter_(1, pos, True)
    return out


def sample_anchors(
    hard: torch.Tensor,
    *,
    num_good: int = 16, num_bad: int = 16, num_nearby: int = 16,  # anchors of each kind
    good_flips: int = 1, nearby_flips: int = 1,  # bits flipped in each good / nearby anchor
    nearby: NearbyFn | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Anchors ``(1 + num_good + num_bad + num_nearby, n)`` bool for the hard configuration ``hard`` ``(n,)``.

    Args:
        hard: current hard configuration :math:`[c > 0]`, bool ``(n,)``.
        num_good, num_bad, num_nearby: anchors of each kind.
        good_flips: bits set to 0 in each good anchor.
        nearby_flips: 0-bits of ``hard`` set to 1 in each nearby anchor (default rule).
        nearby: optional rule ``nearby(hard, count, generator) -> (count, n)`` replacing the default one.
        generator: random source (on ``hard``'s device); ``None`` uses the global one.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> a = sample_anchors(torch.tensor([True, False, False]), num_good=2, num_bad=2, num_nearby=2, generator=g)
        >>> a.shape, bool(a[0].all())
        (torch.Size([7, 3]), True)
    """
    hard = check_tensor(hard, "hard")
    if hard.dtype != torch.bool or hard.dim() != 1:
        raise ValueError(f"`hard` must be a 1-d bool tensor, got dtype {hard.dtype} and shape {tuple(hard.shape)}")
    n = hard.shape[0]
    dev = hard.device
    best = torch.ones(1, n, dtype=torch.bool, device=dev)
    good = torch.ones(num_good, n, dtype=torch.bool, device=dev)
    if num_good and n:
        good.scatter_(1, _positions(torch.arange(n, device=dev), num_good, good_flips, generator), False)
    bad = random_bits(num_bad, n, generator, dev)
    if nearby is None:
        near = flip_toward_best(hard, num_nearby, nearby_flips, generator)
    else:
        near = nearby(hard, num_nearby, generator)
        if near.shape != (num_nearby, n) or near.dtype != torch.bool:
            raise ValueError(
                f"the nearby-anchor rule must return a bool tensor of shape ({num_nearby}, {n}), got "
                f"{near.dtype} {tuple(near.shape)}"
            )
    return torch.cat([best, good, bad, near])
