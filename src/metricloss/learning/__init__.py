"""The parts of :func:`metricloss.learn`: settings (:mod:`.settings`), batch preparation (:mod:`.batches`) and
the trainer with early stopping and checkpoints (:mod:`.trainer`), the work split across ranks and worker processes
(:mod:`.distributed`). ``learn`` itself composes them."""

from .batches import LearningBatches, StepBatches, TimedMetric, pool_size, prepare_batches
from .distributed import SharedMetric
from .settings import LearnSettings
from .trainer import Checkpointing, DistributedTrainer, EarlyStopping, Trainer

__all__ = [
    "Checkpointing", "DistributedTrainer", "EarlyStopping", "LearnSettings", "LearningBatches", "SharedMetric",
    "StepBatches", "TimedMetric", "Trainer", "pool_size", "prepare_batches",
]
