"""Cost of each built-in segmentation metric on one batch at the issue's sizes (issue 23), beside cross-entropy's
forward pass on the same logits, so that learning (which evaluates the metric once per pool batch) can be budgeted.

    .venv/bin/python benchmarks/segmentation_metric_cost.py [--threads 2] [--repeats 3] [--sizes 8,21,512,512 ...]
        [--metrics miou boundary_f1 ...]

Each batch: label maps of blocky regions (cells of min(H, W) / 8 pixels: sparse boundaries, as in real scenes) with a
one-pixel ignored band (255) along a third of the region borders (VOC's void borders), and logits that predict them
with a one-pixel boundary shift and 10 % of the pixels wrong. The table gives the median seconds of
``metric(logits, target)`` over ``--repeats`` calls and its ratio to ``F.cross_entropy(logits, target,
ignore_index=255)``'s forward. Timings on a shared machine are not results: rerun alone.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from common import machine_line
from metricloss.metrics.segmentation import BUILTINS

DEFAULT_SIZES = ["8,21,512,512", "2,19,1024,2048", "4,150,256,256"]


def batch(b: int, c: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cell = max(4, min(h, w) // 8)
    small = torch.randint(0, c, (b, -(-h // cell), -(-w // cell)), generator=g)
    target = small.repeat_interleave(cell, 1).repeat_interleave(cell, 2)[:, :h, :w].contiguous()
    labels = target.roll(1, dims=2)
    wrong = torch.rand(b, h, w, generator=g) < 0.1
    labels = torch.where(wrong, torch.randint(0, c, (b, h, w), generator=g), labels)
    logits = torch.randn(b, c, h, w, generator=g)
    logits.scatter_add_(1, labels.unsqueeze(1), torch.full((b, 1, h, w), 3.0))
    x = target.unsqueeze(1).float()
    border = (F.max_pool2d(x, 3, stride=1, padding=1) != -F.max_pool2d(-x, 3, stride=1, padding=1)).squeeze(1)
    some = (torch.rand(small.shape, generator=g) < 1 / 3).repeat_interleave(cell, 1).repeat_interleave(cell, 2)
    return logits, target.masked_fill(border & some[:, :h, :w], 255)


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help="B,C,H,W")
    parser.add_argument("--metrics", nargs="+", default=sorted(BUILTINS), choices=sorted(BUILTINS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line())
    print("| B, C, H, W | metric | value | seconds | / cross-entropy forward |")
    print("| --- | --- | --- | --- | --- |")
    for size in args.sizes:
        b, c, h, w = (int(v) for v in size.split(","))
        logits, target = batch(b, c, h, w)
        ce = timed(lambda: F.cross_entropy(logits, target, ignore_index=255), args.repeats)  # noqa: B023
        for name in args.metrics:
            metric = BUILTINS[name]
            value = metric(logits, target)
            seconds = timed(lambda: metric(logits, target), args.repeats)  # noqa: B023
            print(f"| {b}, {c}, {h}, {w} | {name} | {value:.4f} | {seconds:.3f} | {seconds / ce:.1f} |")


if __name__ == "__main__":
    main()
