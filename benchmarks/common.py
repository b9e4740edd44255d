"""Small helpers the benchmark scripts share: a line describing the machine, and mean ± std formatting."""

from __future__ import annotations

import os
import statistics

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
