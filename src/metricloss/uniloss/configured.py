"""The scaffolding of a loss that is only a configuration over a refactoring (no weights): :class:`ConfiguredLoss`.

:class:`~metricloss.uniloss.UniLoss` and :class:`~metricloss.nonparametric.NonParametricLoss` are built from a
:class:`~metricloss.uniloss.Refactoring`, a seed and a few keyword options; this base class holds what they share:
building the refactoring by name, the per-device anchor generators and anchors, the exact metric, batch losses, and the
configuration round trip behind :meth:`~ConfiguredLoss.save` and :func:`metricloss.load`. A subclass declares its
``method`` name, its ``OPTIONS`` (name -> default; they include :data:`ANCHOR_OPTIONS`), how they are checked
(:meth:`~ConfiguredLoss._checked_options`) and its ``forward``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import nn

from .anchors import AnchorSet
from .refactorings import REFACTORINGS, Refactoring

if TYPE_CHECKING:
    from ..report import Report

__all__ = ["ANCHOR_OPTIONS", "ConfiguredLoss", "check_refactoring"]

#: The options that go to :func:`~metricloss.uniloss.draw_anchors` (every configured loss has them).
ANCHOR_OPTIONS: tuple[str, ...] = ("num_good", "num_bad", "num_nearby", "good_flips", "nearby_flips", "fraction")

_Loss = TypeVar("_Loss", bound="ConfiguredLoss")


def check_refactoring(refactoring: Any) -> Refactoring:
    """``refactoring`` if it is a :class:`~metricloss.uniloss.Refactoring`, else a ``TypeError`` naming the argument."""
    if not isinstance(refactoring, Refactoring):
        raise TypeError(
            "`refactoring` must be a metricloss.uniloss.Refactoring (e.g. FunctionRefactoring(f, g)) or a built-in "
            f"name ({', '.join(map(repr, REFACTORINGS))}); got {type(refactoring).__name__}"
        )
    return refactoring


class ConfiguredLoss(nn.Module):
    """A loss module without weights, fully described by a refactoring, a seed and keyword options.

    Args:
        refactoring: a :class:`~metricloss.uniloss.Refactoring` or a built-in name (``"accuracy"``,
            ``"average_precision"``, ``"pck"``).
        seed: seeds the anchors (one generator per device); ``None`` uses torch's global random state.
        **kwargs: the subclass's options (keys of ``OPTIONS``), then arguments of a built-in refactoring
            (``num_classes=``, ``alpha=``).
    """

    #: The ``"method"`` of :meth:`config` (and of saved files).
    method: ClassVar[str]
    #: Keyword options of the loss and their defaults.
    OPTIONS: ClassVar[dict[str, Any]]
    #: Whether :meth:`from_config` rejects keys that are neither options nor the stored fields (``False``: they
    #: are passed on, like options, to the constructor and so to a built-in refactoring).
    strict_config: ClassVar[bool] = True

    def __init__(self, refactoring: Refactoring | str = "accuracy", *, seed: int | None = None, **kwargs: Any
                 ) -> None:
        super().__init__()
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in self.OPTIONS}
        if isinstance(refactoring, str):
            if refactoring not in REFACTORINGS:
                raise ValueError(
                    f"`refactoring` must be one of {', '.join(map(repr, REFACTORINGS))} or a Refactoring object; "
                    f"got {refactoring!r}"
                )
            try:
                refactoring = REFACTORINGS[refactoring](**kwargs)
            except TypeError as err:
                raise TypeError(f"refactoring {refactoring!r}: {err}") from None
        elif kwargs:
            raise TypeError(f"unknown argument(s) {sorted(kwargs)} (refactoring arguments go to its constructor)")
        self.refactoring = check_refactoring(refactoring)
        self.options = self._checked_options(options)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"`seed` must be an integer or None, got {seed!r}")
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}
        #: Measured agreement with the metric (a :class:`~metricloss.report.Report`), when built by the
        #: method's builder (:func:`~metricloss.uniloss.learn_uniloss`,
        #: :func:`~metricloss.nonparametric.fit_nonparametric`).
        self.report: Report | None = None

    @classmethod
    def _checked_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """All options, ``options`` over the defaults, checked (raises on an unknown or invalid one)."""
        raise NotImplementedError(f"{cls.__name__} must define _checked_options")

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

    def anchors(self, pred: torch.Tensor, target: torch.Tensor) -> AnchorSet:
        """Draw the anchors this loss would use for a batch (pass them back as ``anchors=`` to fix them)."""
        from .module import draw_anchors  # .module imports this module (UniLoss is a ConfiguredLoss)

        self.refactoring.check(pred, target)
        with torch.no_grad():
            comparisons, context = self.refactoring.compare(pred, target)
        return draw_anchors(self.refactoring, comparisons, context, generator=self._generator(pred.device),
                            **{k: self.options[k] for k in ANCHOR_OPTIONS})

    def metric(self, pred: torch.Tensor, target: torch.Tensor) -> float:
        """The exact metric of a batch through the refactoring."""
        return self.refactoring.metric(pred, target)

    def batch_losses(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Losses of a stack of batches ``(N, ...)`` -> ``(N,)``, without autograd."""
        with torch.no_grad():
            return torch.stack([self(p, t).detach() for p, t in zip(pred, target, strict=True)])

    def save(self, path: str | Path) -> None:
        """Save the configuration (and report) like a learned surrogate; load with :func:`metricloss.load`."""
        from ..io import save

        save(self, path)

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this loss (JSON-able)."""
        return {
            "method": self.method,
            "refactoring": self.refactoring.name,
            "refactoring_config": self.refactoring.config(),
            "seed": self.seed,
            **self.options,
        }

    @classmethod
    def from_config(cls: type[_Loss], config: dict[str, Any], refactoring: Refactoring | None = None) -> _Loss:
        """Rebuild from :meth:`config`. A user-defined refactoring cannot be stored: pass it as ``refactoring``."""
        if not isinstance(config, dict):
            raise TypeError(f"`config` must be a dict from {cls.__name__}.config(), got {type(config).__name__}")
        cfg = dict(config)
        method = cfg.pop("method", cls.method)
        if method != cls.method:
            raise ValueError(f"`config` describes method {method!r}, not {cls.method!r}")
        name = cfg.pop("refactoring", None)
        ref_cfg = cfg.pop("refactoring_config", {})
        seed = cfg.pop("seed", None)
        unknown = set(cfg) - set(cls.OPTIONS)
        if cls.strict_config and unknown:
            raise ValueError(f"`config` has unknown key(s) {sorted(unknown)}")
        if refactoring is None:
            if name not in REFACTORINGS:
                raise ValueError(
                    f"`config` uses the user-defined refactoring {name!r}, whose code is not stored; pass it as "
                    "`refactoring=`"
                )
            if not isinstance(ref_cfg, dict):
                raise TypeError("`config['refactoring_config']` must be a dict")
            return cls(name, seed=seed, **ref_cfg, **cfg)
        return cls(refactoring, seed=seed, **cfg)
