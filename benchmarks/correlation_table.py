"""The Table-1 analog for every task family and built-in metric, in one table from one run.

For each family (classification, pose, sequence, set, ordinal) and each of its built-in metrics, a surrogate is
learned from G_R with the task's default surrogate net and the family's benchmark settings (those of
``correlation_<family>.py``; classification and pose use the library defaults: ``correlation_pose.py`` caps pose
at 300 steps, which measured 0.8275 on PCK against 0.8478 at the default cap of 2000 with early stopping). Then
it and the family's baseline loss are scored on 512 fresh held-out G_R batches from a seed the learner never used
(``heldout_correlation.py``). The table gives Spearman and Kendall of both, whether the surrogate is above the
baseline in both, the learning time and the metric's share of it. Then the paper's marks (ReLoss Table 1, on real
model outputs, not our generated batches): PCK 86.04 Spearman (MSE 46.71), F1 84.63 (CE 78.68), BLEU 75.68
(CE 70.14).

Run (about 10 minutes on 2 CPU cores, one thread, the other core busy)::

    .venv/bin/python benchmarks/correlation_table.py --threads 1
    .venv/bin/python benchmarks/correlation_table.py --families set ordinal   # a subset
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

import correlation_ordinal
import correlation_pose
import correlation_sequence
import correlation_set
from common import machine_line
from heldout_correlation import HELDOUT, correlation_rows, markdown

#: family -> (task keyword arguments, learning settings)
FAMILIES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "classification": ({"num_classes": 10}, {"gradient_probe": 0}),
    "pose": (correlation_pose.TASK, {"gradient_probe": 0}),
    "sequence": (correlation_sequence.SHAPE, correlation_sequence.LEARN),
    "set": ({"num_labels": None}, correlation_set.LEARN),
    "ordinal": ({"num_classes": 5}, correlation_ordinal.LEARN),
}
#: (family, metric, paper's surrogate Spearman, paper's baseline Spearman), ReLoss Table 1
PAPER_MARKS = [("pose", "pck", 0.8604, 0.4671), ("sequence", "token_f1", 0.8463, 0.7868),
               ("sequence", "bleu", 0.7568, 0.7014)]



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--seed", type=int, default=0, help="learn seed; held-out batches use 10000 + seed")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line() + " (at start)", flush=True)
    t0 = time.perf_counter()
    table: list[dict] = []
    for family in args.families:
        task_kwargs, settings = FAMILIES[family]
        table += correlation_rows(family, task_kwargs, settings, seed=args.seed, heldout=HELDOUT, verbose=True)
    total = time.perf_counter() - t0
    print()
    print(f"{HELDOUT} fresh held-out G_R batches per family (generator seed {10_000 + args.seed}), learn seed "
          f"{args.seed}; one run, {total / 60:.1f} min in all.")
    print()
    print(markdown(table))
    print()
    below = [f"{r['task']}/{r['metric']}" for r in table
             if not (r["spearman"] > r["baseline_spearman"] and r["kendall"] > r["baseline_kendall"])]
    print(f"surrogate above its baseline in Spearman and Kendall on {len(table) - len(below)} of {len(table)} rows"
          + (f"; not on: {', '.join(below)}" if below else ""))
    by_key = {(r["task"], r["metric"]): r for r in table}
    for family, metric, paper, paper_base in PAPER_MARKS:
        r = by_key.get((family, metric))
        if r is not None:
            verdict = "meets" if r["spearman"] >= paper else "below"
            print(f"paper mark {family}/{metric}: Spearman {r['spearman']:.4f} ({r['baseline']} "
                  f"{r['baseline_spearman']:.4f}) against the paper's {paper:.4f} ({paper_base:.4f}): {verdict}")
    worst = max(table, key=lambda r: r["metric_share"])
    print(f"largest metric share of learning time: {worst['metric_share']:.3f} ({worst['task']}/{worst['metric']})")
    print(machine_line() + " (at end)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(table, fh, indent=1)


if __name__ == "__main__":
    main()
