"""Issue 22, item 12: tests for what the code of the last issues can get wrong and the suite did not catch.

Each test here fails when one of the bugs ``scripts/mutation_check.py`` plants is in the code (the script names the
test that catches each), and checks the behaviour against a reference of its own:

- ``combine`` under ``torch.distributed``: the weight every rank uses is the one a single process computes on the
  whole global batch (the ranks' squared gradient norms summed, not their norms);
- ``max_length`` read from outputs is an upper bound: equal to the longest ``T`` is accepted, one less is refused;
- sizes: ``"MB"`` / ``"GB"`` are powers of ten (SI), ``"MiB"`` / ``"GiB"`` powers of two (IEC);
- the gradient probe's allocations, counted by the profiler, stay within the budget's chunk share;
- a card measured on random batches is reproduced on those batches even when ``outputs=`` are given (never
  re-measured on the outputs and labelled "held-out model outputs").
"""

from __future__ import annotations

import concurrent.futures as futures
import importlib
import threading
import types

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from scipy import stats
from torch.profiler import ProfilerActivity, profile

import metricloss as ml
from metricloss._memory import CHUNK_SHARE, chunk_count, parse_budget
from metricloss.evaluation import gradient_agreement, metric_changes
from metricloss.learning import distributed
from metricloss.learning.batches import TimedMetric
from metricloss.learning.distributed import SharedMetric, gather_losses, rank_share
from metricloss.learning.shapes import infer_shapes
from metricloss.metrics.base import BatchMetric, as_metric
from metricloss.replay import card_batches, remeasure
from metricloss.tasks.base import get_task

combine_module = importlib.import_module("metricloss.combine")
SMALL = {"steps": 6, "batches_per_step": 8, "validation_batches": 12, "eval_every": 3, "gradient_probe": 4,
         "progress": False}


# --- combine under torch.distributed ----------------------------------------------------------------------------


