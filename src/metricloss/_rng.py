"""Seeding without touching the caller's random state (a leaf: imports nothing of the package).

Building a network draws its initial weights from torch's *global* CPU generator. :func:`private_rng` lets the
library do that reproducibly while leaving the caller's random state as it was, and makes concurrent callers
(threads) take turns, so two threads that seed alike draw alike and neither sees the other's seed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["private_rng"]

#: One lock for every use of the global generator by the library: saving, seeding and restoring must not interleave.
_GLOBAL_RNG_LOCK = threading.RLock()


@contextmanager
def private_rng(seed: int | None = None) -> Iterator[None]:
    """Run the block with torch's global CPU generator seeded with ``seed`` (or left as is when ``None``), then
    restore the state it had before; holds a process-wide lock for the duration.

    Example:
        >>> before = torch.get_rng_state()
        >>> with private_rng(0):
        ...     a = torch.rand(2)
        >>> with private_rng(0):
        ...     b = torch.rand(2)
        >>> torch.equal(a, b), torch.equal(before, torch.get_rng_state())
        (True, True)
    """
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        yield
