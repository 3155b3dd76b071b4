"""A kuavo_train policy dir as the wrapper reads it: is it complete, where are its VLM files, which dtypes and
processor steps it was saved with. Loadable on a robot: lerobot-free, torch and safetensors only."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from kuavo_train.errors import KuavoError
from kuavo_train.layout import (
    BEST_DIR,
    CONFIG_FILE,
    LAST_DIR,
    MODEL_FILE,
    POSTPROCESSOR_FILE,
    PREPROCESSOR_FILE,
    SCHEMA_FILE,
)

REQUIRED_FILES = (MODEL_FILE, CONFIG_FILE, PREPROCESSOR_FILE, POSTPROCESSOR_FILE, SCHEMA_FILE)
# Registry names of lerobot's DeviceProcessorStep and TokenizerProcessorStep in the saved pipelines.
DEVICE_STEP = "device_processor"
TOKENIZER_STEP = "tokenizer_processor"


def check_checkpoint_dir(path: str | Path) -> Path:
    """The policy dir as a Path, or a KuavoError that says what is wrong and what to pass instead."""
    path = Path(path).expanduser()
    if not path.exists():
        raise KuavoError(
            f"checkpoint dir {path} does not exist; pass a stage's policy dir, e.g. outputs/.../task1_moving_grasp/best"
        )
    if not path.is_dir():
        raise KuavoError(f"checkpoint {path} is a file; pass the policy dir that holds it (e.g. {path.parent})")
    if not (path / SCHEMA_FILE).is_file():
        hint = ""
        for child in (BEST_DIR, LAST_DIR):
            if (path / child / SCHEMA_FILE).is_file():
                hint = f"; did you mean {path / child}?"
                break
        else:
            stages = sorted(path.glob(f"*/{BEST_DIR}/{SCHEMA_FILE}"))
            if stages:
                hint = f"; pass a stage's policy dir, e.g. {stages[-1].parent}"
            elif (path / MODEL_FILE).is_file():
                hint = " (it looks like a plain lerobot policy dir: load it with SmolVLAPolicy.from_pretrained instead)"
        raise KuavoError(f"{path} is not a kuavo_train checkpoint ({SCHEMA_FILE} missing){hint}")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise KuavoError(f"checkpoint {path} is incomplete: {', '.join(missing)} missing; copy the whole policy dir")
    return path


def resolve_vlm_model_name(path: Path, saved: str, override: str | Path | None = None) -> str:
    """Where the VLM backbone's config/tokenizer/processor are read from, as ``SmolVLAConfig.vlm_model_name``.

    ``override`` (a local dir or a hub id) wins; otherwise ``saved`` (``config.json``), a relative
    path that names a dir inside the policy dir ``path`` (an export's ``vlm``) being taken from there.
    """
    if override is not None:
        local = Path(override).expanduser()
        if local.is_dir():
            return str(local.resolve())
        if local.is_absolute() or str(override).startswith((".", "~")) or len(local.parts) > 2:
            raise KuavoError(
                f"vlm_model_name={str(override)!r} is not a folder; pass the dir that holds the VLM's "
                "config.json and tokenizer/processor files (or a hub id in the Hugging Face cache)"
            )
        return str(override)  # a hub id, resolved by transformers (Hugging Face cache when offline)
    if saved and not Path(saved).is_absolute() and (path / saved).is_dir():
        return str((path / saved).resolve())
    return saved


def match_saved_dtypes(model: torch.nn.Module, weights_file: Path) -> None:
    """Give every parameter the floating dtype it was saved with (only the header of ``weights_file`` is read)."""
    from safetensors import safe_open

    with safe_open(str(weights_file), framework="pt") as handle:
        saved = {key: handle.get_slice(key).get_dtype() for key in handle.keys()}
    for name, param in model.named_parameters():
        dtype = _SAFETENSORS_FLOATS.get(saved.get(name, ""))
        if dtype is not None and param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)


_SAFETENSORS_FLOATS = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def has_step(pipeline_file: Path, registry_name: str) -> bool:
    try:
        steps = json.loads(pipeline_file.read_text()).get("steps", [])
    except (OSError, ValueError, AttributeError):
        return False
    return any(isinstance(step, dict) and step.get("registry_name") == registry_name for step in steps)
