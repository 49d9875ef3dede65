"""The exceptions reactor raises.

One root, :class:`ReactorError`, and a few precise subclasses. Every message names the
thing to fix: the file, the key, the field, the command, what was expected and what was
found.
"""

from __future__ import annotations


class ReactorError(Exception):
    """Root of every error reactor raises."""


class ConfigError(ReactorError):
    """The configuration file or a value in it is wrong."""


class ModelLoadError(ReactorError):
    """The model class could not be imported, constructed or loaded."""


class CommandError(ReactorError):
    """A model command was unknown, or its arguments did not validate.

    ``field`` names the offending argument (``None`` when the whole command is at fault)
    and ``status`` is the HTTP status a client should see (404 unknown, 422 invalid).
    """

    def __init__(self, message: str, *, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


class HttpError(ReactorError):
    """An HTTP request was refused: ``status`` is what the client gets, with ``message``
    (and ``field``, the offending argument, when there is one) as its JSON body."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field or None


class FrameError(ReactorError):
    """A frame handed to ``Session.emit()`` has the wrong shape, type or range."""


class SessionStopped(ReactorError):
    """Raised inside a model when its session has been asked to stop."""


class WorkerDiedError(ReactorError):
    """A worker process died or never became ready."""


class DaemonError(ReactorError):
    """The daemon is not running, is already running, or did not answer."""
