"""The segmentation task's own numbers (issue 23): the surrogate net's cost beside cross-entropy, and how a learned
surrogate ranks held-out G_R batches beside cross-entropy.

    python benchmarks/segmentation_task.py cost [--sizes 8,21,512,512 2,19,1024,2048] [--reps 5] [--threads 2]
    python benchmarks/segmentation_task.py ranking [--classes 21] [--size 64] [--steps 150] [--heldout 128]

``cost``: forward + backward of pixel cross-entropy (``F.cross_entropy(..., ignore_index=255)``) and of the default
net (untrained weights: the cost does not depend on them) on the same logits, interleaved, the best of ``--reps``
runs each, and their ratio; a tenth of the rows are ignore pixels. ``ranking``: ``ml.learn("miou",
task="segmentation")`` with the task's defaults (``--steps`` bounds the steps), then Spearman of the negated
surrogate and of the negated cross-entropy against mIoU on ``--heldout`` fresh G_R batches (another seed).
Timings taken on a loaded machine are not results: run it alone.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import metricloss as ml
from metricloss.metrics.segmentation import miou
from metricloss.ranking import spearman
from metricloss.tasks.segmentation import SegmentationTask


def _best(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def cost(sizes: list[tuple[int, ...]], reps: int) -> None:
    task = SegmentationTask(2)
    net = task.build_net(**task.default_net_config())
    for p in net.parameters():
        p.requires_grad_(False)
    print("| B, C, H, W | cross-entropy (s) | surrogate (s) | ratio |")
    print("| --- | --- | --- | --- |")
    for b, c, h, w in sizes:
        t_ce, t_sur = _pair(net, b, c, h, w, reps)
        print(f"| {b}, {c}, {h}, {w} | {t_ce:.4f} | {t_sur:.4f} | {t_sur / t_ce:.2f} |")


def _pair(net: torch.nn.Module, b: int, c: int, h: int, w: int, reps: int) -> tuple[float, float]:
    """Best times of cross-entropy's and the net's forward + backward on the same logits, interleaved."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(b, c, h, w, generator=g).requires_grad_()
    y = torch.randint(0, c, (b, h, w), generator=g)
    y[:, : h // 10] = 255

    def ce():
        F.cross_entropy(z, y, ignore_index=255).backward()
        z.grad = None

    def sur():
        net(z.unsqueeze(0), y.unsqueeze(0)).sum().backward()
        z.grad = None

    ce(), sur()  # warm-up
    t_ce = t_sur = float("inf")
    for _ in range(reps):  # interleaved, so that a change of load hits both
        t_ce, t_sur = min(t_ce, _best(ce, 1)), min(t_sur, _best(sur, 1))
    return t_ce, t_sur


def ranking(classes: int, size: int, steps: int | None, heldout: int, seed: int) -> None:
    t0 = time.perf_counter()
    sur = ml.learn("miou", task="segmentation", num_classes=classes, image_size=(size, size), steps=steps, seed=seed,
                   progress=False)
    print(f"learned in {time.perf_counter() - t0:.0f} s, {sur.report.steps} steps; report: surrogate "
          f"{sur.report.spearman:.3f}, cross-entropy {sur.report.baseline_spearman:.3f} (its held-out G_R batches)")
    task = SegmentationTask(classes, image_size=(size, size))
    pred, target = task.random_batches(heldout, task.default_batch_size, torch.Generator().manual_seed(seed + 999))
    values = miou(pred, target).double()
    with torch.no_grad():
        losses = sur.batch_losses(pred, target).double()
    ce = task.baseline(pred, target).double()
    print(f"fresh held-out G_R, {heldout} batches of {task.default_batch_size} at C = {classes}, {size}x{size}: "
          f"Spearman with mIoU: surrogate {float(spearman(-losses, values)):.3f}, "
          f"cross-entropy {float(spearman(-ce, values)):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("cost")
    p.add_argument("--sizes", nargs="+", default=["8,21,512,512", "2,19,1024,2048"])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p = sub.add_parser("ranking")
    p.add_argument("--classes", type=int, default=21)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--heldout", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == "cost":
        cost([tuple(int(v) for v in s.split(",")) for s in args.sizes], args.reps)
    else:
        ranking(args.classes, args.size, args.steps, args.heldout, args.seed)


if __name__ == "__main__":
    main()
