r"""The UniLoss loss: functional form :func:`uniloss`, module :class:`UniLoss`, and :func:`build`.

For a batch, with refactoring :math:`e = g(h(f(s, y)))`, comparisons :math:`c = f(s, y)`, hard configuration
:math:`b = [c > 0]`, relaxed configuration :math:`u = \sigma(c/\tau)` and anchors :math:`a_i` drawn around
:math:`b` (:mod:`~metricloss.uniloss.anchors`), the loss is the gap between the all-correct value and the
inverse-distance-weighted estimate (:mod:`~metricloss.uniloss.interpolation`):

.. math:: L(s, y) = g(\mathbf 1) - \tilde g(u; a) \quad\text{(higher-is-better metrics; } \tilde g(u; a) - g(\mathbf 1)
    \text{ otherwise)},

so lower is better, and :math:`L = 0` when the batch is all-correct. For the built-ins :math:`g(\mathbf 1) = 1`,
so :math:`L = 1 - \tilde g`. Gradients come from autograd through :math:`\sigma` and the weights. Anchors are
re-drawn at every call (they adapt to the current :math:`b`); their values come from one call of :math:`g` on
the whole stack. With ``fraction < 1`` a random fraction of the variables is relaxed at each call and the rest
is held at :math:`b` (the paper trains 20 % of them per step on CIFAR-100).

Reference:
    UniLoss: Unified Surrogate Loss by Adaptive Interpolation (ICLR 2020 submission; ECCV 2020), sections 3–4.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .._checks import check_positive
from .anchors import AnchorSet, sample_anchors
from .configured import ConfiguredLoss, check_refactoring
from .interpolation import inverse_distance_weighting, relax
from .refactorings import Refactoring

__all__ = ["OPTIONS", "UniLoss", "anchored_comparisons", "build", "draw_anchors", "uniloss"]

#: Keyword options of :class:`UniLoss` / :func:`uniloss` and their defaults (the paper's, with τ = p = 1).
OPTIONS: dict[str, Any] = {
    "temperature": 1.0,
    "power": 1.0,
    "num_good": 16,
    "num_bad": 16,
    "num_nearby": 16,
    "good_flips": 1,
    "nearby_flips": 1,
    "fraction": 1.0,
}


def _count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return value


def _fraction(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`fraction` must be a number in (0, 1], got {value!r}") from None
    if not 0.0 < v <= 1.0:
        raise ValueError(f"`fraction` must be in (0, 1] (share of binary variables relaxed per call), got {value!r}")
    return v


def _check_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise TypeError(f"unknown UniLoss option(s) {sorted(unknown)}; known: {sorted(OPTIONS)}")
    out = {**OPTIONS, **options}
    out["temperature"] = check_positive(out["temperature"], "temperature")
    out["power"] = check_positive(out["power"], "power")
    for name in ("num_good", "num_bad", "num_nearby"):
        out[name] = _count(out[name], name, 0)
    for name in ("good_flips", "nearby_flips"):
        out[name] = _count(out[name], name, 1)
    out["fraction"] = _fraction(out["fraction"])
    return out


def draw_anchors(
    refactoring: Refactoring,
    comparisons: torch.Tensor,
    context: Any,
    *,
    num_good: int = 16,
    num_bad: int = 16,
    num_nearby: int = 16,
    good_flips: int = 1,
    nearby_flips: int = 1,
    fraction: float = 1.0,
    generator: torch.Generator | None = None,
) -> AnchorSet:
    """Anchors around the hard configuration of ``comparisons`` and their exact values, by one call of ``g``.

    Args:
        refactoring: supplies ``g`` (:meth:`~Refactoring.evaluate`) and the nearby-anchor rule.
        comparisons, context: what :meth:`~Refactoring.compare` returned for the batch.
        num_good, num_bad, num_nearby, good_flips, nearby_flips: see :func:`~metricloss.uniloss.sample_anchors`.
        fraction: share of the variables relaxed at this call, drawn at random. The anchors are then drawn in
            the subspace of the selected variables (the best anchor sets those to 1, nearby ones flip those, ...);
            ``g`` is evaluated on full configurations that equal the hard one elsewhere.
        generator: random source on ``comparisons``' device.

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
            full = refactoring.nearby(hard, count, nearby_flips, gen, context)
            return full if selected is None else full[:, selected]
    bits = sample_anchors(
        hard if selected is None else hard[selected], num_good=num_good, num_bad=num_bad, num_nearby=num_nearby,
        good_flips=good_flips, nearby_flips=nearby_flips, nearby=nearby, generator=generator,
    )
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
    if not bool(torch.isfinite(values).all()):
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


