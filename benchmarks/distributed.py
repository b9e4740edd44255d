"""Learning time and metric time of a BLEU surrogate on 1 and 2 ranks, and with 1 and 2 metric worker processes.

    PYTHONPATH=src .venv/bin/python benchmarks/distributed.py

The sequence task's built-in ``"bleu"`` (sacrebleu sentence BLEU, a Python loop over sentences) at small settings
(vocabulary 32, length 32, 32 sentences a batch, a G_R pool of 2048 batches, 128 held-out batches, 20 steps of 32
batches, no gradient probe), learned with the same seed three ways: one process; one process with
``metric_workers=2``; two gloo ranks on loopback (this script relaunches itself as the ranks, with the env://
variables ``torchrun`` would set). Two ranks with ``metric_workers=2`` each is left out (it would need 4 cores).

Columns: ``learn s``: wall time of ``ml.learn`` (the slowest rank); ``metric s``: ``report.metric_seconds``, the
time this process spent evaluating the metric (with workers, the wall time of the pool calls, worker start-up
included; on 2 ranks, the slowest rank's own share, waits for the other rank excluded); ``net s``: the rest;
``spearman``: the report's held-out Spearman. Every process uses one torch thread.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

import metricloss as ml
from common import machine_line, mean_std

SETTINGS = dict(task="sequence", vocab_size=32, max_length=32, batch_size=32, batches_per_step=32, pool_size=2048,
                validation_batches=128, steps=20, eval_every=10, patience=1000, gradient_probe=0, seed=0,
                progress=False)


def run(workers: int) -> dict:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    sur = ml.learn("bleu", metric_workers=workers, **SETTINGS)
    wall = time.perf_counter() - t0
    return {"learn": wall, "metric": sur.report.metric_seconds, "spearman": sur.report.spearman}


def rank_main(out: str) -> None:
    dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=600))
    result = run(1)
    Path(out, f"rank{dist.get_rank()}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def two_ranks(tmp: Path) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
           "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, __file__, "--rank-out", str(tmp)],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(2)]
    if any(p.wait() != 0 for p in procs):
        raise RuntimeError("a rank failed")
    ranks = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["spearman"] == ranks[1]["spearman"]
    return {"learn": max(r["learn"] for r in ranks), "metric": max(r["metric"] for r in ranks),
            "spearman": ranks[0]["spearman"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each configuration, interleaved")
    parser.add_argument("--rank-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_out:
        return rank_main(args.rank_out)
    torch.set_num_threads(1)
    tmp = Path(os.environ.get("TMPDIR", "/tmp"), f"ml-distributed-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    print(machine_line())
    names = ["1 rank, 1 metric worker", "1 rank, 2 metric workers", "2 ranks (gloo), 1 metric worker each"]
    rows: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits every configuration
        rows[names[0]].append(run(1))
        rows[names[1]].append(run(2))
        rows[names[2]].append(two_ranks(tmp))
    print(f"\n| run ({args.repeats} runs: mean ± std) | learn s | metric s | net s | held-out Spearman |")
    print("| --- | --- | --- | --- | --- |")
    for name, rs in rows.items():
        col = {k: mean_std([r[k] for r in rs], 1) for k in ("learn", "metric")}
        net = mean_std([r["learn"] - r["metric"] for r in rs], 1)
        print(f"| {name} | {col['learn']} | {col['metric']} | {net} | {rs[0]['spearman']:.4f} |")
    print(machine_line())


if __name__ == "__main__":
    main()
