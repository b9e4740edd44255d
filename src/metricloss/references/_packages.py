"""Leaf: whether an optional package of a reference loss is installed (without importing it)."""

from __future__ import annotations

import importlib.util

__all__ = ["installed"]


def installed(module: str) -> bool:
    """``True`` when ``module`` can be imported (its top-level package is found)."""
    return importlib.util.find_spec(module.split(".")[0]) is not None