def uniloss(
    pred: torch.Tensor,
    target: torch.Tensor,
    refactoring: Refactoring,
    *,
    temperature: float = 1.0,
    power: float = 1.0,
    num_good: int = 16,
    num_bad: int = 16,
    num_nearby: int = 16,
    good_flips: int = 1,
    nearby_flips: int = 1,
    fraction: float = 1.0,
    anchors: AnchorSet | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""UniLoss of one batch: :math:`g(\mathbf 1) - \tilde g(\sigma(f(\mathrm{pred}, \mathrm{target})/\tau); a)`.

    Args:
        pred, target: one batch in the refactoring's call shapes.
        refactoring: the metric's :class:`~metricloss.uniloss.Refactoring`.
        temperature: :math:`\tau` of the sigmoid relaxation.
        power: :math:`p` of the inverse-distance weights :math:`d^{-p}` (Euclidean :math:`d`).
        num_good, num_bad, num_nearby, good_flips, nearby_flips, fraction: anchor options (:func:`draw_anchors`).
        anchors: a fixed :class:`~metricloss.uniloss.AnchorSet` (then no anchor is drawn; for tests and analysis).
        generator: random source for the anchors.

    Returns:
        A 0-d tensor, lower is better, differentiable in ``pred`` (computed in at least float32).

    Example:
        >>> from metricloss.uniloss import Accuracy
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]], requires_grad=True)
        >>> loss = uniloss(logits, torch.tensor([0, 1]), Accuracy(), generator=torch.Generator().manual_seed(0))
        >>> loss.backward()
        >>> bool(logits.grad[1, 1] < 0)  # raising the wrong sample's target logit lowers the loss
        True
    """
    refactoring = check_refactoring(refactoring)
    refactoring.check(pred, target)
    comparisons, context = refactoring.compare(pred, target)
    if anchors is None:
        opts = _check_options({
            "temperature": temperature, "power": power, "num_good": num_good, "num_bad": num_bad,
            "num_nearby": num_nearby, "good_flips": good_flips, "nearby_flips": nearby_flips, "fraction": fraction,
        })
        del opts["temperature"], opts["power"]
        anchors = draw_anchors(refactoring, comparisons, context, generator=generator, **opts)
    flat = anchored_comparisons(comparisons, anchors)
    u = relax(flat, temperature)
    estimate = inverse_distance_weighting(u, anchors.bits, anchors.values, power)
    gap = anchors.best_value - estimate
    return gap if refactoring.higher_is_better else -gap


class UniLoss(ConfiguredLoss):
    r"""UniLoss as a loss module: ``loss(pred, target)`` is a scalar, lower is better, differentiable in ``pred``.

    It has the call shape of a learned :class:`~metricloss.Surrogate` but no weights: the metric is evaluated
    exactly at anchors drawn for each batch and interpolated (see :func:`uniloss`).

    Args:
        refactoring: a :class:`~metricloss.uniloss.Refactoring` or a built-in name (``"accuracy"``,
            ``"average_precision"``, ``"pck"``).
        temperature, power, num_good, num_bad, num_nearby, good_flips, nearby_flips, fraction: see
            :func:`uniloss` (defaults in :data:`OPTIONS`).
        seed: seeds the anchors (one generator per device), making a sequence of calls reproducible;
            ``None`` uses torch's global random state.
        **refactoring_kwargs: arguments of a built-in refactoring (``num_classes=``, ``alpha=``).

    Example:
        >>> import torch
        >>> from metricloss import uniloss
        >>> loss_fn = uniloss.build("accuracy", num_classes=10, seed=0)
        >>> logits = torch.randn(32, 10, requires_grad=True)
        >>> target = torch.randint(0, 10, (32,))
        >>> loss = loss_fn(logits, target)
        >>> loss.backward()
        >>> logits.grad.shape, 0.0 <= loss.item() <= 1.0
        (torch.Size([32, 10]), True)
        >>> uniloss.UniLoss.from_config(loss_fn.config()).config() == loss_fn.config()
        True
    """

    method: ClassVar[str] = "uniloss"
    OPTIONS: ClassVar[dict[str, Any]] = OPTIONS
    # Other keys of a config have always gone on to the refactoring's constructor (e.g. a top-level
    # "num_classes"); kept so that configs written by hand keep loading.
    strict_config: ClassVar[bool] = False

    @classmethod
    def _checked_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        return _check_options(options)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, anchors: AnchorSet | None = None) -> torch.Tensor:
        device = pred.device if isinstance(pred, torch.Tensor) else torch.device("cpu")
        return uniloss(pred, target, self.refactoring, anchors=anchors, generator=self._generator(device),
                       **self.options)

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items() if v != OPTIONS[k])
        seed = f", seed={self.seed}" if self.seed is not None else ""
        return f"{self.refactoring!r}" + (f", {opts}" if opts else "") + seed


def build(refactoring: Refactoring | str, **kwargs: Any) -> UniLoss:
    """A :class:`UniLoss` for a built-in refactoring name or a :class:`~metricloss.uniloss.Refactoring`.

    Example:
        >>> from metricloss import uniloss
        >>> uniloss.build("pck", alpha=0.05, fraction=0.2)
        UniLoss(PCK(alpha=0.05), fraction=0.2)
    """
    return UniLoss(refactoring, **kwargs)
