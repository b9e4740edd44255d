"""Issue 24 item 5 exploration, validation seeds only (50..54; ``versus.py``'s evaluation seeds 0..9 are refused):
does the learned surrogate add to the reference loss designed for the metric, ``combine(reference, sur)``?

    cd benchmarks && PYTHONPATH=../src nice -n 10 ../.venv/bin/python versus_explore.py imbalanced_balanced_accuracy

For one ``versus.py`` family: the surrogate of its recording run (seed 100), then from scratch on each validation seed
the baseline, each reference alone and ``combine(x, sur)`` for x the baseline and each reference (the default gate);
paired differences against the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import torch

import downstream as ds
import metricloss as ml
import versus
from common import machine_line
from metricloss.references import for_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=list(versus.FAMILIES))
    parser.add_argument("--seeds", default="50,51,52,53,54")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if any(0 <= s < 10 for s in seeds):
        raise SystemExit("seeds 0..9 are versus.py's evaluation seeds: explore on validation seeds only")
    torch.set_num_threads(1)
    print(machine_line() + " (at start)", flush=True)
    fam = versus.FAMILIES[args.family]()
    sur, _ = ds.record_and_learn(fam)
    refs = for_task(sur.task, fam.load(ds.RECORD_SEED)[1])
    trial = sur.report.verdict.trial
    print(f"descent trial: {trial.describe(fam.baseline_name) if trial else None}", flush=True)
    rows = {fam.baseline_name: lambda: fam.baseline}
    rows.update({r.name: (lambda r=r: versus.one_batch(r)) for r in refs})
    rows[f"combine({fam.baseline_name}, sur)"] = lambda: ml.combine(fam.baseline, sur)
    rows.update({f"combine({r.name}, sur)": (lambda r=r: ml.combine(versus.one_batch(r), sur)) for r in refs})
    scores: dict[str, list[float]] = {k: [] for k in rows}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ml.WeakSurrogateWarning)
        for seed in seeds:
            data = fam.load(seed)
            for name, make in rows.items():
                scores[name].append(fam.score(fam.fit(fam.make_model(seed), data, make(), fam.epochs, fam.lr, seed),
                                              data))
    sign = 1.0 if fam.higher_is_better else -1.0
    base = scores[fam.baseline_name]
    for name, vals in scores.items():
        d = [sign * (v - b) for v, b in zip(vals, base, strict=True)]
        se = statistics.stdev(d) / len(d) ** 0.5
        print(f"| {name} | {statistics.mean(vals):.4f} | {statistics.mean(d):+.4f} ± {se:.4f} |", flush=True)
    print(machine_line() + " (at end)", flush=True)


if __name__ == "__main__":
    main()
