"""UniLoss: a metric refactored as comparisons → binary variables → metric, relaxed by a sigmoid and interpolated
by inverse-distance weighting over adaptive anchors (no learned weights).

>>> from metricloss import uniloss
>>> loss_fn = uniloss.build("average_precision", seed=0)
>>> scores = torch.tensor([2.0, -1.0, 0.5, 1.0], requires_grad=True)
>>> loss = loss_fn(scores, torch.tensor([1, 0, 0, 1]))
>>> loss.backward()
>>> bool(scores.grad[3] < 0), bool(scores.grad[2] > 0)  # push the positive up, the negative down
(True, True)

Modules: :mod:`.module` (the loss), :mod:`.integration` (:func:`build_uniloss`: build and measure). The core
it shares with the non-parametric surrogate lives in :mod:`metricloss.anchored` (refactorings: f and g of built-in
metrics and the interface for yours; sigmoid relaxation; inverse-distance weighting; good, bad and nearby
anchors); its names are exported here too.
"""

import torch  # noqa: F401  (used by the doctest above)

from ..anchored.anchors import AnchorSet, flip_toward_best, random_bits, sample_anchors
from ..anchored.draw import anchored_comparisons, draw_anchors
from ..anchored.kernels import inverse_distance_weighting, squared_distances
from ..anchored.refactorings import (
    PCK,
    REFACTORINGS,
    Accuracy,
    AveragePrecision,
    FunctionRefactoring,
    PCKLayout,
    Refactoring,
    accuracy_comparisons,
    accuracy_from_bits,
    average_precision_comparisons,
    average_precision_from_bits,
    pck_comparisons,
    pck_from_bits,
)
from ..anchored.relaxation import relax
from .integration import METRIC_REFACTORINGS, build_uniloss, learn_uniloss, refactoring_for
from .module import OPTIONS, UniLoss, build, uniloss

__all__ = [
    "METRIC_REFACTORINGS",
    "OPTIONS",
    "PCK",
    "REFACTORINGS",
    "Accuracy",
    "AnchorSet",
    "AveragePrecision",
    "FunctionRefactoring",
    "PCKLayout",
    "Refactoring",
    "UniLoss",
    "accuracy_comparisons",
    "accuracy_from_bits",
    "anchored_comparisons",
    "average_precision_comparisons",
    "average_precision_from_bits",
    "build",
    "build_uniloss",
    "draw_anchors",
    "flip_toward_best",
    "inverse_distance_weighting",
    "learn_uniloss",
    "pck_comparisons",
    "pck_from_bits",
    "random_bits",
    "refactoring_for",
    "relax",
    "sample_anchors",
    "squared_distances",
    "uniloss",
]
