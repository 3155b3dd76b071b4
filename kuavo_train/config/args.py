"""One rule for the config arguments of every entry point.

``--config-path``/``--config-name`` (also ``-cp``/``-cn``, ``=`` or a space before the value) pick
the YAML; every other argument is a Hydra-style ``key=value`` override. A relative
``--config-path`` is resolved against the directory of the seed script (``kuavo_train/``), as
``@hydra.main`` would, so ``--config-path=../configs/policy`` means ``configs/policy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kuavo_train.errors import KuavoError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT_DIR = REPO_ROOT / "kuavo_train"
DEFAULT_CONFIG_DIR = REPO_ROOT / "configs" / "policy"
DEFAULT_CONFIG_NAME = "smolvla_sequential_base"
HELP_FLAGS = ("-h", "--help")
_FLAGS = {"--config-path": "path", "-cp": "path", "--config-name": "name", "-cn": "name"}


@dataclass
class ConfigArgs:
    config_dir: Path
    config_name: str
    overrides: list[str]


def wants_help(argv: list[str]) -> bool:
    return any(item in HELP_FLAGS for item in argv)


def parse_config_args(
    argv: list[str], relative_to: Path = SCRIPT_DIR, default_name: str = DEFAULT_CONFIG_NAME
) -> ConfigArgs:
    """Split ``argv`` into the config file and the overrides (see the module docstring)."""
    values = {"path": None, "name": default_name}
    overrides: list[str] = []
    args = list(argv)
    while args:
        item = args.pop(0)
        flag, sep, value = item.partition("=")
        if flag in _FLAGS:
            if not sep:
                if not args:
                    raise KuavoError(f"{flag} needs a value, e.g. {flag}=smolvla_sequential_base")
                value = args.pop(0)
            values[_FLAGS[flag]] = value
        elif item.startswith("-"):
            raise KuavoError(
                f"unknown option '{item}'; settings are overrides like training.batch_size=8 "
                "(--help lists the options, `kuavo-train keys` every key)"
            )
        else:
            overrides.append(item)
    return ConfigArgs(_config_dir(values["path"], relative_to), values["name"].removesuffix(".yaml"), overrides)


def _config_dir(config_path: str | None, relative_to: Path) -> Path:
    """Relative paths: against ``relative_to`` (the seed's ``../configs/policy``), else against the cwd."""
    if config_path is None:
        return DEFAULT_CONFIG_DIR
    path = Path(config_path).expanduser()
    if path.is_absolute():
        return path.resolve()
    beside_script = relative_to / path
    return (beside_script if beside_script.is_dir() or not path.is_dir() else path).resolve()


def quoted(value: str) -> str:
    """``value`` as a Hydra override value that stays one string whatever it holds (``=``, ``,``, spaces)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
