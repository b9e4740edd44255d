"""Start a test file as a 2-process torch.distributed job (gloo, env:// rendezvous on the loopback address), and the
counting metric and fake model outputs the distributed learning tests share."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

import metricloss as ml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(script: str, out: Path, world: int = 2) -> list[subprocess.Popen]:
    """``python script out`` once per rank, with the variables torchrun would set; one torch thread each."""
    src = str(Path(ml.__file__).resolve().parents[1])
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(world),
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    return [subprocess.Popen([sys.executable, script, str(out)], env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for r in range(world)]


class CountingAccuracy:
    """Batch accuracy that counts its calls (one per batch) in this process."""

    calls = 0

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> float:
        CountingAccuracy.calls += 1
        return float((pred.argmax(-1) == target).double().mean())


def model_outputs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """G_M: 40 batches of 32 outputs of a fake model whose accuracy varies from batch to batch."""
    gen = torch.Generator().manual_seed(11)
    out = []
    for i in range(40):
        target = torch.randint(0, 5, (32,), generator=gen)
        logits = torch.randn(32, 5, generator=gen) + (i % 8) * 0.5 * torch.nn.functional.one_hot(target, 5)
        out.append((logits, target))
    return out
