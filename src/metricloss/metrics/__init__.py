"""Batch-level metrics and the adapter that accepts names, callables and torchmetrics objects."""

from .base import Metric, MetricError, as_metric
from .classification import accuracy, balanced_accuracy, cohen_kappa, macro_f1, mcc, top_k_accuracy
from .pose import pck, pckh, percentage_correct_keypoints, percentage_correct_keypoints_head
from .sequence import bleu, chrf, edit_distance, rouge_l, token_f1

__all__ = [
    "Metric",
    "MetricError",
    "accuracy",
    "as_metric",
    "balanced_accuracy",
    "bleu",
    "chrf",
    "cohen_kappa",
    "edit_distance",
    "macro_f1",
    "mcc",
    "pck",
    "pckh",
    "percentage_correct_keypoints",
    "percentage_correct_keypoints_head",
    "rouge_l",
    "token_f1",
    "top_k_accuracy",
]
