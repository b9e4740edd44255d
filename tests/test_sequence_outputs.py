"""Issue 22, items 2 and 11: sequence outputs of any width and length up to 1024 in ``learn(outputs=...)``, bucketed
lengths mixed, and compact recording (``OutputRecorder(task=...)``) exact for the metric and the surrogate."""

from __future__ import annotations

import warnings

import pytest
import torch

import metricloss as ml
from metricloss import OutputRecorder
from metricloss.evaluation import TooFewOutputsError, conform, stack_batches
from metricloss.learning.batches import _unconformed, check_compaction
from metricloss.learning.shapes import infer_shapes
from metricloss.metrics.base import BatchMetric
from metricloss.replay import remeasure
from metricloss.tasks.sequence import GEN_VOCAB, SequenceTask

PAD = -100
TINY = {"steps": 2, "batches_per_step": 4, "pool_size": 8, "validation_batches": 4, "gradient_probe": 0,
        "progress": False, "seed": 0}
MATCHING = ("bleu", "edit_distance", "token_f1", "rouge_l")  # the metrics that see only which tokens match


def model_batch(b: int, t: int, v: int, g: torch.Generator, hit: float = 0.5, length: int | None = None):
    """Logits ``(b, t, v)`` and targets whose sentences have 1/2 to all of ``length`` (default ``t``) tokens, padded
    with -100; about ``hit`` of the positions predict their target (so BLEU spreads), the rest a random id."""
    length = t if length is None else length
    z = torch.randn(b, t, v, generator=g)
    y = torch.randint(0, v, (b, t), generator=g)
    n = torch.randint(max(1, length // 2), length + 1, (b, 1), generator=g)
    y = torch.where(torch.arange(t) < n, y, torch.full_like(y, PAD))
    rate = torch.rand(b, 1, generator=g) * 2 * hit
    hits = (torch.rand(b, t, generator=g) < rate) & (y != PAD)
    z.scatter_(-1, y.clamp_min(0).unsqueeze(-1), torch.where(hits, 5.0, -5.0).unsqueeze(-1))
    return z, y


def bucketed(lengths, v, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [model_batch(b, t, v, g) for t in lengths]


def usable_on_each_length(sur, lengths, v):
    g = torch.Generator().manual_seed(1)
    for t in sorted(set(lengths)):
        z, y = model_batch(2, t, v, g)
        z.requires_grad_(True)
        loss = sur(z, y)
        loss.backward()
        assert loss.shape == () and bool(torch.isfinite(loss.detach()))
        assert bool(torch.isfinite(z.grad).all()) and float(z.grad.abs().sum()) > 0


# ----- item 2: any length up to 1024, bucketed lengths mixed, any width ----------------------------------------------

@pytest.mark.parametrize("v,given", [(200, None), (200, 200), (40, 256)])
def test_bucketed_outputs_up_to_T_200_learn_and_serve_every_length(v, given):
    # The failure: V = 200 > G_R's 128 ids ("expanded size (128) must match (200)"); also a max_length equal
    # to the longest T (must be accepted) and one above it (G_R's batches longer than the outputs').
    lengths = (20, 50, 200, 120, 7, 64) * 2
    outputs = bucketed(lengths, v)
    kwargs = {} if given is None else {"max_length": given}
    assert infer_shapes("sequence", outputs, kwargs) == {"vocab_size": v, "max_length": given or 200}
    sur = ml.learn("bleu", task="sequence", outputs=outputs, batch_size=2, **kwargs, **TINY)
    assert sur.task.config() == {"vocab_size": v, "max_length": given or 200, "pad_id": None}
    assert sur.report.validation.startswith("held-out model outputs")
    usable_on_each_length(sur, lengths, v)


def test_max_length_equal_to_the_longest_T_is_accepted_and_one_below_is_not():
    outputs = bucketed((5, 200, 17), 30)
    assert infer_shapes("sequence", outputs, {"max_length": 200})["max_length"] == 200
    with pytest.raises(ValueError, match=r"`max_length` = 199 contradicts `outputs`: item 1 .* at least 200"):
        infer_shapes("sequence", outputs, {"max_length": 199})


def test_bucketed_outputs_up_to_T_1024():
    lengths = (1024, 300, 12, 700) * 2
    outputs = bucketed(lengths, 24, b=1)
    assert infer_shapes("sequence", outputs, {}) == {"vocab_size": 24, "max_length": 1024}
    sur = ml.learn("token_f1", task="sequence", outputs=outputs, batch_size=1, **TINY)
    assert sur.task.config()["max_length"] == 1024
    usable_on_each_length(sur, lengths, 24)


def test_stacking_widens_and_pads_without_changing_the_net_or_the_metrics():
    task = SequenceTask(vocab_size=3000, max_length=9)
    g = torch.Generator().manual_seed(3)
    small = [task.compact(*model_batch(3, t, 3000, g)) for t in (9, 4, 6)]
    assert len({p.shape[-1] for p, _ in small}) > 1  # compacted batches differ in width and length
    pred, target = stack_batches(small, 3, task)
    assert pred.shape == (3, 3, 9, max(p.shape[-1] for p, _ in small))
    net = task.build_net(**task.default_net_config()).double()
    for i, (p, t) in enumerate(small):
        assert bool((target[i, :, t.shape[1]:] == PAD).all())
        torch.testing.assert_close(net(pred[i:i + 1].double(), target[i:i + 1]), net(p[None].double(), t[None]))
        for name in MATCHING:
            torch.testing.assert_close(task.metrics[name].evaluate(pred[i:i + 1], target[i:i + 1]),
                                       task.metrics[name].evaluate(p[None], t[None]))
    wide, wide_target = conform(task, pred, target, (12, pred.shape[-1] + 5))  # what the G_R pool is brought to
    assert wide.shape == (3, 3, 12, pred.shape[-1] + 5) and bool((wide_target[..., 9:] == PAD).all())
    assert torch.equal(wide.argmax(-1)[..., :9], pred.argmax(-1))
    torch.testing.assert_close(net(wide.double(), wide_target), net(pred.double(), target))
    torch.testing.assert_close(task.baseline(wide, wide_target), task.baseline(pred, target), rtol=1e-6, atol=0)
    back = _unconformed(wide, wide_target, tuple(pred.shape[2:]))  # what the trained-model regime perturbs
    assert torch.equal(back[0], pred) and torch.equal(back[1], target)


# ----- item 11: compact recording ------------------------------------------------------------------------------------

def test_compact_outputs_give_the_full_logits_metric_values_and_surrogate_losses():
    task = SequenceTask(vocab_size=5000, max_length=16)
    g = torch.Generator().manual_seed(5)
    pred, target = model_batch(6, 16, 5000, g, length=12)
    pred[0, 3, target[0, 3] if target[0, 3] >= 0 else 0] = 9.0  # a runner-up that no target or arg-max names
    pred[0, 3, 4321] = 8.5
    small, small_target = task.compact_outputs(pred, target)
    assert small.shape[:-1] == pred.shape[:-1] and small.shape[-1] <= 2 * 16 + 1
    assert torch.equal(small_target == PAD, target == PAD)
    assert torch.equal(small.argmax(-1) == small_target, pred.argmax(-1) == target)
    net = task.build_net(**task.default_net_config())
    assert torch.equal(net.token_inputs(small, small_target), net.token_inputs(pred, target))  # what it reads: exact
    sur = ml.pretrained("sequence-bleu")
    torch.testing.assert_close(sur.batch_losses(small[None], small_target[None]),
                               sur.batch_losses(pred[None], target[None]), rtol=1e-6, atol=1e-6)
    for name in MATCHING:
        assert torch.equal(task.metrics[name].evaluate(small[None], small_target[None]),
                           task.metrics[name].evaluate(pred[None], target[None])), name
    # Narrow vocabularies and a pad_id keep their ids: stored as given.
    narrow = pred[..., :GEN_VOCAB], target.clamp_max(GEN_VOCAB - 1).where(target != PAD, target)
    assert task.compact_outputs(*narrow)[0] is narrow[0]
    padded = SequenceTask(vocab_size=5000, max_length=16, pad_id=0)
    assert padded.compact_outputs(pred, target)[0] is pred


def worst_case_batch(b: int, t: int, v: int, g: torch.Generator):
    """A batch whose sentences use 2T distinct ids (targets and arg-max all different): the widest compact form."""
    ids = torch.stack([torch.randperm(v, generator=g)[: 2 * t] for _ in range(b)])
    target, top = ids[:, :t], ids[:, t:]
    z = torch.randn(b, t, v, generator=g)
    z.scatter_(-1, top.unsqueeze(-1), 10.0)
    return z, target


def test_the_default_budget_holds_hundreds_of_nmt_size_batches():
    # (16, 64, 32000) float32 logits are 125 MiB a batch: the default 256 MiB keeps 2. Compacted, a batch is at most
    # 16 x 64 x (2 x 64 + 1) floats and its targets, whatever V: checked on V = 1000 batches of the widest kind.
    b, t = 16, 64
    full = b * t * 32000 * 4 + b * t * 8
    assert OutputRecorder().max_bytes // full == 2
    widest = b * t * (2 * t + 1) * 4 + b * t * 8
    g = torch.Generator().manual_seed(0)
    rec = OutputRecorder(task="sequence")
    for _ in range(30):
        rec.record(*worst_case_batch(b, t, 1000, g))
    assert len(rec) == 30 and rec.nbytes == 30 * widest
    assert rec.max_bytes // widest >= 400  # hundreds of NMT-size batches in the default budget
    assert rec.shape_keywords("sequence") == {"vocab_size": 1000, "max_length": t}
    assert rec.shape_keywords("classification") == {}


def test_recorder_without_task_and_with_task_at_the_same_budget():
    g = torch.Generator().manual_seed(2)
    batches = [worst_case_batch(4, 8, 2000, g) for _ in range(12)]
    raw = sum(x.nbytes for x in batches[0])
    plain, compact = OutputRecorder(max_bytes=3 * raw), OutputRecorder(max_bytes=3 * raw, task="sequence")
    for z, y in batches:
        z = z.clone().requires_grad_(True)  # a model's outputs: detached before storing
        plain.record(z, y)
        compact.record(z, y)
    assert len(plain) == 3 and len(compact) == 12
    task = compact.task
    for (small, small_y), (z, y) in zip(compact, batches, strict=True):
        assert not small.requires_grad and small.shape[-1] == 2 * 8 + 1
        for name in MATCHING:
            assert torch.equal(task.metrics[name].evaluate(small[None], small_y[None]),
                               task.metrics[name].evaluate(z[None], y[None]))


def test_learning_from_a_compact_recorder_equals_learning_from_the_full_outputs():
    g = torch.Generator().manual_seed(4)
    outputs = [model_batch(2, t, 700, g) for t in (10, 14, 6, 14, 9, 12) * 2]
    rec = OutputRecorder(task="sequence")
    for z, y in outputs:
        rec.record(z, y)
    assert all(p.shape[-1] < 700 for p, _ in rec)
    a = ml.learn("bleu", task="sequence", outputs=outputs, batch_size=2, **TINY)
    b = ml.learn("bleu", task="sequence", outputs=rec, batch_size=2, **TINY)
    assert a.task.config() == b.task.config() == {"vocab_size": 700, "max_length": 14, "pad_id": None}
    for (name, x), (_, y) in zip(a.net.state_dict().items(), b.net.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert a.report.spearman == b.report.spearman and a.report.baseline_spearman == b.report.baseline_spearman
    again = remeasure(b, outputs=outputs)  # the card's batches stacked again from the full outputs: same numbers
    assert (again.spearman, again.baseline_spearman) == (b.report.spearman, b.report.baseline_spearman)


def test_too_few_outputs_name_the_recorders_budget_and_the_compact_option():
    g = torch.Generator().manual_seed(6)
    batches = [model_batch(4, 8, 400, g) for _ in range(10)]
    raw = sum(x.nbytes for x in batches[0])
    rec = OutputRecorder(max_bytes=2 * raw)
    for z, y in batches:
        rec.record(z, y)
    with pytest.raises(TooFewOutputsError, match=(
            r"`outputs` is too small: need at least 8 batches of batch_size=4 to learn and validate, got 2; the "
            r"OutputRecorder kept 2 of the 10 batches it was offered .* within its budget max_bytes=\d+ \(.*iB\): "
            r"record them compactly with OutputRecorder\(task=\.\.\.\)")):
        ml.learn("bleu", task="sequence", outputs=rec, batch_size=4, **TINY)
    tight = OutputRecorder(max_bytes=1500, task="sequence")
    for z, y in batches:
        tight.record(z[:1, :2], y[:1, :2])
    with pytest.raises(ValueError, match=r"kept \d+ of the 10 batches .* max_bytes=1500 .*: raise `max_bytes`"):
        ml.learn("bleu", task="sequence", outputs=tight, batch_size=4, **TINY)
    with pytest.raises(ValueError, match=r"record compactly with `task=`"):
        OutputRecorder(max_bytes=100).record(*batches[0])


def test_the_recorder_warns_when_its_budget_fills_with_too_few_batches():
    g = torch.Generator().manual_seed(8)
    batches = [model_batch(4, 8, 400, g) for _ in range(12)]
    raw = sum(x.nbytes for x in batches[0])
    rec = OutputRecorder(max_bytes=3 * raw)
    with pytest.warns(UserWarning, match=r"is full after 3 batches .* at least 8 batches .* OutputRecorder\(task="):
        for z, y in batches:
            rec.record(z, y)
    roomy = OutputRecorder(max_bytes=8 * raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for z, y in batches:
            roomy.record(z, y)
    assert len(roomy) == 8


def test_a_metric_that_reads_the_ids_is_warned_about():
    task = SequenceTask(vocab_size=900, max_length=10)
    g = torch.Generator().manual_seed(7)
    outputs = [model_batch(3, 10, 900, g) for _ in range(2)]
    with pytest.warns(UserWarning, match=r"metric 'chrf' gives .* reads more than which tokens match"):
        check_compaction(task, task.metrics["chrf"], outputs)
    ids = BatchMetric("mean_id", lambda p, t: float(p.argmax(-1).float().mean()))  # a metric that reads the ids
    with pytest.warns(UserWarning, match="renumbered"):
        check_compaction(task, ids, outputs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in MATCHING:
            check_compaction(task, task.metrics[name], outputs)


def test_recorded_shapes_are_bounds_not_contradictions():
    # A recorder's shapes (the batches as offered) raise what the compacted batches tell, never contradict them: a
    # recorder gathered from other ranks may hold batches longer than those it saw itself.
    outputs = bucketed((5, 30, 12), 300)
    assert infer_shapes("sequence", outputs, {}, bounds={"vocab_size": 32000, "max_length": 20}) == {
        "vocab_size": 32000, "max_length": 30}
    assert infer_shapes("sequence", outputs, {"vocab_size": 500}, bounds={"vocab_size": 32000})["vocab_size"] == 500
    with pytest.raises(ValueError, match=r"`task` must be one of .*'sequence'.* got 'sequences'"):
        OutputRecorder(task="sequences")
    with pytest.raises(TypeError, match=r"`task` must be None, a task name"):
        OutputRecorder(task=3)
