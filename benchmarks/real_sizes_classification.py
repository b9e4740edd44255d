"""Classification and ordinal surrogates at real sizes: the cost of a forward+backward beside cross-entropy's, and
learning accuracy at C = 1000 (time, peak RSS, held-out Spearman beside cross-entropy's).

Functions for ``benchmarks/real_sizes.py`` (which prints the issue-13 table) and a command line of its own::

    .venv/bin/python benchmarks/real_sizes_classification.py speed            # forward+backward, C = 2 .. 1000
    .venv/bin/python benchmarks/real_sizes_classification.py learn --num-classes 1000
    .venv/bin/python benchmarks/real_sizes_classification.py step --num-classes 1000  # one learning step, CPU-s

``learn`` runs :func:`metricloss.learn` in a child process, so its peak RSS (``ru_maxrss`` of the child) is that
run's alone. Every table starts with the machine line (CPU count, threads, load average): timings on a shared
machine move with the load.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import metricloss as ml
from metricloss.evaluation import agreement
from metricloss.objectives import gradient_penalty, rank_objective

try:  # run as a script (benchmarks/ on sys.path) or imported as benchmarks.real_sizes_classification
    from common import machine_line
except ImportError:  # pragma: no cover
    from benchmarks.common import machine_line

__all__ = ["forward_backward_ms", "learn_run", "speed_rows", "step_cpu_seconds", "transfer_rows"]


def _time_ms(fn: Callable[[], None], repeats: int, clock: Callable[[], float] = time.process_time) -> float:
    """Median time of ``fn`` in milliseconds over ``repeats`` calls, after three warm-up calls. The default clock is
    the process's CPU time: on a machine other jobs load, it moves far less than the wall clock (with one torch
    thread it is the op's own compute; with more it sums the threads)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append((clock() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def forward_backward_ms(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batch_size: int,
                        num_classes: int, repeats: int = 50, seed: int = 0,
                        clock: Callable[[], float] = time.process_time) -> float:
    """Median milliseconds (CPU time by default, see :func:`_time_ms`) of ``loss(logits, target).backward()`` on
    random logits ``(batch_size, num_classes)``."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch_size, num_classes, generator=gen).mul_(3.0).requires_grad_(True)
    target = torch.randint(0, num_classes, (batch_size,), generator=gen)

    def run() -> None:
        logits.grad = None
        loss(logits, target).backward()

    return _time_ms(run, repeats, clock)


def speed_rows(names: tuple[str, ...] = ("classification-accuracy", "classification-top5-accuracy", "ordinal-mae"),
               sizes: tuple[tuple[int, int], ...] = ((256, 10), (256, 100), (256, 1000)),
               repeats: int = 50) -> list[dict]:
    """For each shipped surrogate and ``(B, C)``: its forward+backward milliseconds, cross-entropy's, and the ratio
    (``validate_args`` on, as users call it, and off)."""
    rows = []
    for b, c in sizes:
        ce = forward_backward_ms(F.cross_entropy, b, c, repeats)
        for name in names:
            sur = ml.pretrained(name)
            if name.startswith("ordinal") and c > 20:
                continue
            on = forward_backward_ms(sur, b, c, repeats)
            sur.validate_args = False
            off = forward_backward_ms(sur, b, c, repeats)
            rows.append({"surrogate": name, "B": b, "C": c, "ce_ms": ce, "ms": on, "ratio": on / ce,
                         "ms_unchecked": off, "ratio_unchecked": off / ce})
    return rows


def transfer_rows(sur: ml.Surrogate, metric: str, sizes: tuple[int, ...], n: int = 256, batch_size: int = 128,
                  seed: int = 777) -> list[dict]:
    """Held-out Spearman / Kendall of ``sur`` and of cross-entropy on ``n`` G_R batches at each size in ``sizes``
    (``num_classes`` of the surrogate's task family), from an unseen seed."""
    rows = []
    for size in sizes:
        task = ml.tasks.get_task(sur.task.name, num_classes=size)
        met = ml.metrics.as_metric(metric, None, task.metrics)
        pred, target = task.random_batches(n, batch_size, torch.Generator().manual_seed(seed))
        values = met.evaluate(pred, target)
        with torch.no_grad():
            ours = agreement(sur.batch_losses(pred, target), values, met.higher_is_better)
            base = agreement(task.baseline(pred, target), values, met.higher_is_better)
        rows.append({"size": size, "n": n, "batch_size": batch_size, "surrogate": ours, "baseline": base})
    return rows


def step_cpu_seconds(num_classes: int = 1000, batches: int = 128, batch_size: int = 128, steps: int = 5,
                     seed: int = 0) -> float:
    """CPU seconds of one learning step of the default classification net for accuracy, as the trainer takes it
    (soft Spearman over ``batches`` G_R batches + gradient penalty, Adam), median of ``steps`` after two warm-up steps.
    Uses only API the starting commit has too, so ``PYTHONPATH=<other checkout>/src`` measures that version."""
    task = ml.tasks.get_task("classification", num_classes=num_classes)
    pred, target = task.random_batches(batches, batch_size, torch.Generator().manual_seed(seed))
    values = task.metrics["accuracy"].evaluate(pred, target).float()
    torch.manual_seed(seed)
    net = task.build_net(**task.default_net_config())
    opt = torch.optim.Adam(net.parameters(), 0.01)

    def step() -> None:
        p = pred.clone().requires_grad_(True)
        losses = net(p, target)
        (grads,) = torch.autograd.grad(losses.sum(), p, create_graph=True)
        obj = rank_objective(losses, values) + 10.0 * gradient_penalty(grads)
        opt.zero_grad()
        obj.backward()
        opt.step()

    return _time_ms(step, steps) / 1e3


_CHILD = """
import json, resource, sys, time, torch
import metricloss as ml
torch.set_num_threads({threads})
t0 = time.perf_counter()
sur = ml.learn({metric!r}, task={task!r}, num_classes={num_classes}, seed=0, progress=False, **{extra!r})
seconds = time.perf_counter() - t0
r = sur.report
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"seconds": seconds, "cpu_seconds": use.ru_utime + use.ru_stime,
                  "peak_rss_gib": use.ru_maxrss / 2**20, "spearman": r.spearman,
                  "baseline_spearman": r.baseline_spearman, "steps": r.steps, "best_step": r.best_step,
                  "validation": r.validation, "n_validation": r.n_validation_batches}}))
"""


def learn_run(metric: str = "accuracy", num_classes: int = 1000, task: str = "classification", threads: int = 2,
              **extra: object) -> dict:
    """``ml.learn(metric, task=task, num_classes=num_classes, seed=0, **extra)`` in a child process with ``threads``
    torch threads: wall and CPU seconds (the child's, import included), peak RSS (GiB) and the report's held-out
    Spearman beside the baseline's."""
    code = _CHILD.format(threads=threads, metric=metric, task=task, num_classes=num_classes, extra=extra)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["peak_rss_children_gib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("speed", "learn", "step"))
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--metric", default="accuracy")
    parser.add_argument("--task", default="classification")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (speed: 1, so CPU time is the op's)")
    parser.add_argument("--steps", type=int, default=None, help="learn: cap the steps (default: learn's default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line())
    if args.what == "speed":
        print("| surrogate | B | C | CE ms | surrogate ms | ratio | unchecked ms | ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in speed_rows():
            print(f"| {r['surrogate']} | {r['B']} | {r['C']} | {r['ce_ms']:.3f} | {r['ms']:.3f} | {r['ratio']:.1f} "
                  f"| {r['ms_unchecked']:.3f} | {r['ratio_unchecked']:.1f} |")
    elif args.what == "step":
        print(f"one learning step, C = {args.num_classes}, N = 128 x B = 128: "
              f"{step_cpu_seconds(args.num_classes):.3f} CPU-s")
    else:
        extra = {} if args.steps is None else {"steps": args.steps}
        r = learn_run(args.metric, args.num_classes, args.task, args.threads, **extra)
        print(json.dumps(r, indent=1))
    print(machine_line())


if __name__ == "__main__":
    main()
