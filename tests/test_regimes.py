"""The trained-model regime (metricloss.learning.regimes): valid shapes and targets for every family, deterministic
under a seed, each perturbation doing what it says, and the family hooks."""

from __future__ import annotations

import pytest
import torch

from metricloss.learning import regimes as R
from metricloss.tasks.base import get_task

FAMILIES = {
    "classification": {"num_classes": 6},
    "ordinal": {"num_classes": 5},
    "set": {},
    "pose": {"num_keypoints": 3, "heatmap_size": (8, 8)},
    "sequence": {"vocab_size": 12, "max_length": 10},
}


def _outputs(family: str, n: int = 40, b: int = 8, seed: int = 0):
    task = get_task(family, **FAMILIES[family])
    pred, target = task.random_batches(n, b, torch.Generator().manual_seed(seed))
    return task, pred, target


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_regime_keeps_shapes_dtypes_and_valid_targets_and_is_deterministic(family):
    task, pred, target = _outputs(family)
    a = R.trained_regime(task, pred, target, torch.Generator().manual_seed(3))
    b = R.trained_regime(task, pred, target, torch.Generator().manual_seed(3))
    c = R.trained_regime(task, pred, target, torch.Generator().manual_seed(4))
    for out, ref in zip(a, (pred, target), strict=True):
        assert out.shape == ref.shape and out.dtype == ref.dtype and torch.isfinite(out.double()).all()
    task.check(*a, stacked=True)  # the family's own validation of call shapes and target values
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not (torch.equal(a[0], c[0]) and torch.equal(a[1], c[1]))
    assert not torch.equal(a[0], pred) or not torch.equal(a[1], target)


@pytest.mark.parametrize("family", ["classification", "ordinal", "sequence"])
def test_few_errors_gives_exactly_that_many_errors_and_keeps_padding(family):
    task, pred, target = _outputs(family)
    errors = torch.arange(pred.shape[0]) % (R.MAX_ERRORS + 1)
    p, t = R.few_errors(task, pred, target, errors, torch.Generator().manual_seed(1))
    assert torch.equal(p, pred)
    valid = target != -100
    assert torch.equal(t == -100, target == -100)  # the sequence task's padding untouched (none elsewhere)
    wrong = ((p.argmax(-1) != t) & valid).flatten(1).sum(1)
    assert torch.equal(wrong, errors)


def test_few_errors_falls_back_to_relabel_for_other_layouts_and_honours_the_family_hook():
    task, pred, target = _outputs("pose")
    gen_a, gen_b = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    got = R.few_errors(task, pred, target, torch.zeros(pred.shape[0], dtype=torch.int64), gen_a)
    want = task.relabel(pred, target, gen_b)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])

    class Hooked:
        def few_errors(self, p, t, errors, generator):
            return p, t + errors.view(-1, 1)

    _, t = R.few_errors(Hooked(), pred[:, :, 0, 0, 0], torch.zeros(40, 8), torch.ones(40, dtype=torch.int64),
                        gen_a)
    assert torch.equal(t, torch.ones(40, 8))


def test_a_task_with_its_own_regime_replaces_the_default():
    calls = []

    class Hooked:
        def trained_regime(self, p, t, generator):
            calls.append(p.shape)
            return -p, t

    _, pred, target = _outputs("classification")
    p, t = R.trained_regime(Hooked(), pred, target, torch.Generator())
    assert torch.equal(p, -pred) and torch.equal(t, target) and calls == [pred.shape]


def test_temperature_keeps_the_arg_max_and_noise_scales_with_the_batch():
    _, pred, _ = _outputs("classification")
    scaled = R.scale_temperature(pred, torch.Generator().manual_seed(0))
    factor = scaled.flatten(1)[:, 0] / pred.flatten(1)[:, 0]
    assert torch.equal(scaled.argmax(-1), pred.argmax(-1))
    assert torch.allclose(scaled, pred * factor.view(-1, 1, 1)) and ((factor >= 1 / 3) & (factor <= 3)).all()
    noisy = R.add_noise(pred * 1000, torch.Generator().manual_seed(0))  # noise relative to the batch's spread
    ratio = (noisy - pred * 1000).flatten(1).std(1) / (pred * 1000).flatten(1).std(1)
    assert ((ratio > 0.01) & (ratio < 1.3)).all()


def test_mix_moves_predictions_and_targets_together():
    _, pred, target = _outputs("classification")
    target = torch.arange(pred.shape[0] * pred.shape[1]).view(pred.shape[:2])  # every sample labelled uniquely
    pred = pred + target.unsqueeze(-1) * 100.0  # and its prediction marked with the label
    p, t = R.mix_samples(pred, target, torch.Generator().manual_seed(0))
    assert torch.equal(torch.div(p[..., 0] + 50, 100, rounding_mode="floor").long(), t)  # pairs intact
    assert torch.equal(t % pred.shape[1], target % pred.shape[1])  # same positions
    assert not torch.equal(t, target)


def test_unknown_perturbation_names_the_argument():
    task, pred, target = _outputs("classification")
    with pytest.raises(ValueError, match="`weights`: unknown perturbation 'blur'"):
        R.trained_regime(task, pred, target, torch.Generator(), weights={"blur": 1.0})
