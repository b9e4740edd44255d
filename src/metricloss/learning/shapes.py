"""Task shape keywords read from model outputs: ``learn(metric, task=..., outputs=batches)`` without ``num_classes``.

Each built-in family's shape keywords are a function of one batch's ``pred`` (the call shapes of
:mod:`metricloss.tasks`):

=================  ======================  ===================================================================
family             ``pred``                keywords
=================  ======================  ===================================================================
classification     ``(B, C)``              ``num_classes = C``
ordinal            ``(B, K)``              ``num_classes = K``
set                ``(B,)`` / ``(B, L)``   ``num_labels = None`` (binary) / ``L``
pose               ``(B, K, H, W)``        ``num_keypoints = K``, ``heatmap_size = (H, W)``
sequence           ``(B, T, V)``           ``vocab_size`` = the widest ``V``, ``max_length`` = the longest ``T``
segmentation       ``(B, C, H, W)``        ``num_classes = C`` (1: one binary logit), ``image_size = (H, W)``
=================  ======================  ===================================================================

Every batch must agree on them (batch sizes may differ, and so may sequence lengths ``T`` and, since compacted
sequence outputs (:meth:`~metricloss.tasks.sequence.SequenceTask.compact`) are narrower than the vocabulary, widths
``V``); the first batch that does not is named in the error. A keyword the user gives is checked against the
outputs (``max_length`` and ``vocab_size`` may exceed the largest ``T`` and ``V``: they are upper bounds, and equal
to them is accepted); keywords that are not shapes (``sigma``, ``reference``, ``pad_id``,
``ignore_index``) pass through. A family
registered by a user gets no inference: its keywords are passed on as given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["INFERABLE", "infer_shapes"]

ShapeFn = Callable[[torch.Tensor], dict[str, Any]]


def _classes(pred: torch.Tensor) -> dict[str, Any]:
    _dims(pred, (2,), "(B, C) logits")
    return {"num_classes": int(pred.shape[-1])}


def _set(pred: torch.Tensor) -> dict[str, Any]:
    _dims(pred, (1, 2), "(B,) or (B, L) scores")
    return {"num_labels": None if pred.dim() == 1 else int(pred.shape[-1])}


def _pose(pred: torch.Tensor) -> dict[str, Any]:
    _dims(pred, (4,), "(B, K, H, W) heatmaps")
    k, h, w = (int(s) for s in pred.shape[-3:])
    return {"num_keypoints": k, "heatmap_size": (h, w)}


def _sequence(pred: torch.Tensor) -> dict[str, Any]:
    _dims(pred, (3,), "(B, T, V) token logits")
    return {"vocab_size": int(pred.shape[-1]), "max_length": int(pred.shape[-2])}


def _segmentation(pred: torch.Tensor) -> dict[str, Any]:
    _dims(pred, (4,), "(B, C, H, W) per-pixel logits")
    c, h, w = (int(s) for s in pred.shape[-3:])
    return {"num_classes": c, "image_size": (h, w)}


def _dims(pred: torch.Tensor, dims: tuple[int, ...], want: str) -> None:
    if pred.dim() not in dims:
        raise ValueError(f"`pred` must be {want}, got shape {tuple(pred.shape)}")


#: The shape keywords of each built-in family, read from one batch's ``pred``.
INFERABLE: dict[str, ShapeFn] = {
    "classification": _classes, "ordinal": _classes, "set": _set, "pose": _pose, "sequence": _sequence,
    "segmentation": _segmentation,
}
#: Keywords that are upper bounds: the largest value over the batches is inferred, a larger given value is fine.
UPPER_BOUNDS = ("max_length", "vocab_size")


def _normalise(key: str, value: Any) -> Any:
    if key in ("heatmap_size", "image_size") and isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if key in ("heatmap_size", "image_size") and isinstance(value, Sequence):
        return tuple(value)
    return value


def _per_batch(task: str, outputs: Sequence[Any], name: str) -> list[dict[str, Any]]:
    shapes = []
    for i, item in enumerate(outputs):
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise TypeError(f"`{name}` must yield (pred, target) pairs; item {i} is {type(item).__name__}")
        if not isinstance(item[0], torch.Tensor):
            raise TypeError(f"`{name}` item {i}: `pred` must be a torch.Tensor, got {type(item[0]).__name__}")
        try:
            shapes.append(INFERABLE[task](item[0]))
        except ValueError as err:
            raise ValueError(f"`{name}` item {i}: {err} (task {task!r})") from None
    if not shapes:
        raise ValueError(f"`{name}` is empty")
    return shapes


def infer_shapes(task: str, outputs: Sequence[Any], given: dict[str, Any], name: str = "outputs",
                 bounds: dict[str, Any] | None = None) -> dict[str, Any]:
    """The keyword arguments of ``task`` with every shape keyword read from ``outputs`` (a sequence of
    ``(pred, target)`` batches), checked against those ``given``. ``bounds``: upper-bound keywords (``vocab_size``,
    ``max_length``) of the batches as they were before being stored compactly (an ``OutputRecorder``'s
    ``shape_keywords``); where not given, the larger of them and the outputs' is inferred.

    Raises:
        ValueError: a batch's shapes disagree with the first batch's, or a given keyword contradicts the outputs
            (both name the index of the first offending batch).

    Example:
        >>> import torch
        >>> batches = [(torch.randn(8, 5, 7), torch.zeros(8, 5, dtype=torch.long)),
        ...            (torch.randn(4, 9, 7), torch.zeros(4, 9, dtype=torch.long))]
        >>> infer_shapes("sequence", batches, {})
        {'vocab_size': 7, 'max_length': 9}
    """
    if task not in INFERABLE:
        return dict(given)
    shapes = _per_batch(task, outputs, name)
    inferred = dict(shapes[0])
    for i, shape in enumerate(shapes):
        for key, value in shape.items():
            if key in UPPER_BOUNDS:
                inferred[key] = max(inferred[key], value)
            elif value != shapes[0][key]:
                raise ValueError(
                    f"`{name}` item {i}: {key} = {value} (`pred` of shape {tuple(outputs[i][0].shape)}) but item 0 has "
                    f"{key} = {shapes[0][key]} (shape {tuple(outputs[0][0].shape)}); every batch must share it")
    for key, value in (bounds or {}).items():
        if key in UPPER_BOUNDS and key in inferred and key not in given and isinstance(value, int):
            inferred[key] = max(inferred[key], value)
    for key, value in given.items():
        if key not in inferred:
            continue
        value = _normalise(key, value)
        if key in UPPER_BOUNDS and (isinstance(value, bool) or not isinstance(value, int)):
            inferred[key] = value  # not a number: the task's constructor says what it expects
            continue
        bad = [i for i, s in enumerate(shapes) if (s[key] > value if key in UPPER_BOUNDS else s[key] != value)]
        if bad:
            i = bad[0]
            need = "at least " if key in UPPER_BOUNDS else ""
            raise ValueError(
                f"`{key}` = {value!r} contradicts `{name}`: item {i} has `pred` of shape {tuple(outputs[i][0].shape)}, "
                f"which needs {key} = {need}{shapes[i][key]!r}; drop `{key}` to infer it from the outputs")
        inferred[key] = value
    return {**given, **inferred}
