"""Saving and loading surrogates: safetensors weights plus JSON metadata, atomic writes, no code on load.

The file is a plain safetensors file. Its header metadata holds one key, ``"metricloss"``, whose value is
a JSON document validated against :data:`SCHEMA` (with a format version) before any weight is read.
Nothing is unpickled, so loading an untrusted file cannot run code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as _st_save

from .report import Report
from .surrogate import Surrogate
from .tasks import get_task

if TYPE_CHECKING:
    from .nonparametric import NonParametricLoss
    from .uniloss import UniLoss

__all__ = ["FORMAT_VERSION", "SCHEMA", "SurrogateFileError", "load", "save", "write_atomic"]

FORMAT = "metricloss.surrogate"
FORMAT_VERSION = 1

#: Required metadata keys and their JSON types.
SCHEMA: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "format_version": int,
    "library_version": str,
    "task": str,
    "task_config": dict,
    "net_config": dict,
    "report": (dict, type(None)),
}


class SurrogateFileError(ValueError):
    """A surrogate file is missing, corrupt, truncated, of a future format, or does not match its metadata."""


def _metadata(sur: Surrogate) -> dict[str, Any]:
    from . import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "task": sur.task.name,
        "task_config": sur.task.config(),
        "net_config": sur.net_config,
        "report": sur.report.to_dict() if sur.report is not None else None,
    }


def _config_metadata(loss: UniLoss | NonParametricLoss) -> dict[str, Any]:
    from . import __version__

    rep = loss.report
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "task": rep.task if rep else "uniloss",
        "task_config": rep.task_config if rep else {},
        "net_config": loss.config(),
        "report": rep.to_dict() if rep else None,
    }


def save(sur: Surrogate | UniLoss | NonParametricLoss, path: str | Path) -> None:
    """Save ``sur`` to ``path`` atomically: a temporary file in the same folder, fsync, then rename.

    A :class:`~metricloss.uniloss.UniLoss` or :class:`~metricloss.nonparametric.NonParametricLoss` has no
    weights: its configuration alone is stored (a user-written refactoring's code is not; pass it again to
    :func:`load` as ``refactoring=``).
    """
    from .nonparametric import NonParametricLoss
    from .uniloss import UniLoss

    if isinstance(sur, UniLoss | NonParametricLoss):
        write_atomic(path, _st_save({}, metadata={"metricloss": json.dumps(_config_metadata(sur))}))
        return
    if not isinstance(sur, Surrogate):
        raise TypeError(
            f"`sur` must be a metricloss Surrogate, UniLoss or NonParametricLoss, got {type(sur).__name__}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in sur.net.state_dict().items()}
    write_atomic(path, _st_save(tensors, metadata={"metricloss": json.dumps(_metadata(sur))}))


def write_atomic(path: str | Path, blob: bytes) -> None:
    """Write ``blob`` to ``path`` via a temporary file in the same folder, fsync, then rename.

    A crash at any point leaves either the old file or the new one at ``path``, never a partial file.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"`path`: the folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _validate(meta: Any, path: Path) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise SurrogateFileError(f"{path}: metadata must be a JSON object")
    for key, kind in SCHEMA.items():
        if key not in meta:
            raise SurrogateFileError(f"{path}: metadata lacks the key {key!r}")
        if not isinstance(meta[key], kind) or (kind is int and isinstance(meta[key], bool)):
            raise SurrogateFileError(f"{path}: metadata key {key!r} has the wrong type")
    if meta["format"] != FORMAT:
        raise SurrogateFileError(f"{path}: not a metricloss surrogate (format {meta['format']!r})")
    if meta["format_version"] > FORMAT_VERSION:
        raise SurrogateFileError(
            f"{path}: written by a newer metricloss (format version {meta['format_version']}, this one "
            f"reads up to {FORMAT_VERSION}); upgrade metricloss to load it"
        )
    if meta["format_version"] < 1:
        raise SurrogateFileError(f"{path}: invalid format version {meta['format_version']}")
    return meta


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


def load(
    path: str | Path, map_location: str | torch.device = "cpu", refactoring: Any = None
) -> Surrogate | UniLoss | NonParametricLoss:
    """Load a surrogate saved by :meth:`Surrogate.save` (or a saved UniLoss). Never executes code from the file.

    ``refactoring`` supplies the code of a UniLoss built on a user-written refactoring.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`path`: no surrogate file at {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            raw = (fh.metadata() or {}).get("metricloss")
            if raw is None:
                raise SurrogateFileError(f"{path}: a safetensors file without metricloss metadata")
            try:
                meta = _validate(json.loads(raw), path)
            except json.JSONDecodeError as err:
                raise SurrogateFileError(f"{path}: metadata is not valid JSON ({err})") from None
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except SafetensorError as err:
        raise SurrogateFileError(f"{path}: not a readable safetensors file ({err})") from None
    method = meta["net_config"].get("method")
    if method in ("uniloss", "nonparametric"):
        from .nonparametric import NonParametricLoss
        from .uniloss import UniLoss

        cls = UniLoss if method == "uniloss" else NonParametricLoss
        try:
            loss = cls.from_config(meta["net_config"], refactoring=refactoring)
        except (TypeError, ValueError) as err:
            raise SurrogateFileError(f"{path}: {err}") from None
        loss.report = _report(meta["report"], path)
        return loss.to(map_location)
    try:
        task = get_task(meta["task"], **meta["task_config"])
        net = task.build_net(**meta["net_config"])
    except (TypeError, ValueError) as err:
        raise SurrogateFileError(f"{path}: metadata does not describe a valid surrogate ({err})") from None
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise SurrogateFileError(f"{path}: weights do not match the network in the metadata ({err})") from None
    report = _report(meta["report"], path)
    return Surrogate(task, net, meta["net_config"], report).to(map_location)
