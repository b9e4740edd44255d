r"""The shared core of the anchored losses: the loss of one batch (:func:`anchored_loss`) and the module base
(:class:`AnchoredLoss`).

:class:`~metricloss.uniloss.UniLoss` and :class:`~metricloss.nonparametric.NonParametricLoss` are the same loss with
two kernels. For a batch, with refactoring :math:`e = g(h(f(s, y)))`, comparisons :math:`c = f(s, y)`, relaxed
configuration :math:`u = \sigma(c / \tau)` (:mod:`~metricloss.anchored.relaxation`) and anchors :math:`a_i` drawn
around the hard configuration :math:`[c > 0]` (:mod:`~metricloss.anchored.draw`), the loss is

.. math:: L = s\,\big(g(\mathbf 1) - \hat g(u; a)\big) \quad\text{(higher-is-better metrics; }
    s\,(\hat g(u; a) - g(\mathbf 1))\text{ otherwise)},

where :math:`\hat g` is the kind's kernel (:mod:`~metricloss.anchored.kernels`: inverse-distance weights for
UniLoss, a Gaussian for the non-parametric surrogate) and :math:`s` the optional ``scale`` option (1 if absent).
A kind declares its ``OPTIONS`` (name -> default; they include :data:`ANCHOR_DEFAULTS`), which of them must be
positive numbers (``POSITIVE``) and its ``kernel``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import torch

from .._checks import check_int, check_positive
from ..surrogate import MetricLoss
from ..tasks.base import TASKS, Task, get_task
from .anchors import AnchorSet
from .draw import anchored_comparisons, draw_anchors
from .kernels import Kernel
from .refactorings import REFACTORINGS, Refactoring
from .relaxation import relax

__all__ = ["ANCHOR_DEFAULTS", "ANCHOR_OPTIONS", "AnchoredLoss", "anchored_loss", "check_options", "check_refactoring"]

#: The options that go to :func:`~metricloss.anchored.draw_anchors` and their defaults (16 anchors of each random
#: kind, as the paper and the authors' code).
ANCHOR_DEFAULTS: dict[str, Any] = {
    "num_good": 16, "num_bad": 16, "num_nearby": 16, "good_flips": 1, "nearby_flips": 1, "fraction": 1.0,
}
ANCHOR_OPTIONS: tuple[str, ...] = tuple(ANCHOR_DEFAULTS)

_Loss = TypeVar("_Loss", bound="AnchoredLoss")


def check_refactoring(refactoring: Any) -> Refactoring:
    """``refactoring`` if it is a :class:`~metricloss.uniloss.Refactoring`, else a ``TypeError`` naming the argument."""
    if not isinstance(refactoring, Refactoring):
        raise TypeError(
            "`refactoring` must be a metricloss.uniloss.Refactoring (e.g. FunctionRefactoring(f, g)) or a built-in "
            f"name ({', '.join(map(repr, REFACTORINGS))}); got {type(refactoring).__name__}"
        )
    return refactoring


def _fraction(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`fraction` must be a number in (0, 1], got {value!r}") from None
    if not 0.0 < v <= 1.0:
        raise ValueError(f"`fraction` must be in (0, 1] (share of binary variables relaxed per call), got {value!r}")
    return v


def check_options(options: Mapping[str, Any], defaults: Mapping[str, Any], positive: tuple[str, ...], label: str
                  ) -> dict[str, Any]:
    """All options, ``options`` over ``defaults``, checked: the ``positive`` ones positive numbers, anchor counts
    integers >= 0, flips >= 1, ``fraction`` in (0, 1]; unknown names are a ``TypeError`` naming ``label``'s options."""
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f"unknown {label} option(s) {sorted(unknown)}; known: {sorted(defaults)}")
    out = {**defaults, **options}
    for name in positive:
        out[name] = check_positive(out[name], name)
    for name in ("num_good", "num_bad", "num_nearby"):
        out[name] = check_int(out[name], name, 0)
    for name in ("good_flips", "nearby_flips"):
        out[name] = check_int(out[name], name, 1)
    out["fraction"] = _fraction(out["fraction"])
    return out


