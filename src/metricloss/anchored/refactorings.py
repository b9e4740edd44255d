r"""Refactorings :math:`e = g(h(f(s, y)))` of metrics (UniLoss, sections 3.1–3.3 and 4).

A refactoring splits a batch metric into

- :math:`f`: scores and targets :math:`\to` comparisons :math:`c` (differences of two scores; any tensor shape),
  oriented so that :math:`c > 0` is what the ground truth wants;
- :math:`h`: the step :math:`b = [c > 0]` (relaxed by :func:`~metricloss.anchored.relax`);
- :math:`g`: binary configurations :math:`\to` the metric value, evaluated on a stack ``(A, *c.shape)`` of
  configurations at once.

Write your own with :class:`FunctionRefactoring` (two plain functions) or by subclassing :class:`Refactoring`.
Built-ins: :class:`Accuracy`, :class:`AveragePrecision`, :class:`PCK`; the registry :data:`REFACTORINGS` maps
their names to them.

Exact scores ties (:math:`c = 0`) count as wrong (:math:`b = 0`): the refactored metric then equals the usual one
except where the usual one breaks a tie in the prediction's favour (``argmax`` picking the target among tied
logits; scikit-learn's AP grouping tied positive scores at one threshold). Ties have probability zero for
continuous scores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .._checks import check_float_tensor, check_int_tensor, check_positive, check_tensor
from .anchors import flip_toward_best

__all__ = [
    "PCK",
    "REFACTORINGS",
    "Accuracy",
    "AveragePrecision",
    "FunctionRefactoring",
    "PCKLayout",
    "Refactoring",
    "accuracy_comparisons",
    "accuracy_from_bits",
    "average_precision_comparisons",
    "average_precision_from_bits",
    "pck_comparisons",
    "pck_from_bits",
]


class Refactoring(ABC):
    """A metric written as comparisons :math:`f` and a function :math:`g` of their signs.

    Subclasses implement :meth:`compare` and :meth:`evaluate`; they may override :meth:`check` (input
    validation), :meth:`nearby` (the nearby-anchor rule) and :meth:`config` (constructor arguments, JSON-able).
    """

    name: ClassVar[str] = "custom"
    higher_is_better: bool = True

    def check(self, pred: torch.Tensor, target: torch.Tensor) -> None:  # noqa: B027 - optional hook
        """Raise a clear error if ``pred``/``target`` are not valid inputs (default: accept anything)."""

    @abstractmethod
    def compare(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """:math:`f`: comparisons (float tensor, differentiable in ``pred``) and a context for :meth:`evaluate`."""

    @abstractmethod
    def evaluate(self, bits: torch.Tensor, context: Any) -> torch.Tensor:
        """:math:`g` on a stack of configurations ``(A, *comparisons.shape)`` (bool) -> ``(A,)``."""

    def nearby(
        self, hard: torch.Tensor, count: int, flips: int, generator: torch.Generator | None, context: Any
    ) -> torch.Tensor:
        """Nearby anchors ``(count, n)`` from the flat hard configuration ``hard`` ``(n,)``.

        Default: ``flips`` of its 0-bits set to 1 (toward the best anchor).
        """
        return flip_toward_best(hard, count, flips, generator)

    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-able), stored with a saved :class:`~metricloss.uniloss.UniLoss`."""
        return {}

    def task_spec(self) -> tuple[str, dict[str, Any]] | None:
        """The task family (name and shape arguments) whose call shapes this refactoring takes, if it knows it; a
        loss built on it without ``task=`` gets that task (``None``: it has no task unless given one)."""
        return None

    def metric(self, pred: torch.Tensor, target: torch.Tensor) -> float:
        """The exact metric through the refactoring, :math:`g(h(f(s, y)))`."""
        self.check(pred, target)
        with torch.no_grad():
            comparisons, context = self.compare(pred, target)
            return float(self.evaluate((comparisons > 0).unsqueeze(0), context)[0])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class FunctionRefactoring(Refactoring):
    """A refactoring from two plain functions.

    Args:
        f: ``f(pred, target)`` -> comparisons (a float tensor of any shape, differentiable in ``pred``, positive
            where the ground truth wants), or a pair ``(comparisons, context)``.
        g: ``g(bits, context)`` -> metric value(s). ``bits`` is bool. With ``vectorized=True`` it gets a stack
            ``(A, *comparisons.shape)`` and returns ``(A,)``; otherwise one configuration ``comparisons.shape``
            at a time, returning a number (plain Python is fine). ``context`` is what ``f`` returned beside the
            comparisons, or ``target`` if ``f`` returned a tensor only.
        name: shown in reprs and configs.
        higher_is_better: direction of ``g``.
        vectorized: whether ``g`` accepts a stack of configurations.

    Example:
        >>> # fraction of samples whose score beats a fixed threshold of 0 when labelled 1, stays below when 0
        >>> f = lambda s, y: torch.where(y.bool(), s, -s)
        >>> g = lambda bits, y: bits.double().mean(-1)
        >>> ref = FunctionRefactoring(f, g, name="sign_accuracy")
        >>> ref.metric(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([1, 0, 0]))
        0.6666666666666666
    """

    def __init__(
        self,
        f: Callable[[torch.Tensor, torch.Tensor], Any],
        g: Callable[[torch.Tensor, Any], Any],
        *,
        name: str = "custom",
        higher_is_better: bool = True,
        vectorized: bool = True,
    ) -> None:
        if not callable(f) or not callable(g):
            raise TypeError(
                f"`f` and `g` must be callables, got {type(f).__name__} and {type(g).__name__}"
            )
        self.f, self.g = f, g
        self.custom_name = str(name)
        self.higher_is_better = bool(higher_is_better)
        self.vectorized = bool(vectorized)

    def compare(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Any]:
        out = self.f(pred, target)
        comparisons, context = out if isinstance(out, tuple) else (out, target)
        comparisons = check_float_tensor(comparisons, "f(pred, target)", finite=False)
        return comparisons, context

    def evaluate(self, bits: torch.Tensor, context: Any) -> torch.Tensor:
        if self.vectorized:
            values = self.g(bits, context)
            values = torch.as_tensor(values, dtype=torch.float64)
            if values.shape != bits.shape[:1]:
                raise ValueError(
                    f"`g` ({self.custom_name}) must return one value per configuration, shape ({bits.shape[0]},), "
                    f"got {tuple(values.shape)}; pass vectorized=False if it takes one configuration at a time"
                )
            return values
        return torch.tensor([float(self.g(b, context)) for b in bits], dtype=torch.float64)

    def config(self) -> dict[str, Any]:
        return {"name": self.custom_name, "higher_is_better": self.higher_is_better}

    def __repr__(self) -> str:
        return f"FunctionRefactoring(name={self.custom_name!r}, vectorized={self.vectorized})"


