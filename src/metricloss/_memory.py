"""Leaf: the memory budget learning and measurement are sized by, and the arithmetic that turns bytes into counts.

A budget is a number of bytes (``int``), a string with a unit (``"512MiB"``, ``"2GiB"``, ``"1.5 GB"``) or ``None``
for :data:`DEFAULT_MEMORY_BUDGET`. It is split into shares: the G_R pool may take :data:`POOL_SHARE` of it, the
held-out batches :data:`HELDOUT_SHARE`, and each chunk of a measurement (losses of a stack of batches, the gradient
probe's perturbed copies) :data:`CHUNK_SHARE`. What a batch costs comes from the task
(:meth:`metricloss.tasks.base.Task.batch_nbytes`), so the counts follow the real sizes, not a fixed number of batches.
"""

from __future__ import annotations

import re

__all__ = [
    "CHUNK_SHARE", "DEFAULT_MEMORY_BUDGET", "HELDOUT_SHARE", "POOL_SHARE", "PROBE_COPIES", "chunk_count",
    "fit_count", "format_bytes", "parse_budget",
]

#: The default budget: 2 GiB on top of the inputs (``outputs=`` and what the caller holds).
DEFAULT_MEMORY_BUDGET = 2 * 1024**3
#: Shares of the budget: the G_R pool, the held-out batches, and one chunk of any measurement.
POOL_SHARE, HELDOUT_SHARE, CHUNK_SHARE = 0.5, 0.25, 0.125
#: Copies of a batch's predictions the gradient probe holds per direction (the direction, the two antithetic
#: points, and the metric's working copy of each point), and beyond the directions (input, gradient, graph).
PROBE_COPIES, PROBE_EXTRA = 5, 4

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_budget(budget: int | float | str | None, name: str = "memory_budget") -> int:
    """Bytes of ``budget`` (see the module's docstring); errors name ``name`` and the accepted forms."""
    if budget is None:
        return DEFAULT_MEMORY_BUDGET
    value: float
    if isinstance(budget, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", budget)
        if match is None or match.group(2).lower() not in _UNITS:
            raise ValueError(f"`{name}` must be a number of bytes or a size such as '512MiB' or '2GiB', "
                             f"got {budget!r}")
        value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    elif isinstance(budget, bool) or not isinstance(budget, int | float):
        raise TypeError(f"`{name}` must be a number of bytes (int), a size string such as '2GiB', or None; "
                        f"got {type(budget).__name__}")
    else:
        value = float(budget)
    if not value >= 1:
        raise ValueError(f"`{name}` must be at least 1 byte, got {budget!r}")
    return int(value)


def fit_count(item_bytes: int, budget: int, share: float) -> int:
    """How many items of ``item_bytes`` fit in ``share`` of ``budget`` (0 when not even one does)."""
    return int(budget * share) // max(int(item_bytes), 1)


def chunk_count(item_bytes: int, budget: int | None, most: int, copies: float = 1.0) -> int:
    """Items per chunk of a measurement: at most ``most``, and as many as fit in :data:`CHUNK_SHARE` of ``budget``
    when each holds ``copies`` times ``item_bytes`` (never fewer than one: one item is the smallest unit of work).
    ``budget=None``: ``most``."""
    if budget is None:
        return max(1, most)
    return max(1, min(most, fit_count(int(item_bytes * copies), budget, CHUNK_SHARE)))


def format_bytes(n: float) -> str:
    """``n`` bytes as ``"1.5 GiB"`` (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover - the loop always returns
