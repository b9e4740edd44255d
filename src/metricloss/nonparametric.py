r"""A non-parametric surrogate: Gaussian-kernel interpolation of exact metric values over anchors, with the
relaxation temperature and the kernel bandwidth chosen to maximise gradient agreement.

This method is **our design**, derived from the abstract of Yoa et al. 2021 ("correlated gradients": a
surrogate is good when its gradient points where the metric improves; we could not read the full text), on top
of UniLoss's relaxed comparison space (refactorings, sigmoid relaxation and adaptive anchors are reused from
:mod:`metricloss.anchored`, the core it shares with UniLoss: the two differ only by their kernel). Nothing is
learned by gradient descent; two hyper-parameters are picked on a grid.

For a batch, with refactoring :math:`e = g([f(s, y) > 0])`, comparisons :math:`c = f(s, y)` (:math:`n` of them),
relaxed configuration :math:`u = \sigma(c / \tau) \in (0, 1)^n` and anchors :math:`a_1, \dots, a_t \in \{0, 1\}^n`
drawn around the hard configuration :math:`[c > 0]` (best, good, bad and nearby ones,
:func:`~metricloss.uniloss.draw_anchors`), the metric is estimated by Nadaraya–Watson kernel regression

.. math::

    \hat g(u) = \frac{\sum_i k_i\, g(a_i)}{\sum_i k_i}, \qquad
    k_i = \exp\!\Big(-\frac{\lVert u - a_i \rVert_2^2}{2 (h \sqrt n)^2}\Big),

and the loss is :math:`L = s\,(g(\mathbf 1) - \hat g(u))` for higher-is-better metrics
(:math:`s\,(\hat g(u) - g(\mathbf 1))` otherwise): lower is better, 0 when the batch is all-correct. The constant
:math:`s` (``scale``, 1 by default) changes neither rankings nor gradient agreement, only the gradient's size.

**Bandwidth.** :math:`h` is relative to :math:`\sqrt n`, the diameter of the unit cube :math:`[0, 1]^n` in which
:math:`u` and the anchors lie, so one value means "the same share of the cube" for batches with different numbers
of comparisons (a batch of 128 samples and 10 classes has :math:`n = 1152`). Random (bad) anchors lie at about
:math:`\sqrt{n/2}` from any configuration, nearby and good anchors one flipped bit (distance about 1) from theirs:
:math:`h \approx 1/\sqrt n` weighs nearby anchors against each other, :math:`h \gtrsim 0.5` averages all anchors.
As :math:`h \to 0`, :math:`\hat g` at an anchor tends to that anchor's value (nearest-anchor interpolation); as
:math:`h \to \infty` it tends to the mean of the anchor values.

Unlike inverse-distance weights, Gaussian weights are invariant to a distance offset common to all anchors:
:math:`\lVert u - a\rVert^2 = \lVert u - b\rVert^2 + \sum_{j : a_j \ne b_j} (1 - 2|u_j - b_j|)` for the hard
configuration :math:`b`, and the first term cancels in the normalised weights, so the relaxation residual shared by
every anchor does not flatten the weights in high dimension.

**Temperature.** :math:`\tau` of the sigmoid relaxation (UniLoss eq. 5): small :math:`\tau` puts :math:`u` near the
hard configuration (sharp weights, gradients only from comparisons close to 0), large :math:`\tau` spreads it.

**Choosing (τ, h).** :func:`fit_nonparametric` measures, for every point of a small grid, the gradient agreement
(:func:`metricloss.evaluation.gradient_agreement`: per batch, the correlation between the loss's directional
derivatives and the metric's changes along random directions) on held-out *selection* batches and keeps the
argmax; its report is measured on *other* held-out batches. Gradient agreement ignores the gradient's size, which
falls like :math:`1/h^2` for large :math:`h` (about 0.003 for a batch of 64 with 5 classes at :math:`\tau = h = 1`);
so that the loss weighs something beside cross-entropy, :func:`fit_nonparametric` then sets :math:`s` so that the
median gradient norm :math:`\lVert\nabla_{\mathrm{pred}} L\rVert_2` over the selection batches is 1, the norm
ReLoss's gradient penalty asks of learned surrogates.

Example:
    >>> import torch
    >>> from metricloss.nonparametric import NonParametricLoss
    >>> loss_fn = NonParametricLoss("accuracy", num_classes=10, temperature=0.3, bandwidth=0.03, seed=0)
    >>> logits = torch.randn(4, 16, 10, requires_grad=True)  # a stack of 4 batches of 16
    >>> target = torch.randint(0, 10, (4, 16))
    >>> losses = loss_fn.batch_losses(logits, target)  # one loss per batch, differentiable
    >>> losses.sum().backward()
    >>> losses.shape, bool(((0 <= losses) & (losses <= 1)).all()), logits.grad.shape
    (torch.Size([4]), True, torch.Size([4, 16, 10]))

References:
    E. A. Nadaraya, *On estimating regression*, 1964; G. S. Watson, *Smooth regression analysis*, 1964.
    UniLoss: Unified Surrogate Loss by Adaptive Interpolation (ECCV 2020), sections 3.4–3.5.
    S. Yoa et al., *Learning to optimize non-differentiable metrics with correlated gradients* (2021), abstract.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch

from ._checks import check_int, check_positive
from .anchored.base import ANCHOR_DEFAULTS, AnchoredLoss, check_options
from .anchored.builder import AnchoredSetup, heldout_batches, setup
from .anchored.kernels import gaussian_kernel, kernel_interpolation
from .anchored.refactorings import Refactoring
from .evaluation import gradient_agreement, measure
from .tasks.base import Task

__all__ = [
    "DEFAULT_GRID",
    "OPTIONS",
    "NonParametricLoss",
    "fit_nonparametric",
    "kernel_interpolation",
    "nonparametric_loss",
]

#: Options of :class:`NonParametricLoss` and their defaults (anchors as in UniLoss: 16 of each random kind).
OPTIONS: dict[str, Any] = {"temperature": 1.0, "bandwidth": 0.1, **ANCHOR_DEFAULTS, "scale": 1.0}
_POSITIVE = ("temperature", "bandwidth", "scale")

#: The grid :func:`fit_nonparametric` searches by default (Cartesian product, 4 x 5 = 20 points). On random
#: 10-class batches of 128 the gradient agreement rose with h up to about 1 and was flat beyond (h = 3 and 10 within
#: 0.004 of h = 1): for large h the weights are nearly uniform and the estimate becomes linear in the squared
#: distances, whose gradient direction no longer depends on h.
DEFAULT_GRID: dict[str, tuple[float, ...]] = {
    "temperature": (0.3, 1.0, 3.0, 10.0),
    "bandwidth": (0.03, 0.1, 0.3, 1.0, 3.0),
}


def nonparametric_loss(pred: torch.Tensor, target: torch.Tensor, refactoring: Refactoring, **kwargs: Any
                       ) -> torch.Tensor:
    r"""The non-parametric loss of one batch, :math:`s\,(g(\mathbf 1) - \hat g(\sigma(f(\mathrm{pred},
    \mathrm{target}) / \tau)))` (see the module docstring).

    Args:
        pred, target: one batch in the refactoring's call shapes.
        refactoring: the metric's :class:`~metricloss.uniloss.Refactoring`.
        **kwargs: ``anchors=``, a fixed :class:`~metricloss.uniloss.AnchorSet` (then none is drawn; for tests and
            analysis); ``generator=``, the random source for the anchors; ``validate=False`` skips the input checks
            that synchronise with the device; and the keys of :data:`OPTIONS` (defaults there): ``temperature``
            :math:`\tau` of the sigmoid relaxation; ``bandwidth`` :math:`h` of the Gaussian kernel, relative to
            :math:`\sqrt n`; ``scale`` :math:`s > 0`, a constant factor (:func:`fit_nonparametric` sets it so that
            gradients have a median norm of 1 on its selection batches); the anchor options as in UniLoss
            (:func:`~metricloss.anchored.draw_anchors`).

    Returns:
        A 0-d tensor, lower is better, differentiable in ``pred`` (computed in at least float32).

    Example:
        >>> from metricloss.uniloss import Accuracy
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.5, 0.8]], requires_grad=True)
        >>> loss = nonparametric_loss(logits, torch.tensor([0, 1]), Accuracy(), temperature=0.3, bandwidth=0.3,
        ...                           generator=torch.Generator().manual_seed(0))
        >>> loss.backward()
        >>> best = nonparametric_loss(logits.detach()[:1], torch.tensor([0]), Accuracy(),
        ...                           generator=torch.Generator().manual_seed(0))
        >>> bool(logits.grad[1, 1] < 0), abs(best.item()) < 1e-6  # a correct batch scores (about) the best value
        (True, True)
    """
    return NonParametricLoss.functional(pred, target, refactoring, **kwargs)


class NonParametricLoss(AnchoredLoss, kind="nonparametric"):
    r"""The non-parametric surrogate as a loss module: ``loss(pred, target)`` is a scalar, lower is better,
    differentiable in ``pred``; no weights (see :func:`nonparametric_loss` and the module docstring).

    Args:
        refactoring: a :class:`~metricloss.uniloss.Refactoring` or a built-in name (``"accuracy"``,
            ``"average_precision"``, ``"pck"``).
        temperature: :math:`\tau` of the relaxation; bandwidth: :math:`h` of the kernel (relative to
            :math:`\sqrt n`); num_good, num_bad, num_nearby, good_flips, nearby_flips, fraction: anchor options;
            scale: a constant factor of the loss (defaults in :data:`OPTIONS`).
        seed: seeds the anchors (one generator per device); ``None`` uses torch's global random state.
        task: the task family (default: the refactoring's); validate_args: check inputs at every call (``False``
            skips the checks, which synchronise with the device).
        **refactoring_kwargs: arguments of a built-in refactoring (``num_classes=``, ``alpha=``).

    Example:
        >>> loss_fn = NonParametricLoss("pck", alpha=0.1, bandwidth=0.05, seed=0)
        >>> loss_fn
        NonParametricLoss(PCK(alpha=0.1), temperature=1.0, bandwidth=0.05, seed=0)
        >>> NonParametricLoss.from_config(loss_fn.config()).config() == loss_fn.config()
        True
    """

    OPTIONS: ClassVar[dict[str, Any]] = OPTIONS
    POSITIVE: ClassVar[tuple[str, ...]] = _POSITIVE
    label: ClassVar[str] = "non-parametric"
    kernel = staticmethod(gaussian_kernel)
    _shown: ClassVar[tuple[str, ...]] = ("temperature", "bandwidth")

    @property
    def temperature(self) -> float:
        return self.options["temperature"]

    @property
    def bandwidth(self) -> float:
        return self.options["bandwidth"]

    @property
    def scale(self) -> float:
        return self.options["scale"]

    def stack_losses(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Deprecated: :meth:`batch_losses` (now differentiable in ``pred`` for every kind of loss)."""
        warnings.warn("NonParametricLoss.stack_losses is deprecated: use batch_losses (differentiable in `pred`)",
                      DeprecationWarning, stacklevel=2)
        return self.batch_losses(pred, target)


