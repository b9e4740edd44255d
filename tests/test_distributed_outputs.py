"""`learn()` on 2 ranks: every metric evaluation split (the report's included), outputs that differ across ranks
gathered into one G_M, early stopping decided once, and `OutputRecorder.gather()`.

Two real processes (gloo, env:// rendezvous on 127.0.0.1, as `torchrun` sets it up) run `worker()`; this pytest
process runs the same learning alone meanwhile and compares. Checked:

- with `outputs=` and the default measurement settings (held-out batches, the verdict's random batches, the
  report's gradient probe), each rank makes at most 55 % of the metric calls of one process, and the two ranks'
  calls add up to the one process's (split, not repeated); the report's probe numbers are the one process's;
- each rank given a different half of the outputs learns what 2 ranks given the whole learn (bit for bit: weights
  and report), on the same held-out batches as one process given the whole (the baseline's numbers, which depend
  only on the batches, are equal to the last bit; the weights are the one process's up to float32 rounding, as in
  tests/test_distributed_learning.py: a split step sums the same gradient in another order);
- a rank whose own validation would stop it early keeps step with rank 0 (no hang, same weights);
- `OutputRecorder.gather()` gives every rank every rank's batches (shapes and dtypes differing), rank by rank;
- a metric raising on one rank's share raises on both (no rank left waiting).

This file is also the worker: `python tests/test_distributed_outputs.py OUT` under those variables.
"""

from __future__ import annotations

import math
import sys
import warnings
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import metricloss as ml
from metricloss.learning import distributed as distributed_module
from metricloss.learning import trainer as trainer_module
from metricloss.learning.distributed import SharedMetric, agree_outputs, gather_batches, outputs_digest
from metricloss.metrics.base import BatchMetric, MetricError
from metricloss.tasks.base import PROBE_BATCHES
from metricloss.verdict import TRIAL_STEPS
from ranks import CountingAccuracy, model_outputs, start_ranks

# Small learning, default measurement settings (validation_batches, gradient_probe, the verdict's random check).
SETTINGS = dict(task="classification", num_classes=5, steps=10, batch_size=32, batches_per_step=16, pool_size=64,
                eval_every=5, seed=0, progress=False)



