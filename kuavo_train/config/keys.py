"""`kuavo-train keys`: every config key with its type, value in the chosen config, and meaning.

Generated from the schema dataclasses: the meaning of a key is the comment written above its field
in ``schema.py``, so the list cannot drift from the code.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields, is_dataclass
from functools import cache
from typing import Any

from kuavo_train.config.schema import Config


@dataclass
class KeyDoc:
    key: str
    type: str
    value: Any
    meaning: str


# Keys that are not a dataclass field of the same name.
_SPECIAL = {
    "task": ("str", "task file of the stage to train, relative to the config dir (e.g. tasks/task2_weighing)"),
    "curriculum": (
        "list[str]",
        "the task files of the curriculum, in training order (5 tasks or another order: edit this list)",
    ),
    "data.roots.<task name>": (
        "str",
        "dataset dir of the task with that name (every task, every command; beats the task file's data.root)",
    ),
    "sequential.stage<N>_replay": (
        "dict[str, float]",
        "share of samples per task in stage N, e.g. {task1: 0.2, task2: 0.8}; must sum to 1",
    ),
}


def config_keys(cfg: Config) -> list[KeyDoc]:
    """Every key a user can set, in the order of the YAML: top-level, task.*, then the sections."""
    docs = [
        KeyDoc("task", _SPECIAL["task"][0], cfg.task_file, _SPECIAL["task"][1]),
        KeyDoc("curriculum", _SPECIAL["curriculum"][0], cfg.curriculum, _SPECIAL["curriculum"][1]),
    ]
    docs += _walk(cfg.task, "task")
    for section in ("policy", "training", "sequential", "criteria", "data"):
        docs += _walk(getattr(cfg, section), section)
    docs = [d for d in docs if d.key not in ("sequential.stage_replay", "data.roots")]
    replay = {f"stage{n}": ratios for n, ratios in sorted(cfg.sequential.stage_replay.items())}
    docs.append(
        KeyDoc(
            "sequential.stage<N>_replay",
            _SPECIAL["sequential.stage<N>_replay"][0],
            replay,
            _SPECIAL["sequential.stage<N>_replay"][1],
        )
    )
    docs.append(
        KeyDoc(
            "data.roots.<task name>",
            _SPECIAL["data.roots.<task name>"][0],
            cfg.data.roots,
            _SPECIAL["data.roots.<task name>"][1],
        )
    )
    return docs


def _walk(obj: Any, prefix: str) -> list[KeyDoc]:
    docs = []
    comments = field_comments(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}.{f.name}"
        if is_dataclass(value):
            docs += _walk(value, key)
        else:
            docs.append(KeyDoc(key, str(f.type), value, comments.get(f.name, "")))
    return docs


@cache
def field_comments(cls: type) -> dict[str, str]:
    """``{field: the comment lines right above it}`` from the class source."""
    comments, pending = {}, []
    for line in inspect.getsource(cls).splitlines()[1:]:
        text = line.strip()
        if text.startswith("#"):
            pending.append(text.lstrip("#").strip())
        elif ":" in text and not text.startswith(("@", "def ", '"""', "return")) and text.split(":")[0].isidentifier():
            comments[text.split(":")[0]] = " ".join(pending)
            pending = []
        else:
            pending = []
    return comments


def format_keys(docs: list[KeyDoc], prefix: str | None = None) -> str:
    chosen = [d for d in docs if prefix is None or d.key.startswith(prefix)]
    lines = []
    for doc in chosen:
        lines.append(f"{doc.key} ({doc.type}) = {_show(doc.value)}")
        if doc.meaning:
            lines.append(f"    {doc.meaning}")
    return "\n".join(lines)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value or '""'
    return str(value)
