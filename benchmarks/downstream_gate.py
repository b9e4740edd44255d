"""Exploration for issue 24 item 3 (the gate that predicts training), at the recording seed only.

    cd benchmarks && PYTHONPATH=../src nice -n 10 ../.venv/bin/python downstream_gate.py --family digits pose

For each family of ``downstream.py``: the recording run (seed 100) and the surrogate learned from it, exactly as
``downstream.py``'s steps 1 and 2, then what the surrogate's report measured on its held-out recorded outputs: the
verdict's Spearman difference d (today's gate) and the descent trial (``report.verdict.trial``, what
``combine(gate="trial")`` decides by). No evaluation seed (0..9) is touched: no model is trained here beyond the
recording run. Results go to ``benchmarks/results/downstream/gate/<family>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict

import torch

import downstream as ds
from common import machine_line

OUT = ds.RESULTS / "gate"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", nargs="*", default=list(ds.FAMILIES), choices=list(ds.FAMILIES))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line() + " (at start)", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    for key in args.family:
        t0, load = time.perf_counter(), os.getloadavg()
        fam = ds.FAMILIES[key]()
        sur, info = ds.record_and_learn(fam)
        v = sur.report.verdict
        real, trial = v.real, v.trial
        row = {"family": key, "d": real.difference, "d_se": real.standard_error, "spearman": real.spearman,
               "baseline_spearman": real.baseline_spearman, "trial": asdict(trial) if trial else None,
               "info": info, "seconds": time.perf_counter() - t0, "load_start": load, "load_end": os.getloadavg()}
        (OUT / f"{key}.json").write_text(json.dumps(row, indent=1))
        print(f"{key}: d = {real.difference:+.4f} (se {real.standard_error:.4f}); "
              + (trial.describe(fam.baseline_name) if trial else "no trial")
              + f"; per step {trial.gains if trial else None}; {row['seconds']:.0f} s", flush=True)
    print(machine_line() + " (at end)", flush=True)


if __name__ == "__main__":
    main()
