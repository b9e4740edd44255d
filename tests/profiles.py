"""Hypothesis settings shared by the property tests.

CI (the default, ``HYPOTHESIS_PROFILE=ci``) is derandomised: every run draws the same examples and keeps no
example database, so the same commit gives the same result on every machine. ``make fuzz`` loads the
``fuzz`` profile (fresh random examples on every run) and multiplies every test's example count by
``METRICLOSS_FUZZ_FACTOR``; a failure it finds is printed with its ``@reproduce_failure`` blob and becomes
an explicit ``@example`` in the test.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("fuzz", derandomize=False, database=None, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

FACTOR = int(os.environ.get("METRICLOSS_FUZZ_FACTOR", "1"))


def examples(n: int) -> int:
    """A test's example count: ``n`` in CI, ``n * METRICLOSS_FUZZ_FACTOR`` under ``make fuzz``."""
    return n * FACTOR
