"""Task families: call shapes, surrogate networks, random generators, baselines and built-in metrics."""

from . import classification, pose, sequence
from .base import TASKS, Task, get_task, register_task

__all__ = ["TASKS", "Task", "classification", "get_task", "pose", "register_task", "sequence"]
