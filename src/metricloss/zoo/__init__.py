"""Pretrained surrogates shipped inside the package (no download), each with a model card.

Each entry is ``<name>.safetensors`` beside its card ``<name>.md`` in this folder, produced by
``benchmarks/make_zoo.py`` (one entry per surrogate; ``--check NAME`` re-measures a card's rows).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from ..io import load
from ..surrogate import MetricLoss
from ..tasks.base import get_task

__all__ = ["available", "pretrained"]


def available() -> list[str]:
    """Names of the shipped surrogates."""
    folder = resources.files(__name__)
    return sorted(p.name[: -len(".safetensors")] for p in folder.iterdir() if p.name.endswith(".safetensors"))


def pretrained(name: str, **task_kwargs: Any) -> MetricLoss:
    """Load a shipped surrogate, e.g. ``pretrained("classification-accuracy")``.

    Task shape arguments (e.g. ``num_classes=100``) replace those it was learned with, for surrogates whose
    network does not depend on them; its model card says for which shapes its numbers were measured.
    """
    names = available()
    if name not in names:
        raise ValueError(f"`name`: no shipped surrogate {name!r}; available: {', '.join(names) or 'none'}")
    with resources.as_file(resources.files(__name__) / f"{name}.safetensors") as path:
        sur = load(path)
    if task_kwargs:
        sur.task = get_task(sur.task.name, **{**sur.task.config(), **task_kwargs})
    return sur
