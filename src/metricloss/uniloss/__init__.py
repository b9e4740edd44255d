"""UniLoss: a metric refactored as comparisons → binary variables → metric, relaxed by a sigmoid and interpolated
by inverse-distance weighting over adaptive anchors (no learned weights).

>>> from metricloss import uniloss
>>> loss_fn = uniloss.build("average_precision", seed=0)
>>> scores = torch.tensor([2.0, -1.0, 0.5, 1.0], requires_grad=True)
>>> loss = loss_fn(scores, torch.tensor([1, 0, 0, 1]))
>>> loss.backward()
>>> bool(scores.grad[3] < 0), bool(scores.grad[2] > 0)  # push the positive up, the negative down
(True, True)

Modules: :mod:`.refactorings` (f and g of built-in metrics, and the interface for yours),
:mod:`.interpolation` (sigmoid relaxation and inverse-distance weighting), :mod:`.anchors` (good, bad and
nearby anchors), :mod:`.module` (the loss), :mod:`.integration` (``learn_uniloss``: build and measure).
"""

import torch  # noqa: F401  (used by the doctest above)

from .anchors import AnchorSet, flip_toward_best, sample_anchors
from .integration import METRIC_REFACTORINGS, learn_uniloss, refactoring_for
from .interpolation import inverse_distance_weighting, relax, squared_distances
from .module import OPTIONS, UniLoss, build, draw_anchors, uniloss
from .refactorings import (
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
    "average_precision_comparisons",
    "average_precision_from_bits",
    "build",
    "draw_anchors",
    "flip_toward_best",
    "inverse_distance_weighting",
    "learn_uniloss",
    "pck_comparisons",
    "pck_from_bits",
    "refactoring_for",
    "relax",
    "sample_anchors",
    "squared_distances",
    "uniloss",
]
