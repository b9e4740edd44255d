"""Issue 22, item 3: learning never uses torch's global generator, so threads learn alike and the caller's random
stream is untouched, also while another thread draws from it."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from torch import nn

import metricloss as ml
from metricloss._rng import private_rng
from metricloss.metrics.base import as_metric
from metricloss.tasks.base import get_task
from metricloss.tasks.classification import ClassificationTask

FAMILIES = {
    "classification": {"num_classes": 10},
    "ordinal": {"num_classes": 5},
    "set": {},
    "pose": {"num_keypoints": 4, "heatmap_size": (16, 16)},
    "sequence": {"vocab_size": 32, "max_length": 24},
}
#: Net configurations beside each family's default that draw through other initialisers (attention, embeddings).
EXTRA_NETS = [("sequence", {"layers": 1, "conv": 1}), ("pose", {"kind": "embedding"}), ("pose", {"kind": "weighted"})]
SMALL = {"steps": 2, "batches_per_step": 8, "validation_batches": 8, "pool_size": 16, "gradient_probe": 0,
         "batch_size": 32, "progress": False}


def _equal_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _nets():
    """(task, net_config) for every family's default net for each of its metrics, and the extra configurations."""
    for family, shape in FAMILIES.items():
        base = get_task(family, **shape)
        for name in base.metrics:
            task = base.for_metric(as_metric(name, None, base.metrics))
            yield task, task.default_net_config()
    for family, extra in EXTRA_NETS:
        task = get_task(family, **FAMILIES[family])
        yield task, {**task.default_net_config(), **extra}


def test_private_rng_builds_what_the_seeded_global_generator_built():
    """Seeds keep their weights: every net built under private_rng(s) is the one torch.manual_seed(s) gave, and the
    global state is not touched."""
    for task, cfg in _nets():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(11)
            reference = task.build_net(**cfg)
        before = torch.get_rng_state()
        with private_rng(11):
            net = task.build_net(**cfg)
        assert torch.equal(before, torch.get_rng_state()), (task.name, cfg)
        assert _equal_weights(net, reference), (task.name, cfg)


def test_private_rng_draws_every_kind_of_draw_from_its_generator():
    before = torch.get_rng_state()
    with private_rng(4) as gen:
        assert isinstance(gen, torch.Generator)
        got = [torch.rand(3), torch.randn(3), torch.randint(0, 9, (3,)), torch.randperm(5),
               torch.empty(3).uniform_(-1, 1), torch.empty(3).normal_(), nn.init.xavier_uniform_(torch.empty(2, 3)),
               torch.multinomial(torch.ones(4), 2)]
        mine = torch.rand(2, generator=torch.Generator().manual_seed(1))  # a draw that names its own generator
    assert torch.equal(before, torch.get_rng_state())
    g = torch.Generator().manual_seed(4)
    want = [torch.rand(3, generator=g), torch.randn(3, generator=g), torch.randint(0, 9, (3,), generator=g),
            torch.randperm(5, generator=g), torch.empty(3).uniform_(-1, 1, generator=g),
            torch.empty(3).normal_(generator=g), nn.init.xavier_uniform_(torch.empty(2, 3), generator=g),
            torch.multinomial(torch.ones(4), 2, generator=g)]
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(mine, torch.rand(2, generator=torch.Generator().manual_seed(1)))


def test_private_rng_refuses_a_draw_it_cannot_route():
    with private_rng(0), pytest.raises(RuntimeError, match="dropout draws from torch's global generator"):
        torch.nn.functional.dropout(torch.ones(4), 0.5, training=True)


def test_private_rng_blocks_do_not_wait_for_each_other_nor_see_other_threads_draws():
    inside, drawn = threading.Event(), threading.Event()
    other_values = []

    def other():
        with private_rng(1):
            inside.set()
            drawn.wait(timeout=5)
            other_values.append(torch.rand(3))

    torch.manual_seed(5)
    expected = torch.rand(2, generator=torch.Generator().manual_seed(5))
    with private_rng(0):
        th = threading.Thread(target=other)
        th.start()
        assert inside.wait(timeout=5)  # not blocked by this thread's block
        x = torch.rand(3)
        drawn.set()
        th.join()
    assert torch.equal(x, torch.rand(3, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(other_values[0], torch.rand(3, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(torch.rand(2), expected)  # the global stream is where the caller left it


def _interleaving_build(counter: list[int]):
    """A ``build_net`` that builds only after the main thread has drawn 50 more numbers from the global generator
    (while ``counter[1]`` is set): a library that seeds or draws from that generator then gives other weights, and
    the main thread other numbers."""
    build = ClassificationTask.build_net

    def build_net(self, **net_config):
        start, deadline = counter[0], time.monotonic() + 5.0
        while counter[1] and counter[0] < start + 50 and time.monotonic() < deadline:
            time.sleep(0.0005)
        return build(self, **net_config)

    return build_net


def _trial(trial: int, counter: list[int], reference: nn.Module) -> tuple[bool, bool]:
    """Two threads learn with seed 0 while this one draws torch.rand in a loop: (both weights equal the sequential
    ones, this thread's stream is the one it would have been)."""
    torch.manual_seed(100 + trial)
    results: dict[int, ml.Surrogate] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, ml.learn("accuracy", num_classes=5, seed=0,
                                                                                   **SMALL))) for i in range(2)]
    drawn = []
    for th in threads:
        th.start()
    while any(th.is_alive() for th in threads):
        drawn.append(torch.rand(1))
        counter[0] += 1
        time.sleep(0.0001)  # leave the learning threads the interpreter between draws
    for th in threads:
        th.join()
    stream = torch.cat([*drawn, torch.rand(10)])
    expected = torch.rand(stream.numel(), generator=torch.Generator().manual_seed(100 + trial))
    return (len(results) == 2 and all(_equal_weights(s.net, reference) for s in results.values()),
            torch.equal(stream, expected))


def test_two_threads_learn_the_sequential_weights_while_the_main_thread_draws(monkeypatch):
    counter = [0, False]
    monkeypatch.setattr(ClassificationTask, "build_net", _interleaving_build(counter))
    reference = ml.learn("accuracy", num_classes=5, seed=0, **SMALL).net  # sequential: nothing to wait for
    counter[1] = True
    outcomes = [_trial(trial, counter, reference) for trial in range(8)]
    assert sum(same for same, _ in outcomes) == 8
    assert sum(undisturbed for _, undisturbed in outcomes) == 8
