"""The core UniLoss and the non-parametric surrogate share: refactorings, anchors, relaxation, kernels and a base.

Both losses relax a metric's comparisons (:mod:`.relaxation`), evaluate the metric exactly at anchors drawn around
the batch's hard configuration (:mod:`.anchors`, :mod:`.draw`) through the metric's refactoring
(:mod:`.refactorings`), and interpolate those values (:mod:`.kernels`); :mod:`.base` holds the loss of one batch and
the module base :class:`AnchoredLoss`. They differ only by their kernel: :mod:`metricloss.uniloss` uses inverse
distances, :mod:`metricloss.nonparametric` a Gaussian. Their builders (:func:`metricloss.build_uniloss`,
:func:`metricloss.fit_nonparametric`) share :mod:`.builder`. The built-in refactorings (``Accuracy``,
``AveragePrecision``, ``PCK``) are exported by :mod:`metricloss.uniloss`.
"""

from . import refactorings
from .anchors import AnchorSet, flip_toward_best, random_bits, sample_anchors
from .base import ANCHOR_DEFAULTS, ANCHOR_OPTIONS, AnchoredLoss, anchored_loss, check_options, check_refactoring
from .draw import anchored_comparisons, draw_anchors
from .kernels import (
    Kernel,
    gaussian_kernel,
    idw_kernel,
    inverse_distance_weighting,
    kernel_interpolation,
    squared_distances,
)
from .refactorings import REFACTORINGS, FunctionRefactoring, Refactoring
from .relaxation import relax

__all__ = [
    "ANCHOR_DEFAULTS",
    "ANCHOR_OPTIONS",
    "REFACTORINGS",
    "AnchorSet",
    "AnchoredLoss",
    "FunctionRefactoring",
    "Kernel",
    "Refactoring",
    "anchored_comparisons",
    "anchored_loss",
    "check_options",
    "check_refactoring",
    "draw_anchors",
    "flip_toward_best",
    "gaussian_kernel",
    "idw_kernel",
    "inverse_distance_weighting",
    "kernel_interpolation",
    "random_bits",
    "refactorings",
    "relax",
    "sample_anchors",
    "squared_distances",
]
