"""Audio as a model hands it over and receives it, and where it sits on the session clock.

The pipeline carries float32 samples shaped ``(samples, channels)`` at ``audio.sample_rate``.
``emit(frames, audio=...)`` and ``emit_audio()`` also take int16 samples, mono ``(samples,)``
arrays and torch tensors on any device; anything else is refused with an error naming what
was given.

One clock for sound and picture: every frame and every audio chunk carries a presentation
time in CLOCK_MONOTONIC nanoseconds (``time.perf_counter_ns()``), the same clock in every
process. :class:`AudioTimeline` lays the model's chunks end to end on it: a chunk continues
where the previous one ended, unless the model fell silent for longer than
``RESYNC_S``, in which case it starts at the time it was emitted and the gap is played as
silence. Sound is never stretched to fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reactor.errors import AudioError

#: A chunk that starts later than this after the previous chunk ended starts anew at its
#: own time (the gap is silence); anything closer continues the previous chunk seamlessly.
RESYNC_S = 0.06

#: How long one input chunk is, as ``Session.audio_inputs()`` yields them.
CHUNK_S = 0.02


def _is_torch(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def expected_text(channels: int) -> str:
    mono = "(samples,) or " if channels == 1 else ""
    return (f"float samples in [-1, 1] or int16 samples shaped {mono}(samples, {channels}) "
            f"(audio.channels is {channels})")


def to_pcm(obj: Any, channels: int, *, what: str = "audio") -> np.ndarray:
    """Return ``obj`` as float32 ``(samples, channels)``, C-contiguous, in [-1, 1].

    Accepts numpy arrays and torch tensors (any device), float or int16, shaped
    ``(samples, channels)`` or, for mono, ``(samples,)``. Raises `AudioError` naming what
    was given for anything else, and for NaN or infinite samples.
    """
    if _is_torch(obj):
        obj = obj.detach().cpu().numpy()
    if not isinstance(obj, np.ndarray):
        raise AudioError(f"{what}: expected {expected_text(channels)}; "
                         f"found {type(obj).__name__}")
    arr = obj
    found = f"shape {arr.shape} dtype {arr.dtype}"
    if arr.dtype != np.int16 and arr.dtype.kind != "f":
        raise AudioError(f"{what}: expected {expected_text(channels)}; found {found}")
    if arr.ndim == 1 and channels == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != channels:
        raise AudioError(f"{what}: expected {expected_text(channels)}; found {found}")
    if arr.dtype == np.int16:
        return np.ascontiguousarray(arr, dtype=np.float32) / np.float32(32768.0)
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise AudioError(f"{what}: {bad} of {out.size} samples are NaN or infinite ({found})")
    return np.clip(out, -1.0, 1.0)


class AudioTimeline:
    """Lays chunks of one stream end to end on the session clock (see the module docstring).

    Times are whole nanoseconds; the position is kept as a sample count from the last
    restart, so chunks of any length add up without rounding drift.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._origin: int | None = None
        self._samples = 0

    @property
    def end_ns(self) -> int | None:
        """Where the last chunk ended, or ``None`` before the first."""
        if self._origin is None:
            return None
        return self._origin + self._samples * 1_000_000_000 // self.rate

    def place(self, now_ns: int, samples: int) -> int:
        """The start time of a chunk of ``samples`` emitted at ``now_ns``; advances past it."""
        end = self.end_ns
        if end is None or now_ns - end > RESYNC_S * 1e9:
            self._origin, self._samples = now_ns, 0
            end = now_ns
        self._samples += samples
        return end


class AudioChunk(np.ndarray):
    """Float32 samples shaped ``(samples, channels)`` that also know when they sound.

    ``time`` is the chunk's presentation time on the session clock, in seconds since the
    session started, on the same clock as `Session.input_time`.
    """

    time: float

    def __new__(cls, samples: np.ndarray, time: float) -> AudioChunk:
        obj = np.asarray(samples).view(cls)
        obj.time = time
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.time = getattr(obj, "time", 0.0)
