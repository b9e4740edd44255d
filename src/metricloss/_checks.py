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
    "check_tensor",
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
    pred: object, target: object, num_classes: int, *, stacked: bool = False, letter: str = "C"
) -> None:
    """Logits ``(B, C)`` (or a stack ``(N, B, C)``) and integer class indices ``(B,)`` in ``[0, C)``."""
    lead = 1 if stacked else 0
    pred = check_float_tensor(pred, "pred")
    target = check_int_tensor(target, "target")
    if pred.dim() != 2 + lead or pred.shape[-1] != num_classes:
        want = f"(N, B, {letter})" if stacked else f"(B, {letter})"
        raise ValueError(
            f"`pred` must be logits of shape {want} with {letter} = num_classes = {num_classes}, "
            f"got {tuple(pred.shape)}"
        )
    if target.shape != pred.shape[:-1]:
        raise ValueError(
            f"`target` must have shape {tuple(pred.shape[:-1])} (one class index per row of `pred`), "
            f"got {tuple(target.shape)}"
        )
    if pred.shape[-2] < 1:
        raise ValueError("`pred` is an empty batch (B = 0)")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(
            f"`target` holds class indices outside [0, {num_classes - 1}] "
            f"(min {int(target.min())}, max {int(target.max())})"
        )
