"""Largest loss and gradient norm of every shipped surrogate over wide inputs (docs/reliability.md).

For each shipped surrogate: random batches from its task's generator, predictions scaled by 10^k for
k in -2..4 (logits up to about ±1e4 and beyond), batch sizes 1, 2, 32, 1024, in float32 and under CPU autocast
to bfloat16 and float16. Prints whether every loss and gradient was finite and the largest gradient norm.

    .venv/bin/python benchmarks/numerical_safety.py
"""

from __future__ import annotations

import math

import torch

import metricloss as ml

SCALES = [10.0**k for k in range(-2, 5)]
BATCHES = [1, 2, 32, 1024]
DTYPES = ["float32", "bfloat16", "float16"]


def probe(name: str) -> dict[str, object]:
    sur = ml.pretrained(name)
    finite, worst, worst_at, count = True, 0.0, "", 0
    for batch in BATCHES:
        pred0, target = sur.task.random_batches(1, batch, torch.Generator().manual_seed(batch))
        for scale in SCALES:
            for dtype in DTYPES:
                pred = (pred0[0] * scale).detach().requires_grad_(True)
                if dtype == "float32":
                    loss = sur(pred, target[0])
                else:
                    with torch.autocast("cpu", dtype=getattr(torch, dtype)):
                        loss = sur(pred, target[0])
                loss.float().backward()
                count += 1
                ok = bool(torch.isfinite(loss).all()) and bool(torch.isfinite(pred.grad).all())
                finite &= ok
                norm = float(pred.grad.float().norm())
                if not math.isfinite(norm) or norm > worst:
                    worst, worst_at = norm, f"B={batch}, scale={scale:g}, {dtype}"
    return {"name": name, "cases": count, "finite": finite, "max_grad_norm": worst, "at": worst_at}


def main() -> None:
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| surrogate | cases | all finite | largest gradient norm | where |")
    print("| --- | --- | --- | --- | --- |")
    for name in ml.zoo.available():
        r = probe(name)
        print(f"| {r['name']} | {r['cases']} | {r['finite']} | {r['max_grad_norm']:.4g} | {r['at']} |")


if __name__ == "__main__":
    main()
