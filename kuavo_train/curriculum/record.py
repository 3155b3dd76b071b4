"""What a finished stage records in ``training_results.json`` (read back by reporting and ``kuavo_train.recorded``)."""

from __future__ import annotations

import subprocess
from dataclasses import asdict
from pathlib import Path

from kuavo_train.config.schema import Config
from kuavo_train.files import weights_sha256
from kuavo_train.policy.factory import count_parameters


def stage_record(runner, losses, seen, criteria, verdicts, timings) -> dict:
    """``training_results.json`` of a finished stage (``runner``: its StageRunner)."""
    cfg, task = runner.cfg, runner.task
    parent = Path(runner.init_path) if runner.init_path and Path(str(runner.init_path)).is_dir() else None
    return {
        "task_id": task.id,
        "task_name": task.name,
        "stage": runner.stage,
        "description": task.description,
        "language_instruction": task.language_instruction,
        "best_loss": runner.state.best_loss,
        "best_epoch": runner.state.best_epoch,
        "final_validation": {str(k): v for k, v in seen.items()},
        "validation_all_tasks": {str(k): v for k, v in losses.items()},
        "training_epochs": runner.state.epoch,
        "learning_rate": task.training.lr,
        "optimizer_steps": runner.state.step,
        "skipped_nonfinite_steps": runner.state.skipped_steps,
        "parameters": asdict(count_parameters(runner.policy)),  # total / trainable (a LoRA stage: its adapter)
        "replay_mix": {f"task{k}": v for k, v in cfg.replay_mix(runner.stage).items()},
        "samples_per_epoch": len(runner.sampler),
        "batch_size": cfg.training.batch_size,
        "seed": cfg.training.seed,
        "gradient_accumulation_steps": cfg.training.gradient_accumulation_steps,
        "effective_batch_size": cfg.training.batch_size * cfg.training.gradient_accumulation_steps,
        "criteria": [
            {"task_id": c.task_id, "role": c.role, "loss": c.loss, "limit": c.limit, "passed": c.passed}
            for c in criteria
        ],
        "forgetting": [
            {"task_id": v.task_id, "loss": v.loss, "reference": v.reference, "verdict": v.label} for v in verdicts
        ],
        "validation_history": runner.state.validations,
        "train_loss_per_epoch": runner.state.train_losses,
        "timings_s": timings,
        "parent_checkpoint": {
            "path": str(runner.init_path) if runner.init_path else None,
            "model_sha256": weights_sha256(parent) if parent else None,  # with a LoRA dir's adapters
        },
        "stats_hash": runner.stats_hash,
        "git_commit": _git_commit(),
        "config": resolved_config(cfg),
    }


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def resolved_config(cfg: Config) -> dict:
    data = asdict(cfg)
    data.pop("tasks", None)
    data["data_roots"] = {task.name: task.data.root for task in cfg.tasks}  # read back by recorded.py
    return data
