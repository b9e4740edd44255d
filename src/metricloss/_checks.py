"""Shared input checks. Every public entry point validates through these, so errors read the same."""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = [
    "check_bool",
    "check_choice",
    "check_class_batch",
    "check_finite",
    "check_float_tensor",
    "check_int",
    "check_int_tensor",
    "check_nonnegative",
    "check_positive",
    "check_same_shape",
    "check_size_range",
    "check_tensor",
    "check_tied_classes",
]


def check_tensor(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type == "meta":
        raise ValueError(
            f"`{name}` is on the meta device, which holds shapes but no values, so no loss or metric can be "
            "computed; materialise it first (e.g. `module.to_empty(device='cpu')` and real inputs)"
        )
    return x


def check_finite(x: torch.Tensor, name: str) -> None:
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = "NaN" if bool(torch.isnan(x).any()) else "infinite"
        raise ValueError(f"`{name}` contains {bad} values; expected only finite numbers")


def check_float_tensor(x: object, name: str, *, min_dim: int = 0, finite: bool = True) -> torch.Tensor:
    x = check_tensor(x, name)
    if not x.is_floating_point():
        raise TypeError(
            f"`{name}` must be a floating-point tensor, got dtype {x.dtype}; convert it with `.float()`"
        )
    if x.dim() < min_dim:
        raise ValueError(f"`{name}` must have at least {min_dim} dimension(s), got shape {tuple(x.shape)}")
    if finite:
        check_finite(x, name)
    return x


def check_int_tensor(x: object, name: str) -> torch.Tensor:
    x = check_tensor(x, name)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"`{name}` must be an integer tensor (int64 class indices), got dtype {x.dtype}")
    return x


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_positive(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a positive number, got {value!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise ValueError(f"`{name}` must be a positive finite number, got {value!r}")
    return v


def check_int(value: object, name: str, minimum: int | None = None) -> int:
    """``value`` if it is a Python integer (not a bool) ``>= minimum``; else a ``ValueError`` naming ``name``.

    Example:
        >>> check_int(3, "steps", 1)
        3
        >>> check_int(True, "steps", 1)
        Traceback (most recent call last):
        ...
        ValueError: `steps` must be an integer >= 1, got True
    """
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        want = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise ValueError(f"`{name}` must be {want}, got {value!r}")
    return value


def check_size_range(value: object, name: str, minimum: int) -> tuple[int, int]:
    """``(low, high)`` from a size keyword that is one integer (``low == high``) or a ``(low, high)`` pair, each
    ``>= minimum``; else a ``ValueError`` naming ``name``.

    Example:
        >>> check_size_range(10, "num_classes", 2), check_size_range([2, 1000], "num_classes", 2)
        ((10, 10), (2, 1000))
    """
    if isinstance(value, list | tuple) and len(value) == 2:
        low, high = (check_int(v, name, minimum) for v in value)
        if low > high:
            raise ValueError(f"`{name}` = {tuple(value)}: a range (low, high) needs low <= high")
        return low, high
    if isinstance(value, list | tuple):
        raise ValueError(f"`{name}` must be an integer >= {minimum} or a (low, high) range of them, got {value!r}")
    size = check_int(value, name, minimum)
    return size, size


def check_tied_classes(size: int, num_classes: int, *, letter: str = "C", tied_to: str = "this surrogate") -> None:
    """Raise the error of a surrogate tied to ``num_classes`` classes called on ``size``, naming what would serve it.

    Example:
        >>> check_tied_classes(10, 10)
        >>> check_tied_classes(100, 10, tied_to="LS-ED's class embedding")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `pred` has C = 100 classes, but LS-ED's class embedding is tied to C = num_classes = 10; ...
    """
    if size != num_classes:
        raise ValueError(
            f"`pred` has {letter} = {size} classes, but {tied_to} is tied to {letter} = num_classes = {num_classes}; "
            f"for {letter} = {size} learn one with `num_classes={size}`, or use a size-agnostic surrogate (the "
            "per-sample net, `net={'kind': 'mlp'}`, or `ml.pretrained('classification-accuracy')`)"
        )


def check_bool(value: object, name: str) -> bool:
    """``value`` if it is ``True`` or ``False``; else a ``TypeError`` naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False, got {value!r}")
    return value


def check_nonnegative(value: object, name: str) -> float:
    """``float(value)`` if it is a finite number ``>= 0``; else an error naming ``name``."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a finite number >= 0, got {value!r}") from None
    if not v >= 0 or v == float("inf"):
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}")
    return v


def check_choice(value: object, name: str, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value  # type: ignore[return-value]


def check_class_batch(
    pred: object, target: object, num_classes: int | None = None, *, stacked: bool = False, letter: str = "C",
    tied_to: str = "this surrogate",
) -> None:
    """Logits ``(B, C)`` (or a stack ``(N, B, C)``) and integer class indices ``(B,)`` in ``[0, C)``.

    Logits must be finite, but a stack may mark absent classes with ``-inf`` (G_R's padding,
    :class:`~metricloss.tasks.base.ClassIndexTask`). ``num_classes=None`` (a size-agnostic surrogate): any
    ``C >= 2``. An integer: ``C`` must equal it, and the error says what would serve another ``C``
    (:func:`check_tied_classes`; ``tied_to`` names what ties the surrogate to that size).

    Example:
        >>> import torch
        >>> check_class_batch(torch.randn(4, 1000), torch.tensor([0, 3, 999, 7]))  # any C
        >>> check_class_batch(torch.randn(4, 1), torch.zeros(4, dtype=torch.long))
        Traceback (most recent call last):
        ...
        ValueError: `pred` must be logits of shape (B, C) with C >= 2 classes, got (4, 1)
    """
    lead = 1 if stacked else 0
    pred = check_float_tensor(pred, "pred", finite=False)
    target = check_int_tensor(target, "target")
    want = f"(N, B, {letter})" if stacked else f"(B, {letter})"
    if pred.dim() != 2 + lead or pred.shape[-1] < 2:
        size = f"{letter} >= 2 classes" if num_classes is None else f"{letter} = num_classes = {num_classes}"
        raise ValueError(f"`pred` must be logits of shape {want} with {size}, got {tuple(pred.shape)}")
    if num_classes is not None:
        check_tied_classes(pred.shape[-1], num_classes, letter=letter, tied_to=tied_to)
    if target.shape != pred.shape[:-1]:
        raise ValueError(
            f"`target` must have shape {tuple(pred.shape[:-1])} (one class index per row of `pred`), "
            f"got {tuple(target.shape)}"
        )
    if pred.shape[-2] < 1:
        raise ValueError("`pred` is an empty batch (B = 0)")
    # One reduction pass instead of an elementwise mask: a sum is finite when every element is (an overflow of
    # huge finite values to inf falls through to the exact check, which then passes).
    if not bool(torch.isfinite(pred.sum())):
        if stacked:  # stacks may hold absent classes (-inf), as G_R pads batches of fewer classes
            check_finite(pred.masked_fill(pred == float("-inf"), 0.0), "pred")
        else:
            check_finite(pred, "pred")
    if not target.numel():
        return
    low, high = torch.stack(torch.aminmax(target)).tolist()
    if low < 0 or high >= pred.shape[-1]:
        raise ValueError(
            f"`target` holds class indices outside [0, {pred.shape[-1] - 1}] (min {low}, max {high})"
        )
