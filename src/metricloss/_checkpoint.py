"""Periodic learning checkpoints for :func:`metricloss.learn`, so an interrupted run resumes exactly.

A checkpoint is a safetensors file (no pickle) holding the network, the best weights so far, Adam's state
and the random generator's state, with JSON metadata: the step, early-stopping state, history, and a
fingerprint of the run's settings and data. Resuming re-draws the random pools from the seed (they are a
deterministic function of it), restores everything else, and continues; the result is bit-identical to
an uninterrupted run on the same machine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as _st_save
from torch import nn

from ._serialization import write_atomic

__all__ = ["fingerprint", "load_progress", "save_progress"]

FORMAT = "metricloss.learn-checkpoint"
FORMAT_VERSION = 1


def fingerprint(settings: dict[str, Any], *tensors: torch.Tensor) -> str:
    """A hash of the settings (JSON) and the bytes of ``tensors`` (e.g. the metric values of the pools)."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save_progress(
    path: str | Path,
    *,
    fingerprint: str,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    best_state: dict[str, torch.Tensor] | None,
    progress: dict[str, Any],
) -> None:
    tensors = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v.detach().clone() for k, v in best_state.items()})
    for i, param in enumerate(opt.param_groups[0]["params"]):
        for name, value in opt.state.get(param, {}).items():
            tensors[f"opt.{i}.{name}"] = torch.as_tensor(value).detach().clone()
    tensors["rng"] = gen.get_state()
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "fingerprint": fingerprint, **progress}
    write_atomic(path, _st_save({k: v.contiguous() for k, v in tensors.items()},
                                metadata={"metricloss": json.dumps(meta)}))


def load_progress(
    path: str | Path, *, fingerprint: str, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator
) -> dict[str, Any] | None:
    """Restore a checkpoint into ``model``, ``opt`` and ``gen``; ``None`` if there is no file at ``path``."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = json.loads((fh.metadata() or {}).get("metricloss", "null"))
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, json.JSONDecodeError) as err:
        raise ValueError(f"`checkpoint`: {path} is not a readable learning checkpoint ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"`checkpoint`: {path} is not a metricloss learning checkpoint")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"`checkpoint`: {path} was written by a newer metricloss")
    if meta.get("fingerprint") != fingerprint:
        raise ValueError(
            f"`checkpoint`: {path} belongs to a different learning run (settings, metric or data differ); "
            "delete it or pass another path"
        )
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
    gen.set_state(tensors["rng"])
    return {**meta, "best_state": best}
