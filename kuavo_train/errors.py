"""The one error type users see: a one-line message that names the file/key and the fix."""


class KuavoError(Exception):
    """A problem with the user's input (config, data, checkpoint) that the user can fix.

    The CLI prints ``error: <message>`` and exits with status 2 instead of a traceback.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
