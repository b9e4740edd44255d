"""How long the default accuracy surrogate takes to learn, measured directly.

    .venv/bin/python benchmarks/learning_cost.py

``learn("accuracy", num_classes=10, progress=False)`` with default settings, on G_R only and with G_M (the
digits demo's CE-checkpoint outputs). The progress bar class inside ``metricloss.learn`` is replaced by one
that timestamps every validation (it is called right after each one, even with ``progress=False``), so the
time to the best checkpoint is wall time from the call to the end of the validation that found it, pool set-up
included. "Within 0.002" is the first validation whose held-out Spearman is within 0.002 of the best. Total time
includes early stopping's patience and the final report. Target: plateau (best checkpoint) within 60 s.
"""

from __future__ import annotations

import importlib
import time

import torch

import metricloss as ml
from common import demo_outputs, machine_line

TARGET = 60.0  # seconds
learn_module = importlib.import_module("metricloss.learn")



def timed_learn(**kwargs) -> tuple[ml.Surrogate, float, dict[int, float], float, float]:
    evals: dict[int, float] = {}
    original = learn_module.tqdm

    count = [0]

    class Probe(original):  # a disabled tqdm does not count, so count steps here
        def update(self, n=1):
            count[0] += n
            return super().update(n)

        def set_postfix(self, *args, **kw):  # called right after every validation
            evals[count[0]] = time.perf_counter()
            return super().set_postfix(*args, **kw)

    learn_module.tqdm = Probe
    c0, t0 = time.process_time(), time.perf_counter()
    try:
        sur = ml.learn("accuracy", num_classes=10, progress=False, seed=0, **kwargs)
    finally:
        learn_module.tqdm = original
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    return sur, t0, evals, total, cpu


def main() -> None:
    torch.set_num_threads(2)
    print(machine_line() + " (at start)", flush=True)
    _, outputs, _ = demo_outputs("digits")

    rows, verdicts = [], []
    for label, kwargs in (("G_R only", {}), ("G_R + digits G_M", {"outputs": outputs})):
        sur, t0, evals, total, cpu = timed_learn(**kwargs)
        rep = sur.report
        # history entries name the held-out score "score" (older versions: "spearman")
        hist = [{"step": h["step"], "spearman": h.get("score", h.get("spearman"))} for h in rep.history]
        hist = [h for h in hist if h["spearman"] is not None]
        best_t = evals[rep.best_step] - t0
        near = next(h["step"] for h in hist if h["spearman"] >= max(x["spearman"] for x in hist) - 0.002)
        near_t = evals[near] - t0
        per_step = rep.learn_seconds / rep.steps
        rows.append(f"| {label} | {rep.best_step} | {best_t:.1f} | {near} | {near_t:.1f} | {rep.steps} | {total:.1f} "
                    f"| {cpu:.1f} | {per_step:.3f} | {rep.spearman:.4f} | {rep.baseline_spearman:.4f} "
                    f"| {rep.n_validation_batches} {rep.validation} |")
        curve = ", ".join(f"{h['step']}: {h['spearman']:.4f} @ {evals[h['step']] - t0:.0f} s" for h in hist)
        print(f"  {label}: held-out Spearman by step: {curve}", flush=True)
        verdicts.append(f"{'PASS' if best_t <= TARGET else 'FAIL'}: {label}: best checkpoint (plateau) reached after "
                        f"{best_t:.1f} s wall (target <= {TARGET:.0f} s); whole run incl. early stopping {total:.1f} s")
    print()
    print("| data | best step | wall to best (s) | first step within 0.002 | wall to it (s) | steps run "
          "| total wall (s) | total process CPU (s) | s/step (learn_seconds/steps) | final held-out Spearman "
          "| cross-entropy Spearman | validation batches |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print()
    print("\n".join(verdicts))
    print(machine_line() + " (at end)")


if __name__ == "__main__":
    main()
