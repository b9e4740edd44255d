"""Set surrogate cost at real batch sizes: forward+backward time and memory saved for backward, against BCE.

For each batch size ``B`` a binary batch of scores ``(B,)`` with 0/1 targets (the set G_R) goes through the shipped
``set-f1`` net (``kernel="spline"``, the O(B log B) comparison features), through the same net with the O(B^2)
``"logistic"`` kernel of surrogates saved before 2026-11-30 (the ``set-f1`` shipped until then had it), and
through ``binary_cross_entropy_with_logits``. Times are wall-clock per forward+backward on one thread, the median
and the minimum over ``repeats`` calls after a warm-up (the minimum is the least disturbed by other processes on a
shared machine); memory is the bytes of the tensors autograd saves for backward
(:func:`torch.autograd.graph.saved_tensors_hooks`), counted once per storage.

Run::

    .venv/bin/python benchmarks/real_sizes_set.py
    .venv/bin/python benchmarks/real_sizes_set.py --sizes 128 1024 4096 --repeats 30

``benchmarks/real_sizes.py`` may call :func:`measure` and :func:`markdown`.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

import metricloss as ml
from metricloss.tasks import get_task
from metricloss.tasks import set as set_task

#: The issue-13 target at B = 4096: at most max(10 x BCE, 10 ms).
TARGET_MS = 10.0
TARGET_RATIO = 10.0


def _times(step: Callable[[], None], repeats: int) -> tuple[float, float, float]:
    """Median and minimum wall-clock ms, and minimum CPU ms of this thread (with one torch thread, all the work)."""
    step()  # warm-up
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.thread_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    times.sort()
    return times[len(times) // 2] * 1e3, times[0] * 1e3, min(cpu) * 1e3


def saved_bytes(loss_fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``loss_fn()`` builds its graph."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    del loss
    return sum(seen.values())


def measure(batch_sizes: Sequence[int] = (128, 1024, 4096), repeats: int = 20,
            kernels: Sequence[str] = ("spline", "logistic"), seed: int = 0) -> list[dict]:
    """One row per batch size and kernel: ``ms`` / ``ms_min`` (median / minimum forward+backward), ``bce_ms`` /
    ``bce_ms_min``, ``cpu_ms_min`` / ``bce_cpu_ms_min`` (minimum CPU time of the calling thread), ``ratio`` (median
    over BCE's median), ``saved_mib`` (memory saved for backward) and ``meets_target`` (median at most
    max(10 x BCE, 10 ms))."""
    task = get_task("set")
    shipped = ml.pretrained("set-f1")
    rows = []
    for b in batch_sizes:
        pred, target = task.random_batches(1, b, torch.Generator().manual_seed(seed))
        x = pred[0].clone().requires_grad_(True)
        y = target[0]

        def bce_step(x: torch.Tensor = x, y: torch.Tensor = y) -> None:
            F.binary_cross_entropy_with_logits(x, y).backward()

        bce_ms, bce_min, bce_cpu = _times(bce_step, repeats)
        for kernel in kernels:
            net = set_task.SetNet(**{**shipped.net_config, "kernel": kernel})
            net.load_state_dict(shipped.net.state_dict())

            def step(net: torch.nn.Module = net, x: torch.Tensor = x, y: torch.Tensor = y) -> None:
                net(x[None], y[None]).sum().backward()

            ms, ms_min, cpu = _times(step, repeats if kernel == "spline" or b <= 1024 else max(3, repeats // 4))
            saved = saved_bytes(lambda net=net, x=x, y=y: net(x[None], y[None]).sum())
            rows.append({"batch_size": b, "kernel": kernel, "ms": ms, "ms_min": ms_min, "cpu_ms_min": cpu,
                         "bce_ms": bce_ms, "bce_ms_min": bce_min, "bce_cpu_ms_min": bce_cpu, "ratio": ms / bce_ms,
                         "saved_mib": saved / 2**20,
                         "meets_target": ms <= max(TARGET_RATIO * bce_ms, TARGET_MS)})
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| B | kernel | surrogate fwd+bwd ms, median (min) | its CPU ms, min | BCE ms, median (min) "
           "| BCE CPU ms, min | ratio of medians | saved for backward | median <= max(10x BCE, 10 ms) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        out.append(f"| {r['batch_size']} | {r['kernel']} | {r['ms']:.2f} ({r['ms_min']:.2f}) | {r['cpu_ms_min']:.2f} "
                   f"| {r['bce_ms']:.3f} ({r['bce_ms_min']:.3f}) | {r['bce_cpu_ms_min']:.3f} | {r['ratio']:.0f}x "
                   f"| {r['saved_mib']:.1f} MiB | {'yes' if r['meets_target'] else 'no'} |")
    return "\n".join(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 1024, 4096])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--kernels", nargs="+", default=["spline", "logistic"], choices=set_task.KERNELS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    before = os.getloadavg()
    table = measure(args.sizes, args.repeats, args.kernels)
    after = os.getloadavg()
    print(f"set-f1 (spline, and its net with the logistic kernel) vs BCE, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}; "
          f"load average (1, 5, 15 min) {before[0]:.2f} {before[1]:.2f} {before[2]:.2f} before, "
          f"{after[0]:.2f} {after[1]:.2f} {after[2]:.2f} after\n")
    print(markdown(table))
