"""The one error type users see (a one-line message that names the file/key and the fix), and the guard that prints
it."""

from __future__ import annotations

import sys
from collections.abc import Callable


class KuavoError(Exception):
    """A problem with the user's input (config, data, checkpoint) that the user can fix.

    ``guarded`` prints ``error: <message>`` and exits with status 2 instead of a traceback.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def guarded(action: Callable[[], int]) -> int:
    """Run a command: its exit code; a KuavoError prints ``error: <message>`` and gives 2; Ctrl-C gives 130.

    Every entry point (``kuavo-train <command>``, the seed script, ``python -m kuavo_train.<module>``) runs through
    this one guard, so commands raise KuavoError and never print errors or choose error exit codes themselves.
    """
    try:
        return action()
    except KuavoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
