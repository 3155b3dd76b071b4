"""The one error type users see: a one-line message that names the file/key and the fix."""


class KuavoError(Exception):
    """A problem with the user's input (config, data, checkpoint) that the user can fix.

    The CLI prints ``error: <message>`` and exits with status 2 instead of a traceback.
    """