def anchored_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    refactoring: Refactoring,
    kernel: Kernel,
    options: Mapping[str, Any],
    *,
    anchors: AnchorSet | None = None,
    generator: torch.Generator | None = None,
    validate: bool = True,
) -> torch.Tensor:
    """The anchored loss of one batch (module docstring) with checked ``options`` (``temperature``, the anchor
    options, the kernel's and optionally ``scale``).

    Args:
        pred, target: one batch in the refactoring's call shapes.
        refactoring: the metric's :class:`~metricloss.uniloss.Refactoring`.
        kernel: the interpolation, :func:`~metricloss.anchored.idw_kernel` or
            :func:`~metricloss.anchored.gaussian_kernel`.
        anchors: a fixed :class:`~metricloss.uniloss.AnchorSet` (then none is drawn; for tests and analysis).
        generator: random source for the anchors.
        validate: run the refactoring's input checks and the finiteness checks (they synchronise with the device).
    """
    if validate:
        refactoring.check(pred, target)
    comparisons, context = refactoring.compare(pred, target)
    if anchors is None:
        anchors = draw_anchors(refactoring, comparisons, context, generator=generator, validate=validate,
                               **{k: options[k] for k in ANCHOR_OPTIONS})
    flat = anchored_comparisons(comparisons, anchors)
    u = relax(flat, options["temperature"]) if validate else torch.sigmoid(flat / options["temperature"])
    estimate = kernel(u, anchors, options, validate)
    gap = anchors.best_value - estimate
    if "scale" in options:
        gap = options["scale"] * gap
    return gap if refactoring.higher_is_better else -gap


