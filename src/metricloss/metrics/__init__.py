"""Batch-level metrics and the adapter that accepts names, callables and torchmetrics objects."""

from .base import Metric, MetricError, as_metric
from .classification import accuracy, top_k_accuracy
from .pose import pck, pckh, percentage_correct_keypoints, percentage_correct_keypoints_head
from .sequence import bleu, chrf, edit_distance, rouge_l, token_f1

__all__ = [
    "Metric",
    "MetricError",
    "accuracy",
    "as_metric",
    "bleu",
    "chrf",
    "edit_distance",
    "pck",
    "pckh",
    "percentage_correct_keypoints",
    "percentage_correct_keypoints_head",
    "rouge_l",
    "token_f1",
    "top_k_accuracy",
]