def _grid_points(grid: Mapping[str, Sequence[float]] | None) -> list[tuple[float, float]]:
    grid = DEFAULT_GRID if grid is None else grid
    if not isinstance(grid, Mapping) or set(grid) != {"temperature", "bandwidth"}:
        got = sorted(grid) if isinstance(grid, Mapping) else type(grid).__name__
        raise ValueError(f"`grid` must be a dict with the keys 'temperature' and 'bandwidth' (sequences of "
                         f"positive numbers); got {got}")
    axes = []
    for name in ("temperature", "bandwidth"):
        seq = grid[name]
        if isinstance(seq, str | bytes) or not isinstance(seq, Iterable):
            raise TypeError(f"`grid['{name}']` must be a sequence of positive numbers, got {seq!r}")
        seq = [check_positive(v, f"grid['{name}']") for v in seq]
        if not seq:
            raise ValueError(f"`grid['{name}']` is empty: give at least one value")
        axes.append(seq)
    return list(itertools.product(*axes))


def fit_nonparametric(
    metric: Any,
    task: str | Task = "classification",
    *,
    outputs: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    grid: Mapping[str, Sequence[float]] | None = None,
    validation_batches: int = 64,
    batch_size: int | None = None,
    directions: int = 16,
    sigma: float = 0.3,
    seed: int = 0,
    gradient_norm: float | None = 1.0,
    options: dict[str, Any] | None = None,
    **task_kwargs: Any,
) -> NonParametricLoss:
    """Build the non-parametric surrogate for ``metric``, choosing (τ, h) on ``grid`` by gradient agreement.

    The held-out batches (``outputs``, shuffled by ``seed``, or the task's random batches G_R) are cut in two
    halves: on the first (selection) half, :func:`~metricloss.evaluation.gradient_agreement` is measured for every
    (temperature, bandwidth) of the grid, each with a fresh loss seeded by ``seed``; the argmax (the first one in
    grid order on ties; grid points where the metric never moved give NaN and are skipped) is kept. The report
    (Spearman, Kendall and gradient agreement beside the task's baseline loss) is measured on the second half.

    Args:
        metric: a metric name with a built-in refactoring (``"accuracy"``, ``"average_precision"``, ``"pck"``) or a
            :class:`~metricloss.uniloss.Refactoring`.
        task: the task family whose batches, metric and baseline are used.
        outputs: optional ``(pred, target)`` batches of real model outputs (e.g. checkpoints' outputs).
        grid: ``{"temperature": [...], "bandwidth": [...]}``, searched as a Cartesian product
            (default :data:`DEFAULT_GRID`).
        validation_batches: held-out batches in all (at most this many from ``outputs``), >= 4.
        batch_size: samples per batch (default: the task's).
        directions, sigma: random directions and their relative length for the gradient agreement (as the
            learner's report: 16 and 0.3).
        seed: seeds the held-out batches, the probes and the loss's anchors.
        gradient_norm: the median gradient norm the chosen loss is scaled to on the selection batches
            (``None``: no scaling, ``scale`` stays 1 or what ``options`` says).
        options: anchor options and refactoring arguments, e.g. ``{"num_bad": 32}`` or ``{"alpha": 0.05}``.
        **task_kwargs: the task's shape arguments (``num_classes=10``); ``num_classes`` also reaches the accuracy
            refactoring.

    Returns:
        A :class:`NonParametricLoss` with the chosen ``temperature`` and ``bandwidth``; its ``report.settings``
        holds the grid's scores under ``"grid"``.

    Example:
        >>> from metricloss.nonparametric import fit_nonparametric
        >>> loss_fn = fit_nonparametric("accuracy", num_classes=10, batch_size=32, validation_batches=8,
        ...                             grid={"temperature": [0.3, 1.0], "bandwidth": [0.03]}, directions=4)
        >>> loss_fn.report.method, loss_fn.temperature in (0.3, 1.0), len(loss_fn.report.settings["grid"])
        ('nonparametric', True, 2)
    """
    t0 = time.perf_counter()
    points = _grid_points(grid)
    s = setup(metric, task, options, OPTIONS, batch_size, seed, task_kwargs)
    validation_batches = check_int(validation_batches, "validation_batches", 4)
    directions = check_int(directions, "directions", 2)
    sigma = check_positive(sigma, "sigma")
    _check_fixed_options(s.options, gradient_norm)
    gradient_norm = check_positive(gradient_norm, "gradient_norm") if gradient_norm is not None else None
    gen = torch.Generator().manual_seed(seed)
    pred, target, validation = heldout_batches(s, outputs, validation_batches, gen, shuffle=True)
    if pred.shape[0] < 4:
        raise ValueError(f"`outputs` holds {pred.shape[0]} batches of batch_size={s.batch_size}; need at least 4 "
                         "(half select the hyper-parameters, half measure the report)")
    n_sel = pred.shape[0] // 2
    sel, rep = (pred[:n_sel], target[:n_sel]), (pred[n_sel:], target[n_sel:])
    probe = {"directions": directions, "sigma": sigma, "seed": seed}

    scores = _grid_scores(s, points, sel, probe)
    finite = [i for i, sc in enumerate(scores) if sc["gradient_agreement"] is not None]
    if not finite:
        raise ValueError(
            f"metric {s.metric.name!r} never changed along the probe directions on the {n_sel} selection batches, "
            "so gradient agreement is undefined at every grid point; use larger `sigma`, more `directions` or batches"
        )
    best = max(finite, key=lambda i: scores[i]["gradient_agreement"])  # first index on ties
    chosen = {"temperature": scores[best]["temperature"], "bandwidth": scores[best]["bandwidth"], **s.options}
    if gradient_norm is not None:
        chosen["scale"] = gradient_norm / _median_gradient_norm(s, chosen, sel)

    measured = NonParametricLoss(s.refactoring, seed=seed, task=s.task, **chosen)
    settings = {**measured.config(), "grid": scores, "selection_batches": int(n_sel), "directions": directions,
                "sigma": sigma, "gradient_norm": gradient_norm}
    report = measure(measured, s.task, s.metric, rep, method="nonparametric", validation=validation,
                     gradient_batches=None, gradient_dtype=torch.float64, settings=settings,
                     real_outputs=outputs is not None, **probe)
    loss_fn = NonParametricLoss(s.refactoring, seed=seed, task=s.task, **chosen)  # fresh anchor generators
    report.learn_seconds = time.perf_counter() - t0
    loss_fn.report = report
    return loss_fn


