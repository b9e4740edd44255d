"""Issue 13's targets at real model sizes, through the public API only (so it runs whatever the families' nets are).

Cases (``--case NAME`` runs one; default all):

- ``classification``: ``learn("accuracy", num_classes=1000)`` (ImageNet's C);
- ``pose``: ``learn("pck", task="pose", num_keypoints=17, heatmap_size=(64, 48))`` (COCO);
- ``sequence``: ``learn("bleu", task="sequence", vocab_size=32000, max_length=128)`` (NMT);
- ``set``: ``pretrained("set-f1")`` at B = 4096 (forward + backward only; nothing is learned).

Each learning case runs with DEFAULT settings (only ``progress=False`` and ``seed=0``) in its own subprocess, which
reports its wall time, its peak RSS (``ru_maxrss``) and the RSS it had after importing torch and metricloss (so the
table shows what learning added on top), and the report's held-out Spearman beside the baseline loss's on the same
batches. Then, in the same subprocess, forward + backward of the learned surrogate on one batch at that size against
the task's baseline loss (median of ``--repeats`` timed calls after a warm-up), and their ratio. The targets
(issue 13): learning <= 120 s and <= 4 GiB peak RSS on 2 cores with Spearman above the baseline's; forward + backward
<= 3x the baseline's; set F1 at B = 4096 <= max(10x BCE, 10 ms).

    PYTHONPATH=$PWD/src python benchmarks/real_sizes.py [--case classification] [--threads 2] [--timeout 1800]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import real_sizes_sequence
from common import machine_line  # benchmarks/common.py: a script's folder is on sys.path when it runs

#: case -> (metric, task, shape keywords, the batch forward + backward is timed on: its batch size)
CASES = {
    "classification": ("accuracy", "classification", {"num_classes": 1000}, 256),
    "pose": ("pck", "pose", {"num_keypoints": 17, "heatmap_size": (64, 48)}, 32),
    "sequence": ("bleu", "sequence", {"vocab_size": 32000, "max_length": 128}, 16),
    "set": ("f1", "set", {}, 4096),
}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_seconds() -> float:
    """User + system CPU time of this process: on a shared, loaded machine the wall time mostly measures the others."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _fwd_bwd(loss_fn, pred: torch.Tensor, target: torch.Tensor, repeats: int) -> float:
    def once() -> None:
        x = pred.detach().requires_grad_(True)
        loss_fn(x, target).backward()
    return _median_seconds(once, repeats)


def _timing(sur, task, batch: int, repeats: int) -> dict:
    """Forward + backward of the surrogate and of the baseline loss on one batch of ``batch`` at the case's size."""
    gen = torch.Generator().manual_seed(1)
    pred, target = task.random_batches(1, batch, gen)
    pred, target = pred[0], target[0]
    if task.name == "sequence" and pred.shape[-1] < task.vocab_size:  # G_R draws over a sub-vocabulary: widen
        pred, target = real_sizes_sequence.widen(task, pred, target, gen)
    if task.name == "set":  # the loss the set surrogate replaces, as a user calls it
        base = lambda p, t: F.binary_cross_entropy_with_logits(p, t.float())  # noqa: E731
    else:
        base = lambda p, t: task.baseline(p.unsqueeze(0), t.unsqueeze(0)).squeeze(0)  # noqa: E731
    s, b = _fwd_bwd(sur, pred, target, repeats), _fwd_bwd(base, pred, target, repeats)
    return {"timed_batch": list(pred.shape), "surrogate_ms": 1e3 * s, "baseline_ms": 1e3 * b, "ratio": s / b}