def _all_last(bits: torch.Tensor) -> torch.Tensor:
    """``bits.all(dim=-1)`` through a uint8 view (``amin`` is several times faster than ``all`` on CPU)."""
    if bits.shape[-1] == 0:
        return torch.ones(bits.shape[:-1], dtype=torch.bool, device=bits.device)
    return bits.view(torch.uint8).amin(dim=-1).bool()


# ----------------------------------------------------------------------------------------------- accuracy


def accuracy_comparisons(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Comparisons of multi-class accuracy (eq. 4): :math:`c_{i,j} = s_{i, y_i} - s_{i,j}` for :math:`j \ne y_i`.

    Args:
        logits: ``(B, C)``.
        target: class indices ``(B,)``.

    Returns:
        ``(B, C - 1)``, the other classes in increasing order.

    Example:
        >>> accuracy_comparisons(torch.tensor([[2.0, 0.5, 1.0]]), torch.tensor([2]))
        tensor([[-1.0000,  0.5000]])
    """
    b, c = logits.shape
    target_logit = logits.gather(1, target.unsqueeze(1))
    others = torch.ones_like(logits, dtype=torch.bool).scatter_(1, target.unsqueeze(1), False)
    return (target_logit - logits)[others].view(b, c - 1)


def accuracy_from_bits(bits: torch.Tensor) -> torch.Tensor:
    r""":math:`g` of accuracy: :math:`\frac1B \sum_i \bigwedge_j b_{i,j}` over the last two axes ``(..., B, C - 1)``.

    Example:
        >>> accuracy_from_bits(torch.tensor([[True, True], [True, False]]))
        tensor(0.5000, dtype=torch.float64)
    """
    return _all_last(bits).to(torch.float64).mean(dim=-1)


class Accuracy(Refactoring):
    """Multi-class (top-1) accuracy: logits ``(B, C)``, int64 class indices ``(B,)``; :math:`B(C-1)` variables.

    A sample is correct when all its comparisons target-logit minus other-logit are positive.

    Args:
        num_classes: if given, ``C`` must equal it.

    Example:
        >>> ref = Accuracy(num_classes=3)
        >>> ref.metric(torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 3.0]]), torch.tensor([0, 1]))
        0.5
    """

    name = "accuracy"

    def __init__(self, num_classes: int | None = None) -> None:
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2
        ):
            raise ValueError(f"`num_classes` must be an integer >= 2 or None, got {num_classes!r}")
        self.num_classes = num_classes

    def check(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred = check_float_tensor(pred, "pred")
        target = check_int_tensor(target, "target")
        want_c = self.num_classes
        if pred.dim() != 2 or pred.shape[1] < 2 or (want_c is not None and pred.shape[1] != want_c):
            c = f"C = num_classes = {want_c}" if want_c is not None else "C >= 2"
            raise ValueError(f"`pred` must be logits of shape (B, C) with {c}, got {tuple(pred.shape)}")
        if pred.shape[0] < 1:
            raise ValueError("`pred` is an empty batch (B = 0)")
        if target.shape != pred.shape[:1]:
            raise ValueError(
                f"`target` must have shape ({pred.shape[0]},), one class index per row of `pred`, "
                f"got {tuple(target.shape)}"
            )
        if int(target.min()) < 0 or int(target.max()) >= pred.shape[1]:
            raise ValueError(
                f"`target` holds class indices outside [0, {pred.shape[1] - 1}] "
                f"(min {int(target.min())}, max {int(target.max())})"
            )

    def compare(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return accuracy_comparisons(pred, target), None

    def evaluate(self, bits: torch.Tensor, context: Any) -> torch.Tensor:
        return accuracy_from_bits(bits)

    def config(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes}

    def task_spec(self) -> tuple[str, dict[str, Any]] | None:
        return ("classification", {"num_classes": self.num_classes}) if self.num_classes is not None else None


# -------------------------------------------------------------------------------------- average precision


def average_precision_comparisons(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Comparisons of binary AP (section 4.1): :math:`c_{i,j} = s_i - s_j`, positive :math:`i`, negative :math:`j`.

    Pairs of two positives or two negatives do not change AP and are left out.

    Returns:
        ``(P, Q)``: positives in batch order by rows, negatives by columns.

    Example:
        >>> average_precision_comparisons(torch.tensor([0.9, 0.1, 0.4]), torch.tensor([1, 0, 0]))
        tensor([[0.8000, 0.5000]])
    """
    pos = target.bool()
    return scores[pos].unsqueeze(1) - scores[~pos].unsqueeze(0)


