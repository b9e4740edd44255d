"""The sequence family at NMT size (V = 32000, T <= 128): learning with default settings, and a surrogate call's cost.

Two measurements, each a function that ``benchmarks/real_sizes.py`` can call (or run here):

- :func:`learning_case`: ``ml.learn("bleu", task="sequence", vocab_size=32000, max_length=128)`` with every other
  setting at its default, in a fresh child process (so its peak RSS is learning's alone): wall and CPU seconds,
  peak RSS, and the held-out Spearman of the surrogate against token cross-entropy's, on the report's held-out
  batches and on fresh batches at the full width V = 32000 (:func:`widen`).
- :func:`forward_backward_ratio`: forward+backward of the learned (or a fresh default) surrogate on ``(B, 128,
  32000)`` logits, against ``F.cross_entropy``'s on the same logits (median of ``repeats`` timed calls each).

Run (about 3 minutes of CPU; on a busy machine the wall clock is longer, and the printed load says how busy)::

    .venv/bin/python benchmarks/real_sizes_sequence.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import metricloss as ml
from metricloss.evaluation import agreement
from metricloss.tasks import sequence as S

NMT = {"vocab_size": 32000, "max_length": 128}


def widen(task: S.SequenceTask, pred: torch.Tensor, target: torch.Tensor,
          g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One G_R batch ``(B, T, W)`` as a V = ``task.vocab_size`` model would emit it, ``(B, T, V)``.

    Its token ids are mapped to random ids of the whole vocabulary, and the other ids get Gaussian logits at the
    batch's scale, clipped below each position's runner-up: the arg-max, the runner-up and every target logit are
    unchanged, so BLEU and the surrogate are the G_R batch's, while cross-entropy now pays for the V-wide tail.
    """
    v = task.vocab_size
    ids = torch.randperm(v, generator=g)[: pred.shape[-1]]
    runner = pred.topk(2, dim=-1).values[..., 1:2]
    tail = (torch.randn(*pred.shape[:-1], v, generator=g) * pred.std()).minimum(runner - 1e-3)
    wide = tail.scatter_(-1, ids.expand(*pred.shape[:-1], -1), pred)
    return wide, torch.where(target == S.IGNORE_INDEX, target, ids[target.clamp_min(0)])


def full_width_agreement(sur: ml.Surrogate, n: int, seed: int) -> dict[str, Any]:
    """Spearman and Kendall (:func:`~metricloss.evaluation.agreement`) of the surrogate and of token cross-entropy
    with BLEU over ``n`` fresh G_R batches widened to the task's V (:func:`widen`), one batch in memory at a time."""
    task = sur.task
    g = torch.Generator().manual_seed(seed)
    ours, ce, values = [], [], []
    for _ in range(n):
        p, y = task.random_batches(1, task.default_batch_size, g)
        wide, wide_y = widen(task, p[0], y[0], g)
        values.append(task.metrics["bleu"].evaluate(wide[None], wide_y[None]))
        with torch.no_grad():
            ours.append(sur(wide, wide_y).reshape(1))
            ce.append(task.baseline(wide[None], wide_y[None]))
    values_t = torch.cat(values)
    return {"batches": n, "surrogate": agreement(torch.cat(ours), values_t, True),
            "ce": agreement(torch.cat(ce), values_t, True)}


def learning_case(threads: int = 2, seed: int = 0, full_width: int = 64, save: str | None = None) -> dict[str, Any]:
    """Learn at NMT size with default settings in this process; returns times, peak RSS and agreements.

    Call it in a fresh process (``--child learn``) for a peak RSS that is learning's alone.
    """
    torch.set_num_threads(threads)
    wall, cpu = time.perf_counter(), time.process_time()
    sur = ml.learn("bleu", task="sequence", seed=seed, progress=False, **NMT)
    out: dict[str, Any] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                           "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    rep = sur.report
    out.update(steps=rep.steps, best_step=rep.best_step, heldout_spearman=rep.spearman,
               heldout_ce_spearman=rep.baseline_spearman, validation=rep.validation)
    if save:
        sur.save(save)
    if full_width:
        out["full_width"] = full_width_agreement(sur, full_width, seed + 1000)
    return out


def forward_backward_ratio(sur: ml.Surrogate | None = None, batch_size: int = 16, length: int = 128,
                           vocab_size: int = 32000, repeats: int = 5, threads: int = 2) -> dict[str, float]:
    """Median seconds of forward+backward of ``sur`` (default: a fresh default-config surrogate) and of token
    cross-entropy on the same ``(batch_size, length, vocab_size)`` logits, and their ratio."""
    torch.set_num_threads(threads)
    if sur is None:
        task = S.SequenceTask(vocab_size=vocab_size, max_length=length)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            sur = ml.Surrogate(task, task.build_net(**task.default_net_config()), task.default_net_config())
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(batch_size, length, vocab_size, generator=g)
    target = torch.randint(0, vocab_size, (batch_size, length), generator=g)

    def once(loss_fn: Any) -> float:
        x = logits.clone().requires_grad_(True)
        t0 = time.perf_counter()
        loss_fn(x).backward()
        return time.perf_counter() - t0

    def ce_loss(x: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(x.flatten(0, 1), target.flatten(), ignore_index=S.IGNORE_INDEX)

    # Alternate the two (after one warm-up call each), so that a change in the machine's load hits both alike.
    once(ce_loss), once(lambda x: sur(x, target))
    pairs = [(once(ce_loss), once(lambda x: sur(x, target))) for _ in range(repeats)]
    ce, ours = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    return {"surrogate_s": ours, "ce_s": ce, "ratio": ours / ce, "shape": [batch_size, length, vocab_size]}


def _child(kind: str, threads: int, save: str | None) -> None:
    print(json.dumps(learning_case(threads, save=save) if kind == "learn" else forward_backward_ratio(threads=threads)))


def run_child(kind: str, threads: int = 2, save: str | None = None) -> dict[str, Any]:
    """Run :func:`learning_case` (``"learn"``) or :func:`forward_backward_ratio` (``"ratio"``) in a fresh process."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--threads", str(threads)]
    if save:
        cmd += ["--save", save]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=["learn", "ratio"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--save", default=None, help="write the learned surrogate here")
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.threads, args.save)
        return
    load0 = os.getloadavg()
    learned = run_child("learn", args.threads, args.save)
    ratio = run_child("ratio", args.threads)
    full = learned["full_width"]
    print("| case | wall s | CPU s | peak RSS GiB | steps (best) | held-out Spearman surrogate / CE | "
          "V = 32000 batches surrogate / CE |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| learn('bleu', vocab_size=32000, max_length=128), defaults | {learned['wall_s']:.1f} | "
          f"{learned['cpu_s']:.1f} | {learned['peak_rss_gib']:.2f} | {learned['steps']} ({learned['best_step']}) | "
          f"{learned['heldout_spearman']:.3f} / {learned['heldout_ce_spearman']:.3f} | "
          f"{full['surrogate']['spearman']:.3f} / {full['ce']['spearman']:.3f} |")
    print(f"\nforward+backward on {tuple(ratio['shape'])}: surrogate {ratio['surrogate_s'] * 1e3:.0f} ms, "
          f"cross-entropy {ratio['ce_s'] * 1e3:.0f} ms, ratio {ratio['ratio']:.2f}")
    print(f"\n{args.threads} torch threads; load average (1/5/15 min) before {', '.join(f'{x:.1f}' for x in load0)}, "
          f"after {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
