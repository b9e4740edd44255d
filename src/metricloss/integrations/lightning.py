"""Lightning: record a baseline run's outputs with a callback, and train with ``ml.combine`` in a LightningModule.

Recording. :class:`RecordOutputs` is a ``lightning.pytorch.Callback`` that offers every training batch's
``(pred, target)`` to an :class:`~metricloss.OutputRecorder`. Lightning hands a callback what ``training_step``
returns, so the step returns a dict with the loss, the predictions and the targets (Lightning detaches every value
but ``"loss"``)::

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        return {"loss": F.cross_entropy(logits, y), "logits": logits, "target": y}

``RecordOutputs(recorder)`` reads ``"logits"`` (or ``"preds"`` / ``"pred"``) and ``"target"``; ``pred=`` and
``target=`` name other keys, and ``get(outputs, batch) -> (pred, target)`` reads anything else (for instance the
targets from the batch). Under DDP every rank records its own shard of the data in its own recorder.

Training. A combined loss is an ``nn.Module``: make it an attribute of the LightningModule, so it moves with the
model, its balancing state is saved in checkpoints, and its mode follows the model's::

    self.loss_fn = ml.combine(F.cross_entropy, ml.load("acc.safetensors"))

Under ``strategy="ddp"`` call it on every rank in every training step (it all-reduces two gradient norms, so every
rank uses the same weight).

Needs ``pip install 'metricloss[lightning]'``; this module imports without Lightning, and :class:`RecordOutputs`
raises an :class:`ImportError` naming that extra when Lightning is missing. It is a ``lightning.pytorch`` callback:
a ``Trainer`` imported from the older ``pytorch_lightning`` package accepts only its own callbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from .._optional import require
from ..recording import OutputRecorder

__all__ = ["PRED_KEYS", "RecordOutputs"]

#: The keys :class:`RecordOutputs` looks for, in this order, when ``pred=`` is not given.
PRED_KEYS = ("logits", "preds", "pred")

try:
    _CALLBACK: type = require("lightning.pytorch", "lightning", "metricloss.integrations.lightning").Callback
    _MISSING: ImportError | None = None
except ImportError as err:  # the module still imports; using the callback raises this error
    _CALLBACK, _MISSING = object, err

Getter = Callable[[Any, Any], tuple[torch.Tensor, torch.Tensor]]


class RecordOutputs(_CALLBACK):  # type: ignore[misc, valid-type]
    """A Lightning callback that records each training batch's ``(pred, target)`` into ``recorder``.

    Args:
        recorder: where the batches go (its ``every=``, ``max_bytes=`` and ``keep=`` apply as usual).
        pred: the key of the predictions in what ``training_step`` returns (default: the first of
            :data:`PRED_KEYS` present).
        target: the key of the targets (default ``"target"``).
        get: ``get(outputs, batch) -> (pred, target)``, called instead of reading keys: ``outputs`` is what
            ``training_step`` returned, ``batch`` the batch it was given.

    Example:
        >>> import pytest; _ = pytest.importorskip("lightning.pytorch")  # the doctest needs the extra
        >>> import metricloss as ml
        >>> from metricloss.integrations.lightning import RecordOutputs
        >>> callback = RecordOutputs(ml.OutputRecorder(max_bytes=2**20))
        >>> callback.on_train_batch_end(None, None, {"logits": torch.zeros(4, 3), "target": torch.zeros(4).long()},
        ...                             None, 0)
        >>> len(callback.recorder)
        1
    """

    def __init__(self, recorder: OutputRecorder, *, pred: str | None = None, target: str = "target",
                 get: Getter | None = None) -> None:
        if _MISSING is not None:
            raise _MISSING
        super().__init__()
        if not isinstance(recorder, OutputRecorder):
            raise TypeError(f"`recorder` must be a metricloss.OutputRecorder, got {type(recorder).__name__}")
        if get is not None and not callable(get):
            raise TypeError(f"`get` must be a callable `get(outputs, batch) -> (pred, target)`, "
                            f"got {type(get).__name__}")
        for name, key in (("pred", pred), ("target", target)):
            if key is not None and not isinstance(key, str):
                raise TypeError(f"`{name}` must be a key (a string) of what training_step returns, got {key!r}")
        self.recorder = recorder
        self.pred = pred
        self.target = target
        self.get = get

    def batch(self, outputs: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(pred, target)`` pair recorded for one training step's ``outputs`` and ``batch``."""
        if self.get is not None:
            pair = self.get(outputs, batch)
            if not (isinstance(pair, tuple | list) and len(pair) == 2):
                raise TypeError(f"`get(outputs, batch)` must return a (pred, target) pair, got {type(pair).__name__}")
            return pair[0], pair[1]
        if not isinstance(outputs, Mapping):
            raise TypeError(
                f"RecordOutputs needs training_step to return a dict with the loss, the predictions and the "
                f"targets, e.g. {{'loss': loss, 'logits': logits, 'target': y}}; it returned "
                f"{type(outputs).__name__}. Return such a dict, or pass `get=lambda outputs, batch: (pred, target)`")
        keys = (self.pred,) if self.pred is not None else PRED_KEYS
        found = [key for key in keys if key in outputs]
        if not found or self.target not in outputs:
            wanted = f"'{self.pred}'" if self.pred is not None else " or ".join(f"'{k}'" for k in PRED_KEYS)
            raise KeyError(f"RecordOutputs looks for the predictions under {wanted} and the targets under "
                           f"'{self.target}' in what training_step returns; it returned the keys "
                           f"{sorted(map(str, outputs))}. Name yours with `pred=` and `target=`, or pass `get=`")
        return outputs[found[0]], outputs[self.target]

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Offer this step's ``(pred, target)`` to the recorder (Lightning calls it after each training step)."""
        self.recorder.record(*self.batch(outputs, batch))
