"""Inference from a kuavo_train checkpoint: raw robot observations in, raw actions of the task's own size out.

A deployed robot needs a stage's policy dir (``best/``) and its VLM backbone's config/tokenizer files, or
just the self-contained folder ``kuavo-train export <best> <dir>`` writes (docs/deploy.md)::

    from kuavo_train.wrapper.policy.smolvla.SmolVLAPolicyWrapper import SmolVLAPolicyWrapper

    policy = SmolVLAPolicyWrapper.from_pretrained("outputs/train/smolvla_sequential/task4_sorting/best")
    obs = {
        "observation.images.head_cam_h": head_rgb,   # (H, W, 3) or (3, H, W) uint8, or (3, H, W) float in [0, 1]
        "observation.images.wrist_cam_l": left_rgb,
        "observation.images.wrist_cam_r": right_rgb,
        "observation.state": joint_state,            # (16,) the task's own state size
        "task": "Pick up the package from the conveyor belt, weigh it ...",
    }
    action = policy.select_action(obs)               # (16,) or (20,) raw, on the CPU

What it does on top of plain lerobot (``SmolVLAPolicy`` + the checkpoint's processors):

- images: uint8 HWC or CHW (0-255) or float CHW (0-1), with or without a batch dim, become float CHW in
  [0, 1] at the training resolution (``kuavo_schema.json``);
- ``observation.state`` of the task's own size is zero-padded to the curriculum's union size,
  exactly as in training (``kuavo_train.data.task_dataset.pad_last_dim``);
- the instruction is matched to a trained one (SPEC §11): exact after case/whitespace
  normalisation, else a unique prefix (a trailing "..." ignored) with a warning, else an error
  listing the trained instructions; a new instruction resets the action queue;
- a per-task LoRA checkpoint (``policy.peft.mode=per_task``: ``kuavo_adapters.json``) runs each instruction's
  task on its own adapter (:attr:`active_adapter`); one batch must not mix tasks of different adapters;
- the un-normalized actions are cut to the task's own action size and clipped to the training
  data's per-dim [min, max] widened by ``clip_margin * (max - min)`` (min/max come from the
  checkpoint's postprocessor stats).

The action queue is lerobot's: :meth:`select_action` runs the model when the queue is empty and
then returns the queued actions one per call (``n_action_steps`` of them per model call).

This module must stay loadable on a robot: it imports lerobot, torch and kuavo_train's data
schema/padding helpers and the attention swap only (never training, curriculum or ingest code).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from kuavo_train.data.constants import ACTION, CAMERA_PREFIX, STATE, TASK
from kuavo_train.data.schema import FeatureSchema, TaskFeatures, camera_padding_mask_key
from kuavo_train.data.task_dataset import pad_last_dim
from kuavo_train.device import resolve_device
from kuavo_train.errors import KuavoError, first_line
from kuavo_train.layout import (
    CHECKPOINT_META_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    POSTPROCESSOR_FILE,
    PREPROCESSOR_FILE,
    SCHEMA_FILE,
)
from kuavo_train.policy.adapters import Adapters, adapter_bank
from kuavo_train.policy.attention import ATTENTION_KINDS, use_attention
from kuavo_train.wrapper.policy.smolvla.checkpoint_dir import (
    DEVICE_STEP,
    TOKENIZER_STEP,
    check_checkpoint_dir,
    has_step,
    match_saved_dtypes,
    resolve_vlm_model_name,
)

logger = logging.getLogger(__name__)

_ELLIPSIS = re.compile(r"(\.\.\.|\u2026)\s*$")
# A float image above this is taken for a 0-255 image passed as float (a common mistake).
_FLOAT_IMAGE_MAX = 1.0 + 1e-3


def normalize_instruction(text: str) -> str:
    """Lower case, whitespace runs collapsed to one space, stripped."""
    return " ".join(text.split()).lower()


class SmolVLAPolicyWrapper:
    """A trained SmolVLA with its processors and feature schema; see the module docstring."""

    def __init__(
        self,
        policy,
        preprocessor,
        postprocessor,
        schema: FeatureSchema,
        device: torch.device,
        clip_actions: bool = True,
        clip_margin: float = 0.05,
        checkpoint_dir: Path | None = None,
        checkpoint_meta: dict | None = None,
        adapters: Adapters | None = None,
    ):
        if clip_margin < 0:
            raise KuavoError(f"clip_margin must be >= 0, got {clip_margin}")
        self.policy = policy
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor
        self.schema = schema
        self.device = device
        self.clip_actions = clip_actions
        self.clip_margin = float(clip_margin)
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_meta = checkpoint_meta or {}
        self.adapters = adapters
        self.active_adapter: str | None = None  # per-task LoRA: the adapter the last call ran (None: the base)
        self._routed = False
        self._check_policy_matches_schema()
        self._action_min, self._action_max = self._action_range()
        self._resolved: dict[str, TaskFeatures] = {}
        self._resized_warned: set[str] = set()
        self._last_call: tuple | None = None

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device = "auto",
        clip_actions: bool = True,
        clip_margin: float = 0.05,
        vlm_model_name: str | Path | None = None,
        attention: str = "sdpa",
    ) -> SmolVLAPolicyWrapper:
        """Load a kuavo_train policy dir (a stage's ``best/``, ``last/``, ``epoch{N}/``) or a ``kuavo-train export``
        folder.

        ``device``: "auto" (cuda if available), "cpu", "cuda", "cuda:N". ``clip_actions``: clip
        raw actions to the training data's [min - m, max + m], m = ``clip_margin * (max - min)``.
        ``vlm_model_name``: where the VLM backbone's config, tokenizer and processor files are (a local
        dir or a hub id in the Hugging Face cache); None = ``vlm_model_name`` of ``config.json``, a
        relative one (an export's ``vlm``) taken relative to ``path``. Its weights are never read:
        they are in the checkpoint's ``model.safetensors``. ``attention``: "sdpa" (torch's fused attention) or
        "eager" (lerobot's); same actions within fp tolerance (kuavo_train.policy.attention).
        """
        if attention not in ATTENTION_KINDS:
            raise KuavoError(f"attention={attention!r} is not one of {ATTENTION_KINDS}")
        path = check_checkpoint_dir(path)
        device = resolve_device(device, key="device")
        schema = FeatureSchema.load(path / SCHEMA_FILE)
        meta_path = path / CHECKPOINT_META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}

        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
        from lerobot.processor import PolicyProcessorPipeline
        from lerobot.processor.converters import (
            batch_to_transition,
            policy_action_to_transition,
            transition_to_batch,
            transition_to_policy_action,
        )

        try:
            config = PreTrainedConfig.from_pretrained(path)
        except Exception as exc:
            raise KuavoError(f"could not read {path / CONFIG_FILE} ({type(exc).__name__}: {first_line(exc)})") from exc
        if getattr(config, "type", None) != "smolvla":
            raise KuavoError(f"{path / CONFIG_FILE} is a '{getattr(config, 'type', '?')}' policy, not smolvla")
        config.device = str(device)
        config.vlm_model_name = resolve_vlm_model_name(path, config.vlm_model_name, vlm_model_name)
        # model.safetensors holds every weight, the VLM's included: build the VLM from its config only instead
        # of first loading its own weights from vlm_model_name (an export ships none); match_saved_dtypes then
        # restores a VLM that load_vlm_weights=True had loaded in bf16 for training.
        config.load_vlm_weights = False
        try:
            policy = SmolVLAPolicy(config)
        except Exception as exc:
            raise KuavoError(
                f"could not build the policy from {path} ({type(exc).__name__}: {first_line(exc)}); the model also "
                "needs its VLM backbone's config/tokenizer/processor files "
                f"at vlm_model_name={config.vlm_model_name!r} "
                f"(a local dir or the Hugging Face cache): copy them to this machine and pass "
                f"from_pretrained(..., vlm_model_name=DIR), or make a self-contained folder with `kuavo-train export`"
            ) from exc
        # The saved dtypes before loading: values copied into parameters of another dtype would be rounded.
        match_saved_dtypes(policy, path / MODEL_FILE)
        try:
            SmolVLAPolicy._load_as_safetensor(policy, str(path / MODEL_FILE), "cpu", strict=True)
        except Exception as exc:
            raise KuavoError(
                f"could not load the weights {path / MODEL_FILE} ({type(exc).__name__}: {first_line(exc)}); "
                "the file is truncated or belongs to another model: copy the checkpoint again"
            ) from exc
        adapters = adapter_bank(policy, path)  # per-task LoRA adapters (None for a plain checkpoint)
        policy.to(device)
        use_attention(policy, attention)
        policy.eval()
        overrides: dict[str, dict] = {DEVICE_STEP: {"device": str(device)}}
        if has_step(path / PREPROCESSOR_FILE, TOKENIZER_STEP):
            overrides[TOKENIZER_STEP] = {"tokenizer_name": config.vlm_model_name}  # the VLM's own tokenizer
        try:
            preprocessor = PolicyProcessorPipeline.from_pretrained(
                path,
                config_filename=PREPROCESSOR_FILE,
                overrides=overrides,
                to_transition=batch_to_transition,
                to_output=transition_to_batch,
            )
            # The postprocessor keeps its saved device step (cpu): actions come back on the CPU.
            postprocessor = PolicyProcessorPipeline.from_pretrained(
                path,
                config_filename=POSTPROCESSOR_FILE,
                to_transition=policy_action_to_transition,
                to_output=transition_to_policy_action,
            )
        except Exception as exc:
            raise KuavoError(
                f"could not load the processors of {path} ({type(exc).__name__}: {first_line(exc)}); "
                "the tokenizer is read "
                f"from vlm_model_name={config.vlm_model_name!r}"
            ) from exc
        return cls(
            policy,
            preprocessor,
            postprocessor,
            schema,
            device,
            clip_actions=clip_actions,
            clip_margin=clip_margin,
            checkpoint_dir=path,
            checkpoint_meta=meta,
            adapters=adapters,
        )

    def _check_policy_matches_schema(self) -> None:
        config = self.policy.config
        action = config.output_features.get(ACTION)
        if action is None or tuple(action.shape) != (self.schema.action_dim,):
            raise KuavoError(
                f"the model's action feature {None if action is None else tuple(action.shape)} does not match "
                f"{SCHEMA_FILE}'s action_dim {self.schema.action_dim}; the checkpoint dir is inconsistent"
            )
        state = config.input_features.get(STATE)
        if state is None or tuple(state.shape) != (self.schema.state_dim,):
            raise KuavoError(
                f"the model's state feature {None if state is None else tuple(state.shape)} does not match "
                f"{SCHEMA_FILE}'s state_dim {self.schema.state_dim}; the checkpoint dir is inconsistent"
            )
        missing = [key for key in self.schema.cameras if key not in config.input_features]
        if missing:
            raise KuavoError(
                f"cameras {missing} of {SCHEMA_FILE} are not inputs of the model; the checkpoint dir is inconsistent"
            )

    def _action_range(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Per-dim raw action (min, max) of the training data, from the postprocessor's stats."""
        for step in getattr(self.postprocessor, "steps", []):
            stats = getattr(step, "stats", None) or {}
            if ACTION in stats and "min" in stats[ACTION] and "max" in stats[ACTION]:
                low = torch.as_tensor(np.asarray(stats[ACTION]["min"]), dtype=torch.float32).flatten()
                high = torch.as_tensor(np.asarray(stats[ACTION]["max"]), dtype=torch.float32).flatten()
                if low.numel() == self.schema.action_dim and high.numel() == self.schema.action_dim:
                    return low, high
        if self.clip_actions:
            raise KuavoError(
                "the checkpoint's postprocessor holds no action min/max stats, so actions cannot be clipped; "
                "pass clip_actions=False (at your own risk) or use a checkpoint written by kuavo_train"
            )
        return None, None

    # ------------------------------------------------------------------ info

    @property
    def trained_instructions(self) -> list[str]:
        """The instructions the model was trained on, in curriculum order."""
        return [task.instruction for task in self.schema.tasks]

    @property
    def chunk_size(self) -> int:
        return int(self.policy.config.chunk_size)

    @property
    def n_action_steps(self) -> int:
        return int(self.policy.config.n_action_steps)

    def noise_shape(self, batch_size: int = 1) -> tuple[int, int, int]:
        """Shape of the ``noise`` argument: (B, chunk_size, max_action_dim), standard normal."""
        return (batch_size, self.chunk_size, int(self.policy.config.max_action_dim))

    def action_bounds(self, instruction: str | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(low, high) the actions are clipped to (the task's own dims when ``instruction`` is given)."""
        if self._action_min is None:
            return None
        span = self._action_max - self._action_min
        low, high = self._action_min - self.clip_margin * span, self._action_max + self.clip_margin * span
        if instruction is not None:
            dim = self.resolve_instruction(instruction).action_dim
            low, high = low[:dim], high[:dim]
        return low, high

    def resolve_instruction(self, instruction: str) -> TaskFeatures:
        """The trained task an instruction means (SPEC §11); KuavoError when none or several."""
        if not isinstance(instruction, str):
            raise KuavoError(f"the instruction ('{TASK}') must be a string, got {type(instruction).__name__}")
        if instruction in self._resolved:
            return self._resolved[instruction]
        query = normalize_instruction(instruction)
        prefix = normalize_instruction(_ELLIPSIS.sub("", instruction))
        listing = "; ".join(f"task {t.task_id}: {t.instruction!r}" for t in self.schema.tasks)
        if not query or not prefix:
            raise KuavoError(f"the instruction is empty; use one the model was trained on ({listing})")
        exact = [t for t in self.schema.tasks if normalize_instruction(t.instruction) == query]
        if exact:
            task = exact[0]
        else:
            matches = [t for t in self.schema.tasks if normalize_instruction(t.instruction).startswith(prefix)]
            if len(matches) != 1:
                what = (
                    "matches several trained instructions"
                    if matches
                    else "is not a trained instruction (nor a prefix of one)"
                )
                raise KuavoError(f"instruction {instruction!r} {what}; trained instructions: {listing}")
            task = matches[0]
            logger.warning(
                "instruction %r is not exact; using the trained instruction of task %d (%s): %r",
                instruction,
                task.task_id,
                task.name,
                task.instruction,
            )
        self._resolved[instruction] = task
        return task

    def task_action_dim(self, instruction: str) -> int:
        """How many action values the wrapper returns for this instruction (16, or 20 for sorting)."""
        return self.resolve_instruction(instruction).action_dim

    # ------------------------------------------------------------------ inference

    def reset(self) -> None:
        """Clear the action queue; call it at the start of every episode (a new instruction does it itself)."""
        self.policy.reset()
        self._last_call = None

    @torch.no_grad()
    def select_action(self, batch: Mapping[str, Any], noise: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """The next raw action: (action_dim,) for an unbatched observation, (B, action_dim) for a batched one.

        ``noise`` (B, chunk_size, max_action_dim), used only when the queue is empty and the model runs.
        """
        model_batch, tasks, batched = self._prepare(batch)
        action = self.policy.select_action(model_batch, noise=self._noise(noise, len(tasks)))  # (B, A) normalized
        action = self._finish(action, tasks)
        return action if batched else action[0]

    @torch.no_grad()
    def predict_action_chunk(
        self, batch: Mapping[str, Any], noise: torch.Tensor | np.ndarray | None = None
    ) -> torch.Tensor:
        """A whole raw action chunk (B, n_action_steps, action_dim), B = 1 for an unbatched observation.

        Does not touch the action queue (as in lerobot); ``noise`` as in :meth:`select_action`.
        """
        model_batch, tasks, _ = self._prepare(batch)
        chunk = self.policy.predict_action_chunk(model_batch, noise=self._noise(noise, len(tasks)))
        return self._finish(chunk[:, : self.n_action_steps], tasks)

    __call__ = select_action

    def _prepare(self, batch: Mapping[str, Any]) -> tuple[dict, list[TaskFeatures], bool]:
        """Raw observation -> the preprocessed model batch, each row's task, and whether the input was batched."""
        if not isinstance(batch, Mapping):
            raise KuavoError(
                f"the observation must be a dict of camera images, '{STATE}' and '{TASK}', got {type(batch).__name__}"
            )
        if STATE not in batch:
            raise KuavoError(f"the observation has no '{STATE}' (the robot's joint state of the task's own size)")
        if TASK not in batch:
            raise KuavoError(
                f"the observation has no '{TASK}' (the language instruction); trained: {self.trained_instructions}"
            )
        state = _as_tensor(batch[STATE], STATE).float()
        if state.ndim not in (1, 2):
            raise KuavoError(f"'{STATE}' must be (state_dim,) or (B, state_dim), got shape {tuple(state.shape)}")
        batched = state.ndim == 2
        if not batched:
            state = state.unsqueeze(0)
        size = state.shape[0]
        tasks = self._tasks(batch[TASK], size, batched)

        widths = {task.state_dim for task in tasks}
        if state.shape[1] not in widths | {self.schema.state_dim}:
            raise KuavoError(
                f"'{STATE}' has {state.shape[1]} values; task {tasks[0].task_id} ({tasks[0].name}) expects "
                f"{tasks[0].state_dim}"
            )
        if not torch.isfinite(state).all():
            raise KuavoError(f"'{STATE}' holds NaN/inf values; refusing to act on them")
        model_batch: dict[str, Any] = {STATE: pad_last_dim(state, self.schema.state_dim).to(self.device)}
        for key, shape in self.schema.cameras.items():
            trained_without = all(key in task.missing_cameras for task in tasks)
            if key not in batch and not trained_without:
                cameras = [k for k in batch if str(k).startswith(CAMERA_PREFIX)]
                raise KuavoError(
                    f"camera '{key}' is missing from the observation (the model needs {list(self.schema.cameras)}; "
                    f"got {cameras})"
                )
            if key in batch:
                model_batch[key] = self._image(batch[key], key, shape, batched, size)
            else:  # as in training: a blank image that the padding mask hides from attention
                model_batch[key] = torch.zeros(size, *shape, device=self.device)
            if self.schema.masks_cameras:
                present = [key in batch and key not in task.missing_cameras for task in tasks]
                model_batch[camera_padding_mask_key(key)] = torch.tensor(present, device=self.device)
        model_batch[TASK] = [task.instruction for task in tasks]

        self._route(tasks)
        call = (tuple(task.task_id for task in tasks), size)
        if self._last_call is not None and call != self._last_call:
            self.policy.reset()  # the queued actions belong to another instruction (or batch size)
        self._last_call = call
        return self.preprocessor(model_batch), tasks, batched

    def _tasks(self, value, size: int, batched: bool) -> list[TaskFeatures]:
        if isinstance(value, str):
            tasks = [self.resolve_instruction(value)] * size
        elif isinstance(value, Sequence) and batched and all(isinstance(v, str) for v in value):
            if len(value) != size:
                raise KuavoError(f"'{TASK}' has {len(value)} instructions for a batch of {size} observations")
            tasks = [self.resolve_instruction(v) for v in value]
        else:
            raise KuavoError(f"'{TASK}' must be an instruction string (or, for a batch, a list of them), got {value!r}")
        if len({task.action_dim for task in tasks}) > 1:
            raise KuavoError(
                f"one batch mixes tasks with different action sizes ({sorted({t.name for t in tasks})}); "
                "run them as separate batches"
            )
        return tasks

    def _route(self, tasks: list[TaskFeatures]) -> None:
        """Per-task LoRA: the adapter of the batch's task (the base for a task without one)."""
        if self.adapters is None:
            return
        names = {self.adapters.task_adapters.get(task.task_id) for task in tasks}
        if len(names) > 1:
            raise KuavoError(
                f"one batch mixes tasks of different LoRA adapters ({sorted(map(str, names))}); "
                "run them as separate batches"
            )
        name = names.pop()
        if not self._routed or name != self.active_adapter:
            self.adapters.route(tasks[0].task_id)
            self.active_adapter, self._routed = name, True

    def _image(self, value, key: str, shape: tuple[int, int, int], batched: bool, size: int) -> torch.Tensor:
        """(B, C, H, W) float32 in [0, 1] on the model's device, at the training resolution."""
        image = _as_tensor(value, key)
        if image.ndim != (4 if batched else 3):
            want = "(B, H, W, C) or (B, C, H, W)" if batched else "(H, W, C) or (C, H, W)"
            raise KuavoError(
                f"'{key}' has shape {tuple(image.shape)}; expected {want} like '{STATE}' "
                f"({'batched' if batched else 'unbatched'})"
            )
        if not batched:
            image = image.unsqueeze(0)
        if image.shape[0] != size:
            raise KuavoError(f"'{key}' has a batch of {image.shape[0]}, '{STATE}' of {size}")
        channels, height, width = shape
        channels_first, channels_last = image.shape[1] == channels, image.shape[-1] == channels
        if channels_last and (not channels_first or image.dtype == torch.uint8):
            image = image.permute(0, 3, 1, 2)
        elif not channels_first:
            raise KuavoError(
                f"'{key}' has shape {tuple(image.shape[1:])}; expected {channels} channels first (C, H, W) or "
                f"last (H, W, C)"
            )
        image = image.to(self.device)
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
        elif image.is_floating_point():
            image = image.float()
            low, high = float(image.min()), float(image.max())
            if high > _FLOAT_IMAGE_MAX or low < -1e-3:
                raise KuavoError(
                    f"'{key}' is a float image with values in [{low:.3g}, {high:.3g}]; float images must be in "
                    "[0, 1] (pass uint8 for 0-255 images)"
                )
        else:
            raise KuavoError(f"'{key}' has dtype {image.dtype}; pass uint8 (0-255) or float (0-1) RGB images")
        if tuple(image.shape[-2:]) != (height, width):
            if key not in self._resized_warned:
                self._resized_warned.add(key)
                logger.warning(
                    "'%s' is %dx%d but the model was trained on %dx%d images; resizing",
                    key,
                    image.shape[-2],
                    image.shape[-1],
                    height,
                    width,
                )
            image = F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        return image.contiguous()

    def _noise(self, noise, size: int) -> torch.Tensor | None:
        if noise is None:
            return None
        noise = _as_tensor(noise, "noise").float()
        if noise.ndim == 2:
            noise = noise.unsqueeze(0)
        if tuple(noise.shape) != self.noise_shape(size):
            raise KuavoError(
                f"noise must have shape {self.noise_shape(size)} (B, chunk_size, max_action_dim), "
                f"got {tuple(noise.shape)}"
            )
        return noise.to(self.device)

    def _finish(self, action: torch.Tensor, tasks: list[TaskFeatures]) -> torch.Tensor:
        """Normalized model output (..., schema action_dim) -> raw actions of the task's own size, clipped."""
        action = self.postprocessor(action)[..., : tasks[0].action_dim]
        if self.clip_actions:
            low, high = self.action_bounds()
            dim = tasks[0].action_dim
            action = torch.clamp(action, low[:dim].to(action.device), high[:dim].to(action.device))
        return action

    # ------------------------------------------------------------------ examples

    def make_example_observation(
        self, task_id: int | None = None, batch: bool = False, batch_size: int = 2, seed: int | None = None
    ) -> dict[str, Any]:
        """A valid random raw observation (numpy uint8 HWC images, float32 state, the task's instruction).

        ``task_id`` None = the first trained task; ``batch`` True adds a leading batch dim of ``batch_size``.
        """
        task = self.schema.tasks[0] if task_id is None else self.schema.task(task_id)
        rng = np.random.default_rng(seed)
        lead = (batch_size,) if batch else ()
        obs: dict[str, Any] = {}
        for key, (channels, height, width) in self.schema.cameras.items():
            obs[key] = rng.integers(0, 256, size=(*lead, height, width, channels), dtype=np.uint8)
        low, high = self._state_range(task.state_dim)
        obs[STATE] = rng.uniform(low, high, size=(*lead, task.state_dim)).astype(np.float32)
        obs[TASK] = task.instruction
        return obs

    def _state_range(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        for step in getattr(self.preprocessor, "steps", []):
            stats = getattr(step, "stats", None) or {}
            if STATE in stats and "min" in stats[STATE] and "max" in stats[STATE]:
                return np.asarray(stats[STATE]["min"])[:dim], np.asarray(stats[STATE]["max"])[:dim]
        return -np.ones(dim), np.ones(dim)

    def __repr__(self) -> str:
        return (
            f"SmolVLAPolicyWrapper({self.checkpoint_dir}, device={self.device}, tasks="
            f"{[(t.task_id, t.name, t.action_dim) for t in self.schema.tasks]}, clip_actions={self.clip_actions})"
        )


def _as_tensor(value, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise KuavoError(f"'{name}' is an object array; pass a numeric array")
        return torch.from_numpy(np.ascontiguousarray(value) if value.flags.writeable else value.copy())
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise KuavoError(f"'{name}' is not an array ({type(value).__name__})") from exc
