"""Checkpoints: complete lerobot policy dirs, written atomically, plus a resumable training state.

A policy dir (``best/``, ``epoch{N}/``, ``last/``) holds what plain lerobot loads
(``model.safetensors``, ``config.json``, ``policy_preprocessor*.json``/``policy_postprocessor*``
with the merged normalization stats) plus ``kuavo_schema.json`` (cameras, sizes, per-task action
dims and instructions) and ``kuavo_checkpoint.json`` (epoch, step, losses, stats hash).
``last/`` also holds ``training_state.pt`` (optimizer, scheduler, sampler position, RNG states).

Every write goes to a hidden temp dir beside the target, then replaces it by renames: a crash
mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kuavo_train.data.schema import FeatureSchema
from kuavo_train.errors import KuavoError

SCHEMA_NAME = "kuavo_schema.json"
CHECKPOINT_META = "kuavo_checkpoint.json"
TRAINING_STATE = "training_state.pt"
POLICY_FILES = ("model.safetensors", "config.json", SCHEMA_NAME, CHECKPOINT_META)


def write_atomically(target: Path, fill) -> Path:
    """Create ``target`` as a dir filled by ``fill(tmp_dir)``; the old ``target`` stays until the new one is complete."""
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
    """After a crash: put back a dir caught between the two renames of a swap, drop half-written temp dirs."""
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


def write_json_atomically(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default))
    os.replace(tmp, path)


def _json_default(value: Any):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def save_policy_dir(target: Path, policy, preprocessor, postprocessor, schema: FeatureSchema, meta: dict,
                    training_state: dict | None = None) -> Path:
    """Write a complete lerobot policy dir at ``target`` atomically."""

    def fill(tmp: Path) -> None:
        policy.save_pretrained(tmp)
        preprocessor.save_pretrained(tmp)
        postprocessor.save_pretrained(tmp)
        schema.save(tmp / SCHEMA_NAME)
        (tmp / CHECKPOINT_META).write_text(json.dumps(meta, indent=2, default=_json_default))
        if training_state is not None:
            torch.save(training_state, tmp / TRAINING_STATE)

    return write_atomically(target, fill)


def is_complete_policy_dir(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in POLICY_FILES)


def read_checkpoint_meta(path: Path) -> dict:
    meta = path / CHECKPOINT_META
    if not meta.is_file():
        raise KuavoError(f"{path} is not a kuavo_train checkpoint ({CHECKPOINT_META} missing)")
    return json.loads(meta.read_text())


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_training_state(path: Path) -> dict:
    return torch.load(path / TRAINING_STATE, map_location="cpu", weights_only=False)


def prune_epoch_dirs(stage_dir: Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` ``epoch{N}/`` dirs; best/ and last/ are never touched."""
    epochs = sorted(
        (int(m.group(1)), p) for p in stage_dir.iterdir() if (m := re.fullmatch(r"epoch(\d+)", p.name)) and p.is_dir()
    )
    for _, path in epochs[: max(0, len(epochs) - keep_last)]:
        shutil.rmtree(path)


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
