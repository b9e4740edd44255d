"""The file layer under every saved loss: safetensors weights plus one JSON document, written atomically.

A leaf module: it imports nothing of metricloss but :mod:`._version`, so every module above it may save and read
files. A file is a plain safetensors file whose header metadata holds one key, ``"metricloss"``, whose value is a
JSON document validated against :data:`SCHEMA` (with a format version) before any tensor is read. Nothing is
unpickled, so reading an untrusted file cannot run code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as _st_save

from ._version import __version__

__all__ = [
    "FORMAT", "FORMAT_VERSION", "SCHEMA", "SurrogateFileError", "file_header", "read_loss_file", "stored_kind",
    "validate_header", "write_atomic", "write_loss_file",
]

FORMAT = "metricloss.surrogate"
#: Version 1 files written before the key ``"kind"`` existed still read: their kind follows from ``net_config``.
FORMAT_VERSION = 1

#: Required metadata keys and their JSON types (``"kind"``, a string, is optional).
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


def file_header(
    kind: str, task: str, task_config: dict[str, Any], net_config: dict[str, Any], report: dict[str, Any] | None
) -> dict[str, Any]:
    """The JSON document of a file: format, versions, the loss's ``kind`` and what rebuilds it."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "kind": kind,
        "task": task,
        "task_config": task_config,
        "net_config": net_config,
        "report": report,
    }


def write_loss_file(path: str | Path, tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> None:
    """Write ``tensors`` (moved to the CPU) and ``header`` (:func:`file_header`) atomically to ``path``."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic(path, _st_save(tensors, metadata={"metricloss": json.dumps(header)}))


def validate_header(meta: Any, path: str | Path) -> dict[str, Any]:
    """``meta`` checked against :data:`SCHEMA` and the format version; :class:`SurrogateFileError` otherwise."""
    if not isinstance(meta, dict):
        raise SurrogateFileError(f"{path}: metadata must be a JSON object")
    for key, kind in SCHEMA.items():
        if key not in meta:
            raise SurrogateFileError(f"{path}: metadata lacks the key {key!r}")
        if not isinstance(meta[key], kind) or (kind is int and isinstance(meta[key], bool)):
            raise SurrogateFileError(f"{path}: metadata key {key!r} has the wrong type")
    if "kind" in meta and not isinstance(meta["kind"], str):
        raise SurrogateFileError(f"{path}: metadata key 'kind' has the wrong type")
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


def read_loss_file(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The validated JSON document and the tensors (on the CPU) of a file written by :func:`write_loss_file`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`path`: no surrogate file at {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            raw = (fh.metadata() or {}).get("metricloss")
            if raw is None:
                raise SurrogateFileError(f"{path}: a safetensors file without metricloss metadata")
            try:
                meta = validate_header(json.loads(raw), path)
            except json.JSONDecodeError as err:
                raise SurrogateFileError(f"{path}: metadata is not valid JSON ({err})") from None
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except SafetensorError as err:
        raise SurrogateFileError(f"{path}: not a readable safetensors file ({err})") from None
    return meta, tensors


def stored_kind(meta: dict[str, Any]) -> str:
    """The kind of loss a validated header describes; files without ``"kind"`` (written by metricloss 0.1.0
    before it existed) name it as ``net_config["method"]`` for weightless losses, and are learned surrogates
    otherwise."""
    if "kind" in meta:
        return meta["kind"]
    method = meta["net_config"].get("method")
    return method if isinstance(method, str) else "surrogate"
