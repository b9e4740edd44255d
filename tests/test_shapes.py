"""Issue 13, item 3: shapes from the data (``learn(..., outputs=)`` infers every shape keyword)."""

from __future__ import annotations

import pytest
import torch

import metricloss as ml
from metricloss.evaluation import stack_batches
from metricloss.learning.shapes import infer_shapes
from metricloss.tasks.base import get_task

CONFIGS = {
    "classification": {"num_classes": 7},
    "ordinal": {"num_classes": 6},
    "set": {"num_labels": 3},
    "pose": {"num_keypoints": 3, "heatmap_size": (12, 10)},
    "sequence": {"vocab_size": 11, "max_length": 9},
}
SMALL = {"steps": 2, "batches_per_step": 8, "validation_batches": 8, "pool_size": 16, "gradient_probe": 0,
         "progress": False}


def _uneven(family, config, sizes=(16, 9, 23, 16, 5, 27, 16, 12), seed=0):
    """Batches of the given sizes (a model's loader: the last batch is short, some are bucketed)."""
    task = get_task(family, **config)
    g = torch.Generator().manual_seed(seed)
    return [(p[0], t[0]) for p, t in (task.random_batches(1, b, g) for b in sizes)]


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_infer_shapes_recovers_the_task_config(family):
    batches = _uneven(family, CONFIGS[family])
    inferred = infer_shapes(family, batches, {})
    assert get_task(family, **inferred).config() == get_task(family, **CONFIGS[family]).config()


def test_binary_set_infers_no_labels():
    batches = _uneven("set", {})
    assert infer_shapes("set", batches, {}) == {"num_labels": None}


def test_learn_classification_without_num_classes():
    batches = _uneven("classification", {"num_classes": 13}, sizes=(40,) * 10 + (17,))
    sur = ml.learn("accuracy", task="classification", outputs=iter(batches), batch_size=16, **SMALL)
    assert sur.task.config()["num_classes"] == 13
    logits = torch.randn(5, 13, requires_grad=True)
    sur(logits, torch.randint(0, 13, (5,))).backward()
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())


@pytest.mark.parametrize("family,given,match", [
    ("classification", {"num_classes": 10}, r"`num_classes` = 10 contradicts `outputs`: item 0.*needs num_classes = 7"),
    ("pose", {"heatmap_size": (16, 16)}, r"`heatmap_size` = \(16, 16\) contradicts .* item 0"),
    ("sequence", {"vocab_size": 10}, r"`vocab_size` = 10 contradicts .* at least 11"),
    ("set", {"num_labels": 2}, r"`num_labels` = 2 contradicts"),
])
def test_given_keywords_that_contradict_the_outputs(family, given, match):
    batches = _uneven(family, CONFIGS[family])
    with pytest.raises(ValueError, match=match):
        infer_shapes(family, batches, given)


def test_given_keywords_that_agree_pass_through_with_the_rest():
    batches = _uneven("pose", CONFIGS["pose"])
    out = infer_shapes("pose", batches, {"heatmap_size": [12, 10], "sigma": 1.5})
    assert out == {"num_keypoints": 3, "heatmap_size": (12, 10), "sigma": 1.5}
    square = _uneven("pose", {"num_keypoints": 2, "heatmap_size": 8})
    assert infer_shapes("pose", square, {"heatmap_size": 8})["heatmap_size"] == (8, 8)


def test_max_length_is_an_upper_bound():
    batches = [(torch.randn(4, t, 5), torch.randint(0, 5, (4, t))) for t in (3, 8, 6)]
    assert infer_shapes("sequence", batches, {})["max_length"] == 8
    assert infer_shapes("sequence", batches, {"max_length": 20})["max_length"] == 20
    with pytest.raises(ValueError, match=r"`max_length` = 7 contradicts `outputs`: item 1 .* at least 8"):
        infer_shapes("sequence", batches, {"max_length": 7})


@pytest.mark.parametrize("family,bad,match", [
    ("classification", (torch.randn(16, 8), torch.zeros(16, dtype=torch.long)), "item 3: num_classes = 8"),
    ("pose", (torch.rand(4, 3, 12, 11), torch.rand(4, 3, 3)), r"item 3: heatmap_size = \(12, 11\)"),
    ("sequence", (torch.randn(4, 5), torch.zeros(4, 5, dtype=torch.long)), r"item 3: `pred` must be \(B, T, V\)"),
    ("set", (torch.randn(16), torch.ones(16)), "item 3: num_labels = None"),
    ("classification", (torch.randn(16), torch.zeros(16, dtype=torch.long)), r"item 3: `pred` must be \(B, C\)"),
])
def test_inconsistent_outputs_name_the_first_bad_batch(family, bad, match):
    batches = _uneven(family, CONFIGS[family])
    batches[3] = bad
    batches[5] = bad
    with pytest.raises(ValueError, match=match):
        infer_shapes(family, batches, {})


def test_learn_names_the_first_bad_batch_for_a_task_object_too():
    batches = _uneven("classification", CONFIGS["classification"])
    batches[2] = (torch.randn(16, 8), torch.zeros(16, dtype=torch.long))
    with pytest.raises(ValueError, match="`outputs` item 2"):
        ml.learn("accuracy", task=get_task("classification", num_classes=7), outputs=batches, **SMALL)


def _bucketed(lengths=(4, 9, 6, 12, 7, 12, 5, 10), b=8, v=11, seed=0):
    task = get_task("sequence", vocab_size=v, max_length=max(lengths))
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in lengths:
        pred, target = task.random_batches(1, b, g)
        pred, target = pred[0, :, :t].contiguous(), target[0, :, :t].contiguous()
        target[:, 0] = target[:, 0].clamp(min=0)  # every sentence keeps a token after cutting
        out.append((pred, target))
    return task, out


def test_bucketed_sequences_are_padded_without_changing_metric_baseline_or_surrogate():
    task, batches = _bucketed()
    pred, target = stack_batches(batches, 8, task)  # one stacked batch per bucket
    assert pred.shape == (8, 8, 12, 11) and target.shape == (8, 8, 12)
    net = task.build_net(**task.default_net_config()).double()
    for i, (p, t) in enumerate(batches):
        assert torch.equal(pred[i, :, : p.shape[1]], p) and bool((target[i, :, p.shape[1]:] == -100).all())
        for name, metric in task.metrics.items():
            assert metric(pred[i], target[i]) == pytest.approx(metric(p, t), abs=1e-12), name
        assert torch.allclose(task.baseline(pred[i:i + 1], target[i:i + 1]), task.baseline(p[None], t[None]))
        padded = net(pred[i:i + 1].double(), target[i:i + 1])
        assert torch.allclose(padded, net(p[None].double(), t[None]), atol=1e-10)


def test_learn_on_bucketed_sequences_infers_vocab_and_length():
    _, batches = _bucketed(lengths=(4, 9, 6, 12, 7, 12, 5, 10) * 2)
    sur = ml.learn("token_f1", task="sequence", outputs=batches, batch_size=8, **SMALL)
    assert sur.task.config()["vocab_size"] == 11 and sur.task.config()["max_length"] == 12


def test_differing_trailing_shapes_without_padding_name_the_item():
    class Loose:  # a task whose check accepts anything: stacking itself must refuse
        def check(self, pred, target):
            pass

    batches = [(torch.randn(4, 3), torch.zeros(4)), (torch.randn(4, 3), torch.zeros(4)),
               (torch.randn(4, 5), torch.zeros(4))]
    with pytest.raises(ValueError, match=r"`outputs` item 2: pred of shape \(4, 5\)"):
        stack_batches(batches, 2, Loose())
