"""The pose family at COCO sizes (issue 13): learning with default settings, and the surrogate's forward+backward
cost beside the baseline loss's.

    .venv/bin/python benchmarks/real_sizes_pose.py [--threads 2] [--skip-learning]

Two functions that ``benchmarks/real_sizes.py`` calls, each returning a dict (one table row):

- :func:`learning_case`: ``ml.learn("pck", task="pose", num_keypoints=17, heatmap_size=(64, 48))`` with default
  settings; wall-clock seconds, the process's peak RSS (``ru_maxrss``: run it in a fresh process for a clean
  figure), the process's CPU seconds (all threads: on a shared machine, wall-clock over CPU time says how much
  the load stretched it), held-out Spearman of the surrogate and of the baseline (heatmap MSE) on the same
  batches. Targets: at most 120 s on 2 cores, at most 4 GiB, Spearman above the baseline's.
- :func:`forward_backward_ratio`: median time of ``sur(heatmaps, keypoints).backward()`` over that of
  ``heatmap_mse(heatmaps, keypoints).backward()`` (both validate their inputs as users call them), interleaved,
  on one batch of ``(B, K, H, W)`` heatmaps; the surrogate is ``ml.pretrained("pose-pck")``. Target: at most 3x.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from typing import Any

import torch

import metricloss as ml
from common import machine_line
from metricloss.tasks import pose

LEARN_TARGET_SECONDS = 120.0
LEARN_TARGET_GIB = 4.0
RATIO_TARGET = 3.0


def peak_rss_gib() -> float:
    """This process's peak resident set size so far, in GiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def learning_case(num_keypoints: int = 17, heatmap_size: tuple[int, int] = (64, 48), seed: int = 0) -> dict[str, Any]:
    """Learn the PCK surrogate at ``num_keypoints`` x ``heatmap_size`` with default settings and measure it."""
    t0, c0 = time.perf_counter(), time.process_time()
    sur = ml.learn("pck", task="pose", num_keypoints=num_keypoints, heatmap_size=heatmap_size, seed=seed,
                   progress=False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    rep = sur.report
    return {"case": f"pose PCK, K = {num_keypoints}, {heatmap_size[0]}x{heatmap_size[1]}", "seconds": seconds,
            "cpu_seconds": cpu, "peak_rss_gib": peak_rss_gib(), "spearman": rep.spearman, "baseline": rep.baseline,
            "baseline_spearman": rep.baseline_spearman, "steps": rep.steps, "best_step": rep.best_step,
            "batches_per_step": rep.settings.get("batches_per_step"), "pool_size": rep.settings.get("pool_size"),
            "validation_batches": rep.n_validation_batches,
            "ok": seconds <= LEARN_TARGET_SECONDS and peak_rss_gib() <= LEARN_TARGET_GIB
            and rep.spearman > rep.baseline_spearman}


def _time(fn, x: torch.Tensor, target: torch.Tensor) -> float:
    x = x.detach().clone().requires_grad_(True)
    t0 = time.perf_counter()
    fn(x, target).backward()
    return time.perf_counter() - t0


def forward_backward_ratio(batch_size: int = 32, num_keypoints: int = 17, heatmap_size: tuple[int, int] = (64, 48),
                           repeats: int = 30, sur: ml.Surrogate | None = None) -> dict[str, Any]:
    """Median forward+backward time of the surrogate over the baseline's on one G_R batch (interleaved runs)."""
    sur = sur if sur is not None else ml.pretrained("pose-pck")
    task = pose.PoseTask(num_keypoints, heatmap_size)
    pred, target = task.random_batches(1, batch_size, torch.Generator().manual_seed(0))
    pred, target = pred[0], target[0]
    runs: dict[str, list[float]] = {"baseline": [], "surrogate": []}
    fns = {"baseline": pose.heatmap_mse, "surrogate": sur}
    for fn in fns.values():  # warm-up
        _time(fn, pred, target)
    for i in range(repeats):
        for name in (("baseline", "surrogate") if i % 2 == 0 else ("surrogate", "baseline")):
            runs[name].append(_time(fns[name], pred, target))
    base, ours = statistics.median(runs["baseline"]), statistics.median(runs["surrogate"])
    return {"case": f"pose PCK fwd+bwd, ({batch_size}, {num_keypoints}, {heatmap_size[0]}, {heatmap_size[1]})",
            "baseline_ms": 1000 * base, "surrogate_ms": 1000 * ours, "ratio": ours / base,
            "ok": ours / base <= RATIO_TARGET}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-learning", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line())
    print("\n| case | B | surrogate ms | MSE ms | ratio (target <= 3) |\n| --- | --- | --- | --- | --- |")
    for size in ((64, 48), (96, 72)):
        r = forward_backward_ratio(heatmap_size=size)
        print(f"| {r['case']} | 32 | {r['surrogate_ms']:.2f} | {r['baseline_ms']:.2f} | {r['ratio']:.2f} |")
    if not args.skip_learning:
        r = learning_case()
        print("\n| case | seconds | CPU seconds | peak RSS GiB | Spearman | MSE Spearman | steps (best) | N | pool | "
              "held-out |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        print(f"| {r['case']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['peak_rss_gib']:.2f} | "
              f"{r['spearman']:.4f} | "
              f"{r['baseline_spearman']:.4f} | {r['steps']} ({r['best_step']}) | {r['batches_per_step']} | "
              f"{r['pool_size']} | {r['validation_batches']} |")
    print(machine_line())


if __name__ == "__main__":
    main()