class AnchoredLoss(MetricLoss):
    """A loss module without weights, fully described by a refactoring, a seed and keyword options.

    Args:
        refactoring: a :class:`~metricloss.uniloss.Refactoring` or a built-in name (``"accuracy"``,
            ``"average_precision"``, ``"pck"``).
        seed: seeds the anchors (one generator per device); ``None`` uses torch's global random state.
        task: the task family (a :class:`~metricloss.tasks.Task` or the name of one without required arguments);
            default: the refactoring's (:meth:`~metricloss.uniloss.Refactoring.task_spec`), if it names one.
        validate_args: check inputs at every call (``False`` skips the checks, which synchronise with the device).
        **kwargs: the kind's options (keys of ``OPTIONS``), then arguments of a built-in refactoring
            (``num_classes=``, ``alpha=``).
    """

    #: Keyword options of the loss and their defaults.
    OPTIONS: ClassVar[dict[str, Any]]
    #: The options that must be positive numbers.
    POSITIVE: ClassVar[tuple[str, ...]] = ("temperature",)
    #: How error messages name this kind's options.
    label: ClassVar[str] = "anchored-loss"
    #: Whether :meth:`from_config` rejects keys that are neither options nor the stored fields (``False``: they
    #: are passed on, like options, to the constructor and so to a built-in refactoring).
    strict_config: ClassVar[bool] = True
    kernel: ClassVar[Kernel]

    def __init__(self, refactoring: Refactoring | str = "accuracy", *, seed: int | None = None,
                 task: Task | str | None = None, validate_args: bool = True, **kwargs: Any) -> None:
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in self.OPTIONS}
        refactoring = check_refactoring(_build_refactoring(refactoring, kwargs))
        options = self._checked_options(options)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"`seed` must be an integer or None, got {seed!r}")
        super().__init__(_resolve_task(task, refactoring), None, validate_args=validate_args)
        self.refactoring = refactoring
        self.options = options
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}
        self._freeze()

    @classmethod
    def functional(cls, pred: torch.Tensor, target: torch.Tensor, refactoring: Refactoring, *,
                   anchors: AnchorSet | None = None, generator: torch.Generator | None = None, validate: bool = True,
                   **options: Any) -> torch.Tensor:
        """The loss of one batch with this kind's kernel and ``options`` (checked; defaults in ``OPTIONS``)."""
        checked = cls._checked_options(options)
        return anchored_loss(pred, target, check_refactoring(refactoring), cls.kernel, checked, anchors=anchors,
                             generator=generator, validate=validate)

    @classmethod
    def _checked_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """All options, ``options`` over the defaults, checked (raises on an unknown or invalid one)."""
        return check_options(options, cls.OPTIONS, cls.POSITIVE, cls.label)

    @property
    def higher_is_better(self) -> bool:
        return self.refactoring.higher_is_better

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def forward(self, pred: torch.Tensor, target: torch.Tensor, anchors: AnchorSet | None = None) -> torch.Tensor:
        device = pred.device if isinstance(pred, torch.Tensor) else torch.device("cpu")
        return anchored_loss(pred, target, self.refactoring, type(self).kernel, self.options, anchors=anchors,
                             generator=self._generator(device), validate=self.validate_args)

    def anchors(self, pred: torch.Tensor, target: torch.Tensor) -> AnchorSet:
        """Draw the anchors this loss would use for a batch (pass them back as ``anchors=`` to fix them)."""
        self.refactoring.check(pred, target)
        with torch.no_grad():
            comparisons, context = self.refactoring.compare(pred, target)
        return draw_anchors(self.refactoring, comparisons, context, generator=self._generator(pred.device),
                            **{k: self.options[k] for k in ANCHOR_OPTIONS})

    def metric(self, pred: torch.Tensor, target: torch.Tensor) -> float:
        """The exact metric of a batch through the refactoring."""
        return self.refactoring.metric(pred, target)

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this loss but its task (JSON-able)."""
        return {
            "method": self.kind,
            "refactoring": self.refactoring.name,
            "refactoring_config": self.refactoring.config(),
            "seed": self.seed,
            **self.options,
        }

    @classmethod
    def stored_task(cls, name: str, config: dict[str, Any]) -> Task | None:
        # Files written before anchored losses had a task name "uniloss" (or "") when they carried no report.
        return get_task(name, **config) if name in TASKS else None

    @classmethod
    def from_config(cls: type[_Loss], config: dict[str, Any], refactoring: Refactoring | None = None, *,
                    task: Task | None = None, tensors: dict[str, torch.Tensor] | None = None) -> _Loss:
        """Rebuild from :meth:`config`. A user-defined refactoring cannot be stored: pass it as ``refactoring``."""
        if not isinstance(config, dict):
            raise TypeError(f"`config` must be a dict from {cls.__name__}.config(), got {type(config).__name__}")
        if tensors:
            raise ValueError(f"a {cls.__name__} has no weights; got tensors {sorted(tensors)}")
        cfg = dict(config)
        method = cfg.pop("method", cls.kind)
        if method != cls.kind:
            raise ValueError(f"`config` describes method {method!r}, not {cls.kind!r}")
        name = cfg.pop("refactoring", None)
        ref_cfg = cfg.pop("refactoring_config", {})
        seed = cfg.pop("seed", None)
        unknown = set(cfg) - set(cls.OPTIONS)
        if cls.strict_config and unknown:
            raise ValueError(f"`config` has unknown key(s) {sorted(unknown)}")
        if refactoring is not None:
            return cls(refactoring, seed=seed, task=task, **cfg)
        if name not in REFACTORINGS:
            raise ValueError(
                f"`config` uses the user-defined refactoring {name!r}, whose code is not stored; pass it as "
                "`refactoring=`"
            )
        if not isinstance(ref_cfg, dict):
            raise TypeError("`config['refactoring_config']` must be a dict")
        return cls(name, seed=seed, task=task, **ref_cfg, **cfg)

    def extra_repr(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.options.items() if k in self._shown or v != self.OPTIONS[k])
        seed = f", seed={self.seed}" if self.seed is not None else ""
        return f"{self.refactoring!r}" + (f", {shown}" if shown else "") + seed

    #: Options shown in the repr even at their defaults.
    _shown: ClassVar[tuple[str, ...]] = ()


def _build_refactoring(refactoring: Refactoring | str, kwargs: dict[str, Any]) -> Refactoring:
    if isinstance(refactoring, str):
        if refactoring not in REFACTORINGS:
            raise ValueError(
                f"`refactoring` must be one of {', '.join(map(repr, REFACTORINGS))} or a Refactoring object; "
                f"got {refactoring!r}"
            )
        try:
            return REFACTORINGS[refactoring](**kwargs)
        except TypeError as err:
            raise TypeError(f"refactoring {refactoring!r}: {err}") from None
    if kwargs:
        raise TypeError(f"unknown argument(s) {sorted(kwargs)} (refactoring arguments go to its constructor)")
    return refactoring


def _resolve_task(task: Task | str | None, refactoring: Refactoring) -> Task | None:
    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        return get_task(task)
    if task is not None:
        raise TypeError(f"`task` must be a metricloss Task, a task name or None, got {type(task).__name__}")
    spec = refactoring.task_spec()
    return get_task(spec[0], **spec[1]) if spec is not None else None
