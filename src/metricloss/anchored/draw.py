r"""The anchors of one batch: where its metric is evaluated exactly (:func:`draw_anchors`), and the flat vector of
comparisons they are drawn in (:func:`anchored_comparisons`). See :mod:`~metricloss.anchored.anchors` for the kinds of
anchors.
"""

from __future__ import annotations

from typing import Any

import torch

from .anchors import AnchorSet, sample_anchors
from .refactorings import Refactoring

__all__ = ["anchored_comparisons", "draw_anchors"]


def draw_anchors(
    refactoring: Refactoring,
    comparisons: torch.Tensor,
    context: Any,
    *,
    fraction: float = 1.0,
    generator: torch.Generator | None = None,
    validate: bool = True,
    **counts: int,
) -> AnchorSet:
    """Anchors around the hard configuration of ``comparisons`` and their exact values, by one call of ``g``.

    Args:
        refactoring: supplies ``g`` (:meth:`~Refactoring.evaluate`) and the nearby-anchor rule.
        comparisons, context: what :meth:`~Refactoring.compare` returned for the batch.
        fraction: share of the variables relaxed at this call, drawn at random. The anchors are then drawn in
            the subspace of the selected variables (the best anchor sets those to 1, nearby ones flip those, ...);
            ``g`` is evaluated on full configurations that equal the hard one elsewhere.
        generator: random source on ``comparisons``' device.
        validate: check that ``g`` returned finite values (a check that synchronises with the device).
        **counts: ``num_good``, ``num_bad``, ``num_nearby``, ``good_flips``, ``nearby_flips`` of
            :func:`~metricloss.anchored.sample_anchors` (defaults 16, 16, 16, 1, 1).

    Example:
        >>> from metricloss.uniloss import Accuracy
        >>> ref = Accuracy()
        >>> c, ctx = ref.compare(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
        >>> a = draw_anchors(ref, c, ctx, generator=torch.Generator().manual_seed(0))
        >>> a.bits.shape, a.values[0].item(), a.best_value
        (torch.Size([49, 2]), 1.0, 1.0)
    """
    flat = comparisons.detach().reshape(-1)
    hard = flat > 0
    n = hard.numel()
    selected = None
    if fraction < 1.0:
        selected = torch.rand(n, generator=generator, device=flat.device) < fraction
    nearby = None
    if type(refactoring).nearby is not Refactoring.nearby:
        def nearby(h: torch.Tensor, count: int, gen: torch.Generator | None) -> torch.Tensor:
            full = refactoring.nearby(hard, count, counts.get("nearby_flips", 1), gen, context)
            return full if selected is None else full[:, selected]
    bits = sample_anchors(hard if selected is None else hard[selected], nearby=nearby, generator=generator, **counts)
    if selected is None:
        stack = bits
    else:  # full configurations: the all-correct one (for the loss's offset), then the anchors
        stack = hard.unsqueeze(0).repeat(bits.shape[0] + 1, 1)
        stack[0] = True
        stack[1:, selected] = bits
    values = refactoring.evaluate(stack.view(stack.shape[0], *comparisons.shape), context)
    values = torch.as_tensor(values).to(device=flat.device, dtype=torch.float64)
    if values.shape != (stack.shape[0],):
        raise ValueError(
            f"{refactoring!r}: g must return one value per configuration, shape ({stack.shape[0]},), "
            f"got {tuple(values.shape)}"
        )
    if validate and not bool(torch.isfinite(values).all()):
        raise ValueError(f"{refactoring!r}: g returned a non-finite metric value at an anchor")
    best = float(values[0])
    return AnchorSet(bits, values if selected is None else values[1:], best, selected)


def anchored_comparisons(comparisons: torch.Tensor, anchors: AnchorSet) -> torch.Tensor:
    """The comparisons of a batch as the flat vector its anchors are drawn in, checked against them.

    Flattened, in at least float32, and restricted to ``anchors.selected`` when a fraction of the variables was
    drawn (the others sit at their hard values, as in every anchor). Raises a ``ValueError`` if the anchors were
    drawn for a batch with another number of variables.

    Example:
        >>> from metricloss.uniloss import Accuracy
        >>> ref = Accuracy()
        >>> c, ctx = ref.compare(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
        >>> anchored_comparisons(c, draw_anchors(ref, c, ctx, fraction=1.0)).shape
        torch.Size([2])
    """
    flat = comparisons.reshape(-1)
    flat = flat.to(torch.promote_types(flat.dtype, torch.float32))
    if anchors.selected is not None:
        if anchors.selected.shape != flat.shape:
            raise ValueError(f"`anchors.selected` has {anchors.selected.numel()} entries; the batch {flat.numel()}")
        flat = flat[anchors.selected]  # the other variables sit at their hard values, as in every anchor
    if anchors.bits.dim() != 2 or anchors.bits.shape[1] != flat.numel():
        raise ValueError(
            f"`anchors` has configurations of {tuple(anchors.bits.shape)[1:]} bits; this batch has {flat.numel()}"
        )
    return flat