def average_precision_from_bits(bits: torch.Tensor) -> torch.Tensor:
    r""":math:`g` of AP on configurations ``(..., P, Q)``.

    With :math:`n_i = \sum_j (1 - b_{i,j})` the negatives ranked above positive :math:`i`, and
    :math:`n_{(1)} \le \dots \le n_{(P)}` these counts sorted, the :math:`k`-th positive sits at rank
    :math:`k + n_{(k)}`, so

    .. math:: \mathrm{AP} = \frac1P \sum_{k=1}^{P} \frac{k}{k + n_{(k)}}.

    Example:
        >>> # two positives, two negatives; order: pos, neg, pos, neg -> AP = (1/1 + 2/3) / 2
        >>> average_precision_from_bits(torch.tensor([[True, True], [False, True]]))
        tensor(0.8333, dtype=torch.float64)
    """
    q = bits.shape[-1]
    above = (q - bits.sum(dim=-1)).to(torch.float64)
    above = above.sort(dim=-1).values
    k = torch.arange(1, bits.shape[-2] + 1, dtype=torch.float64, device=bits.device)
    return (k / (k + above)).mean(dim=-1)


class AveragePrecision(Refactoring):
    """Binary average precision (area under the precision-recall curve, as scikit-learn computes it).

    ``pred``: scores (logits) ``(B,)``; ``target``: ``{0, 1}`` ``(B,)`` (int, bool or float) with at least one
    positive. :math:`P \\cdot Q` variables (positives times negatives). A batch without negatives has AP 1.

    Example:
        >>> ref = AveragePrecision()
        >>> ref.metric(torch.tensor([3.0, 2.0, 1.0, 0.0]), torch.tensor([1, 0, 1, 0]))
        0.8333333333333333
    """

    name = "average_precision"

    def check(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred = check_float_tensor(pred, "pred")
        target = check_tensor(target, "target")
        if pred.dim() != 1:
            raise ValueError(f"`pred` must be scores of shape (B,) (binary AP), got {tuple(pred.shape)}")
        if target.shape != pred.shape:
            raise ValueError(f"`target` must have the shape of `pred`, {tuple(pred.shape)}; got {tuple(target.shape)}")
        if target.is_complex() or not bool(((target == 0) | (target == 1)).all()):
            raise ValueError("`target` must hold only 0 and 1 (negatives and positives)")
        if not bool((target == 1).any()):
            raise ValueError("`target` has no positive: average precision is undefined for this batch")

    def compare(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return average_precision_comparisons(pred, target), None

    def evaluate(self, bits: torch.Tensor, context: Any) -> torch.Tensor:
        return average_precision_from_bits(bits)

    def task_spec(self) -> tuple[str, dict[str, Any]] | None:
        return ("set", {"num_labels": None})


# ----------------------------------------------------------------------------------------------------- PCK


@dataclass(frozen=True)
class PCKLayout:
    """Where each labelled keypoint's comparisons lie in the flat comparison vector of :func:`pck_comparisons`.

    Keypoints with the same number of positive pixels ``p`` form one block of ``count * p * q`` comparisons
    (``q`` negative pixels), laid out as ``(count, p, q)``, starting at ``offset``.

    Attributes:
        blocks: ``(offset, count, p, q)`` per block.
        num_labelled: labelled keypoints in the batch (the PCK denominator).
    """

    blocks: tuple[tuple[int, int, int, int], ...]
    num_labelled: int


def pck_comparisons(
    heatmaps: torch.Tensor, keypoints: torch.Tensor, alpha: float = 0.05
) -> tuple[torch.Tensor, PCKLayout]:
    r"""Comparisons of PCK (section 4.2): positive minus negative pixel scores, per labelled keypoint.

    Pixel :math:`(r, c)` of a heatmap has coordinates :math:`(x, y) = (c, r)`; it is *positive* when its distance to
    the keypoint is at most :math:`\rho = \alpha \max(H, W)`. A keypoint is labelled when its visibility is
    :math:`> 0`. Each labelled keypoint contributes :math:`p \cdot (HW - p)` comparisons.

    Args:
        heatmaps: ``(B, K, H, W)``.
        keypoints: ``(B, K, 3)``: x, y in heatmap pixels, visibility.
        alpha: radius as a fraction of the heatmap's longer side.

    Returns:
        Flat comparisons ``(n,)`` and their :class:`PCKLayout`.

    Example:
        >>> hm = torch.zeros(1, 1, 3, 3); hm[0, 0, 1, 1] = 1.0
        >>> c, layout = pck_comparisons(hm, torch.tensor([[[1.0, 1.0, 2.0]]]), alpha=0.1)
        >>> c.shape, layout.blocks
        (torch.Size([8]), ((0, 1, 1, 8),))
    """
    _, _, h, w = heatmaps.shape
    m = h * w
    radius = alpha * max(h, w)
    labelled = keypoints[..., 2] > 0
    scores = heatmaps[labelled].reshape(-1, m)
    xy = keypoints[labelled][:, :2].to(torch.float64)
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=heatmaps.device),
        torch.arange(w, dtype=torch.float64, device=heatmaps.device),
        indexing="ij",
    )
    d2 = (cols.reshape(1, m) - xy[:, :1]) ** 2 + (rows.reshape(1, m) - xy[:, 1:]) ** 2
    positive = d2 <= radius**2
    counts = positive.sum(dim=1)
    parts, blocks, offset = [], [], 0
    for p in torch.unique(counts).tolist():
        idx = (counts == p).nonzero().squeeze(1)
        count, q = idx.numel(), m - p
        blocks.append((offset, count, p, q))
        if p == 0 or q == 0:
            continue
        pos = positive[idx]
        pos_idx = pos.nonzero()[:, 1].view(count, p)
        neg_idx = (~pos).nonzero()[:, 1].view(count, q)
        s = scores[idx]
        parts.append((s.gather(1, pos_idx).unsqueeze(2) - s.gather(1, neg_idx).unsqueeze(1)).reshape(-1))
        offset += count * p * q
    flat = torch.cat(parts) if parts else heatmaps.new_zeros(0)
    return flat, PCKLayout(tuple(blocks), int(scores.shape[0]))


