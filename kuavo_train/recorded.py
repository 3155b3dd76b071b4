"""A finished run knows how it was configured: find its root and rebuild its config from what a stage recorded.

Each stage's ``training_results.json`` keeps the config dir and name, the overrides it was run with
and every task's resolved data root, so `evaluate` and `report` need only a path.
"""

from __future__ import annotations

import json
from pathlib import Path

from kuavo_train.config.args import quoted
from kuavo_train.config.load import load_config
from kuavo_train.config.schema import Config
from kuavo_train.errors import KuavoError
from kuavo_train.layout import (
    BEST_DIR,
    CONFIG_FILE,
    CURRICULUM_RESULTS_FILE,
    SPLITS_FILE,
    STAGE_RESULTS_FILE,
    RunPaths,
    StagePaths,
)


def run_root_of(path: Path) -> Path:
    """The run dir (training.output_directory) of ``path``: the run dir itself, a stage dir or a checkpoint dir."""
    path = Path(path).expanduser().resolve()
    for candidate in (path, path.parent, path.parent.parent):
        if RunPaths(candidate).is_run_dir():
            return candidate
    if not path.exists():
        raise KuavoError(f"{path} does not exist; pass a run dir (training.output_directory) or a checkpoint dir in it")
    raise KuavoError(
        f"{path} is not inside a kuavo_train run (no {SPLITS_FILE} or {CURRICULUM_RESULTS_FILE} in it or the "
        "two dirs above); "
        "pass a run dir like outputs/train/smolvla_sequential or a checkpoint like .../task4_sorting/best"
    )


def checkpoint_of(path: Path) -> Path:
    """A checkpoint dir as is; a stage dir's best/; a run dir's final model (its last complete stage's best/)."""
    path = Path(path).expanduser().resolve()
    if (path / CONFIG_FILE).is_file():
        return path
    stage = StagePaths(run_root=path.parent, stage_dir=path)
    if stage.results.is_file():
        return stage.best
    return final_checkpoint(run_root_of(path))


def final_checkpoint(run_root: Path) -> Path:
    """best/ of the last stage of ``run_root`` that completed."""
    run = RunPaths(run_root)
    stages = sorted(
        (s for s in map(run.stage, _child_names(run_root)) if s.results.is_file() and s.best.is_dir()),
        key=lambda s: _read(s.results).get("stage", 0),
    )
    if not stages:
        raise KuavoError(
            f"{run_root} has no complete stage yet (no <stage>/{BEST_DIR} with {STAGE_RESULTS_FILE}); "
            "train stage 1 first"
        )
    return stages[-1].best


def stage_results_of(checkpoint: Path) -> dict:
    results = Path(checkpoint).resolve().parent / STAGE_RESULTS_FILE
    if not results.is_file():
        raise KuavoError(
            f"{results} not found: {checkpoint} is not a checkpoint of a complete stage "
            "(pass <run>/<stage>/best, or the run dir for its final model)"
        )
    return _read(results)


def recorded_config(checkpoint: Path, extra_overrides: list[str] = ()) -> Config:
    """The config ``checkpoint``'s stage was trained with (same files, overrides and data roots) +
    ``extra_overrides``."""
    checkpoint = Path(checkpoint).resolve()
    saved = stage_results_of(checkpoint).get("config", {})
    if "config_name" not in saved or "overrides" not in saved:
        raise KuavoError(
            f"{checkpoint.parent / STAGE_RESULTS_FILE} was written by an older kuavo_train and does not record its "
            "config; pass --config-name NAME and the training overrides"
        )
    kept = [o for o in saved["overrides"] if o.partition("=")[0].lstrip("+~") != "task"]  # task.<field> stay: same task
    roots = [f"data.roots.{name}={root}" for name, root in saved.get("data_roots", {}).items()]
    fixed = [
        f"task={saved['task_file']}",
        f"training.output_directory={quoted(run_root_of(checkpoint))}",
        f"data.cache_dir={quoted(saved['data']['cache_dir'])}",
        "training.wandb.enable=false",
    ]  # logging settings of the training run do not matter here
    return load_config(saved["config_dir"], saved["config_name"], [*kept, *roots, *fixed, *extra_overrides])


def _child_names(path: Path) -> list[str]:
    return [child.name for child in path.iterdir() if child.is_dir()]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise KuavoError(f"cannot read {path} ({exc}); it is written at the end of a stage: rerun that stage") from exc
