"""Largest loss and gradient norm of every shipped surrogate on a grid of wide inputs (docs/reliability.md).

For each shipped surrogate and each cell of batch sizes {1, 2, 64, 512, 4096} x prediction scales {1e-2, 1e-1, 1,
1e2, 1e4} x {float32, bfloat16 autocast, float16 autocast}: ``--draws`` random batches from the surrogate's task
generator (a different seed per draw), predictions multiplied by the scale (and, for bfloat16 and float16, cast to
that dtype and run under CPU autocast), the loss and its gradient with respect to the predictions. Prints whether
every loss and gradient was finite and the largest gradient norm per surrogate (``--cells``: per cell too).

Autocast is CPU autocast (``torch.autocast("cpu", dtype=...)``); torch 2.13 supports float16 there as well as
bfloat16. A surrogate turns autocast off inside and runs in its own float32 weights (``Surrogate.forward``), so what
the low-precision cells test is low-precision *inputs*: logits rounded to bfloat16/float16, many of them tied at
small scales, and float16 logits saturated at 65504.

    .venv/bin/python benchmarks/numerical_safety.py             # the table in docs/reliability.md
    .venv/bin/python benchmarks/numerical_safety.py --cells     # and every cell
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import metricloss as ml

BATCHES = [1, 2, 64, 512, 4096]
SCALES = [1e-2, 1e-1, 1.0, 1e2, 1e4]
DTYPES = ["float32", "bfloat16", "float16"]
FP16_MAX = float(torch.finfo(torch.float16).max)


def gradient(sur: ml.Surrogate, pred: torch.Tensor, target: torch.Tensor, dtype: str) -> tuple[bool, float]:
    """(finite loss and gradient, gradient norm) of ``sur(pred, target)``; for bfloat16/float16 under CPU autocast
    with the predictions cast to that dtype, as a model under autocast emits them (float16 saturated at its
    largest finite value, 65504: larger logits would already be infinite in the model)."""
    if dtype == "float32":
        pred = pred.detach().requires_grad_(True)
        loss = sur(pred, target)
    else:
        low = getattr(torch, dtype)
        if low == torch.float16:
            pred = pred.clamp(-FP16_MAX, FP16_MAX)
        pred = pred.detach().to(low).requires_grad_(True)
        with torch.autocast("cpu", dtype=low):
            loss = sur(pred, target)
    loss.float().backward()
    finite = bool(torch.isfinite(loss).all()) and bool(torch.isfinite(pred.grad).all())
    return finite, float(pred.grad.float().norm())


def surrogate(name: str, floor: float | None) -> ml.Surrogate:
    """A shipped surrogate by name, or a saved one by path; ``floor`` replaces its ordinal/set normaliser floor."""
    sur = ml.load(name) if name.endswith(".safetensors") else ml.pretrained(name)
    for attr in ("spread_floor", "sign_floor", "rank_floor"):
        if floor is not None and hasattr(sur.net, attr):
            setattr(sur.net, attr, floor)
    return sur


def probe(name: str, draws: int, batches: list[int], scales: list[float],
          floor: float | None = None) -> list[dict[str, object]]:
    """One row per cell: its surrogate, batch, scale, dtype, whether all draws were finite and their largest norm."""
    sur = surrogate(name, floor)
    cells: dict[tuple[int, float, str], dict[str, object]] = {}
    for batch in batches:
        for draw in range(draws):
            pred, target = sur.task.random_batches(1, batch, torch.Generator().manual_seed(1000 * batch + draw))
            for scale in scales:
                for dtype in DTYPES:
                    finite, norm = gradient(sur, pred[0] * scale, target[0], dtype)
                    cell = cells.setdefault((batch, scale, dtype), {"name": name, "batch": batch, "scale": scale,
                                                                    "dtype": dtype, "finite": True, "norm": 0.0})
                    cell["finite"] = cell["finite"] and finite
                    if not math.isfinite(norm) or norm > cell["norm"]:
                        cell["norm"] = norm
    return list(cells.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4, help="random batches per cell (default 4)")
    parser.add_argument("--cells", action="store_true", help="also print every cell")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--names", nargs="*", default=None,
                        help="shipped surrogates or paths of saved .safetensors files (default: every shipped one)")
    parser.add_argument("--batches", nargs="*", type=int, default=BATCHES, help="batch sizes (default: the grid's)")
    parser.add_argument("--scales", nargs="*", type=float, default=SCALES, help="scales (default: the grid's)")
    parser.add_argument("--floor", type=float, default=None,
                        help="replace the ordinal `spread_floor` / set `sign_floor` and `rank_floor` of those probed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.draws} draws per cell\n")
    rows, cells = [], []
    t0 = time.perf_counter()
    for name in args.names or ml.zoo.available():
        found = probe(name, args.draws, args.batches, args.scales, args.floor)
        cells += found
        worst = max(found, key=lambda c: c["norm"] if math.isfinite(c["norm"]) else math.inf)
        rows.append((name, len(found) * args.draws, all(c["finite"] for c in found), worst))
    print("| surrogate | cases | all finite | largest gradient norm | where |")
    print("| --- | --- | --- | --- | --- |")
    for name, count, finite, w in rows:
        print(f"| {name} | {count} | {'yes' if finite else 'no'} | {w['norm']:.4g} "
              f"| B={w['batch']}, scale={w['scale']:g}, {w['dtype']} |")
    if args.cells:
        print("\n| surrogate | batch | scale | dtype | finite | largest gradient norm |")
        print("| --- | --- | --- | --- | --- | --- |")
        for c in cells:
            print(f"| {c['name']} | {c['batch']} | {c['scale']:g} | {c['dtype']} | {'yes' if c['finite'] else 'no'} "
                  f"| {c['norm']:.4g} |")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