def pck_from_bits(bits: torch.Tensor, layout: PCKLayout) -> torch.Tensor:
    r""":math:`g` of PCK on configurations ``(A, n)``: the fraction of labelled keypoints for which some positive
    pixel beats every negative pixel, :math:`\frac1{K'}\sum_k \bigvee_i \bigwedge_j b_{k,i,j}`.

    Example:
        >>> layout = PCKLayout(blocks=((0, 1, 1, 2),), num_labelled=1)
        >>> pck_from_bits(torch.tensor([[True, True], [True, False]]), layout)
        tensor([1., 0.], dtype=torch.float64)
    """
    a = bits.shape[0]
    correct = torch.zeros(a, dtype=torch.float64, device=bits.device)
    for offset, count, p, q in layout.blocks:
        if p == 0:
            continue  # no pixel within the radius: never correct
        if q == 0:
            correct += count  # every pixel is within the radius: always correct
            continue
        block = bits[:, offset : offset + count * p * q].reshape(a, count, p, q)
        correct += _all_last(block).view(torch.uint8).amax(dim=-1).sum(dim=-1)
    return correct / layout.num_labelled


class PCK(Refactoring):
    r"""Percentage of correct keypoints from heatmaps: a keypoint is correct when its heatmap's arg-max pixel lies
    within :math:`\rho = \alpha \max(H, W)` of it; PCK is the fraction of labelled keypoints that are correct.

    ``pred``: heatmaps ``(B, K, H, W)``; ``target``: keypoints ``(B, K, 3)`` (x, y in heatmap pixels,
    visibility; labelled when visibility > 0; at least one per batch). Nearby anchors follow the paper: pick a
    pixel of one labelled keypoint and set every comparison that involves it to 1.

    Args:
        alpha: radius as a fraction of the heatmap's longer side (default 0.05, PCK@0.05 as in
            :mod:`metricloss.metrics.pose`; PCKh uses half the head size instead). Distances equal to the radius
            count as correct (MMPose counts them as wrong; this matters only at exact distances).

    Example:
        >>> hm = torch.zeros(1, 2, 8, 8); hm[0, 0, 2, 3] = 1.0; hm[0, 1, 7, 7] = 1.0
        >>> kp = torch.tensor([[[3.0, 2.0, 2.0], [1.0, 1.0, 2.0]]])
        >>> PCK(alpha=0.25).metric(hm, kp)
        0.5
    """

    name = "pck"

    def __init__(self, alpha: float = 0.05) -> None:
        self.alpha = check_positive(alpha, "alpha")

    def check(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred = check_float_tensor(pred, "pred")
        target = check_float_tensor(target, "target")
        if pred.dim() != 4 or min(pred.shape) < 1:
            raise ValueError(f"`pred` must be non-empty heatmaps of shape (B, K, H, W), got {tuple(pred.shape)}")
        if target.shape != (*pred.shape[:2], 3):
            raise ValueError(
                f"`target` must be keypoints of shape (B, K, 3) = {(*pred.shape[:2], 3)} (x, y in heatmap pixels, "
                f"visibility), got {tuple(target.shape)}"
            )
        if not bool((target[..., 2] > 0).any()):
            raise ValueError("`target` has no labelled keypoint (visibility > 0): PCK is undefined for this batch")

    def compare(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return pck_comparisons(pred, target, self.alpha)

    def evaluate(self, bits: torch.Tensor, context: Any) -> torch.Tensor:
        return pck_from_bits(bits, context)

    def nearby(
        self, hard: torch.Tensor, count: int, flips: int, generator: torch.Generator | None, context: Any
    ) -> torch.Tensor:
        out = hard.unsqueeze(0).repeat(count, 1)
        blocks = [blk for blk in context.blocks if blk[2] > 0 and blk[3] > 0]
        if count == 0 or not blocks:
            return out
        # Draw a labelled keypoint uniformly, then one of its pixels uniformly.
        sizes = torch.tensor([blk[1] for blk in blocks], dtype=torch.float64)
        keypoint = torch.multinomial(sizes.expand(count, -1), 1, generator=_cpu(generator)).squeeze(1)
        unit = torch.rand(count, 2, generator=_cpu(generator), dtype=torch.float64)
        for row, (b, (u_kp, u_px)) in enumerate(zip(keypoint.tolist(), unit.tolist(), strict=True)):
            offset, n_kp, p, q = blocks[b]
            start = offset + min(int(u_kp * n_kp), n_kp - 1) * p * q
            pixel = min(int(u_px * (p + q)), p + q - 1)
            if pixel < p:  # a positive pixel: its row of comparisons
                out[row, start + pixel * q : start + (pixel + 1) * q] = True
            else:  # a negative pixel: its column
                out[row, start + (pixel - p) : start + p * q : q] = True
        return out

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    # Small draws for the PCK nearby rule happen on the CPU; a CUDA generator cannot serve them.
    return generator if generator is None or generator.device.type == "cpu" else None


#: Built-in refactorings by name.
REFACTORINGS: dict[str, type[Refactoring]] = {"accuracy": Accuracy, "average_precision": AveragePrecision, "pck": PCK}

