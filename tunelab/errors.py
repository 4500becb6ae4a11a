"""User-facing errors.

Anything raised as a ``TunelabError`` is a problem with the user's input (a config
key, a data file, a model name); the CLI prints its message as one line and exits
non-zero. Anything else is a bug and gets a traceback under ``--debug``.
"""


class TunelabError(Exception):
    """A problem the user can fix; the message says where and what."""


class ConfigError(TunelabError):
    """A bad config key, type or value.

    ``problems`` lists (dotted key, message) pairs when the error comes from validation, so a form can show
    each message next to its field; the exception's text is the same messages joined, as the CLI prints it.
    """

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []


class DataError(TunelabError):
    """A bad data file or row; the message starts with ``file:line:``."""


class ModelError(TunelabError):
    """A model that cannot be found or loaded."""
