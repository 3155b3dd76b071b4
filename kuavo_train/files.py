"""Atomic writes of dirs and JSON files, crash recovery of interrupted dir writes, and file hashes.

Every write goes to a hidden temp path beside the target, then replaces it by renames: a crash
mid-write leaves the previous version intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kuavo_train.layout import ADAPTERS_DIR, MODEL_FILE, is_complete_policy_dir


def write_dir_atomically(target: Path, fill: Callable[[Path], None]) -> Path:
    """Create ``target`` as a dir filled by ``fill(tmp_dir)``; the old ``target`` stays until the new one is
    complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)
        _swap_into_place(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _swap_into_place(new: Path, target: Path) -> None:
    if not target.exists():
        os.replace(new, target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_interrupted_writes(directory: Path) -> None:
    """After a crash: put back a policy dir caught between the two renames of a swap, drop half-written temp dirs."""
    if not directory.is_dir():
        return
    for old in directory.glob(".*.old-*"):
        name = old.name[1:].rsplit(".old-", 1)[0]
        if not (directory / name).exists() and is_complete_policy_dir(old):
            os.replace(old, directory / name)
        else:
            shutil.rmtree(old, ignore_errors=True)
    for tmp in directory.glob(".*.tmp-*"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)


def json_text(payload: Any, indent: int = 2) -> str:
    """JSON of ``payload``; numpy scalars and paths are written as numbers and strings."""
    return json.dumps(payload, indent=indent, default=_json_default)


def write_json_atomically(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json_text(payload))
    os.replace(tmp, path)


def _json_default(value: Any):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy/torch scalars
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def sha256_hex(path: Path) -> str:
    """The file's sha256 (64 hex digits), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """First 16 hex digits of the file's sha256: the short id results files record."""
    return sha256_hex(path)[:16]


def weights_sha256(policy_dir: Path) -> str:
    """Short id of a policy dir's weights: ``file_sha256`` of ``model.safetensors``, or with LoRA adapters
    (``adapters/``; a per-task base stays the same file) of it and of every adapter's weights."""
    model = file_sha256(policy_dir / MODEL_FILE)
    adapters = sorted((policy_dir / ADAPTERS_DIR).glob("*/*.safetensors"))
    if not adapters:
        return model
    digest = hashlib.sha256(model.encode())
    for path in adapters:
        digest.update(f"{path.relative_to(policy_dir)}={file_sha256(path)}".encode())
    return digest.hexdigest()[:16]
