"""Checkpoints: complete lerobot policy dirs, written atomically, plus a resumable training state.

A policy dir (``best/``, ``epoch{N}/``, ``last/``) holds what plain lerobot loads
(``model.safetensors``, ``config.json``, ``policy_preprocessor*.json``/``policy_postprocessor*``
with the merged normalization stats) plus ``kuavo_schema.json`` (cameras, sizes, per-task action
dims and instructions) and ``kuavo_checkpoint.json`` (epoch, step, losses, stats hash).
``last/`` also holds ``training_state.pt`` (optimizer, scheduler, sampler position, RNG states).
LoRA stages (``policy.peft``) add ``adapters/`` (per task also ``kuavo_adapters.json``): policy/adapters.py.

Every write is atomic (``kuavo_train.files``): a crash mid-write leaves the previous checkpoint intact.
File names come from ``kuavo_train.layout``.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from kuavo_train.data.schema import FeatureSchema
from kuavo_train.errors import KuavoError
from kuavo_train.files import json_text, write_dir_atomically
from kuavo_train.layout import CHECKPOINT_META_FILE, SCHEMA_FILE, TRAINING_STATE_FILE, epoch_of_dirname
from kuavo_train.policy.adapters import Adapters, save_adapters


def save_policy_dir(
    target: Path,
    policy,
    preprocessor,
    postprocessor,
    schema: FeatureSchema,
    meta: dict,
    training_state: dict | None = None,
    adapters: Adapters | None = None,
) -> Path:
    """Write a complete lerobot policy dir at ``target`` atomically (with ``adapters``: see policy.adapters)."""

    def fill(tmp: Path) -> None:
        if adapters is None:
            policy.save_pretrained(tmp)
        else:
            save_adapters(adapters, tmp)
        preprocessor.save_pretrained(tmp)
        postprocessor.save_pretrained(tmp)
        schema.save(tmp / SCHEMA_FILE)
        (tmp / CHECKPOINT_META_FILE).write_text(json_text(meta))
        if training_state is not None:
            torch.save(training_state, tmp / TRAINING_STATE_FILE)

    return write_dir_atomically(target, fill)


def read_checkpoint_meta(path: Path) -> dict:
    meta = path / CHECKPOINT_META_FILE
    if not meta.is_file():
        raise KuavoError(f"{path} is not a kuavo_train checkpoint ({CHECKPOINT_META_FILE} missing)")
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
    return torch.load(path / TRAINING_STATE_FILE, map_location="cpu", weights_only=False)


def prune_epoch_dirs(stage_dir: Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` ``epoch{N}/`` dirs; best/ and last/ are never touched."""
    epochs = sorted((n, p) for p in stage_dir.iterdir() if (n := epoch_of_dirname(p.name)) is not None and p.is_dir())
    for _, path in epochs[: max(0, len(epochs) - keep_last)]:
        shutil.rmtree(path)
