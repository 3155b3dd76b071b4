"""Where this config's run and stages live (names from ``kuavo_train.layout``), what state a stage is in, and the
command that trains a stage."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from kuavo_train.config.args import DEFAULT_CONFIG_DIR, SCRIPT_DIR
from kuavo_train.config.schema import Config, TaskConfig
from kuavo_train.errors import KuavoError
from kuavo_train.layout import RunPaths, StagePaths, is_complete_policy_dir


def stage_paths(cfg: Config, task: TaskConfig | None = None) -> StagePaths:
    return run_paths(cfg).stage((task or cfg.task).dirname)


def run_paths(cfg: Config) -> RunPaths:
    return RunPaths(Path(cfg.training.output_directory).expanduser())


def is_stage_complete(paths: StagePaths) -> bool:
    return is_complete_policy_dir(paths.best) and paths.results.is_file() and not paths.retraining_marker.exists()


def stage_command(cfg: Config, task: TaskConfig) -> str:
    """The command that trains ``task``'s stage with this run's config and overrides, runnable as printed
    from the current directory (``task.<field>`` overrides belong to the current stage and are left out)."""
    script = SCRIPT_DIR / "train_smolvla_sequential.py"
    config_path = "../configs/policy" if Path(cfg.config_dir) == DEFAULT_CONFIG_DIR else cfg.config_dir
    kept = [o for o in cfg.overrides if o.partition("=")[0].lstrip("+~").split(".")[0] != "task"]
    task_file = cfg.curriculum[cfg.tasks.index(task)]
    return shlex.join(
        [
            _shown_path(Path(sys.executable)),
            _shown_path(script),
            f"--config-path={config_path}",
            f"--config-name={cfg.config_name}",
            f"task={task_file}",
            *kept,
        ]
    )


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (shorter, still runnable)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def previous_best(cfg: Config) -> Path:
    """Stage N-1's best/ (stage N starts from it); a clear error names the command that makes it."""
    previous = cfg.tasks[cfg.stage - 2]
    paths = stage_paths(cfg, previous)
    if not is_stage_complete(paths):
        raise KuavoError(
            f"stage {cfg.stage} ({cfg.task.name}) starts from stage {cfg.stage - 1}'s checkpoint {paths.best}, "
            "which does not exist "
            f"or is incomplete; train stage {cfg.stage - 1} first: {stage_command(cfg, previous)}"
        )
    return paths.best
