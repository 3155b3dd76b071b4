"""Small text helpers shared by the checks: one-line error text, listings and number formatting."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kuavo_train.errors import first_line

MAX_LISTED = 3  # how many episodes/files a one-line message names before "and N more"
_MAX_ERROR_CHARS = 200  # pyarrow/av messages can be long; a problem stays one short line


def error_text(exc: Exception) -> str:
    """'Type: first line of the message' (the line cut to 200 characters; nothing after the colon when empty)."""
    text = first_line(exc)[:_MAX_ERROR_CHARS] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"


def unreadable(path: Path, exc: Exception, fix: str) -> str:
    """The problem line for a parquet file that pyarrow cannot read."""
    return f"{path}: cannot be read as parquet ({error_text(exc)}); the file is corrupt or truncated - {fix}"


def int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def listing(items: Sequence[Any]) -> str:
    """'a, b, c and 2 more'."""
    items = list(items)
    shown = ", ".join(str(i) for i in items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def num(value: float) -> str:
    """30.0 -> '30', 29.97 -> '29.97'."""
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def opt(value: int | None) -> str:
    return "?" if value is None else str(value)


def quote(text: str, limit: int = 240) -> str:
    """``repr`` of ``text`` with whitespace collapsed, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
