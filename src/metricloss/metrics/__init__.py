"""Batch-level metrics and the adapter that accepts names, callables and torchmetrics objects."""

from .base import Metric, MetricError, as_metric
from .classification import accuracy, top_k_accuracy

__all__ = ["Metric", "MetricError", "accuracy", "as_metric", "top_k_accuracy"]
