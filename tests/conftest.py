"""Test-session settings: one torch thread per process, so `pytest -n 2` does not oversubscribe two cores, and the
hypothesis profile (derandomised unless `make fuzz` asks for fresh examples; see profiles.py)."""

import torch

import profiles  # noqa: F401  (registers and loads the hypothesis profile before any test module is imported)

torch.set_num_threads(1)
