"""The parts of :func:`metricloss.learn`: settings (:mod:`.settings`), batch preparation (:mod:`.batches`) and
the trainer with early stopping and checkpoints (:mod:`.trainer`). ``learn`` itself composes them."""

from .batches import LearningBatches, StepBatches, TimedMetric, pool_size, prepare_batches
from .settings import LearnSettings
from .trainer import Checkpointing, EarlyStopping, Trainer

__all__ = [
    "Checkpointing", "EarlyStopping", "LearnSettings", "LearningBatches", "StepBatches", "TimedMetric", "Trainer",
    "pool_size", "prepare_batches",
]
