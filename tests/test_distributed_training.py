"""A model whose loss holds a surrogate (through `ml.combine`) trains under DistributedDataParallel.

Two real processes (gloo backend, env:// rendezvous on 127.0.0.1, as `torchrun` sets it up) train a small
classifier whose forward returns `combine(F.cross_entropy, sur)(logits, y)` on different data per rank, with
DDP's default `find_unused_parameters=False`. The test checks: no error (frozen surrogate parameters are not
DDP parameters, so none is "unused"), identical replicas after the steps, the surrogate's weights untouched,
the auto weight identical on both ranks (its norms are summed over the group), and that training moved the
model. This file is also the worker: `python tests/test_distributed_training.py OUT` under those variables.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import metricloss as ml
from ranks import start_ranks

STEPS = 6


class Classifier(nn.Module):
    """A model that computes its own loss, the surrogate inside it (the case DDP is most sensitive to)."""

    def __init__(self, surrogate: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 10))
        self.criterion = ml.combine(F.cross_entropy, surrogate)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.criterion(self.body(x), y)


def worker(out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    torch.manual_seed(0)  # DDP broadcasts rank 0's parameters anyway; the same seed makes that a no-op
    model = Classifier(ml.pretrained("classification-accuracy"))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
    weights = []
    for step in range(STEPS):
        gen = torch.Generator().manual_seed(1000 * step + rank)  # each rank its own data
        x, y = torch.randn(32, 8, generator=gen), torch.randint(0, 10, (32,), generator=gen)
        loss = ddp(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        weights.append(model.criterion.weight)
    torch.save({"rank": rank, "start": start, "end": model.state_dict(), "weights": weights,
                "ddp_params": sum(p.numel() for p in ddp.parameters() if p.requires_grad)}, out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def model_state_step(state: dict[str, torch.Tensor]) -> int:
    """The training-call counter saved in the combine loss's state (see CombinedLoss._STATE)."""
    return int(state["criterion._extra_state"][ml.CombinedLoss._STATE.index("step")])


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo")
def test_combined_surrogate_loss_trains_under_ddp(tmp_path):
    procs = start_ranks(__file__, tmp_path)
    logs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    for key, value in r0["end"].items():
        assert torch.equal(value, r1["end"][key]), f"replicas differ in {key}"
    sur_keys = [k for k in r0["end"] if k.startswith("criterion.surrogate.")]
    assert sur_keys and all(torch.equal(r0["start"][k], r0["end"][k]) for k in sur_keys)
    body = [k for k in r0["end"] if k.startswith("body.")]
    assert any(not torch.equal(r0["start"][k], r0["end"][k]) for k in body), "training did not move the model"
    assert r0["ddp_params"] == sum(v.numel() for k in body for v in [r0["end"][k]])  # only the model's own
    assert r0["weights"] == r1["weights"] and all(w > 0 for w in r0["weights"])
    assert model_state_step(r0["end"]) == STEPS


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
