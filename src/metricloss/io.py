"""Saving and loading every kind of loss: safetensors weights plus JSON metadata, atomic writes, no code on load.

The file is a plain safetensors file (:mod:`metricloss._serialization`). Its header metadata holds one key,
``"metricloss"``, whose value is a JSON document validated against :data:`SCHEMA` (with a format version) before
any weight is read, and which names the ``kind`` of loss; the class registered under that kind
(:data:`metricloss.surrogate.LOSS_KINDS`) rebuilds it. Nothing is unpickled, so loading an untrusted file cannot run
code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ._rng import private_rng
from ._serialization import (
    FORMAT_VERSION,
    SCHEMA,
    SurrogateFileError,
    read_loss_file,
    stored_kind,
    write_atomic,
)
from .report import Report
from .surrogate import LOSS_KINDS, MetricLoss

__all__ = ["FORMAT_VERSION", "SCHEMA", "SurrogateFileError", "load", "save", "write_atomic"]


def save(loss: MetricLoss, path: str | Path) -> None:
    """Save ``loss`` (any :class:`~metricloss.surrogate.MetricLoss`) to ``path`` atomically: a temporary file in the
    same folder, fsync, then rename.

    A :class:`~metricloss.uniloss.UniLoss` or :class:`~metricloss.nonparametric.NonParametricLoss` has no
    weights: its configuration alone is stored (a user-written refactoring's code is not; pass it again to
    :func:`load` as ``refactoring=``).
    """
    if not isinstance(loss, MetricLoss):
        raise TypeError(
            f"`sur` must be a metricloss Surrogate, UniLoss or NonParametricLoss (a MetricLoss), got "
            f"{type(loss).__name__}")
    loss.save(path)


def _report(data: dict[str, Any] | None, path: Path) -> Report | None:
    if data is None:
        return None
    try:
        report = Report.from_dict(data)
    except TypeError as err:
        raise SurrogateFileError(f"{path}: the report in the metadata is incomplete ({err})") from None
    for name in ("spearman", "kendall", "baseline_spearman", "baseline_kendall"):
        value = getattr(report, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SurrogateFileError(f"{path}: report field {name!r} must be a number, got {value!r}")
    for name in ("task", "metric", "method", "baseline"):
        if not isinstance(getattr(report, name), str):
            raise SurrogateFileError(f"{path}: report field {name!r} must be a string")
    return report


def load(path: str | Path, map_location: str | torch.device = "cpu", refactoring: Any = None) -> MetricLoss:
    """Load a loss saved by :meth:`~metricloss.surrogate.MetricLoss.save`: a learned
    :class:`~metricloss.Surrogate`, a :class:`~metricloss.uniloss.UniLoss` or a
    :class:`~metricloss.nonparametric.NonParametricLoss`. Never executes code from the file.

    Args:
        path: the ``.safetensors`` file.
        map_location: device the loss is moved to.
        refactoring: the code of a UniLoss or non-parametric loss built on a user-written refactoring (a
            :class:`~metricloss.uniloss.Refactoring`), which files do not store.

    Raises:
        FileNotFoundError: no file at ``path``.
        SurrogateFileError: the file is not a readable metricloss file, is of a future format, or its metadata or
            weights do not describe a valid loss.
    """
    path = Path(path)
    meta, tensors = read_loss_file(path)
    kind = stored_kind(meta)
    if kind not in LOSS_KINDS:
        raise SurrogateFileError(
            f"{path}: a loss of kind {kind!r}, which this metricloss does not know "
            f"(known: {', '.join(map(repr, sorted(LOSS_KINDS)))}); upgrade metricloss to load it")
    cls = LOSS_KINDS[kind]
    options = {} if refactoring is None else {"refactoring": refactoring}
    try:
        with private_rng():  # building a network draws initial weights: not from the caller's RNG
            task = cls.stored_task(meta["task"], meta["task_config"])
            loss = cls.from_config(meta["net_config"], task=task, tensors=tensors, **options)
    except (TypeError, ValueError) as err:
        raise SurrogateFileError(
            f"{path}: metadata does not describe a valid surrogate (kind {kind!r}: {err})") from None
    except RuntimeError as err:
        raise SurrogateFileError(f"{path}: weights do not match the network in the metadata ({err})") from None
    loss.report = _report(meta["report"], path)
    return loss.to(map_location)
