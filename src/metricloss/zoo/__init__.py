"""Pretrained surrogates shipped inside the package (no download), each with a model card.

Each entry is ``<name>.safetensors`` beside its card ``<name>.md`` in this folder, produced by
``benchmarks/make_zoo.py``.
"""

from __future__ import annotations

from importlib import resources

from ..surrogate import Surrogate

__all__ = ["available", "pretrained"]


def available() -> list[str]:
    """Names of the shipped surrogates."""
    folder = resources.files(__name__)
    return sorted(p.name[: -len(".safetensors")] for p in folder.iterdir() if p.name.endswith(".safetensors"))


def pretrained(name: str) -> Surrogate:
    """Load a shipped surrogate, e.g. ``pretrained("classification-accuracy")``."""
    from ..io import load

    names = available()
    if name not in names:
        raise ValueError(f"`name`: no shipped surrogate {name!r}; available: {', '.join(names) or 'none'}")
    with resources.as_file(resources.files(__name__) / f"{name}.safetensors") as path:
        return load(path)