def _check_fixed_options(options: Mapping[str, Any], gradient_norm: float | None) -> None:
    """The loss options ``fit_nonparametric`` takes as given: none it chooses itself."""
    if "temperature" in options or "bandwidth" in options:
        raise ValueError("`options` must not set 'temperature' or 'bandwidth': they are chosen on `grid`")
    if gradient_norm is not None and "scale" in options:
        raise ValueError("`options` sets 'scale' and `gradient_norm` asks to choose it: pass gradient_norm=None "
                         "to keep your scale")
    check_options(options, OPTIONS, _POSITIVE, "non-parametric")


def _grid_scores(s: AnchoredSetup, points: list[tuple[float, float]], sel: tuple[torch.Tensor, torch.Tensor],
                 probe: dict[str, Any]) -> list[dict[str, float | None]]:
    """Gradient agreement on the selection batches at every (temperature, bandwidth) of the grid, each with a fresh
    loss seeded like the result. In float64: sharp settings (small τ or h) have gradients around 1e-30 or below,
    whose squares underflow float32 and would make the correlation meaningless."""
    scores: list[dict[str, float | None]] = []
    for tau, h in points:
        candidate = NonParametricLoss(s.refactoring, seed=s.seed, task=s.task, temperature=tau, bandwidth=h,
                                      **s.options)
        score = gradient_agreement(candidate.batch_losses, s.metric, sel[0].double(), sel[1], **probe)
        scores.append({"temperature": tau, "bandwidth": h,
                       "gradient_agreement": score if math.isfinite(score) else None})
    return scores


def _median_gradient_norm(s: AnchoredSetup, chosen: dict[str, Any], sel: tuple[torch.Tensor, torch.Tensor]) -> float:
    """The median over the selection batches of the unscaled chosen loss's gradient norm (> 0, or a ValueError)."""
    unscaled = NonParametricLoss(s.refactoring, seed=s.seed, task=s.task, **chosen)
    x = sel[0].double().requires_grad_(True)
    (grads,) = torch.autograd.grad(unscaled.batch_losses(x, sel[1]).sum(), x)
    median = float(grads.flatten(1).norm(dim=1).median())
    if not median > 0:
        raise ValueError(
            f"the chosen loss (temperature {chosen['temperature']}, bandwidth {chosen['bandwidth']}) has zero "
            "gradient on most selection batches, so it cannot be scaled to `gradient_norm`; pass "
            "gradient_norm=None or a grid with larger values"
        )
    return median
