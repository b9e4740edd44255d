"""Soak: run the learner for many steps and report resident memory at the start and the end.

    .venv/bin/python benchmarks/soak.py [steps]

Memory is the process's resident set size (``/proc/self/statm``), sampled every 100 steps through a
checkpoint-free learning run with early stopping off (patience larger than the run).
"""

from __future__ import annotations

import importlib
import os
import sys
import time

import torch

import metricloss as ml

learn_module = importlib.import_module("metricloss.learn")  # the module (ml.learn is the function)


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    torch.set_num_threads(2)
    samples: list[tuple[int, float]] = []
    original = learn_module.tqdm

    class Probe(original):  # count steps through the progress bar's update, sampling memory
        def update(self, n: int = 1) -> bool | None:
            out = super().update(n)
            if self.n % 100 == 0:
                samples.append((int(self.n), rss_mib()))
            return out

    learn_module.tqdm = Probe
    t0 = time.perf_counter()
    try:
        ml.learn("accuracy", num_classes=10, steps=steps, batches_per_step=64, batch_size=64, eval_every=50,
                 patience=10**9, progress=True, seed=0)
    finally:
        learn_module.tqdm = original
    seconds = time.perf_counter() - t0
    first = samples[min(2, len(samples) - 1)]
    last = samples[-1]
    print(f"\n{steps} steps in {seconds:.0f} s; torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| step | resident memory (MiB) |")
    print("| --- | --- |")
    for step, mib in [*samples[:: max(1, len(samples) // 10)], last]:
        print(f"| {step} | {mib:.1f} |")
    print(f"\ngrowth from step {first[0]} to step {last[0]}: {last[1] - first[1]:+.1f} MiB")


if __name__ == "__main__":
    main()
