"""Hugging Face ``transformers``: a ``compute_loss_func`` for ``Trainer`` that applies a metricloss loss and records.

``transformers.Trainer(compute_loss_func=fn)`` calls ``fn(outputs, labels, num_items_in_batch=...)`` with the
model's outputs and the batch's labels (popped from the inputs, so the model computes no loss of its own).
:func:`compute_loss` builds that ``fn`` from any ``loss(pred, target)``: a plain loss for the baseline run, a
:class:`~metricloss.CombinedLoss` (``ml.combine(F.cross_entropy, sur)``) for the run with the surrogate. With
``recorder=`` it also offers every training batch's ``(logits, labels)`` to an :class:`~metricloss.OutputRecorder`,
which is how a baseline run's outputs are recorded for ``ml.learn(..., outputs=recorder)``::

    recorder = ml.OutputRecorder()
    Trainer(model, args, train_dataset=data, compute_loss_func=compute_loss(F.cross_entropy, recorder=recorder))
    sur = ml.learn("accuracy", outputs=recorder)
    Trainer(model, args, train_dataset=data, compute_loss_func=compute_loss(ml.combine(F.cross_entropy, sur)))

The shapes are metricloss's: a sequence classifier's ``logits`` ``(B, C)`` with ``labels`` ``(B,)`` are the
classification family's, a token model's ``(B, T, V)`` with ``labels`` ``(B, T)`` padded with ``-100`` the
sequence family's (a causal language model's labels are shifted inside its own loss: shift them yourself with
``get=``). The loss is a batch mean; ``num_items_in_batch`` (what ``Trainer`` passes to normalise a summed loss
over gradient-accumulation steps) is ignored.

Nothing here imports ``transformers``: ``fn`` takes any outputs that carry ``logits`` (an attribute or a key).
The combined loss lives outside the model, so ``Trainer`` neither saves its balancing state with checkpoints nor
moves it: :func:`compute_loss` moves a loss module to the logits' device on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..recording import OutputRecorder

__all__ = ["compute_loss"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Getter = Callable[[Any, Any], tuple[torch.Tensor, torch.Tensor]]


def _logits(outputs: Any, key: str) -> torch.Tensor:
    value = outputs.get(key) if isinstance(outputs, Mapping) else getattr(outputs, key, None)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"compute_loss reads the predictions from the model outputs' `{key}`, which "
                        f"{type(outputs).__name__} does not hold as a tensor; name another with `key=` or pass `get=`")
    return value


def compute_loss(loss: LossFn, *, recorder: OutputRecorder | None = None, key: str = "logits",
                 get: Getter | None = None, record_eval: bool = False) -> Callable[..., torch.Tensor]:
    """A ``compute_loss_func`` for ``transformers.Trainer``: ``loss(pred, target)`` on the model's outputs.

    Args:
        loss: any ``loss(pred, target) -> scalar``: ``F.cross_entropy``, a metricloss surrogate, or
            ``ml.combine(F.cross_entropy, sur)``. An ``nn.Module`` is moved to the predictions' device.
        recorder: if given, every training batch's ``(pred, target)`` is offered to it (a batch whose ``pred``
            carries a graph: ``Trainer``'s evaluation runs under ``torch.no_grad()`` and is not recorded).
        key: the model outputs' field holding the predictions (default ``"logits"``).
        get: ``get(outputs, labels) -> (pred, target)``, called instead of reading ``key`` (to shift a causal
            language model's labels, or reshape).
        record_eval: record evaluation batches too.

    Returns:
        ``fn(outputs, labels, num_items_in_batch=None) -> loss``, for ``Trainer(compute_loss_func=fn)``.

    Example:
        >>> import torch, torch.nn.functional as F, metricloss as ml
        >>> recorder = ml.OutputRecorder(max_bytes=2**20)
        >>> fn = compute_loss(ml.combine(F.cross_entropy, ml.pretrained("classification-accuracy")),
        ...                   recorder=recorder)
        >>> fn({"logits": torch.randn(8, 3, requires_grad=True)}, torch.randint(0, 3, (8,))).dim(), len(recorder)
        (0, 1)
    """
    if not callable(loss):
        raise TypeError(f"`loss` must be a callable `loss(pred, target) -> scalar`, got {type(loss).__name__}")
    if recorder is not None and not isinstance(recorder, OutputRecorder):
        raise TypeError(f"`recorder` must be a metricloss.OutputRecorder or None, got {type(recorder).__name__}")
    if get is not None and not callable(get):
        raise TypeError(f"`get` must be a callable `get(outputs, labels) -> (pred, target)`, got {type(get).__name__}")
    if not isinstance(key, str):
        raise TypeError(f"`key` must be the name of the model outputs' predictions, got {key!r}")
    placed: list[torch.device] = []

    def fn(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        if get is not None:
            pred, target = get(outputs, labels)
        else:
            pred, target = _logits(outputs, key), labels
        if isinstance(loss, nn.Module) and placed != [pred.device]:
            loss.to(pred.device)
            placed[:] = [pred.device]
        if recorder is not None and (record_eval or (torch.is_grad_enabled() and pred.requires_grad)):
            recorder.record(pred, target)
        return loss(pred, target)

    return fn
