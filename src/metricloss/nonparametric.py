r"""A non-parametric surrogate: Gaussian-kernel interpolation of exact metric values over anchors, with the
relaxation temperature and the kernel bandwidth chosen to maximise gradient agreement.

This method is **our design**, derived from the abstract of Yoa et al. 2021 ("correlated gradients": a
surrogate is good when its gradient points where the metric improves; we could not read the full text), on top
of UniLoss's relaxed comparison space (refactorings, sigmoid relaxation and adaptive anchors are reused from
:mod:`metricloss.uniloss`). Nothing is learned by gradient descent; two hyper-parameters are picked on a grid.

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
    >>> logits = torch.randn(16, 10, requires_grad=True)
    >>> target = torch.randint(0, 10, (16,))
    >>> loss = loss_fn(logits, target)
    >>> loss.backward()
    >>> logits.grad.shape, 0.0 <= loss.item() <= 1.0
    (torch.Size([16, 10]), True)

References:
    E. A. Nadaraya, *On estimating regression*, 1964; G. S. Watson, *Smooth regression analysis*, 1964.
    UniLoss: Unified Surrogate Loss by Adaptive Interpolation (ECCV 2020), sections 3.4–3.5.
    S. Yoa et al., *Learning to optimize non-differentiable metrics with correlated gradients* (2021), abstract.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch

from ._checks import check_float_tensor, check_positive
from .evaluation import agreement, gradient_agreement, stack_batches
from .metrics.base import Metric, as_metric
from .report import Report
from .tasks.base import Task, get_task
from .uniloss import (
    METRIC_REFACTORINGS,
    AnchorSet,
    Refactoring,
    draw_anchors,
    refactoring_for,
    relax,
    squared_distances,
)
from .uniloss.configured import ANCHOR_OPTIONS, ConfiguredLoss, check_refactoring
from .uniloss.module import anchored_comparisons

__all__ = [
    "DEFAULT_GRID",
    "OPTIONS",
    "NonParametricLoss",
    "fit_nonparametric",
    "kernel_interpolation",
    "nonparametric_loss",
]

#: Options of :class:`NonParametricLoss` and their defaults (anchors as in UniLoss: 16 of each random kind).
OPTIONS: dict[str, Any] = {
    "temperature": 1.0,
    "bandwidth": 0.1,
    "num_good": 16,
    "num_bad": 16,
    "num_nearby": 16,
    "good_flips": 1,
    "nearby_flips": 1,
    "fraction": 1.0,
    "scale": 1.0,
}

#: The grid :func:`fit_nonparametric` searches by default (Cartesian product, 4 x 5 = 20 points). On random
#: 10-class batches of 128 the gradient agreement rose with h up to about 1 and was flat beyond (h = 3 and 10 within
#: 0.004 of h = 1): for large h the weights are nearly uniform and the estimate becomes linear in the squared
#: distances, whose gradient direction no longer depends on h.
DEFAULT_GRID: dict[str, tuple[float, ...]] = {
    "temperature": (0.3, 1.0, 3.0, 10.0),
    "bandwidth": (0.03, 0.1, 0.3, 1.0, 3.0),
}


def _count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return value


def _check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise TypeError(f"unknown non-parametric option(s) {sorted(unknown)}; known: {sorted(OPTIONS)}")
    out = {**OPTIONS, **options}
    out["temperature"] = check_positive(out["temperature"], "temperature")
    out["bandwidth"] = check_positive(out["bandwidth"], "bandwidth")
    out["scale"] = check_positive(out["scale"], "scale")
    for name in ("num_good", "num_bad", "num_nearby"):
        out[name] = _count(out[name], name, 0)
    for name in ("good_flips", "nearby_flips"):
        out[name] = _count(out[name], name, 1)
    try:
        out["fraction"] = float(out["fraction"])
    except (TypeError, ValueError):
        raise TypeError(f"`fraction` must be a number in (0, 1], got {options.get('fraction')!r}") from None
    if not 0.0 < out["fraction"] <= 1.0:
        raise ValueError(f"`fraction` must be in (0, 1] (share of binary variables relaxed per call), got "
                         f"{options.get('fraction')!r}")
    return out


def kernel_interpolation(
    point: torch.Tensor, anchors: torch.Tensor, values: torch.Tensor, bandwidth: float
) -> torch.Tensor:
    r"""Nadaraya–Watson estimate of ``values`` at ``point`` with a Gaussian kernel of relative bandwidth ``h``.

    .. math:: \hat g(u) = \sum_i w_i\, g(a_i), \qquad
        w = \mathrm{softmax}_i\Big(-\frac{\lVert u - a_i\rVert_2^2}{2 h^2 n}\Big)

    (:math:`n` = length of ``point``; the softmax form never overflows or underflows to 0/0).

    Args:
        point: :math:`u`, shape ``(n,)``, floating point.
        anchors: :math:`a_i`, shape ``(A, n)``, bool (or float).
        values: :math:`g(a_i)`, shape ``(A,)``.
        bandwidth: :math:`h > 0`, relative to :math:`\sqrt n`.

    Returns:
        A 0-d tensor in ``point``'s dtype, differentiable in ``point``.

    Example:
        >>> anchors = torch.tensor([[True, True], [False, False]])
        >>> values = torch.tensor([1.0, 0.0])
        >>> kernel_interpolation(torch.tensor([0.5, 0.5]), anchors, values, bandwidth=0.5)
        tensor(0.5000)
        >>> kernel_interpolation(torch.tensor([1.0, 1.0]), anchors, values, bandwidth=0.01)
        tensor(1.)
    """
    bandwidth = check_positive(bandwidth, "bandwidth")
    values = check_float_tensor(values, "values")
    d2 = squared_distances(point, anchors)
    if values.shape != d2.shape:
        raise ValueError(f"`values` must have shape ({anchors.shape[0]},), one per anchor; got {tuple(values.shape)}")
    if values.shape[0] == 0:
        raise ValueError("`anchors` is empty: at least one anchor is needed")
    n = max(point.shape[0], 1)
    weights = torch.softmax(-d2.clamp_min(0) / (2.0 * bandwidth * bandwidth * n), dim=0)
    return (weights * values.to(point.dtype)).sum()


def nonparametric_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    refactoring: Refactoring,
    *,
    temperature: float = 1.0,
    bandwidth: float = 0.1,
    num_good: int = 16,
    num_bad: int = 16,
    num_nearby: int = 16,
    good_flips: int = 1,
    nearby_flips: int = 1,
    fraction: float = 1.0,
    scale: float = 1.0,
    anchors: AnchorSet | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""The non-parametric loss of one batch, :math:`s\,(g(\mathbf 1) - \hat g(\sigma(f(\mathrm{pred},
    \mathrm{target}) / \tau)))` (see the module docstring).

    Args:
        pred, target: one batch in the refactoring's call shapes.
        refactoring: the metric's :class:`~metricloss.uniloss.Refactoring`.
        temperature: :math:`\tau` of the sigmoid relaxation.
        bandwidth: :math:`h` of the Gaussian kernel, relative to :math:`\sqrt n`.
        num_good, num_bad, num_nearby, good_flips, nearby_flips, fraction: anchor options, as in UniLoss
            (:func:`~metricloss.uniloss.draw_anchors`).
        scale: :math:`s > 0`, a constant factor (:func:`fit_nonparametric` sets it so that gradients have a
            median norm of 1 on its selection batches).
        anchors: a fixed :class:`~metricloss.uniloss.AnchorSet` (then none is drawn; for tests and analysis).
        generator: random source for the anchors.

    Returns:
        A 0-d tensor, lower is better, differentiable in ``pred`` (computed in at least float32).

    Example:
        >>> from metricloss.uniloss import Accuracy
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.5, 0.8]], requires_grad=True)
        >>> loss = nonparametric_loss(logits, torch.tensor([0, 1]), Accuracy(), temperature=0.3, bandwidth=0.3,
        ...                           generator=torch.Generator().manual_seed(0))
        >>> loss.backward()
        >>> bool(logits.grad[1, 1] < 0)  # raising the wrong sample's target logit lowers the loss
        True
    """
    refactoring = check_refactoring(refactoring)
    opts = _check_options({
        "temperature": temperature, "bandwidth": bandwidth, "num_good": num_good, "num_bad": num_bad,
        "num_nearby": num_nearby, "good_flips": good_flips, "nearby_flips": nearby_flips, "fraction": fraction,
        "scale": scale,
    })
    refactoring.check(pred, target)
    comparisons, context = refactoring.compare(pred, target)
    if anchors is None:
        anchors = draw_anchors(refactoring, comparisons, context, generator=generator,
                               **{k: opts[k] for k in ANCHOR_OPTIONS})
    flat = anchored_comparisons(comparisons, anchors)
    u = relax(flat, opts["temperature"])
    estimate = kernel_interpolation(u, anchors.bits, anchors.values, opts["bandwidth"])
    gap = opts["scale"] * (anchors.best_value - estimate)
    return gap if refactoring.higher_is_better else -gap


