"""The exceptions reactor raises: every one is defined here, under one root.

Every message names the thing to fix: the file, the key, the field, the command, what
was expected and what was found. The whole tree::

    ReactorError
    ├── ConfigError           the configuration file or a value in it is wrong
    ├── ModelLoadError        the model class could not be imported, built or loaded
    ├── CommandError          a model command is unknown or its arguments are invalid
    ├── FrameError            a frame has the wrong shape, type or range
    │                         (alias: FrameFormatError)
    ├── AudioError            audio has the wrong type, shape, channels or values, or
    │                         the config does not enable it (audio.output, audio.input)
    ├── SessionStopped        raised inside a model when its session must stop
    ├── SessionError          a client's session failed or ended (Viewer.recv)
    ├── WorkerDiedError       a worker process died or never became ready
    ├── DaemonError           the daemon is not running, already running, or silent
    ├── HttpError             an HTTP request was refused (status, message, field)
    ├── TokenRefused          a signed token was refused: 401 (expired, malformed) or 403 (scope)
    ├── SdpError              a WHIP/WHEP SDP offer was rejected (reason)
    ├── LinkError             a Link header cannot be read (also a ValueError)
    ├── WhipError             a WHIP/WHEP client request failed (status, retry_after_s)
    ├── EncoderError          an encoder could not be made or a frame not encoded
    ├── PatchError            an aiortc/aioice internal a patch needs is missing or changed
    ├── ReportError           a viewer's stats report is ignored (also a ValueError)
    └── RingError             a shared-memory ring could not be made, opened or used
        ├── RingTimeout       a blocking producer found no free slot (also a TimeoutError)
        ├── RingSpaceError    /dev/shm has too little free space for the ring
        └── RingClosedError   the ring was closed; no more frames will come
            └── ProducerGoneError   the ring's producer process died

The modules that raise them also export them under the names they always had
(``reactor.ipc.errors.RingError``, ``reactor.media.sdp.SdpError``,
``reactor.media.whip_client.WhipError``, ``reactor.client.WhipError``, ...): those
are the same classes, so either import catches both.

This module imports nothing from reactor, so that every other module can import it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AudioError",
    "CommandError",
    "ConfigError",
    "DaemonError",
    "EncoderError",
    "FrameError",
    "FrameFormatError",
    "HttpError",
    "LinkError",
    "ModelLoadError",
    "PatchError",
    "ProducerGoneError",
    "ReactorError",
    "ReportError",
    "RingClosedError",
    "RingError",
    "RingSpaceError",
    "RingTimeout",
    "SdpError",
    "SessionError",
    "SessionStopped",
    "TokenRefused",
    "WhipError",
    "WorkerDiedError",
]


class ReactorError(Exception):
    """Root of every error reactor raises."""


# -- configuration, models, sessions ------------------------------------------------------


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


class FrameError(ReactorError):
    """A frame has the wrong shape, type or range: one handed to ``Session.emit()``, or
    an array handed to a media conversion that is not RGB uint8 HxWx3."""


#: The name :mod:`reactor.media.convert` used for :class:`FrameError`; the same class.
FrameFormatError = FrameError


class AudioError(ReactorError):
    """Audio handed to ``Session.emit()`` / ``emit_audio()`` has the wrong dtype, shape,
    channel count or non-finite samples, or the config does not enable audio
    (``audio.output``, ``audio.input``)."""


class SessionStopped(ReactorError):
    """Raised inside a model when its session has been asked to stop."""


class SessionError(ReactorError):
    """A client's session failed or ended (``reactor.client.Viewer.recv``): the message is
    the daemon's (the model's error, or why the session ended)."""


# -- the daemon and its workers -----------------------------------------------------------


class WorkerDiedError(ReactorError):
    """A worker process died or never became ready."""


class DaemonError(ReactorError):
    """The daemon is not running, is already running, or did not answer."""


# -- HTTP, WebRTC and media ---------------------------------------------------------------


class HttpError(ReactorError):
    """An HTTP request was refused: ``status`` is what the client gets, with ``message``
    (and ``field``, the offending argument, when there is one) as its JSON body.
    ``retry_after_s``: a ``Retry-After`` header, in whole seconds (a 503 from a busy
    daemon: RFC 9725 §4.8)."""

    def __init__(self, status: int, message: str, field: str | None = None, *,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field or None
        self.retry_after_s = retry_after_s


class TokenRefused(ReactorError):
    """A token the daemon does not accept: ``status`` 401 (expired, malformed, wrong
    signature) or 403 (valid, but its scope does not cover the request), ``error`` the
    RFC 6750 code (``invalid_token``, ``insufficient_scope``) and a message naming which."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


class SdpError(ReactorError):
    """An SDP offer was rejected; ``reason`` says why, for the client's 400 response."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid SDP offer: {reason}")
        self.reason = reason


class LinkError(ReactorError, ValueError):
    """A ``Link`` header that cannot be read; the message says where it went wrong.

    Also a :class:`ValueError`, as it was before it joined this tree."""


class WhipError(ReactorError):
    """A WHIP/WHEP request failed; ``status`` is the HTTP status (0 if none came back), and
    ``retry_after_s`` the seconds a ``503`` said to wait (its ``Retry-After``; ``None``
    when it said nothing): a busy daemon or a fleet's balancer, to try again then."""

    def __init__(self, message: str, status: int = 0,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class ReportError(ReactorError, ValueError):
    """A viewer's stats report (sent over its data channel) is ignored: not JSON, an
    unknown key, a wrong type or a value out of range. Never raised past egress."""


class EncoderError(ReactorError):
    """An encoder could not be created, or a frame could not be encoded."""


class PatchError(ReactorError):
    """An aiortc/aioice internal that one of reactor's patches needs is missing or has
    changed (:mod:`reactor.media.patches`). Raised at start, before anything is patched;
    ``patch`` and ``target`` name the entry and the internal."""

    def __init__(self, message: str, patch: str = "", target: str = "") -> None:
        super().__init__(message)
        self.patch = patch
        self.target = target


# -- shared-memory rings ------------------------------------------------------------------


class RingError(ReactorError):
    """A shared-memory ring could not be created, attached or used."""


class RingTimeout(RingError, TimeoutError):
    """A ``block`` producer found no free slot before its timeout."""


class RingSpaceError(RingError):
    """``/dev/shm`` has too little free space for the ring."""


class RingClosedError(RingError):
    """The ring was closed by its owner or its producer; no more frames will come."""


class ProducerGoneError(RingClosedError):
    """The ring's producer process died."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the candidate closest to a misspelt ``name``; "" when
    none is close. For the end of an error message."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
