"""Start a test file as a 2-process torch.distributed job (gloo, env:// rendezvous on the loopback address)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

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
