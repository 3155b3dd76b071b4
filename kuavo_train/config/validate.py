"""Semantic checks of a loaded ``Config``: each failure is one line naming the key and the fix."""

from __future__ import annotations

import importlib.util
import math
import re

from kuavo_train.config.schema import FEATURE_CACHE_MODES, VIDEO_BACKENDS, Config, PeftSettings
from kuavo_train.errors import KuavoError

_RATIO_TOLERANCE = 1e-6


def validate_config(cfg: Config) -> None:
    _validate_tasks(cfg)
    _validate_policy(cfg)
    _validate_training(cfg)
    _validate_replay(cfg)
    _validate_criteria(cfg)
    _validate_compile(cfg)
    _check(
        cfg.data.video_backend in VIDEO_BACKENDS,
        f"data.video_backend must be one of {', '.join(VIDEO_BACKENDS)}, got '{cfg.data.video_backend}'",
    )
    _check(
        cfg.data.feature_cache in FEATURE_CACHE_MODES,
        f"data.feature_cache must be one of {', '.join(FEATURE_CACHE_MODES)}, got '{cfg.data.feature_cache}'",
    )
    _check(
        cfg.data.feature_cache != "on" or cfg.policy.exact_feature_cache_level() is not None,
        "data.feature_cache=on needs a frozen vision encoder (policy.freeze_vision_encoder=true or "
        "policy.train_expert_only=true): a training encoder changes the embeddings; use data.feature_cache=auto",
    )


def _validate_compile(cfg: Config) -> None:
    if not cfg.training.compile:
        return
    import torch._dynamo

    backends = torch._dynamo.list_backends(exclude_tags=())
    _check(
        cfg.training.compile_backend in backends,
        f"training.compile_backend must be one of {', '.join(sorted(backends))}, got '{cfg.training.compile_backend}'",
    )


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise KuavoError(message)


def _validate_tasks(cfg: Config) -> None:
    ids = [t.id for t in cfg.tasks]
    names = [t.name for t in cfg.tasks]
    _check(len(set(ids)) == len(ids), f"curriculum task ids must be unique, got {ids}")
    _check(len(set(names)) == len(names), f"curriculum task names must be unique, got {names}")
    for position, (task, task_file) in enumerate(zip(cfg.tasks, cfg.curriculum, strict=True), start=1):
        where = f"{task_file}.yaml"
        _check(task.id >= 1, f"{where}: id must be >= 1, got {task.id}")
        _check(bool(task.name.strip()), f"{where}: name must not be empty")
        _check(bool(task.language_instruction.strip()), f"{where}: language_instruction must not be empty")
        _check(
            task.stage is None or task.stage == position,
            f"{where}: stage is {task.stage} but the task is at position {position} of `curriculum`; "
            f"fix `stage` or the curriculum order",
        )
        _check(
            task.training.lr > 0 and math.isfinite(task.training.lr),
            f"{where}: training.lr must be > 0, got {task.training.lr}",
        )
        _check(task.training.max_epoch >= 1, f"{where}: training.max_epoch must be >= 1, got {task.training.max_epoch}")
        _check(bool(task.data.cameras), f"{where}: data.cameras must list at least one camera")
        for key in ("state_dim", "action_dim"):
            value = getattr(task.data, key)
            _check(value is None or value >= 1, f"{where}: data.{key} must be >= 1 or null, got {value}")
        if task.data.episodes_to_use is not None:
            _check(len(task.data.episodes_to_use) > 0, f"{where}: data.episodes_to_use must be null or non-empty")
    instructions = [t.language_instruction.strip().lower() for t in cfg.tasks]
    _check(
        len(set(instructions)) == len(instructions),
        "two curriculum tasks share a language_instruction; the policy could not tell them apart",
    )


def _validate_policy(cfg: Config) -> None:
    p = cfg.policy
    _check(p.chunk_size >= 1, f"policy.chunk_size must be >= 1, got {p.chunk_size}")
    _check(
        1 <= p.n_action_steps <= p.chunk_size,
        f"policy.n_action_steps must be in [1, chunk_size={p.chunk_size}], got {p.n_action_steps}",
    )
    _check(p.num_vlm_layers >= 1, f"policy.num_vlm_layers must be >= 1, got {p.num_vlm_layers}")
    _check(p.attention in ("sdpa", "eager"), f"policy.attention must be sdpa or eager, got {p.attention!r}")
    _check(
        0 <= p.freeze_vlm_layers <= p.num_vlm_layers,
        f"policy.freeze_vlm_layers must be in [0, num_vlm_layers={p.num_vlm_layers}], got {p.freeze_vlm_layers}",
    )
    _check(
        len(p.resize_imgs_with_padding) == 2 and min(p.resize_imgs_with_padding) > 0,
        f"policy.resize_imgs_with_padding must be [width, height] > 0, got {p.resize_imgs_with_padding}",
    )
    for task in cfg.tasks:
        for key, limit in (("state_dim", p.max_state_dim), ("action_dim", p.max_action_dim)):
            value = getattr(task.data, key)
            _check(
                value is None or value <= limit,
                f"task {task.name}: data.{key}={value} exceeds policy.max_{key}={limit}; raise policy.max_{key}",
            )
    _check(
        0 <= p.scheduler.warmup_ratio < 1,
        f"policy.scheduler.warmup_ratio must be in [0, 1), got {p.scheduler.warmup_ratio}",
    )
    _check(
        0 <= p.scheduler.decay_lr_ratio <= 1,
        f"policy.scheduler.decay_lr_ratio must be in [0, 1], got {p.scheduler.decay_lr_ratio}",
    )
    _check(
        len(p.optimizer.betas) == 2 and all(0 <= b < 1 for b in p.optimizer.betas),
        f"policy.optimizer.betas must be two numbers in [0, 1), got {p.optimizer.betas}",
    )
    _check(
        p.optimizer.grad_clip_norm >= 0,
        f"policy.optimizer.grad_clip_norm must be >= 0, got {p.optimizer.grad_clip_norm}",
    )
    _validate_peft(p.peft)


