"""Small helpers the benchmark scripts share: a line describing the machine, and mean ± std formatting."""

from __future__ import annotations

import os
import statistics
from typing import Any

import torch


def machine_line() -> str:
    """CPU count, torch version and threads, and the load average, so a printed table says how busy it ran."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
            f"load average (1/5/15 min) {load}")


def mean_std(values: list[float], digits: int = 4) -> str:
    """``"mean ± sample std"`` (std 0 for a single value)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def demo_outputs(name: str) -> tuple[Any, list[tuple[torch.Tensor, torch.Tensor]], list[torch.Tensor]]:
    """The demo's G_M for data set ``name``: ``(split, outputs, test_outputs)``, where ``outputs`` are the
    training-set logits of the CE checkpoints (seed 0), each in one fixed shuffled order with its labels, and
    ``test_outputs`` the same checkpoints' test-set logits."""
    from metricloss import datasets, demo

    split = datasets.load(name)
    train_out, test_out = demo.checkpoint_outputs(split, demo.SETTINGS[name], seed=0)
    perm = torch.randperm(split.y_train.shape[0], generator=torch.Generator().manual_seed(1))
    return split, [(logits[perm], split.y_train[perm]) for logits in train_out], test_out