class ThreadGroup:
    """A stand-in for ``torch.distributed`` (patched into a module's namespace): each of ``world`` threads is a rank
    (:func:`on_ranks` sets ``local.rank``); ``all_reduce`` sums every rank's tensor in rank order into each and
    ``all_gather`` hands every rank all of them, as the gloo collectives do; ``op=ReduceOp.MAX`` takes the largest."""

    ReduceOp = dist.ReduceOp

    def __init__(self, world: int) -> None:
        self.world, self.local = world, threading.local()
        self.barrier_ = threading.Barrier(world, timeout=30)
        self.slots: list[torch.Tensor | None] = [None] * world

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def get_world_size(self) -> int:
        return self.world

    def get_rank(self) -> int:
        return self.local.rank

    def get_backend(self) -> str:
        return "gloo"

    def barrier(self) -> None:
        self.barrier_.wait()

    def _exchange(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        self.slots[self.local.rank] = tensor.clone()
        self.barrier_.wait()
        parts = [t.clone() for t in self.slots]
        self.barrier_.wait()
        return parts

    def all_reduce(self, tensor: torch.Tensor, op: object = dist.ReduceOp.SUM) -> None:
        parts = self._exchange(tensor)
        total = parts[0]
        for part in parts[1:]:
            total = torch.maximum(total, part) if op == dist.ReduceOp.MAX else total + part
        tensor.copy_(total)

    def all_gather(self, out: list[torch.Tensor], tensor: torch.Tensor) -> None:
        for dest, part in zip(out, self._exchange(tensor), strict=True):
            dest.copy_(part)


def on_ranks(group: ThreadGroup, fn) -> list:
    """``fn(rank)`` on every rank of ``group``, each in its own thread; the results in rank order."""
    results, errors = [None] * group.world, []

    def run(rank: int) -> None:
        group.local.rank = rank
        try:
            results[rank] = fn(rank)
        except Exception as err:  # pragma: no cover - re-raised below
            errors.append(err)
            group.barrier_.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(group.world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def brier(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A surrogate that is a mean over samples (so the global batch's loss is the mean of the ranks' losses)."""
    one_hot = F.one_hot(target, logits.shape[-1]).to(logits.dtype)
    return (logits.softmax(-1) - one_hot).square().sum(-1).mean()


def test_combine_weight_under_ranks_is_the_one_of_the_whole_global_batch(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    # Two shards whose gradient norms differ a lot (one confident, one not), so summing norms or squared norms differ.
    logits = torch.cat([torch.randn(16, 5, generator=gen, dtype=torch.float64) * 6,
                        torch.randn(16, 5, generator=gen, dtype=torch.float64) * 0.3])
    target = torch.randint(0, 5, (32,), generator=gen)
    # Reference: one process on the concatenated batch. With equal shards, the global mean loss is the mean of the
    # shards' means, so its gradient is the shards' gradients side by side over 2: the norms' ratio is the same.
    alone = ml.combine(F.cross_entropy, brier, momentum=0.0, distributed=False)
    alone(logits.clone().requires_grad_(True), target)
    expected = alone.weight

    group = ThreadGroup(2)
    monkeypatch.setattr(combine_module, "dist", group)

    def rank(r: int) -> float:
        loss = ml.combine(F.cross_entropy, brier, momentum=0.0, distributed=True)
        shard = slice(16 * r, 16 * (r + 1))
        loss(logits[shard].clone().requires_grad_(True), target[shard])
        return loss.weight

    weights = on_ranks(group, rank)
    assert weights[0] == weights[1]
    assert weights[0] == pytest.approx(expected, rel=1e-9)
    # the shards alone would give other weights: the reduction mattered
    shard_weights = []
    for r in range(2):
        one = ml.combine(F.cross_entropy, brier, momentum=0.0, distributed=False)
        one(logits[16 * r:16 * (r + 1)].clone().requires_grad_(True), target[16 * r:16 * (r + 1)])
        shard_weights.append(one.weight)
    assert all(abs(w - expected) > 1e-3 * expected for w in shard_weights)


# --- max_length read from outputs -------------------------------------------------------------------------------


def _sequences(lengths: list[int], vocab: int = 7) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(4, t, vocab, generator=gen), torch.randint(0, vocab, (4, t), generator=gen))
            for t in lengths]


def test_max_length_equal_to_the_longest_output_is_accepted_and_one_less_refused():
    outputs = _sequences([5, 9, 7])
    assert infer_shapes("sequence", outputs, {"max_length": 9})["max_length"] == 9
    assert infer_shapes("sequence", outputs, {"max_length": 12})["max_length"] == 12
    with pytest.raises(ValueError, match=r"`max_length` = 8 contradicts `outputs`: item 1 .* at least 9"):
        infer_shapes("sequence", outputs, {"max_length": 8})


@pytest.mark.filterwarnings("ignore::metricloss.WeakSurrogateWarning")
def test_learn_with_max_length_equal_to_the_longest_output():
    outputs = _sequences([6, 10] * 12, vocab=9)
    sur = ml.learn("token_f1", task="sequence", outputs=outputs, max_length=10, batch_size=4, pool_size=16,
                   **SMALL)
    assert sur.task.max_length == 10 and sur.task.vocab_size == 9


# --- memory sizes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("1kB", 10**3), ("1MB", 10**6), ("1 GB", 10**9), ("1TB", 10**12), ("2.5mb", 2_500_000),
    ("1KiB", 1024), ("1MiB", 1024 * 1024), ("1 GiB", 1024 * 1024 * 1024), ("1TiB", 1024**4), ("3mib", 3 * 1024**2),
    ("4096", 4096), ("4096 B", 4096)])
def test_sizes_are_si_for_mb_and_iec_for_mib(text, expected):
    assert parse_budget(text) == expected


# --- the gradient probe within its budget -----------------------------------------------------------------------


def _target_prob(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return pred.softmax(-1).gather(-1, target.unsqueeze(-1)).mean()


def _target_prob_stacked(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Vectorised over a stack: holds one working copy (the softmax) of every point it is given."""
    return pred.softmax(-1).gather(-1, target.unsqueeze(-1)).squeeze(-1).mean(-1)


def _peak_bytes(fn) -> int:
    """The most bytes allocated at once while ``fn()`` runs, above what was held before: the profiler's CPU
    allocation and free events, summed in time order."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(prof.profiler.kineto_results.events(), key=lambda e: e.start_ns()):
        if event.name() == "[memory]":
            live += event.nbytes()
            peak = max(peak, live)
    assert peak > 0, "the profiler recorded no allocation"
    return peak


@pytest.mark.parametrize("room", [20, 25, 30, 60, 84, 100, 168])  # chunk shares, in copies of one batch
def test_the_gradient_probe_holds_no_more_than_the_budgets_chunk_share(room):
    task = get_task("classification", num_classes=64)
    metric = BatchMetric("target_prob", _target_prob, True, _target_prob_stacked)
    pred, target = task.random_batches(3, 64, torch.Generator().manual_seed(0))
    budget = int(pred[0].nbytes * room / CHUNK_SHARE)
    peak = _peak_bytes(lambda: gradient_agreement(task.baseline, metric, pred, target, directions=16,
                                                  memory_budget=budget))
    assert peak <= CHUNK_SHARE * budget, f"{peak / pred[0].nbytes:.1f} batch copies held, room for {room}"


# --- reproducing a card measured on random batches ----------------------------------------------------------------


def _class_outputs(n: int = 30) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(3)
    return [(torch.randn(16, 5, generator=gen) * 2, torch.randint(0, 5, (16,), generator=gen)) for _ in range(n)]


@pytest.mark.parametrize("kind", ["learn", "uniloss"])
def test_a_random_batch_card_is_reproduced_on_its_own_batches_even_given_outputs(kind):
    common = {"num_classes": 5, "batch_size": 16, "progress": False}
    if kind == "learn":
        loss = ml.learn("accuracy", pool_size=24, **common, **{k: v for k, v in SMALL.items() if k != "progress"})
    else:
        loss = ml.build_uniloss("accuracy", validation_batches=6, num_classes=5, batch_size=16)
    assert loss.report.validation == "random batches (G_R)"
    outputs = _class_outputs()
    own, given = card_batches(loss), card_batches(loss, outputs=outputs)
    assert given.validation == own.validation == "random batches (G_R)"
    assert torch.equal(given.pred, own.pred) and torch.equal(given.target, own.target)
    again = remeasure(loss, outputs=outputs)
    assert again.validation == "random batches (G_R)"
    assert (again.spearman, again.kendall) == (loss.report.spearman, loss.report.kendall)


# --- learning's work split across ranks --------------------------------------------------------------------------


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_rank_shares_partition_the_items_in_order(world):
    for n in range(0, 23):
        shares = [rank_share(n, r, world) for r in range(world)]
        assert [i for a, b in shares for i in range(a, b)] == list(range(n))
        sizes = [b - a for a, b in shares]
        assert max(sizes) - min(sizes) <= 1


def _lower_is_better_metric():
    task = get_task("ordinal", num_classes=6)
    return task, as_metric("mae", None, task.metrics)


@pytest.mark.parametrize("n", [2, 3, 7])
def test_a_metric_shared_across_ranks_gives_the_serial_values(monkeypatch, n):
    task, metric = _lower_is_better_metric()
    pred, target = task.random_batches(n, 8, torch.Generator().manual_seed(n))
    serial = TimedMetric(metric)(pred, target)
    assert torch.equal(serial, -metric.evaluate(pred, target))  # oriented: higher is better
    group = ThreadGroup(3)
    monkeypatch.setattr(distributed, "dist", group)
    values = on_ranks(group, lambda r: SharedMetric(metric, distributed=True)(pred, target))
    for v in values:
        torch.testing.assert_close(v, serial, rtol=0, atol=0)


def test_metric_workers_give_the_serial_oriented_values(monkeypatch):
    """The worker pool's pieces, in order and oriented (threads stand in for the spawned processes)."""
    task, metric = _lower_is_better_metric()
    pred, target = task.random_batches(11, 8, torch.Generator().manual_seed(0))
    pool = types.SimpleNamespace(ProcessPoolExecutor=lambda n, mp_context=None: futures.ThreadPoolExecutor(n))
    monkeypatch.setattr(distributed, "futures", pool)
    shared = SharedMetric(metric, workers=2)
    try:
        values = shared(pred, target)
    finally:
        shared.close()
    assert torch.equal(values, TimedMetric(metric)(pred, target))


def test_gathered_losses_give_each_rank_its_share_of_the_full_gradient(monkeypatch):
    n = 7
    full = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    weights = torch.linspace(-1, 2, n, dtype=torch.float64)

    def objective(losses: torch.Tensor) -> torch.Tensor:
        return (weights * losses).sum() + losses.square().sum() * losses.mean()

    x = full.clone().requires_grad_(True)
    objective(x).backward()
    group = ThreadGroup(3)
    monkeypatch.setattr(distributed, "dist", group)

    def rank(r: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = rank_share(n, r, 3)
        local = full[a:b].clone().requires_grad_(True)
        gathered = gather_losses(local, n)
        objective(gathered).backward()
        return gathered.detach(), local.grad

    for r, (gathered, grad) in enumerate(on_ranks(group, rank)):
        a, b = rank_share(n, r, 3)
        assert torch.equal(gathered, full)
        torch.testing.assert_close(grad, x.grad[a:b], rtol=1e-12, atol=1e-12)


# --- more shapes, memory and probe checks ------------------------------------------------------------------------


def test_max_length_inferred_is_the_longest_batch_whatever_its_place():
    for lengths in ([5, 9, 7], [9, 5, 7], [5, 7, 9]):
        assert infer_shapes("sequence", _sequences(lengths), {})["max_length"] == 9


@pytest.mark.parametrize("copies", [1.0, 2.5, 4.0, 84.0])
@pytest.mark.parametrize("budget", [10_000, 123_457, 2**21])
def test_chunk_count_fits_its_items_with_their_copies_in_the_chunk_share(copies, budget):
    for item in (1, 7, 100, 999, 5000):
        n = chunk_count(item, budget, 10**9, copies)
        held = n * int(item * copies)
        assert n == 1 or held <= CHUNK_SHARE * budget  # one item is the smallest unit of work
        assert (n + 1) * int(item * copies) > CHUNK_SHARE * budget  # and no more would fit
        assert chunk_count(item, budget, 3, copies) == min(3, n)


def test_metric_changes_are_the_antithetic_differences_a_loop_computes():
    task = get_task("classification", num_classes=5)
    metric = BatchMetric("target_prob", _target_prob, True, _target_prob_stacked)
    pred, target = task.random_batches(3, 6, torch.Generator().manual_seed(0))
    pred = pred.double()
    deltas, changes = metric_changes(metric, pred, target, 4, 0.3, torch.Generator().manual_seed(1))
    assert deltas.shape == (3, 4, 6, 5) and changes.shape == (3, 4)
    for i in range(3):
        s = pred[i].std()
        for k in range(4):
            step = 0.3 * s * deltas[i, k]
            expected = _target_prob(pred[i] + step, target[i]) - _target_prob(pred[i] - step, target[i])
            assert float(changes[i, k]) == pytest.approx(float(expected), rel=1e-9, abs=1e-12)
    again, _ = metric_changes(metric, pred, target, 4, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(again, deltas)  # the directions are the generator's first draws


def test_a_card_is_reproduced_with_the_runs_own_seed():
    loss = ml.learn("accuracy", num_classes=5, batch_size=16, pool_size=24, seed=3, **SMALL)
    again = remeasure(loss)
    assert (again.spearman, again.gradient_agreement) == (loss.report.spearman, loss.report.gradient_agreement)
    assert card_batches(loss).probe["seed"] == 3


# --- the output recorder -------------------------------------------------------------------------------------------


def _numbered(i: int, rows: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``i`` of ``rows`` samples, its index readable from its target."""
    return torch.full((rows, 3), float(i)), torch.full((rows,), i, dtype=torch.int64)


def test_recorder_with_every_keeps_each_candidate_with_equal_probability():
    # Algorithm R over the candidates (every 3rd batch offered): each of the 12 is kept with probability k / 12,
    # k = 3, whatever the batches offered between them. 400 seeded runs, chi-square against the uniform rate.
    runs, counts = 400, torch.zeros(12)
    nbytes = sum(x.nbytes for x in _numbered(0))
    for seed in range(runs):
        rec = ml.OutputRecorder(max_bytes=3 * nbytes, every=3, seed=seed)
        for i in range(36):
            rec.record(*_numbered(i))
        kept = [int(t[0]) for _, t in rec]
        assert all(i % 3 == 0 for i in kept)
        counts[[i // 3 for i in kept]] += 1
    assert counts.sum() == 3 * runs
    assert stats.chisquare(counts.numpy(), [runs * 3 / 12] * 12).pvalue > 1e-3, counts


def test_recorder_evicts_as_many_batches_as_a_much_larger_one_needs():
    small = sum(x.nbytes for x in _numbered(0, rows=1))
    for seed in range(5):
        rec = ml.OutputRecorder(max_bytes=8 * small, seed=seed)
        for i in range(8):
            rec.record(*_numbered(i, rows=1))
        for i in range(8, 40):
            rec.record(*_numbered(i, rows=5))  # five times the bytes of a small one
            assert rec.nbytes <= rec.max_bytes
            assert rec.nbytes == sum(p.nbytes + t.nbytes for p, t in rec)
        assert any(p.shape[0] == 5 for p, _ in rec)  # large batches did enter
