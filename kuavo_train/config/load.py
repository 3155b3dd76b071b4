"""Hydra YAML -> typed ``Config``, converted once and validated.

Why not a plain ``@hydra.main`` with a ``task`` config group: the seed command passes
``task=tasks/task1_moving_grasp``, which for a ``task`` group would mean
``task/tasks/task1_moving_grasp.yaml``. So ``task`` stays a string key naming a file under the
config dir, and this module composes the base config and each task file with Hydra's compose API:

* ``key=value`` overrides go to the base config (Hydra override grammar, incl. ``+key=``),
* ``task=<file>`` picks the stage's task file,
* ``task.<field>=value`` overrides are applied to that task file (e.g. ``task.data.root=/data/t1``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kuavo_train.config.args import DEFAULT_CONFIG_DIR, DEFAULT_CONFIG_NAME, REPO_ROOT
from kuavo_train.config.schema import (
    Config,
    CriteriaConfig,
    DataConfig,
    PolicyConfig,
    SequentialConfig,
    TaskConfig,
    TrainingConfig,
)
from kuavo_train.config.validate import validate_config
from kuavo_train.errors import KuavoError, first_line

__all__ = ["DEFAULT_CONFIG_DIR", "DEFAULT_CONFIG_NAME", "REPO_ROOT", "load_config"]
_SECTIONS = {
    "policy": PolicyConfig,
    "training": TrainingConfig,
    "criteria": CriteriaConfig,
    "data": DataConfig,
}
_STAGE_REPLAY_KEY = re.compile(r"^stage(\d+)_replay$")


def load_config(
    config_dir: str | Path = DEFAULT_CONFIG_DIR,
    config_name: str = DEFAULT_CONFIG_NAME,
    overrides: list[str] | tuple[str, ...] = (),
) -> Config:
    """Compose ``<config_dir>/<config_name>.yaml`` with ``overrides`` into a validated ``Config``."""
    config_dir = Path(config_dir).expanduser().resolve()
    if not (config_dir / f"{config_name}.yaml").is_file():
        raise KuavoError(
            f"config file {config_dir / (config_name + '.yaml')} not found; check --config-path/--config-name"
        )
    task_file, task_overrides, base_overrides, root_overrides = _split_overrides(overrides)
    base = _compose(config_dir, config_name, base_overrides)
    task_file = task_file or _require_str(base, "task")
    curriculum = [str(t) for t in _require(base, "curriculum")]
    if task_file not in curriculum:
        raise KuavoError(
            f"task '{task_file}' is not in the curriculum {curriculum}; add it to `curriculum` or pick one of those"
        )
    tasks = [_load_task(config_dir, name, task_overrides if name == task_file else []) for name in curriculum]
    data = _to_dataclass(DataConfig, base.get("data", {}), "data")
    data.roots.update(root_overrides)
    root_given = any(o.lstrip("+~").startswith("data.root=") for o in task_overrides)
    _apply_root_overrides(tasks, data, current_root_given=root_given, current=task_file, curriculum=curriculum)
    unknown = set(base.keys()) - {"task", "curriculum", "sequential", *_SECTIONS}
    if unknown:
        raise KuavoError(f"unknown top-level config key(s) {sorted(unknown)} in {config_name}.yaml/overrides")
    cfg = Config(
        task_file=task_file,
        curriculum=curriculum,
        task=tasks[curriculum.index(task_file)],
        tasks=tasks,
        policy=_to_dataclass(PolicyConfig, base.get("policy", {}), "policy"),
        training=_to_dataclass(TrainingConfig, base.get("training", {}), "training"),
        sequential=_sequential_config(base.get("sequential", {})),
        criteria=_to_dataclass(CriteriaConfig, base.get("criteria", {}), "criteria"),
        data=data,
        config_dir=str(config_dir),
        config_name=config_name,
        overrides=list(overrides),
    )
    _finalize(cfg)
    validate_config(cfg)
    return cfg


def _finalize(cfg: Config) -> None:
    """Apply cross-section settings and make local paths absolute (checkpoints must not depend on the cwd)."""
    if cfg.training.epochs_override is not None:
        for task in cfg.tasks:
            task.training.max_epoch = cfg.training.epochs_override
    for task in cfg.tasks:
        task.training.lr *= cfg.training.lr_scale
        task.data.root = str(Path(task.data.root).expanduser().absolute())
    cfg.training.output_directory = str(Path(cfg.training.output_directory).expanduser().absolute())
    cfg.data.cache_dir = str(Path(cfg.data.cache_dir).expanduser().absolute())
    for key in ("vlm_model_name", "pretrained_path"):
        value = getattr(cfg.policy, key)
        if value is not None and Path(value).expanduser().exists():
            setattr(cfg.policy, key, str(Path(value).expanduser().absolute()))


def _split_overrides(overrides) -> tuple[str | None, list[str], list[str], dict[str, str]]:
    """Separate ``task=...``, ``task.<field>=...`` and ``data.roots.<task name>=...`` from the base overrides.

    ``data.roots.<name>`` is applied here rather than by Hydra so that it works on every config,
    whether or not its YAML lists that task under ``data.roots`` (the base config lists none).
    """
    task_file, task_overrides, base_overrides, roots = None, [], [], {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep and key.startswith("~"):  # Hydra's delete: ~data.roots.<name> drops a YAML entry
            base_overrides.append(item)
            continue
        if not sep:
            raise KuavoError(f"override '{item}' is not of the form key=value (or ~key to delete one)")
        bare = key.lstrip("+~")
        prefix = key[: len(key) - len(bare)]
        if key == "task":
            task_file = value.removesuffix(".yaml")
        elif bare.startswith("task."):
            task_overrides.append(f"{prefix}{bare.removeprefix('task.')}={value}")
        elif bare.startswith("data.roots.") and "~" not in prefix:
            name = bare.removeprefix("data.roots.")
            if not name or "." in name or not value:
                raise KuavoError(f"override '{item}' must look like data.roots.<task name>=/path/to/dataset")
            roots[name] = value
        else:
            base_overrides.append(item)
    return task_file, task_overrides, base_overrides, roots


def _compose(config_dir: Path, name: str, overrides: list[str]) -> DictConfig:
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return compose(config_name=name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        message = first_line(exc)
        bad_key = re.match(r"Could not override '([^']+)'", message)
        if bad_key:
            message = f"override '{bad_key.group(1)}' names no key of this config{_did_you_mean(bad_key.group(1))}"
        raise KuavoError(f"config {config_dir / name}.yaml: {message}") from exc


def _did_you_mean(key: str) -> str:
    known = {f.name for cls in (*_SECTIONS.values(), SequentialConfig, TaskConfig) for f in fields(cls)}
    known |= set(_field_names(TaskConfig))
    hint = difflib.get_close_matches(key.split(".")[-1], sorted(known), n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else "; check its spelling"


def _load_task(config_dir: Path, task_file: str, overrides: list[str]) -> TaskConfig:
    path = config_dir / f"{task_file}.yaml"
    if not path.is_file():
        raise KuavoError(f"task file {path} not found; task files live under {config_dir}/tasks/")
    raw = _compose(config_dir, task_file, overrides)
    return _to_dataclass(TaskConfig, raw, f"task ({path.name})")


def _apply_root_overrides(
    tasks, data: DataConfig, *, current_root_given: bool, current: str, curriculum: list[str]
) -> None:
    """`data.roots.<name>` replaces a task file's root (an explicit `task.data.root` was applied already)."""
    names = {t.name for t in tasks}
    for name in data.roots:
        if name not in names:
            raise KuavoError(f"data.roots.{name}: no task of that name in the curriculum (names: {sorted(names)})")
    for task, task_file in zip(tasks, curriculum, strict=True):
        explicit = task_file == current and current_root_given
        if task.name in data.roots and not explicit:
            task.data.root = data.roots[task.name]


