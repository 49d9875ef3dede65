"""The ``Session`` a model receives: frames in, frames out, commands between frames.

A session does not know where frames come from or go to. It talks to a
`SessionIO` — the inference worker's rings, or the in-memory lists of
``reactor.testing`` — and does the parts every runtime shares: converting emitted frames,
applying queued commands on the model's own thread between frames, and stopping.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from reactor.errors import CommandError, ReactorError, SessionStopped
from reactor.model.frames import to_pipeline_frames

if TYPE_CHECKING:
    from reactor.model.base import VideoModel


@dataclass
class PendingCommand:
    """A validated command waiting for the model's thread.

    `done(result, error)` is called with the handler's outcome once it has run.
    """

    name: str
    args: dict[str, Any]
    done: Callable[[Any, BaseException | None], None] = field(default=lambda result, error: None)


class SessionIO(Protocol):
    """Where a session's frames and commands come from and go to."""

    def read_input(self, timeout: float) -> np.ndarray | None:
        """The newest input frame, or ``None`` if none came within ``timeout``."""

    def write_output(self, frames: np.ndarray) -> None:
        """Write ``(T, H, W, 3)`` uint8 frames; may block to pace the model."""

    def poll_commands(self) -> list[PendingCommand]:
        """Commands that arrived since the last poll, in order."""

    def stopping(self) -> bool:
        """True once the session has been asked to end."""

    def send(self, message: Any) -> None:
        """Deliver a JSON-able message to the session's clients."""


def apply_command(model: VideoModel, cmd: PendingCommand) -> None:
    """Run one command's handler and report its outcome; a handler error is reported,
    never raised, so a bad command cannot end the session."""
    spec = type(model).commands.get(cmd.name)
    if spec is None:
        cmd.done(None, CommandError(f"unknown command {cmd.name!r}", status=404))
        return
    try:
        result = spec.handler(model, **cmd.args)
    except Exception as exc:
        cmd.done(None, CommandError(f"{cmd.name} raised {type(exc).__name__}: {exc}", status=500))
        return
    cmd.done(result, None)


class Session:
    """One client session, as the model sees it; `start_session` receives it.

    Generative models loop `while not session.should_stop(): session.emit(x)`; filters
    loop `for frame in session.inputs(): session.emit(f(frame))`. Commands are applied
    inside `emit()`, `inputs()` and `should_stop()`, on the model's thread.

    Attributes:
        id: The session's id (also in status, events and logs).
        width: Width in pixels of the frames to emit (the config's `video.width`).
        height: Height in pixels of the frames to emit (`video.height`).
        fps: The stream's frame rate (`video.fps`); generative models are paced to it.
        frames_emitted: Frames emitted so far in this session.
        last_emit: `time.monotonic()` of the last `emit()`.
    """

    #: How long ``inputs()`` waits for a frame before it checks commands and stop again.
    _POLL_S = 0.05

    def __init__(
        self,
        model: VideoModel,
        io: SessionIO,
        *,
        id: str,
        width: int,
        height: int,
        fps: int,
    ) -> None:
        self._model = model
        self._io = io
        self.id = id
        self.width = width
        self.height = height
        self.fps = fps
        self.frames_emitted = 0
        self.last_emit = time.monotonic()

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, {self.width}x{self.height}@{self.fps})"

    def should_stop(self) -> bool:
        """True once the session should end (the clients left, the daemon stops, or the
        session was stopped); applies queued commands first."""
        self.apply_commands()
        return self._io.stopping()

    def emit(self, frames: Any) -> None:
        """Send one frame, or a block of frames with a leading time axis, to the viewers.

        Accepts uint8 RGB ``(H, W, 3)`` or float ``(3, H, W)`` in [0, 1], numpy or torch,
        on any device. Blocks while the output ring is full, which paces a generative model
        to the playback rate. Commands that arrived are applied before it returns, so they
        take effect on the next frame. Raises `SessionStopped` once the session has
        ended, so a model that never checks `should_stop()` still exits (let it
        propagate), and `FrameError` for a frame of the wrong shape or dtype.
        """
        if self._io.stopping():
            raise SessionStopped(f"session {self.id} has ended")
        block = to_pipeline_frames(frames, self.height, self.width)
        self._io.write_output(block)
        self.frames_emitted += len(block)
        self.last_emit = time.monotonic()
        self.apply_commands()

    def inputs(self) -> Iterator[np.ndarray]:
        """Yield the newest input frame each time, ``(H, W, 3)`` uint8 RGB.

        The frame is valid until the next iteration (copy it to keep it). Frames that
        arrived while the model was busy are skipped, so the model always sees the newest.
        The iterator ends when the session ends.
        """
        while True:
            if self._io.stopping():
                return
            frame = self._io.read_input(self._POLL_S)
            # Commands that arrived while we waited apply before the model sees the frame.
            self.apply_commands()
            if frame is not None:
                yield frame

    def send(self, message: Any) -> None:
        """Push a JSON-able message to every connected client (SSE and data channel).

        Clients receive `{"type": "message", "data": message, ...}`. Raises
        `ReactorError` when `message` cannot be serialised as JSON.
        """
        try:
            json.dumps(message)
        except (TypeError, ValueError) as exc:
            raise ReactorError(f"session.send() needs a JSON-serialisable value: {exc}") from None
        self._io.send(message)

    def apply_commands(self) -> None:
        """Apply every queued command, in arrival order, on the calling (model) thread."""
        for cmd in self._io.poll_commands():
            apply_command(self._model, cmd)
