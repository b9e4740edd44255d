"""Training-step overhead of adding the learned accuracy surrogate to cross-entropy.

    .venv/bin/python benchmarks/training_overhead.py [--repeats 60] [--threads 2]

One training step = forward + backward + Adam step on a batch of 128. Two variants, each with its own copy of
the same model and optimizer: ``CE`` (``F.cross_entropy``) and ``CE + surrogate`` (``F.cross_entropy + sur``
with ``metricloss.pretrained("classification-accuracy")``, the shipped default surrogate). The variants are
interleaved (alternating which goes first) and each sample times a block of steps that starts from the same
weights and optimizer state for both variants (so they never drift apart); the table gives medians
and, as a less load-sensitive estimate on a shared machine, the fastest sample of each variant.
Models: (a) the demo's digits MLP (64 inputs, 64 hidden units) and (b) ``training.small_cnn`` on random
32x32x3 inputs. Target: at most 3 % extra time per step.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

import metricloss as ml
from common import machine_line
from metricloss import training

TARGET = 3.0  # percent



def snapshot(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Weights and Adam state after one CE step: every timed sample of both variants starts from here."""
    model = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    return {"model": copy.deepcopy(model.state_dict()), "opt": copy.deepcopy(opt.state_dict())}


def make_step(model: torch.nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, start: dict):
    model = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def reset() -> None:
        model.load_state_dict(start["model"])
        opt.load_state_dict(copy.deepcopy(start["opt"]))

    return step, reset


def timed(step_reset, block: int) -> tuple[float, float]:
    """Wall and process-CPU milliseconds per step over a block of steps from the common starting point."""
    step, reset = step_reset
    reset()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(block):
        step()
    return (time.perf_counter() - w0) * 1e3 / block, (time.process_time() - c0) * 1e3 / block


def loss_alone(loss_fn, logits: torch.Tensor, y: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median and minimum ms of a loss's own forward + backward on a batch of logits (no model)."""
    times = []
    for _ in range(repeats):
        z = logits.detach().clone().requires_grad_(True)
        t0 = time.perf_counter()
        loss_fn(z, y).backward()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def bench(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, sur: ml.Surrogate,
          repeats: int, block: int) -> dict:
    start = snapshot(model, x, y)
    steps = {
        "CE": make_step(model, F.cross_entropy, x, y, start),
        "CE + surrogate": make_step(model, lambda z, t: F.cross_entropy(z, t) + sur(z, t), x, y, start),
    }
    for step in steps.values():  # warm-up
        timed(step, max(3, block))
    wall: dict[str, list[float]] = {k: [] for k in steps}
    cpu: dict[str, list[float]] = {k: [] for k in steps}
    order = list(steps)
    for r in range(repeats):
        for k in order if r % 2 == 0 else order[::-1]:
            w, c = timed(steps[k], block)
            wall[k].append(w)
            cpu[k].append(c)
    with torch.no_grad():
        logits = model(x)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    best = {k: min(v) for k, v in wall.items()}
    # Paired ratio: each repeat's two neighbouring samples share the machine's momentary load.
    paired = statistics.median(s / c for s, c in zip(wall["CE + surrogate"], wall["CE"], strict=True))
    return {
        "name": name, "ce_ms": med["CE"], "sur_ms": med["CE + surrogate"], "ratio": med["CE + surrogate"] / med["CE"],
        "paired_ratio": paired, "ce_cpu": med_cpu["CE"], "sur_cpu": med_cpu["CE + surrogate"],
        "ce_min": best["CE"], "sur_min": best["CE + surrogate"],
        "alone": loss_alone(sur, logits, y, 500), "ce_alone": loss_alone(F.cross_entropy, logits, y, 500),
        "repeats": repeats, "block": block,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60,
                        help="timed samples per variant for the CNN (4x as many for the MLP; default 60)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    args = parser.parse_args()
    repeats = args.repeats
    torch.set_num_threads(args.threads)
    print(machine_line() + " (at start)")
    sur = ml.pretrained("classification-accuracy")
    gen = torch.Generator().manual_seed(0)
    batch = 128
    torch.manual_seed(0)
    rows = [
        bench("(a) demo MLP, 64 -> 64 -> 10, batch 128", training.mlp(64, 10, 64),
              torch.rand(batch, 64, generator=gen), torch.randint(0, 10, (batch,), generator=gen), sur,
              repeats * 4, 20),
        bench("(b) small_cnn, 3x32x32 -> 10, batch 128", training.small_cnn(3, 10),
              torch.rand(batch, 3, 32, 32, generator=gen), torch.randint(0, 10, (batch,), generator=gen), sur,
              repeats, 2),
    ]
    print()
    print("Medians over samples (min = fastest sample, the least disturbed by other processes).")
    print()
    print("| model | CE ms/step median (min) | CE + surrogate ms/step median (min) | ratio | extra % "
          "| extra % of mins | paired ratio | extra ms | surrogate fwd+bwd alone ms median (min) "
          "| CE fwd+bwd alone ms median (min) | CPU-time extra % | samples x steps |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['name']} | {r['ce_ms']:.3f} ({r['ce_min']:.3f}) | {r['sur_ms']:.3f} ({r['sur_min']:.3f}) "
              f"| {r['ratio']:.3f} | {100 * (r['ratio'] - 1):+.1f} | {100 * (r['sur_min'] / r['ce_min'] - 1):+.1f} "
              f"| {r['paired_ratio']:.3f} | {r['sur_ms'] - r['ce_ms']:.3f} "
              f"| {r['alone'][0]:.3f} ({r['alone'][1]:.3f}) | {r['ce_alone'][0]:.3f} ({r['ce_alone'][1]:.3f}) "
              f"| {100 * (r['sur_cpu'] / r['ce_cpu'] - 1):+.1f} | {r['repeats']} x {r['block']} |")
    print()
    for r in rows:
        extra = 100 * (r["ratio"] - 1)
        verdict = "PASS" if extra <= TARGET else "FAIL"
        print(f"{verdict}: {r['name']}: {extra:+.1f} % extra time per step, median (target <= {TARGET:.0f} %; "
              f"{100 * (r['sur_min'] / r['ce_min'] - 1):+.1f} % on the fastest samples); the surrogate adds "
              f"{r['sur_ms'] - r['ce_ms']:.3f} ms to a {r['ce_ms']:.3f} ms step (alone: {r['alone'][1]:.3f} ms "
              f"fastest, {r['alone'][0]:.3f} ms median; cross-entropy alone: {r['ce_alone'][1]:.3f} ms, "
              f"{100 * r['ce_alone'][1] / r['ce_min']:.1f} % of the CE step)")
    print(machine_line() + " (at end)")


if __name__ == "__main__":
    main()
