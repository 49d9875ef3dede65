"""The ``Session`` a model receives: frames and sound in, frames and sound out, commands
between frames.

A session does not know where frames come from or go to. It talks to a
`SessionIO` — the inference worker's rings, or the in-memory lists of
``reactor.testing`` — and does the parts every runtime shares: converting emitted frames
and audio, laying audio on the session clock (:mod:`reactor.model.audio`), applying
queued commands on the model's own thread between frames, and stopping.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from reactor.errors import AudioError, CommandError, FrameError, ReactorError, SessionStopped
from reactor.model.audio import AudioChunk, AudioTimeline, to_pcm
from reactor.model.frames import device_frames, is_cuda, to_pipeline_frames

if TYPE_CHECKING:
    from reactor.config import AudioSection
    from reactor.model.base import VideoModel

log = logging.getLogger(__name__)

#: ``emit_audio()`` blocks while the audio already emitted reaches further ahead of the
#: session clock than this: the sound a model renders on its own is paced to playback.
AUDIO_AHEAD_S = 0.1


@dataclass
class PendingCommand:
    """A validated command waiting for the model's thread.

    `done(result, error)` is called with the handler's outcome once it has run.
    """

    name: str
    args: dict[str, Any]
    done: Callable[[Any, BaseException | None], None] = field(default=lambda result, error: None)


class SessionIO(Protocol):
    """Where a session's frames, sound and commands come from and go to.

    Times are CLOCK_MONOTONIC nanoseconds (``time.perf_counter_ns()``), or a clock of the
    IO's own that starts at ``start_ns`` and runs at the same rate (a file run's frames).
    """

    #: When the session started, on the IO's clock.
    start_ns: int
    #: Whether the clock is the wall clock (the daemon) or the IO's own (a file run, a
    #: test): only a wall clock paces ``emit_audio()``.
    realtime: bool

    def read_input(self, timeout: float) -> np.ndarray | None:
        """The newest input frame, or ``None`` if none came within ``timeout``."""

    def input_pts(self) -> int | None:
        """The presentation time of the frame ``read_input`` last returned."""

    def write_output(self, frames: np.ndarray) -> int:
        """Write ``(T, H, W, 3)`` uint8 frames; may block to pace the model. Returns the
        first frame's presentation time."""

    def clock_ns(self) -> int:
        """Now, on the session clock (where sound emitted without a frame starts)."""

    def write_audio(self, pcm: np.ndarray, pts_ns: int) -> None:
        """Write float32 ``(samples, channels)`` audio that starts sounding at ``pts_ns``."""

    def read_audio(self, timeout: float) -> tuple[np.ndarray, int] | None:
        """The next input audio chunk and its presentation time, newest when behind, or
        ``None`` if none came within ``timeout``."""

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


