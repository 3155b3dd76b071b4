"""LoRA stages (``policy.peft``): adapters attached to a SmolVLA policy through lerobot's PEFT support and ``peft``.

Two ways to chain stages (docs/peft.md):

- ``merge``: every stage trains a fresh adapter (on its replay mix); a saved policy dir's ``model.safetensors``
  holds the weights with the adapter merged in, so ``best/`` is a plain lerobot SmolVLA checkpoint and the next
  stage starts from it as from any full-weight stage.
- ``per_task``: every stage trains its own adapter on the shared base, earlier stages' adapters load frozen and
  stay as they were; ``model.safetensors`` is the untouched base, ``adapters/<task dir name>/`` the bank (peft's
  own format) and ``kuavo_adapters.json`` the task -> adapter table. Validation and the wrapper route every task
  (instruction) to its adapter; a task without one runs on the base.

peft injects the LoRA layers into the policy in place: the training code keeps the ``SmolVLAPolicy`` object; the
``PeftModel`` handle lives in :class:`Adapters`. ``adapters/`` is also written in ``merge`` mode: resume and the
reload of ``best/`` at a stage's end restore the live adapter from it.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kuavo_train.config.schema import PeftSettings
from kuavo_train.errors import KuavoError, first_line
from kuavo_train.layout import ADAPTER_TABLE_FILE, ADAPTERS_DIR, MODEL_FILE

MODES = ("off", "merge", "per_task")
_ADAPTER_WEIGHTS = "adapter_model.safetensors"
_ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class Adapters:
    """The adapters peft injected into a policy: ``active`` trains (this stage's), the others are frozen."""

    model: object  # peft.PeftModel around the policy
    mode: str
    active: str
    task_adapters: dict[int, str] = field(default_factory=dict)  # per_task: task id -> adapter name

    @property
    def policy(self):
        return self.model.base_model.model

    def names(self) -> list[str]:
        return sorted(set(self.task_adapters.values()) | {self.active})

    def route(self, task_id: int | None) -> None:
        """Run ``task_id``'s adapter (per_task; frozen), or the base when the task has none."""
        name = self.task_adapters.get(task_id) if self.mode == "per_task" else self.active
        if name is None:
            self.model.base_model.disable_adapter_layers()
            return
        self.model.base_model.enable_adapter_layers()
        self.model.set_adapter(name, inference_mode=True)

    @contextmanager
    def routed(self, task_id: int):
        """``task_id``'s adapter inside the block; this stage's adapter, trainable again, after it."""
        try:
            self.route(task_id)
            yield
        finally:
            self.model.base_model.enable_adapter_layers()
            self.model.set_adapter(self.active)


def lora_config(policy, settings: PeftSettings):
    """A peft LoraConfig from lerobot's SmolVLA defaults (its target modules) and our settings."""
    overrides = {
        "method_type": "lora",
        "r": settings.rank,
        "lora_alpha": settings.alpha,
        "lora_dropout": settings.dropout,
        "target_modules": settings.targets,
    }
    return policy._build_peft_config(overrides)  # lerobot's: SmolVLA's _get_default_peft_targets + overrides


def read_adapter_table(policy_dir: str | Path | None) -> dict | None:
    """``kuavo_adapters.json`` of a per-task policy dir (None when the dir has none)."""
    if policy_dir is None or not (Path(policy_dir) / ADAPTER_TABLE_FILE).is_file():
        return None
    path = Path(policy_dir) / ADAPTER_TABLE_FILE
    try:
        table = json.loads(path.read_text())
        return {"adapters": {int(k): str(v) for k, v in table["adapters"].items()}}
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise KuavoError(f"{path} is not a valid adapter table ({first_line(exc)}); copy the checkpoint again") from exc


def check_start_fits_mode(start_from: str | Path | None, mode: str) -> None:
    """A per-task bank only continues as per_task: its model.safetensors alone is the base without the tasks."""
    if mode != "per_task" and read_adapter_table(start_from) is not None:
        raise KuavoError(
            f"{start_from} holds per-task LoRA adapters ({ADAPTER_TABLE_FILE}); its {MODEL_FILE} is only their "
            f"shared base: continue with policy.peft.mode=per_task (policy.peft.mode={mode} would drop the tasks)"
        )


def attach_adapters(
    policy,
    settings: PeftSettings,
    task_id: int,
    stage_adapter: str,
    start_from: str | Path | None,
    cached_vision: bool,
) -> Adapters:
    """Inject this stage's adapter for ``task_id`` (trainable) and, per_task, the bank of ``start_from`` (frozen)
    into ``policy``."""
    from peft import get_peft_model
    from peft.utils.error import NoMatchingPeftModuleError

    config = lora_config(policy, settings)
    try:
        model = get_peft_model(policy, config, adapter_name=stage_adapter)
    except NoMatchingPeftModuleError as exc:
        raise KuavoError(f"policy.peft.targets={settings.targets!r} matches no module of the policy") from exc
    adapters = Adapters(model, settings.mode, stage_adapter)
    if settings.mode == "per_task":
        table = read_adapter_table(start_from) or {"adapters": {}}
        if stage_adapter in table["adapters"].values():
            raise KuavoError(
                f"{start_from} already holds an adapter {stage_adapter!r}: a per-task stage starts from the previous "
                "stage's best/, not from a later one"
            )
        for earlier, name in table["adapters"].items():
            _load_adapter(model, Path(start_from) / ADAPTERS_DIR / name, name)
            adapters.task_adapters[earlier] = name
        adapters.task_adapters[task_id] = stage_adapter
    _check_targets(model, settings, cached_vision)
    model.set_adapter(stage_adapter)  # trainable; every other adapter frozen
    return adapters


def _check_targets(model, settings: PeftSettings, cached_vision: bool) -> None:
    from peft.tuners.lora import Linear

    targeted = list(model.targeted_module_names)
    if not targeted:
        raise KuavoError(f"policy.peft.targets={settings.targets!r} matches no module of the policy")
    modules = dict(model.base_model.model.named_modules())
    other = [name for name in targeted if not isinstance(modules.get(name), Linear)]
    if other:  # base_state_dict merges Linear deltas only
        raise KuavoError(
            f"policy.peft.targets={settings.targets!r} matches {other[0]} ({type(modules.get(other[0])).__name__}); "
            "only linear layers can be adapted: narrow the regex"
        )
    if cached_vision and any(".vision_model." in name or ".connector." in name for name in targeted):
        raise KuavoError(
            "policy.peft.targets adapts vision modules but data.feature_cache keeps their embeddings fixed: "
            "set data.feature_cache=off or leave the vision encoder out of the targets"
        )


def _check_adapter_files(folder: Path) -> None:
    for needed in (_ADAPTER_CONFIG, _ADAPTER_WEIGHTS):
        if not (folder / needed).is_file():
            raise KuavoError(f"{folder / needed} is missing: the adapter bank is incomplete; copy the checkpoint again")


def _load_adapter(model, folder: Path, name: str) -> None:
    _check_adapter_files(folder)
    try:
        result = model.load_adapter(str(folder), adapter_name=name, is_trainable=False, torch_device="cpu")
    except Exception as exc:  # SafetensorError (corrupt), shape mismatches, bad json
        raise KuavoError(
            f"cannot load the adapter {folder} ({type(exc).__name__}: {first_line(exc)[:300]}); "
            "the file is truncated or corrupt: copy the checkpoint again"
        ) from exc
    _check_loaded(model, name, result, folder / _ADAPTER_WEIGHTS)


def _check_loaded(model, name: str, result, path: Path) -> None:
    """peft only warns about an adapter file that lacks weights (the adapter then stays at its fresh init)."""
    wanted = {k for k in model.state_dict() if f".{name}." in k and "lora_" in k}
    missing = sorted(k for k in result.missing_keys if k in wanted)
    if missing or result.unexpected_keys:
        raise KuavoError(
            f"the adapter {path} does not fit this model ({len(missing)} missing, {len(result.unexpected_keys)} "
            "unexpected weights): it belongs to another model or was cut short; copy the checkpoint again"
        )


def load_active_weights(adapters: Adapters, policy_dir: Path) -> None:
    """This stage's adapter weights from a policy dir this stage wrote (resume, reload of best/)."""
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    folder = Path(policy_dir) / ADAPTERS_DIR / adapters.active
    path = folder / _ADAPTER_WEIGHTS
    if not path.is_file():
        raise KuavoError(
            f"{path} is missing: {policy_dir} lost its adapter; copy it again or retrain (training.overwrite=true)"
        )
    try:
        weights = load_peft_weights(str(folder), device="cpu")
    except Exception as exc:
        raise KuavoError(
            f"cannot load the adapter {path} ({type(exc).__name__}: {first_line(exc)[:300]}); the file is truncated "
            "or corrupt: copy it again or retrain (training.overwrite=true)"
        ) from exc
    try:
        result = set_peft_model_state_dict(adapters.model, weights, adapter_name=adapters.active)
    except RuntimeError as exc:  # other shapes: another rank
        raise KuavoError(
            f"the adapter {path} has other shapes than policy.peft makes ({first_line(exc)[:200]}); "
            "use the settings it was trained with or retrain with training.overwrite=true"
        ) from exc
    _check_loaded(adapters.model, adapters.active, result, path)


@torch.no_grad()
def base_state_dict(adapters: Adapters) -> dict[str, torch.Tensor]:
    """The policy's own state dict (lerobot's key names) without LoRA weights: the base, or, in merge mode, the
    base with this stage's adapter merged in (computed aside: the live weights are not touched)."""
    from peft.tuners.lora import LoraLayer

    policy = adapters.policy
    deltas = {}
    if adapters.mode == "merge":
        for name, module in policy.named_modules():
            if isinstance(module, LoraLayer) and adapters.active in module.lora_A:
                deltas[f"{name}.weight"] = module.get_delta_weight(adapters.active)
    state, seen = {}, set()
    for key, value in policy.state_dict(keep_vars=False).items():
        if any(part.startswith("lora_") for part in key.split(".")):
            continue
        key = key.replace(".base_layer.", ".")
        if key in deltas:
            value = value + deltas[key].to(value.dtype)
        pointer = (value.data_ptr(), value.dtype, tuple(value.shape))
        if value.numel() and pointer in seen:  # a tied weight is stored once (as lerobot's save does)
            continue
        seen.add(pointer)
        state[key] = value.detach().contiguous()
    return state


def save_adapters(adapters: Adapters, folder: Path) -> None:
    """``model.safetensors`` (base or merged), ``adapters/<name>/`` and, per_task, ``kuavo_adapters.json``."""
    from safetensors.torch import save_file

    adapters.policy.config._save_pretrained(folder)  # config.json, as lerobot's save_pretrained writes it
    save_file(base_state_dict(adapters), str(folder / MODEL_FILE), metadata={"format": "pt"})
    names = adapters.names() if adapters.mode == "per_task" else [adapters.active]
    adapters.model.save_pretrained(str(folder / ADAPTERS_DIR), selected_adapters=names)
    if adapters.mode == "per_task":
        table = {"adapters": {str(k): v for k, v in sorted(adapters.task_adapters.items())}}
        (folder / ADAPTER_TABLE_FILE).write_text(json.dumps(table, indent=2) + "\n")


def adapter_bank(policy, policy_dir: Path):
    """The wrapper's side: attach a per-task dir's adapters (frozen) to ``policy``; None for a plain dir."""
    table = read_adapter_table(policy_dir)
    if table is None:
        return None
    from peft import PeftModel

    names = list(dict.fromkeys(table["adapters"].values()))
    if not names:
        raise KuavoError(f"{Path(policy_dir) / ADAPTER_TABLE_FILE} lists no adapter; copy the checkpoint again")
    first = Path(policy_dir) / ADAPTERS_DIR / names[0]
    _check_adapter_files(first)
    try:
        model = PeftModel.from_pretrained(
            policy, str(first), adapter_name=names[0], is_trainable=False, torch_device="cpu"
        )
    except Exception as exc:
        raise KuavoError(
            f"cannot load the adapter {first} ({type(exc).__name__}: {first_line(exc)[:300]}); the file is "
            "truncated or corrupt: copy the checkpoint again"
        ) from exc
    adapters = Adapters(model, "per_task", names[0], dict(table["adapters"]))
    load_active_weights(adapters, Path(policy_dir))  # again, checked: from_pretrained only warns on missing weights
    for name in names[1:]:
        _load_adapter(model, Path(policy_dir) / ADAPTERS_DIR / name, name)
    return adapters