class NonParametricLoss(ConfiguredLoss):
    r"""The non-parametric surrogate as a loss module: ``loss(pred, target)`` is a scalar, lower is better,
    differentiable in ``pred``; no weights (see :func:`nonparametric_loss` and the module docstring).

    Args:
        refactoring: a :class:`~metricloss.uniloss.Refactoring` or a built-in name (``"accuracy"``,
            ``"average_precision"``, ``"pck"``).
        temperature: :math:`\tau` of the relaxation; bandwidth: :math:`h` of the kernel (relative to
            :math:`\sqrt n`); num_good, num_bad, num_nearby, good_flips, nearby_flips, fraction: anchor options;
            scale: a constant factor of the loss (defaults in :data:`OPTIONS`).
        seed: seeds the anchors (one generator per device); ``None`` uses torch's global random state.
        **refactoring_kwargs: arguments of a built-in refactoring (``num_classes=``, ``alpha=``).

    Example:
        >>> loss_fn = NonParametricLoss("pck", alpha=0.1, bandwidth=0.05, seed=0)
        >>> loss_fn
        NonParametricLoss(PCK(alpha=0.1), temperature=1.0, bandwidth=0.05, seed=0)
        >>> NonParametricLoss.from_config(loss_fn.config()).config() == loss_fn.config()
        True
    """

    method: ClassVar[str] = "nonparametric"
    OPTIONS: ClassVar[dict[str, Any]] = OPTIONS

    @classmethod
    def _checked_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        return _check_options(options)

    @property
    def temperature(self) -> float:
        return self.options["temperature"]

    @property
    def bandwidth(self) -> float:
        return self.options["bandwidth"]

    @property
    def scale(self) -> float:
        return self.options["scale"]

    def forward(self, pred: torch.Tensor, target: torch.Tensor, anchors: AnchorSet | None = None) -> torch.Tensor:
        device = pred.device if isinstance(pred, torch.Tensor) else torch.device("cpu")
        return nonparametric_loss(pred, target, self.refactoring, anchors=anchors,
                                  generator=self._generator(device), **self.options)

    def stack_losses(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Losses of a stack of batches ``(N, ...)`` -> ``(N,)``, differentiable in ``pred`` (the per-batch loss
        function :func:`~metricloss.evaluation.gradient_agreement` expects)."""
        return torch.stack([self(p, t) for p, t in zip(pred, target, strict=True)])

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items()
                         if k in ("temperature", "bandwidth") or v != OPTIONS[k])
        seed = f", seed={self.seed}" if self.seed is not None else ""
        return f"{self.refactoring!r}, {opts}{seed}"


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
    task_obj = get_task(task, **task_kwargs)
    validation_batches = _count(validation_batches, "validation_batches", 4)
    directions = _count(directions, "directions", 2)
    sigma = check_positive(sigma, "sigma")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an integer, got {seed!r}")
    opts = dict(options or {})
    if "temperature" in opts or "bandwidth" in opts:
        raise ValueError("`options` must not set 'temperature' or 'bandwidth': they are chosen on `grid`")
    if gradient_norm is not None:
        gradient_norm = check_positive(gradient_norm, "gradient_norm")
        if "scale" in opts:
            raise ValueError("`options` sets 'scale' and `gradient_norm` asks to choose it: pass gradient_norm=None "
                             "to keep your scale")
    ref_kwargs = {k: opts.pop(k) for k in list(opts) if k not in OPTIONS}
    if isinstance(metric, str | Metric) and METRIC_REFACTORINGS.get(getattr(metric, "name", metric)) == "accuracy":
        ref_kwargs.setdefault("num_classes", task_kwargs.get("num_classes"))
    refactoring = refactoring_for(metric, **ref_kwargs)
    _check_options(opts)
    if isinstance(metric, Refactoring) or (isinstance(metric, str) and metric not in task_obj.metrics):
        met = Metric(refactoring.name, refactoring.metric, refactoring.higher_is_better)
    else:
        met = as_metric(metric, None, task_obj.metrics)

    batch_size = _count(batch_size if batch_size is not None else task_obj.default_batch_size, "batch_size", 1)
    gen = torch.Generator().manual_seed(seed)
    if outputs is not None:
        pred, target = stack_batches(outputs, batch_size, task_obj)
        if pred.shape[0] < 4:
            raise ValueError(f"`outputs` holds {pred.shape[0]} batches of batch_size={batch_size}; need at least 4 "
                             "(half select the hyper-parameters, half measure the report)")
        keep = torch.randperm(pred.shape[0], generator=gen)[:validation_batches]
        pred, target = pred[keep], target[keep]
        validation = "held-out model outputs"
    else:
        pred, target = task_obj.random_batches(validation_batches, batch_size, gen)
        validation = "random batches (G_R)"
    n_sel = pred.shape[0] // 2
    sel_p, sel_t, rep_p, rep_t = pred[:n_sel], target[:n_sel], pred[n_sel:], target[n_sel:]

    def probe(loss_fn: Any, p: torch.Tensor, t: torch.Tensor) -> float:
        # float64: sharp settings (small τ or h) have gradients around 1e-30 or below, whose squares underflow
        # float32 and would make the correlation meaningless; the correlation itself does not depend on scale.
        return gradient_agreement(loss_fn, met, p.double(), t, directions=directions, sigma=sigma, seed=seed)

    scores: list[dict[str, float | None]] = []
    for tau, h in points:
        candidate = NonParametricLoss(refactoring, seed=seed, temperature=tau, bandwidth=h, **opts)
        score = probe(candidate.stack_losses, sel_p, sel_t)
        scores.append({"temperature": tau, "bandwidth": h,
                       "gradient_agreement": score if math.isfinite(score) else None})
    finite = [i for i, s in enumerate(scores) if s["gradient_agreement"] is not None]
    if not finite:
        raise ValueError(
            f"metric {met.name!r} never changed along the probe directions on the {n_sel} selection batches, so "
            "gradient agreement is undefined at every grid point; use larger `sigma`, more `directions` or batches"
        )
    best = max(finite, key=lambda i: scores[i]["gradient_agreement"])  # first index on ties
    chosen = {"temperature": scores[best]["temperature"], "bandwidth": scores[best]["bandwidth"]}
    if gradient_norm is not None:
        unscaled = NonParametricLoss(refactoring, seed=seed, **chosen, **opts)
        x = sel_p.double().requires_grad_(True)
        (grads,) = torch.autograd.grad(unscaled.stack_losses(x, sel_t).sum(), x)
        median = float(grads.flatten(1).norm(dim=1).median())
        if not median > 0:
            raise ValueError(
                f"the chosen loss (temperature {chosen['temperature']}, bandwidth {chosen['bandwidth']}) has zero "
                "gradient on most selection batches, so it cannot be scaled to `gradient_norm`; pass "
                "gradient_norm=None or a grid with larger values"
            )
        opts = {**opts, "scale": gradient_norm / median}

    measured = NonParametricLoss(refactoring, seed=seed, **chosen, **opts)
    t_metric = time.perf_counter()
    values = met.evaluate(rep_p, rep_t)
    metric_seconds = time.perf_counter() - t_metric
    ours = agreement(measured.batch_losses(rep_p, rep_t), values, met.higher_is_better)
    with torch.no_grad():
        base = agreement(task_obj.baseline(rep_p, rep_t), values, met.higher_is_better)
    grad_ours = probe(measured.stack_losses, rep_p, rep_t)
    grad_base = probe(task_obj.baseline, rep_p, rep_t)

    loss_fn = NonParametricLoss(refactoring, seed=seed, **chosen, **opts)  # fresh anchor generators
    loss_fn.report = Report.from_agreement(
        task_obj, met, "nonparametric", ours, base,
        validation=validation,
        n_validation_batches=int(rep_p.shape[0]),
        batch_size=batch_size,
        gradient_agreement=grad_ours,
        baseline_gradient_agreement=grad_base,
        settings={**loss_fn.config(), "grid": scores, "selection_batches": int(n_sel), "directions": directions,
                  "sigma": sigma, "gradient_norm": gradient_norm},
        learn_seconds=time.perf_counter() - t0,
        metric_seconds=metric_seconds,
    )
    return loss_fn
