"""Forward+backward of ``pretrained("set-f1")`` at B = 4096 on 1 and 2 torch threads, against BCE, interleaved.

    PYTHONPATH=$PWD/src .venv/bin/python benchmarks/set_cost.py [--batch-size 4096] [--threads 1 2] [--rounds 100]

Three losses on one binary G_R batch of scores ``(B,)`` with 0/1 targets (seed 0), each forward + backward to the
scores: ``set-f1`` (the shipped surrogate as users call it: its default path sorts each set once and applies phi's
last layer after the pooling), ``set-f1, plain formula`` (the same weights evaluated as the docs write the net: the
features in the samples' own order, phi on every sample, then the means: the structure ``SetNet.forward`` had before
issue 22, over today's ``set_features``, so it shows what the sort-once and pooled-last-layer steps save, not the
kernel's own changes) and ``binary_cross_entropy_with_logits``. Every round runs each loss once at every thread
count (the order of the losses alternates between rounds), so a change in the machine's load reaches every cell
alike. The table gives per thread count the median and the fastest wall-clock time, the fastest CPU time of the
process (``time.process_time``: all threads' work), the ratio of medians to BCE and whether the median meets issue
13's target, at most max(10 x BCE, 10 ms).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import metricloss as ml
from metricloss.tasks import set as set_task

TARGET_MS, TARGET_RATIO = 10.0, 10.0


def plain_formula(net: set_task.SetNet, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The set net's loss for one binary batch as the docs write it: features in the samples' order, phi on every
    sample, means over the positives and the negatives, rho."""
    y = target[None].to(scores.dtype)
    f = set_task.set_features(scores[None], y, net.features, net.temperatures, net.sharpness, net.sign_floor,
                              net.rank_floor, net.kernel)
    emb = net.phi(f)[0]
    n_pos = y.sum()
    pos = (emb * y[0, :, None]).sum(0) / n_pos.clamp_min(1)
    neg = (emb * (1 - y[0, :, None])).sum(0) / (y.shape[1] - n_pos).clamp_min(1)
    return net.rho(torch.cat([pos, neg, (n_pos / y.shape[1]).view(1)]))[0]


def losses(batch_size: int, seed: int = 0) -> dict[str, Callable[[], None]]:
    """One forward+backward per call, keyed by the loss's name."""
    sur = ml.pretrained("set-f1")
    pred, target = ml.tasks.get_task("set").random_batches(1, batch_size, torch.Generator().manual_seed(seed))
    x0, y = pred[0], target[0]

    def run(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            x = x0.clone().requires_grad_(True)
            fn(x, y).backward()
        return step

    return {"set-f1": run(sur), "set-f1, plain formula": run(lambda s, t: plain_formula(sur.net, s, t)),
            "BCE": run(F.binary_cross_entropy_with_logits)}


def measure(batch_size: int, threads: list[int], rounds: int) -> dict[tuple[int, str], tuple[list, list]]:
    """``{(threads, loss): (wall seconds, CPU seconds)}`` over ``rounds`` interleaved rounds after a warm-up."""
    steps = losses(batch_size)
    names = list(steps)
    out: dict[tuple[int, str], tuple[list, list]] = {(n, k): ([], []) for n in threads for k in names}
    for n in threads:  # warm-up at every thread count
        torch.set_num_threads(n)
        for step in steps.values():
            step()
    for r in range(rounds):
        for n in threads:
            torch.set_num_threads(n)
            for name in (names if r % 2 == 0 else names[::-1]):
                t0, c0 = time.perf_counter(), time.process_time()
                steps[name]()
                out[(n, name)][1].append(time.process_time() - c0)
                out[(n, name)][0].append(time.perf_counter() - t0)
    return out


def markdown(results: dict[tuple[int, str], tuple[list, list]]) -> str:
    rows = ["| threads | loss | fwd+bwd ms, median (min) | CPU ms, min | median / BCE median | "
            "median <= max(10x BCE, 10 ms) |", "| --- | --- | --- | --- | --- | --- |"]
    for (n, name), (wall, cpu) in results.items():
        med = sorted(wall)[len(wall) // 2] * 1e3
        bce_wall = sorted(results[(n, "BCE")][0])
        bce = bce_wall[len(bce_wall) // 2] * 1e3
        meets = "-" if name == "BCE" else ("yes" if med <= max(TARGET_RATIO * bce, TARGET_MS) else "no")
        rows.append(f"| {n} | {name} | {med:.3f} ({min(wall) * 1e3:.3f}) | {min(cpu) * 1e3:.3f} | "
                    f"{med / bce:.1f}x | {meets} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    before = os.getloadavg()
    t0 = time.perf_counter()
    results = measure(args.batch_size, args.threads, args.rounds)
    after = os.getloadavg()
    print(f"set-f1 vs BCE at B = {args.batch_size}, {args.rounds} interleaved rounds; {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__}; load average (1/5/15 min) {before[0]:.1f} {before[1]:.1f} {before[2]:.1f} "
          f"before, {after[0]:.1f} {after[1]:.1f} {after[2]:.1f} after; {time.perf_counter() - t0:.0f} s\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