def shard(rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Rank ``rank``'s half of :func:`model_outputs` (rank 0 the first 20 batches): their union, in rank order, is
    the whole."""
    return model_outputs()[20 * rank:20 * (rank + 1)]


def recorded(rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """What rank ``rank`` records: batch sizes, dtypes and shapes differ from rank to rank and batch to batch."""
    gen = torch.Generator().manual_seed(100 + rank)
    sizes = [(5, 3), (2, 3), (7, 3)] if rank == 0 else [(4, 3)]
    dtype = torch.float32 if rank == 0 else torch.float16
    return [(torch.randn(*s, generator=gen).to(dtype), torch.randint(0, 3, s[:1], generator=gen)) for s in sizes]


def learn_counted(outputs, **kw) -> tuple[ml.Surrogate, int]:
    CountingAccuracy.calls = 0
    sur = ml.learn(CountingAccuracy(), outputs=outputs, **{**SETTINGS, **kw})
    return sur, CountingAccuracy.calls


def numbers(sur: ml.Surrogate) -> dict:
    r = sur.report
    return {"spearman": r.spearman, "kendall": r.kendall, "baseline_spearman": r.baseline_spearman,
            "gradient_agreement": r.gradient_agreement, "baseline_gradient_agreement": r.baseline_gradient_agreement,
            "n_validation_batches": r.n_validation_batches, "steps": r.steps, "best_step": r.best_step,
            "verdict": r.verdict.to_dict()}


def stopping_alone(real):
    """``real`` validation on rank 0; on rank 1 a score that never improves, so early stopping with patience 1 would
    end that rank's learning alone at its first validation."""

    def validate(self):
        return real(self) if dist.get_rank() == 0 else -math.inf

    return validate


def raising_on_rank_1(pred: torch.Tensor, target: torch.Tensor) -> float:
    if dist.get_rank() == 1:
        raise ValueError("rank 1's share is bad")
    return 0.5


def worker(out: Path) -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", ml.WeakSurrogateWarning)  # a 10-step surrogate; its verdict is not the point
    dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    whole, calls = learn_counted(model_outputs())
    agreed = agree_outputs(shard(rank))
    one_given = agree_outputs(shard(0) if rank == 0 else None)  # a rank without outputs adds nothing
    same_given = agree_outputs(shard(1))  # the same on both ranks: kept as it is, not doubled
    from_shards = learn_counted(shard(rank))[0]
    real = trainer_module.Trainer.validate
    trainer_module.Trainer.validate = stopping_alone(real)
    try:
        early = learn_counted(model_outputs(), patience=1)[0]
    finally:
        trainer_module.Trainer.validate = real
    distributed_module.GATHER_BYTES = 64  # several broadcasts per rank
    gathered = ml.OutputRecorder(every=1)
    for pred, target in recorded(rank):
        gathered.record(pred, target)
    try:
        SharedMetric(BatchMetric("raising", raising_on_rank_1), distributed=True)(
            torch.zeros(4, 3, 3), torch.zeros(4, 3, dtype=torch.long))
        raised = None
    except (ValueError, MetricError) as err:
        raised = f"{type(err).__name__}: {err}"
    torch.save({"whole": (whole.net.state_dict(), numbers(whole)), "calls": calls,
                "agreed": (agreed, one_given, same_given),
                "shards": (from_shards.net.state_dict(), numbers(from_shards)),
                "early": (early.net.state_dict(), numbers(early)),
                "gathered": gathered.gather(), "empty": gather_batches([] if rank else recorded(1)), "raised": raised},
               out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def same_batches(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y) for pa, pb in zip(a, b, strict=True)
        for x, y in zip(pa, pb, strict=True))


@pytest.mark.filterwarnings("ignore::metricloss.WeakSurrogateWarning")
@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo")
def test_two_ranks_split_every_measurement_and_agree_on_outputs(tmp_path):
    procs = start_ranks(__file__, tmp_path)
    single, single_calls = learn_counted(model_outputs())  # meanwhile, one process given the whole
    logs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2))

    # Item 6: pool 64, G_M learning part 30, held-out 10, the verdict's random check 64, the report's gradient
    # probe on the 10 held-out batches (16 directions, both signs, the surrogate's and the baseline's): 640, the
    # verdict's descent trial on them (two steps per step size; the start is known), all split across the ranks;
    # and the probe that chooses the net (8 batches and their 3 parts), which every rank runs whole.
    trial, probe = 10 * 2 * len(TRIAL_STEPS), PROBE_BATCHES * 4
    assert single_calls == 64 + 30 + 10 + 64 + 2 * 10 * 16 * 2 + trial + probe
    assert max(r0["calls"], r1["calls"]) <= 0.55 * single_calls
    assert r0["calls"] + r1["calls"] == single_calls + probe
    for key in ("baseline_spearman", "baseline_gradient_agreement", "n_validation_batches"):
        assert r0["whole"][1][key] == numbers(single)[key]
    assert r0["whole"][1]["verdict"]["random"]["baseline_spearman"] == single.report.verdict.random.baseline_spearman
    # A split step sums the same gradient in another order, so in float32 the weights drift apart by rounding only.
    for split, alone in zip(r0["whole"][0].values(), single.net.state_dict().values(), strict=True):
        torch.testing.assert_close(split, alone, rtol=0, atol=1e-4)
    for key, tol in (("spearman", 0.01), ("kendall", 0.01), ("gradient_agreement", 1e-3)):
        assert abs(r0["whole"][1][key] - numbers(single)[key]) <= tol

    # Item 10: different halves on the two ranks are learned as the whole on both.
    for r in (r0, r1):
        assert same_batches(r["agreed"][0], model_outputs())
        assert same_batches(r["agreed"][1], shard(0)) and same_batches(r["agreed"][2], shard(1))
        assert same_state(r["shards"][0], r0["whole"][0]) and r["shards"][1] == r0["whole"][1]
        assert same_state(r["whole"][0], r0["whole"][0])
    # A rank whose own validation says stop (at the first, step 5) keeps step with rank 0: the undisturbed run's
    # steps, weights and report (patience 1 changes nothing in 10 steps validated at 5 and 10).
    for r in (r0, r1):
        assert same_state(r["early"][0], r0["whole"][0]) and r["early"][1] == r0["whole"][1]
    assert r0["whole"][1]["steps"] == SETTINGS["steps"]
    # The recorder's gather: rank 0's batches, then rank 1's, on both ranks; an empty rank adds nothing.
    for r in (r0, r1):
        assert same_batches(r["gathered"], recorded(0) + recorded(1))
        assert same_batches(r["empty"], recorded(1))
        assert r["raised"] is not None and "raised" in r["raised"]


def test_gather_without_a_group_and_the_outputs_digest():
    batches = recorded(0)
    assert same_batches(gather_batches(batches), batches)
    rec = ml.OutputRecorder()
    for p, t in batches:
        rec.record(p, t)
    assert same_batches(rec.gather(), batches)
    digest, problem = outputs_digest(batches)
    assert problem is None and digest == outputs_digest([(p.clone(), t.clone()) for p, t in batches])[0]
    changed = [(batches[0][0].clone(), batches[0][1]), *batches[1:]]
    changed[0][0][-1, -1] += 1  # one value
    retyped = [(batches[0][0].double(), batches[0][1]), *batches[1:]]
    reshaped = [(batches[0][0].reshape(3, 5), batches[0][1]), *batches[1:]]
    assert len({digest, *(outputs_digest(x)[0] for x in (changed, retyped, reshaped, batches[:2]))}) == 5
    assert outputs_digest(None) == (None, None)
    assert "item 1 is str" in outputs_digest([batches[0], "oops"])[1]


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
