"""`learn()` across the ranks of a torch.distributed process group, and with metric worker processes.

Two real processes (gloo backend, env:// rendezvous on 127.0.0.1, as `torchrun` sets it up) call `ml.learn` with
the same arguments. The test checks, against the same run in one process (this pytest process): both ranks end
with identical weights; each rank evaluates at most 60 % of the metric calls the single process makes (a counting
metric); the held-out Spearman is within 0.01 of the single-process one; a 2-rank run killed right after a
checkpoint and resumed ends identical to an uninterrupted 2-rank run. In one process, `metric_workers=2` learns
the same weights as `metric_workers=1`. This file is also the worker: `python tests/test_distributed_learning.py
OUT` under those variables.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import metricloss as ml
from metricloss.learning import trainer as trainer_module
from metricloss.learning.batches import prepare_batches
from metricloss.learning.distributed import SharedMetric
from metricloss.learning.settings import LearnSettings
from metricloss.metrics.base import as_metric
from metricloss.tasks.base import PROBE_BATCHES, get_task
from metricloss.verdict import TRIAL_STEPS
from ranks import CountingAccuracy, model_outputs, start_ranks

SETTINGS = dict(task="classification", num_classes=5, steps=20, batch_size=32, batches_per_step=16, pool_size=64,
                validation_batches=32, eval_every=5, patience=1000, gradient_probe=0, seed=0, progress=False)



def learn_counted(**kw) -> tuple[ml.Surrogate, int]:
    CountingAccuracy.calls = 0
    sur = ml.learn(CountingAccuracy(), outputs=model_outputs(), **SETTINGS, **kw)
    return sur, CountingAccuracy.calls


class _Killed(Exception):
    pass


def killed_and_resumed(path: Path, kill_after: int) -> ml.Surrogate:
    """A checkpointed run 'killed' on every rank right after its ``kill_after``-th checkpoint, then resumed."""
    real = trainer_module.Checkpointing.__call__
    seen = {"n": 0}

    def dying(self, trainer):
        real(self, trainer)  # rank 0 wrote, every rank passed the barrier
        seen["n"] += 1
        if seen["n"] == kill_after:
            raise _Killed

    trainer_module.Checkpointing.__call__ = dying
    try:
        learn_counted(checkpoint=path)
        raise RuntimeError("the run ended before it was killed")
    except _Killed:
        pass
    finally:
        trainer_module.Checkpointing.__call__ = real
    return learn_counted(checkpoint=path)[0]


def first_step_gradients(distributed: bool, objective: str = "spearman") -> list[torch.Tensor]:
    """The net's gradients (float64) after one learning step, as SGD with lr 1 moves the weights."""
    task = get_task("classification", num_classes=5)
    settings = LearnSettings.resolve(task, objective=objective, batches_per_step=15, batch_size=32, pool_size=64,
                                     validation_batches=8, seed=3, progress=False, distributed=distributed)
    metric = SharedMetric(as_metric(CountingAccuracy(), None, task.metrics), distributed=distributed)
    batches = prepare_batches(task, metric, settings, None, torch.Generator().manual_seed(3))
    batches.pool = (batches.pool[0].double(), *batches.pool[1:])
    torch.manual_seed(3)
    net = task.build_net(**settings.net_config).double()
    start = [p.detach().clone() for p in net.parameters()]
    cls = trainer_module.DistributedTrainer if distributed else trainer_module.Trainer
    trainer = cls(net, metric, batches, settings, torch.Generator().manual_seed(4))
    trainer.opt = torch.optim.SGD(net.parameters(), lr=1.0)
    trainer.step()
    return [a - p.detach() for a, p in zip(start, net.parameters(), strict=True)]


def worker(out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    grads = {(objective, split): first_step_gradients(split, objective)
             for objective in ("spearman", "l2") for split in (True, False)}
    sur, calls = learn_counted()
    resumed = killed_and_resumed(out / "progress.safetensors", kill_after=3)
    uninterrupted = learn_counted(checkpoint=out / "fresh.safetensors")[0]
    torch.save({"state": sur.net.state_dict(), "calls": calls, "spearman": sur.report.spearman,
                "resumed": resumed.net.state_dict(), "uninterrupted": uninterrupted.net.state_dict(),
                "steps": (resumed.report.steps, uninterrupted.report.steps), "grads": grads}, out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo")
def test_learn_on_two_ranks_matches_one_process(tmp_path):
    procs = start_ranks(__file__, tmp_path)
    single, single_calls = learn_counted()  # meanwhile, the same run in one process
    logs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))

    assert same_state(r0["state"], r1["state"]), "the ranks ended with different weights"
    # One step's gradient, split over 2 ranks (15 batches: shares of 8 and 7), is the one-process gradient
    # (rank objective + penalty, and the L2 approximation objective).
    for objective in ("spearman", "l2"):
        alone = r0["grads"][objective, False]
        for split_grad, alone_grad in zip(r0["grads"][objective, True], alone, strict=True):
            torch.testing.assert_close(split_grad, alone_grad, rtol=1e-10, atol=1e-12)
        assert any(bool(g.abs().max() > 1e-4) for g in alone)
    # pool, G_M learning part, held-out batches, the verdict's random check (min(64, validation_batches)): each once;
    # and the probe that chooses the net (Task.for_metric: 8 batches and their 3 parts), which every rank runs whole
    probe = PROBE_BATCHES * 4
    # and the verdict's descent trial on the 10 held-out batches: two steps per step size (the start is known)
    trial = 10 * 2 * len(TRIAL_STEPS)
    assert single_calls == 64 + 30 + 10 + 32 + trial + probe
    assert max(r0["calls"], r1["calls"]) - probe <= 0.6 * (single_calls - probe)
    assert r0["calls"] + r1["calls"] == single_calls + probe  # split, not repeated (but for the probe)
    assert abs(r0["spearman"] - single.report.spearman) <= 0.01
    assert not same_state(r0["state"], {k: torch.zeros_like(v) for k, v in r0["state"].items()})
    for r in (r0, r1):
        assert same_state(r["resumed"], r["uninterrupted"]), "the resumed 2-rank run differs from the uninterrupted"
        assert r["steps"] == (20, 20)
    assert same_state(r0["resumed"], r1["resumed"])


def test_metric_workers_learn_the_serial_weights():
    kw = dict(SETTINGS, steps=10)
    serial = ml.learn("accuracy", **kw)
    pooled = ml.learn("accuracy", metric_workers=2, **kw)
    assert same_state(serial.net.state_dict(), pooled.net.state_dict())
    assert serial.report.spearman == pooled.report.spearman


def test_bad_distributed_and_worker_arguments():
    with pytest.raises(ValueError, match="`distributed=True` needs an initialised"):
        ml.learn("accuracy", distributed=True, **SETTINGS)
    with pytest.raises(TypeError, match="`distributed` must be True or False"):
        ml.learn("accuracy", distributed="yes", **SETTINGS)
    with pytest.raises(TypeError, match=r"`metric_workers=2` .* must be picklable"):
        ml.learn(lambda p, t: float((p.argmax(-1) == t).double().mean()), metric_workers=2, **SETTINGS)
    with pytest.raises(ValueError, match="metric_workers"):
        ml.learn("accuracy", metric_workers=0, **SETTINGS)


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