def _validate_peft(peft: PeftSettings) -> None:
    _check(
        peft.mode in ("off", "merge", "per_task"),
        f"policy.peft.mode must be off, merge or per_task, got {peft.mode!r}",
    )
    _check(peft.rank >= 1, f"policy.peft.rank must be >= 1, got {peft.rank}")
    _check(peft.alpha > 0, f"policy.peft.alpha must be > 0, got {peft.alpha}")
    _check(0 <= peft.dropout < 1, f"policy.peft.dropout must be in [0, 1), got {peft.dropout}")
    if peft.targets is not None:
        try:
            re.compile(peft.targets)
        except re.error as exc:
            raise KuavoError(f"policy.peft.targets is not a valid regex ({exc}): {peft.targets!r}") from exc


def _validate_training(cfg: Config) -> None:
    t = cfg.training
    positive = (
        "batch_size",
        "gradient_accumulation_steps",
        "save_freq_epoch",
        "validation_freq_epoch",
        "validation_episodes",
        "max_consecutive_nonfinite",
    )
    for key in positive:
        _check(getattr(t, key) >= 1, f"training.{key} must be >= 1, got {getattr(t, key)}")
    _check(t.lr_scale > 0 and math.isfinite(t.lr_scale), f"training.lr_scale must be > 0, got {t.lr_scale}")
    _check(t.num_workers >= 0, f"training.num_workers must be >= 0, got {t.num_workers}")
    _check(t.keep_last_epochs >= 0, f"training.keep_last_epochs must be >= 0, got {t.keep_last_epochs}")
    for key in ("max_steps_per_epoch", "steps_per_epoch", "max_validation_samples", "epochs_override"):
        value = getattr(t, key)
        _check(value is None or value >= 1, f"training.{key} must be >= 1 or null, got {value}")
    _check(
        t.mixed_precision in ("bf16", "no"),
        f"training.mixed_precision must be 'bf16' or 'no', got '{t.mixed_precision}'",
    )
    _check(
        t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda") or t.device == "mps",
        f"training.device must be auto, cpu, cuda or cuda:N, got '{t.device}'",
    )
    _check(bool(t.output_directory.strip()), "training.output_directory must not be empty")
    _validate_wandb(cfg)


WANDB_MODES = ("offline", "online", "disabled")


def _validate_wandb(cfg: Config) -> None:
    w = cfg.training.wandb
    _check(w.mode in WANDB_MODES, f"training.wandb.mode must be one of {', '.join(WANDB_MODES)}, got '{w.mode}'")
    _check(bool(w.project.strip()), "training.wandb.project must not be empty")
    if w.enable:
        _check(
            importlib.util.find_spec("wandb") is not None,
            "training.wandb.enable=true needs the wandb package: `pip install -e '.[wandb]'` or `pip install wandb` "
            "(or set training.wandb.enable=false)",
        )


def _validate_replay(cfg: Config) -> None:
    seq = cfg.sequential
    _check(
        seq.replay_strategy in ("ratio", "none"),
        f"sequential.replay_strategy must be 'ratio' or 'none', got '{seq.replay_strategy}'",
    )
    cap = seq.replay_max_episodes_per_task
    _check(cap is None or cap >= 1, f"sequential.replay_max_episodes_per_task must be >= 1 or null, got {cap}")
    if not seq.use_replay_buffer or seq.replay_strategy == "none":
        return
    for stage in range(2, len(cfg.tasks) + 1):
        key = f"sequential.stage{stage}_replay"
        _check(stage in seq.stage_replay, f"{key} is missing; give the share of each task 1..{stage} (summing to 1)")
        ratios = seq.stage_replay[stage]
        allowed = {t.key for t in cfg.tasks[:stage]}
        for name, share in ratios.items():
            _check(name in allowed, f"{key}.{name}: not a task of stages 1..{stage} (allowed: {sorted(allowed)})")
            _check(share >= 0 and math.isfinite(share), f"{key}.{name} must be >= 0, got {share}")
        total = sum(ratios.values())
        _check(abs(total - 1.0) <= _RATIO_TOLERANCE, f"{key} shares sum to {total:.4g}, they must sum to 1")
        current = cfg.tasks[stage - 1].key
        _check(ratios.get(current, 0) > 0, f"{key}.{current} (the stage's own task) must be > 0")


def _validate_criteria(cfg: Config) -> None:
    c = cfg.criteria
    _check(c.current_task_max_loss > 0, f"criteria.current_task_max_loss must be > 0, got {c.current_task_max_loss}")
    _check(c.retained_ratio >= 1, f"criteria.retained_ratio must be >= 1, got {c.retained_ratio}")
    for stage, limit in c.previous_task_max_loss.items():
        _check(limit > 0, f"criteria.previous_task_max_loss.{stage} must be > 0, got {limit}")
