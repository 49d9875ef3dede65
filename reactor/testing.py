"""Run a model in-process, without a daemon: frames in, commands, frames out.

For model authors' unit tests:

```python
from reactor.testing import ModelRunner

runner = ModelRunner(Brightness, width=64, height=48)
frames = runner.run(inputs=[frame] * 10, commands={5: ("set_gain", {"gain": 2.0})})
assert (frames[5] >= frames[4]).all()
```

The model runs on the calling thread with the same ``Session`` the daemon uses, so
commands are validated the same way and applied between frames in the same order.

Sound works too: give the runner an ``audio`` section (as in the config) and it keeps what
the model emits as one array on the session's timeline, and feeds ``run(audio_inputs=...)``
to ``session.audio_inputs()`` in 20 ms chunks:

```python
runner = ModelRunner(Beeper, width=64, height=48, audio={"output": True, "sample_rate": 16000})
runner.run(frames=30)
first_second = runner.audio[:16000, 0]          # float32 (samples, channels), silence in gaps
```
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from reactor.config import AudioSection
from reactor.errors import SessionStopped
from reactor.model import PendingCommand, Session, VideoModel
from reactor.model.audio import CHUNK_S, to_pcm
from reactor.model.session import apply_command

CommandPlan = Mapping[int, tuple[str, Mapping[str, Any]] | list[tuple[str, Mapping[str, Any]]]]


class _MemoryIO:
    """A SessionIO over lists: inputs are consumed in order (none skipped).

    Its clock is the frames': frame ``n`` is presented at ``n / fps`` seconds. Input audio
    chunk ``i`` is presented at ``i * 20`` ms and is there to read once the clock (the
    newest input frame's time, or the next output frame's) has reached it; a blocking read
    takes the next chunk whenever it is due, as if the model had waited for it.
    """

    start_ns = 0
    realtime = False

    def __init__(
        self,
        runner: ModelRunner,
        inputs: Iterable[np.ndarray] | None,
        frames: int | None,
        audio_inputs: list[tuple[np.ndarray, int]] | None = None,
    ) -> None:
        self._runner = runner
        self._inputs = iter(inputs) if inputs is not None else None
        self._limit = frames
        self._exhausted = False
        self._read = 0
        self.outputs: list[np.ndarray] = []
        self.audio: list[tuple[int, np.ndarray]] = []
        self._audio_in = deque(audio_inputs) if audio_inputs is not None else None
        self._queued: deque[PendingCommand] = deque()

    def _time_of(self, frame: int) -> int:
        return frame * 1_000_000_000 // self._runner.fps

    def input_pts(self) -> int | None:
        return self._time_of(self._read - 1) if self._read else None

    def clock_ns(self) -> int:
        return self._time_of(len(self.outputs))

    def write_audio(self, pcm: np.ndarray, pts_ns: int) -> None:
        self.audio.append((pts_ns, pcm.copy()))

    def read_audio(self, timeout: float) -> tuple[np.ndarray, int] | None:
        if self._audio_in is None:
            if timeout <= 0:
                return None
            raise ValueError(
                f"{type(self._runner.model).__name__} waits for input audio "
                "(session.audio_inputs()): pass run(audio_inputs=...) with sound to feed it"
            )
        if not self._audio_in:
            # Nothing more will come: a model that waits for it would wait forever.
            self._exhausted = self._exhausted or timeout > 0
            return None
        now = max(self.input_pts() or 0, self.clock_ns())
        if timeout <= 0 and self._audio_in[0][1] > now:
            return None
        return self._audio_in.popleft()

    def read_input(self, timeout: float) -> np.ndarray | None:
        if self._inputs is None:
            raise ValueError(
                f"{type(self._runner.model).__name__} reads input frames "
                "(session.inputs()): pass run(inputs=[...]) with frames to feed it"
            )
        try:
            frame = next(self._inputs)
        except StopIteration:
            self._exhausted = True
            return None
        self._read += 1
        arr = np.asarray(frame)
        shape = (self._runner.height, self._runner.width, 3)
        if arr.shape != shape or arr.dtype != np.uint8:
            raise ValueError(f"input frames must be uint8 {shape}; found {arr.shape} {arr.dtype}")
        return arr

    def write_output(self, frames: np.ndarray) -> int:
        first = self.clock_ns()
        for f in frames:
            if self.stopping():
                raise SessionStopped("frame limit reached")
            self.outputs.append(f.copy())
        return first

    def poll_commands(self) -> list[PendingCommand]:
        plan = self._runner._plan
        n = len(self.outputs)
        while plan and plan[0][0] <= n:
            _, name, args = plan.popleft()
            self._runner.send_command(name, **dict(args))
        out = list(self._runner._pending)
        self._runner._pending.clear()
        return out

    def stopping(self) -> bool:
        if self._exhausted:
            return True
        return self._limit is not None and len(self.outputs) >= self._limit

    def send(self, message: Any) -> None:
        self._runner.messages.append(message)


class ModelRunner:
    """Drive a `VideoModel` in-process, on the calling thread.

    Args:
        model: A class (constructed, then loaded with `args`) or an instance (used as
            it is: load it yourself).
        width: Frame width of the session.
        height: Frame height of the session.
        fps: The session's `fps` (nothing is paced: the runner runs as fast as it can).
        args: What `load(config)` receives when `model` is a class.
        audio: The config's `audio` section, as a mapping (`{"output": True}`) or an
            `AudioSection`; without it the session has no sound, as in the daemon.

    Attributes:
        model: The model instance.
        messages: Everything the model sent with `session.send`, in order.
        results: Command results as `(name, result)`, in the order they ran.
        audio: The sound the last `run()` emitted, float32 `(samples, channels)` at
            `sample_rate`, laid on the session's timeline: sample ``i`` sounds at
            ``i / sample_rate`` seconds, when frame ``i * fps // sample_rate`` shows.
            Silence where the model emitted none; it lasts until the later of the last
            sound and the last frame.
        audio_chunks: What the last `run()` emitted, as `(time, samples)` in order:
            each chunk's start on the session clock in seconds, as the session placed it.
        sample_rate: The session's `audio.sample_rate`.
        channels: The session's `audio.channels`.
    """

    def __init__(
        self,
        model: type[VideoModel] | VideoModel,
        *,
        width: int = 1280,
        height: int = 720,
        fps: int = 30,
        args: Mapping[str, Any] | None = None,
        audio: AudioSection | Mapping[str, Any] | None = None,
    ) -> None:
        self._audio_section = (audio if isinstance(audio, AudioSection)
                               else AudioSection.model_validate(dict(audio or {})))
        if isinstance(model, type):
            self.model = model()
            self.model.load(dict(args or {}))
        else:
            self.model = model
        self.width = width
        self.height = height
        self.fps = fps
        self.messages: list[Any] = []
        self.results: list[tuple[str, Any]] = []
        self.sample_rate: int = self._audio_section.sample_rate
        self.channels: int = self._audio_section.channels
        self.audio = np.zeros((0, self.channels), np.float32)
        self.audio_chunks: list[tuple[float, np.ndarray]] = []
        self._pending: list[PendingCommand] = []
        self._plan: deque[tuple[int, str, Mapping[str, Any]]] = deque()
        self._sessions = 0

    def send_command(self, name: str, **args: Any) -> None:
        """Validate a command now and queue it for the model's next frame boundary.

        Raises `CommandError` for an unknown command (status 404) or invalid arguments
        (422, naming the field), as the daemon would answer.
        """
        valid = type(self.model).validate_command(name, args)

        def done(result: Any, error: BaseException | None) -> None:
            if error is not None:
                raise error
            self.results.append((name, result))

        self._pending.append(PendingCommand(name, valid, done))

    def apply_pending(self) -> None:
        """Apply queued commands outside a session (as the daemon does between sessions)."""
        pending, self._pending = self._pending, []
        for cmd in pending:
            apply_command(self.model, cmd)

    def run(
        self,
        *,
        inputs: Iterable[np.ndarray] | None = None,
        frames: int | None = None,
        commands: CommandPlan | None = None,
        audio_inputs: Any = None,
    ) -> list[np.ndarray]:
        """Run one session and return the emitted frames (the sound is in `audio`).

        Args:
            inputs: Input frames, uint8 `(height, width, 3)`, fed in order (none is
                skipped, unlike the daemon, which hands a slow model the newest frame).
            frames: Stop after this many emitted frames.
            commands: Maps a frame count to a command `(name, args)`, or a list of them:
                it is sent once that many frames were emitted, so it takes effect from
                that output frame on.
            audio_inputs: The clients' sound, for `session.audio_inputs()` (needs
                `audio={"input": True}`): one array or a list of arrays played one after
                the other from time 0, float in [-1, 1] or int16, `(samples,)` or
                `(samples, channels)`, at `sample_rate`. The model reads it in 20 ms
                chunks (the last one padded with silence), in order, none skipped; chunk
                ``i`` sounds at ``i * 0.02`` s and can be read once the session clock (the
                newest input frame's time, or the next output frame's) reaches it. A model
                that waits for sound gets the next chunk whatever the clock says.

        Returns:
            The emitted frames, each a uint8 `(height, width, 3)` array.

        The session ends when `frames` frames were emitted, when `inputs` run out, when
        the model waits for sound after `audio_inputs` ran out, or when the model
        returns; `end_session()` is called in every case. A generative model needs
        `frames`. Raises `ValueError` when none of `inputs`, `frames` and `audio_inputs`
        is given, `AudioError` for `audio_inputs` of the wrong dtype or shape, and
        whatever the model raises (a `FrameError`, say).
        """
        if inputs is None and frames is None and audio_inputs is None:
            raise ValueError("run() needs inputs, frames or audio_inputs "
                             "(a generative model never ends)")
        chunks = None if audio_inputs is None else self._chunked(audio_inputs)
        self._plan = deque()
        for at, item in sorted((commands or {}).items()):
            for name, args in item if isinstance(item, list) else [item]:
                self._plan.append((at, name, args))
        io = _MemoryIO(self, inputs, frames, chunks)
        self._sessions += 1
        session = Session(
            self.model,
            io,
            id=f"test-{self._sessions}",
            width=self.width,
            height=self.height,
            fps=self.fps,
            audio=self._audio_section,
        )
        try:
            self.model.start_session(session)
        except SessionStopped:
            pass
        finally:
            self.model.end_session()
            self._lay_audio(io)
        return io.outputs

    def _chunked(self, audio_inputs: Any) -> list[tuple[np.ndarray, int]]:
        parts = audio_inputs if isinstance(audio_inputs, (list, tuple)) else [audio_inputs]
        pcm = [to_pcm(p, self.channels, what=f"run(audio_inputs=...) [{i}]")
               for i, p in enumerate(parts)]
        samples = (np.concatenate(pcm) if pcm
                   else np.zeros((0, self.channels), np.float32))
        step = round(self.sample_rate * CHUNK_S)
        out = []
        for i, at in enumerate(range(0, len(samples), step)):
            chunk = np.zeros((step, self.channels), np.float32)
            part = samples[at:at + step]
            chunk[:len(part)] = part
            out.append((chunk, i * round(CHUNK_S * 1e9)))
        return out

    def _lay_audio(self, io: _MemoryIO) -> None:
        rate = self.sample_rate

        def index(pts_ns: int) -> int:
            return (pts_ns * rate + 500_000_000) // 1_000_000_000

        end = -(-len(io.outputs) * rate // self.fps)  # the end of the last frame
        for pts, pcm in io.audio:
            end = max(end, index(pts) + len(pcm))
        self.audio = np.zeros((end, self.channels), np.float32)
        for pts, pcm in io.audio:
            self.audio[index(pts):index(pts) + len(pcm)] = pcm
        self.audio_chunks = [(pts / 1e9, pcm) for pts, pcm in io.audio]
