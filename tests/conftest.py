"""Test-session settings: one torch thread per process, so `pytest -n 2` does not oversubscribe two cores, and the
hypothesis profile (derandomised unless `make fuzz` asks for fresh examples; see profiles.py)."""

import pytest
import torch

import profiles  # noqa: F401  (registers and loads the hypothesis profile before any test module is imported)

torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Every test module starts on one torch thread, whatever a module before it in this process left set."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
