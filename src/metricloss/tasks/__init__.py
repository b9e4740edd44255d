"""Task families: call shapes, surrogate networks, random generators, baselines and built-in metrics."""

from . import classification, ordinal, pose, segmentation, sequence, set
from .base import TASKS, Task, get_task, register_task

__all__ = ["TASKS", "Task", "classification", "get_task", "ordinal", "pose", "register_task", "segmentation",
           "sequence", "set"]