def child(case: str, threads: int, repeats: int, steps: int | None, limit_gib: float | None) -> dict:
    """One case, in this process: learn (or load) and time; returns the row."""
    torch.set_num_threads(threads)
    if limit_gib is not None:  # a shared machine: fail with MemoryError instead of taking everyone's memory
        limit = int(limit_gib * 1024**3)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import metricloss as ml

    metric, task_name, shapes, batch = CASES[case]
    row = {"case": case, "rss_start_mib": _rss_mib()}
    t0, c0 = time.perf_counter(), _cpu_seconds()
    if case == "set":
        sur = ml.pretrained("set-f1")
    else:
        sur = ml.learn(metric, task=task_name, progress=False, seed=0, steps=steps, **shapes)
        rep = sur.report
        row.update(spearman=rep.spearman, baseline_spearman=rep.baseline_spearman, steps=rep.steps,
                   batch_size=rep.batch_size, validation_batches=rep.n_validation_batches,
                   pool_size=rep.settings.get("pool_size"), metric_seconds=rep.metric_seconds)
    row["learn_seconds"], row["learn_cpu_seconds"] = time.perf_counter() - t0, _cpu_seconds() - c0
    row["rss_learn_mib"] = _rss_mib()
    task = sur.task if case != "set" else ml.tasks.base.get_task("set")
    row.update(_timing(sur, task, batch, repeats))
    row["rss_peak_mib"] = _rss_mib()
    return row


def run_case(case: str, threads: int, repeats: int, timeout: float, steps: int | None,
             limit_gib: float | None) -> dict:
    cmd = [sys.executable, __file__, "--child", case, "--threads", str(threads), "--repeats", str(repeats)]
    cmd += ["--steps", str(steps)] if steps is not None else []
    cmd += ["--limit-gib", str(limit_gib)] if limit_gib is not None else []
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"case": case, "error": f"did not finish in {timeout:.0f} s", "wall_seconds": time.perf_counter() - t0}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"case": case, "error": last[:200], "wall_seconds": time.perf_counter() - t0}
    return {**json.loads(lines[-1]), "wall_seconds": time.perf_counter() - t0}


def _fmt(row: dict, key: str, spec: str) -> str:
    value = row.get(key)
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict]) -> None:
    print(machine_line())
    print("\n| case | learn s (CPU s) | peak RSS MiB (after import) | steps | batches (pool / held-out x B) | "
          "Spearman | baseline Spearman | fwd+bwd batch | surrogate ms | baseline ms | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if "error" in r:
            print(f"| {r['case']} | failed after {r['wall_seconds']:.0f} s: {r['error']} |||||||||| ")
            continue
        sizes = (f"{r['pool_size']} / {r['validation_batches']} x {r['batch_size']}" if "pool_size" in r else "-")
        print(f"| {r['case']} | {r['learn_seconds']:.1f} ({r['learn_cpu_seconds']:.1f}) | "
              f"{r['rss_peak_mib']:.0f} ({r['rss_start_mib']:.0f}) | "
              f"{r.get('steps', '-')} | {sizes} | {_fmt(r, 'spearman', '.3f')} | "
              f"{_fmt(r, 'baseline_spearman', '.3f')} | {tuple(r['timed_batch'])} | {r['surrogate_ms']:.2f} | "
              f"{r['baseline_ms']:.2f} | {r['ratio']:.1f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=sorted(CASES), action="append", help="run only this case (repeatable)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per case (default 2: the 2-core target)")
    parser.add_argument("--repeats", type=int, default=20, help="timed forward + backward calls (median)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per case before it counts as failed")
    parser.add_argument("--steps", type=int, default=None,
                        help="cap learning steps (a smoke run; default: the library's default, as the targets ask)")
    parser.add_argument("--limit-gib", type=float, default=None,
                        help="address-space limit per case (RLIMIT_AS), so a case that outgrows it fails alone")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads, args.repeats, args.steps, args.limit_gib)))
        return
    rows = [run_case(c, args.threads, args.repeats, args.timeout, args.steps, args.limit_gib)
            for c in (args.case or list(CASES))]
    if args.steps is not None:
        print(f"NOTE: learning capped at steps={args.steps} (a smoke run, not the default settings of the targets)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print_table(rows)


if __name__ == "__main__":
    main()
