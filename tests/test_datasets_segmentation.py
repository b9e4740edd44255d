"""Digit scenes: shapes, labels, determinism, the split by source digit, the ignore band and the binary task."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metricloss.datasets import Split
from metricloss.datasets_segmentation import IGNORE_INDEX, digit_scenes


def _toy(train_value: float, test_value: float, side: int = 6) -> Split:
    """Ten square 'digits' per part: a filled square of one grey level, so a scene tells which part it came from."""
    def part(value: float) -> torch.Tensor:
        x = torch.zeros(20, side, side)
        x[:, 1:-1, 1:-1] = value
        return x

    return Split("toy", part(train_value), torch.arange(20) % 10, part(test_value), torch.arange(20) % 10, 10)


def test_scenes_from_sklearn_digits_have_the_promised_shapes_and_labels():
    s = digit_scenes("digits", (40, 56), train_scenes=12, test_scenes=6, seed=3)
    assert s.x_train.shape == (12, 1, 40, 56) and s.y_train.shape == (12, 40, 56)
    assert s.x_test.shape == (6, 1, 40, 56) and s.y_test.shape == (6, 40, 56)
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    assert s.num_classes == 11 and s.ignore_index is None and s.size == (40, 56)
    assert 0 <= float(s.x_train.min()) and float(s.x_train.max()) <= 1
    labels = torch.cat([s.y_train.flatten(), s.y_test.flatten()])
    assert int(labels.min()) == 0 and int(labels.max()) <= 10
    assert len(labels.unique()) > 5  # many digit classes occur
    # where a digit is labelled, its pixels are bright (> 0.5); background pixels carry no label
    assert bool((s.x_train[:, 0][s.y_train > 0] > 0.5).all())


def test_scenes_are_deterministic_given_the_seed():
    a = digit_scenes("digits", 32, train_scenes=5, test_scenes=3, seed=1)
    b = digit_scenes("digits", 32, train_scenes=5, test_scenes=3, seed=1)
    c = digit_scenes("digits", 32, train_scenes=5, test_scenes=3, seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, c.y_train)


def test_train_and_test_scenes_use_disjoint_source_digits():
    s = digit_scenes(_toy(0.7, 1.0), 32, train_scenes=20, test_scenes=20, seed=0)
    assert float(s.x_train.max()) == pytest.approx(0.7)  # only training digits (grey 0.7) in training scenes
    assert float(s.x_test.max()) == pytest.approx(1.0)
    assert not bool((s.x_test == 0.7).any())
    # and with the real sources: the two parts come from the source's own split
    assert digit_scenes("digits", 16, train_scenes=1, test_scenes=1).name == "digits_scenes"


def test_objects_vary_in_size_and_count_and_may_overlap():
    s = digit_scenes(_toy(1.0, 1.0), 64, train_scenes=60, test_scenes=0, objects=(1, 4), scale=(0.1, 0.6), seed=0)
    areas = (s.y_train > 0).flatten(1).sum(1).float()
    assert float(areas.min()) < 0.25 * float(areas.max())  # small and large scenes' foreground
    # a toy digit fills a (side - 2)/side square; a scene's classes count its visible objects (at most 4)
    classes = [len(y.unique()) - 1 for y in s.y_train]
    assert min(classes) == 1 and max(classes) >= 3


def test_ignore_band_surrounds_objects_like_voc_void_borders():
    s = digit_scenes("digits", 48, train_scenes=8, test_scenes=2, ignore_band=2, seed=0)
    assert s.ignore_index == IGNORE_INDEX
    plain = digit_scenes("digits", 48, train_scenes=8, test_scenes=2, ignore_band=0, seed=0)
    ignored = s.y_train == IGNORE_INDEX
    assert bool(ignored.any())
    # the band replaces background only, within 2 pixels (Chebyshev) of an object; objects keep every pixel
    assert bool((plain.y_train[ignored] == 0).all())
    assert torch.equal(s.y_train[~ignored], plain.y_train[~ignored])
    near = F.max_pool2d((plain.y_train > 0).float().unsqueeze(1), 5, stride=1, padding=2).squeeze(1) > 0
    assert torch.equal(ignored, near & (plain.y_train == 0))


def test_binary_task_is_foreground_against_background():
    multi = digit_scenes("digits", 32, train_scenes=6, test_scenes=2, seed=4)
    binary = digit_scenes("digits", 32, train_scenes=6, test_scenes=2, binary=True, seed=4)
    assert binary.num_classes == 2 and binary.name == "digits_scenes_binary"
    assert torch.equal(binary.y_train, (multi.y_train > 0).long())


def test_long_tailed_classes():
    s = digit_scenes(_toy(1.0, 1.0), 32, train_scenes=400, test_scenes=0, objects=(1, 1), tail_ratio=20.0, seed=0)
    counts = torch.bincount(torch.stack([y[y > 0].unique() for y in s.y_train]).flatten(), minlength=11)[1:]
    assert int(counts[0]) > 5 * int(counts[-1])  # digit 0 twenty times as likely as digit 9 (expected ~ 101 vs 5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 4}, "`size`"),
        ({"size": (32, 32, 3)}, "`size` must be an int or"),
        ({"objects": (3, 1)}, "`objects`"),
        ({"scale": (0.5, 1.5)}, "`scale`"),
        ({"ignore_band": -1}, "`ignore_band`"),
        ({"tail_ratio": 0.5}, "`tail_ratio`"),
        ({"source": "cifar"}, "`name` must be one of"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        digit_scenes(**{"source": "digits", "train_scenes": 1, "test_scenes": 1, **kwargs})


def test_mnist_5k_scenes_at_a_larger_size():
    s = digit_scenes("mnist_5k", 128, train_scenes=3, test_scenes=2, ignore_band=2, seed=0)
    assert s.name == "mnist_5k_scenes" and s.x_train.shape == (3, 1, 128, 128) and s.num_classes == 11
    assert set(s.y_test.unique().tolist()) <= set(range(11)) | {IGNORE_INDEX}