def _sequential_config(node: Any) -> SequentialConfig:
    node = OmegaConf.create(node) if not isinstance(node, DictConfig) else node
    plain = {k: v for k, v in node.items() if not _STAGE_REPLAY_KEY.match(str(k))}
    cfg = _to_dataclass(SequentialConfig, plain, "sequential")
    for key, ratios in node.items():
        match = _STAGE_REPLAY_KEY.match(str(key))
        if match:
            if not isinstance(ratios, DictConfig):
                raise KuavoError(f"sequential.{key} must be a mapping like {{task1: 0.2, task2: 0.8}}")
            cfg.stage_replay[int(match.group(1))] = {
                str(k): _as_float(v, f"sequential.{key}.{k}") for k, v in ratios.items()
            }
    return cfg


def _to_dataclass(cls, node: Any, where: str):
    """Merge ``node`` onto the dataclass schema (typos and wrong types become one-line errors)."""
    schema = OmegaConf.structured(cls)
    try:
        merged = OmegaConf.merge(schema, node if node is not None else {})
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise KuavoError(_schema_error(exc, cls, where)) from exc


def _schema_error(exc: OmegaConfBaseException, cls, where: str) -> str:
    key = getattr(exc, "full_key", None) or ""
    section = where.split(" ")[0]
    full = f"{section}.{key}" if key else section
    message = first_line(exc)
    leaf = key.split(".")[-1] if key else ""
    if "not in" in message and leaf:
        candidates = _field_names(cls)
        hint = difflib.get_close_matches(leaf, candidates, n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        return f"unknown config key '{full}' in {where}{suggestion}; valid keys here: {sorted(candidates)}"
    if "Missing mandatory value" in message:
        return f"config key '{full}' in {where} must be set"
    return f"config key '{full}' in {where}: {message}"


def _field_names(cls) -> list[str]:
    names = [f.name for f in fields(cls)]
    for f in fields(cls):
        sub = f.default_factory() if callable(getattr(f, "default_factory", None)) else None
        if sub is not None and hasattr(sub, "__dataclass_fields__"):
            names += [s.name for s in fields(sub)]
    return names


def _require(node: DictConfig, key: str) -> Any:
    if key not in node or node[key] is None:
        raise KuavoError(f"config key '{key}' is missing")
    return node[key]


def _require_str(node: DictConfig, key: str) -> str:
    value = _require(node, key)
    if not isinstance(value, str):
        raise KuavoError(f"config key '{key}' must be a task file name like tasks/task1_moving_grasp")
    return value.removesuffix(".yaml")


def _as_float(value: Any, key: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise KuavoError(f"config key '{key}' must be a number, got {value!r}") from exc
