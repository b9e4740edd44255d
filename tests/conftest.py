"""Test-session settings: one torch thread per process, so `pytest -n 2` does not oversubscribe two cores."""

import torch

torch.set_num_threads(1)