def _from_cupy(array: Any) -> Any:
    """A CuPy array as a torch tensor over the same device memory (DLPack: no copy).

    torch's ``from_dlpack`` passes its current stream to CuPy's ``__dlpack__``, which
    orders it after the work CuPy queued on its own, so the frame is complete when read.
    """
    try:
        from torch.utils.dlpack import from_dlpack
    except ImportError:
        raise FrameError("emit() of a CuPy array needs torch: pip install "
                         "'reactor-live[torch]'") from None
    return from_dlpack(array)


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
        audio_output: Whether the stream carries the model's sound (`audio.output`).
        audio_input: Whether the model may read the clients' sound (`audio.input`).
        sample_rate: The rate of the audio the model emits and reads (`audio.sample_rate`).
        channels: Audio channels the model emits and reads (`audio.channels`).
        frames_emitted: Frames emitted so far in this session.
        samples_emitted: Audio samples (per channel) emitted so far in this session.
        audio_dropped: Audio chunks refused (wrong dtype, shape, channels or values).
        last_audio_error: Why the last refused audio chunk was refused, or ``None``.
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
        audio: AudioSection | None = None,
    ) -> None:
        self._model = model
        self._io = io
        self.id = id
        self.width = width
        self.height = height
        self.fps = fps
        # Without an audio section (a bare Session), the config's defaults: no audio.
        self.audio_output = audio.output if audio is not None else False
        self.audio_input = audio.input if audio is not None else False
        self.sample_rate: int = audio.sample_rate if audio is not None else 48000
        self.channels: int = audio.channels if audio is not None else 1
        self._timeline = AudioTimeline(self.sample_rate)
        self.frames_emitted = 0
        self.samples_emitted = 0
        self.audio_dropped = 0
        self.last_audio_error: str | None = None
        self.last_emit = time.monotonic()

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, {self.width}x{self.height}@{self.fps})"

    def should_stop(self) -> bool:
        """True once the session should end (the clients left, the daemon stops, or the
        session was stopped); applies queued commands first."""
        self.apply_commands()
        return self._io.stopping()

    def emit(self, frames: Any, audio: Any = None) -> None:
        """Send one frame, or a block of frames with a leading time axis, to the viewers,
        and the sound that plays with them.

        Accepts uint8 RGB ``(H, W, 3)`` or float ``(3, H, W)`` in [0, 1], numpy, torch
        or CuPy, on any device. With the daemon on a GPU (``device: cuda``, or ``auto`` with one
        visible), a CUDA tensor is copied into the output ring's device memory on the
        current stream, with no copy to the host. Blocks while the output ring is full,
        which paces a generative model to the playback rate. Commands that arrived are
        applied before it returns, so they take effect on the next frame. Raises
        `SessionStopped` once the session has ended, so a model that never checks
        `should_stop()` still exits (let it propagate), and `FrameError` for a frame of
        the wrong shape or dtype.

        ``audio`` starts sounding with the first frame: float in [-1, 1] or int16, shaped
        ``(samples,)`` (mono) or ``(samples, channels)``, at `sample_rate`. It may be
        longer or shorter than the frames last; the next chunk continues where this one
        ended. Raises `AudioError` when the config's `audio.output` is off. Audio of the
        wrong dtype, shape, channel count, or with non-finite samples, is refused and
        logged (`last_audio_error`, `audio_dropped`); the frames still go out and the
        session goes on.
        """
        if self._io.stopping():
            raise SessionStopped(f"session {self.id} has ended")
        if type(frames).__module__.startswith("cupy"):
            frames = _from_cupy(frames)  # a torch view of the same device memory
        if getattr(self._io, "device_output", False) and is_cuda(frames):
            # The output ring is on the GPU: the frames never leave the device.
            block = device_frames(frames, self.height, self.width)
        else:
            block = to_pipeline_frames(frames, self.height, self.width)
        pcm = None if audio is None else self._checked_audio(audio, "emit(audio=...)")
        if pcm is None:
            self._io.write_output(block)
        else:
            # The first frame fixes when the sound starts; the sound goes out before the
            # rest of a block, so egress has it when those frames play.
            pts = self._io.write_output(block[:1])
            self._write_audio(pcm, pts)
            if len(block) > 1:
                self._io.write_output(block[1:])
        self.frames_emitted += len(block)
        self.last_emit = time.monotonic()
        self.apply_commands()

    def emit_audio(self, pcm: Any) -> None:
        """Send sound with no new frame; it continues where the last sound ended (or starts
        now, after a silence). Same formats and errors as ``emit(audio=...)``.

        Blocks while the sound already emitted runs more than 0.1 s ahead of the session
        clock, so a model that renders sound on its own is paced to playback.
        """
        if self._io.stopping():
            raise SessionStopped(f"session {self.id} has ended")
        checked = self._checked_audio(pcm, "emit_audio()")
        if checked is not None:
            self._write_audio(checked, self._io.clock_ns())
            self._wait_for_clock()
        self.apply_commands()

    def audio_inputs(self, block: bool = True) -> Iterator[AudioChunk]:
        """Yield the clients' audio, 20 ms at a time: float32 ``(samples, channels)`` at
        `sample_rate`, each an `AudioChunk` whose ``time`` is its presentation time on the
        session clock (compare it with `input_time`).

        When the model falls behind, it gets the newest chunk (as `inputs()` does for
        frames). The iterator ends when the session ends. Raises `AudioError` when the
        config's `audio.input` is off.

        With ``block=False`` it waits for nothing: it yields the audio that has already
        arrived and ends, so a model that works frame by frame can read the sound of each
        frame on the same thread (``for chunk in session.audio_inputs(block=False)``
        inside its ``for frame in session.inputs()`` loop).
        """
        if not self.audio_input:
            raise AudioError("session.audio_inputs() needs `audio.input: true` in the config: "
                             "without it the daemon does not take the clients' audio")
        while True:
            if self._io.stopping():
                return
            got = self._io.read_audio(self._POLL_S if block else 0.0)
            self.apply_commands()
            if got is not None:
                samples, pts = got
                yield AudioChunk(samples, (pts - self._io.start_ns) / 1e9)
            elif not block:
                return

    @property
    def input_time(self) -> float | None:
        """The presentation time of the frame `inputs()` yielded last, in seconds on the
        session clock (``None`` before the first)."""
        pts = self._io.input_pts()
        return None if pts is None else (pts - self._io.start_ns) / 1e9

    def _checked_audio(self, audio: Any, what: str) -> np.ndarray | None:
        if not self.audio_output:
            raise AudioError(f"{what} needs `audio.output: true` in the config: without it "
                             "the stream has no audio track")
        try:
            return to_pcm(audio, self.channels, what=what)
        except AudioError as exc:
            self.audio_dropped += 1
            if self.last_audio_error != str(exc):
                log.error("session %s: audio refused: %s", self.id, exc)
            self.last_audio_error = str(exc)
            return None

    def _write_audio(self, pcm: np.ndarray, now_ns: int) -> None:
        if len(pcm):
            self._io.write_audio(pcm, self._timeline.place(now_ns, len(pcm)))
            self.samples_emitted += len(pcm)

    def _wait_for_clock(self) -> None:
        end = self._timeline.end_ns
        while end is not None and self._io.realtime and not self._io.stopping():
            ahead = (end - self._io.clock_ns()) / 1e9 - AUDIO_AHEAD_S
            if ahead <= 0:
                return
            time.sleep(min(ahead, self._POLL_S))

    def inputs(self) -> Iterator[np.ndarray]:
        """Yield the newest input frame each time, ``(H, W, 3)`` uint8 RGB: a numpy array,
        or with ``device: cuda`` / ``cuda:N`` a torch tensor on that device.

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
