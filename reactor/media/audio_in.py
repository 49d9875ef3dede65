"""The clients' sound on its way to the model: decoded WHIP audio in exact 20 ms chunks.

aiortc decodes a WHIP client's Opus into ``av.AudioFrame`` s (s16, stereo, 48 kHz, 20 ms
each; a G.711 client gives s16 mono at 8 kHz). :class:`AudioChunker` converts them to
float32 at ``audio.sample_rate`` with ``audio.channels`` (:class:`~reactor.media.resample.
Resampler`) and cuts the result into the ``audio_in`` ring's slots: exactly
``sample_rate // 50`` samples each.

Each chunk's presentation time (``pts``, CLOCK_MONOTONIC ns, the clock of the video
frames' capture time) comes from when the sound arrived: the last sample of a frame
whose packet arrived at ``T`` is placed at ``T``, its first ``duration`` before. aiortc
hands a decoded frame over later than its packet arrived: its audio jitter buffer holds
:data:`RECEIVER_PREFETCH` frames and releases the oldest when the next packet lands
(``JitterBuffer(capacity=16, prefetch=4)`` in aiortc 1.16's ``rtcrtpreceiver.py``; 80 ms
for 20 ms frames, measured here: 80 ms median), so the packet's arrival is the frame's
release time less that many frame durations. Video frames are released on their last
packet (:mod:`reactor.media.jitter`), so this puts sound and picture that arrived together
at the same time.

Frames that follow one another are laid end to end on that timeline, so network jitter
does not shake the chunks' times. Arrival times only ever run late (a busy event loop, a
queue, a slow packet), so the timeline follows the earliest: a frame that arrives before
the timeline expects it pulls the timeline back to it at once, and when every frame of
the last :data:`SETTLE_FRAMES` arrived late, the timeline moves later by the least of
those delays (the sender's clock runs slower than ours). When a frame arrives more than
:data:`RESYNC_S` away from where the timeline expected it (packets lost, the client
paused), the timeline starts again at the arrival time and the part-filled chunk is
dropped.
"""

from __future__ import annotations

import av
import numpy as np

from reactor.media.patches.registry import AIORTC_AUDIO_PREFETCH
from reactor.media.resample import Resampler

#: How far a frame's arrival may stray from the running timeline before it restarts.
RESYNC_S = 0.06
#: How many frames aiortc's audio receiver holds before it releases the oldest: the
#: registry's ``audio-prefetch`` reading, which :func:`reactor.media.install` checks
#: against the installed aiortc at start.
RECEIVER_PREFETCH = AIORTC_AUDIO_PREFETCH
#: Frames (of 20 ms: one second) that must all arrive late before the timeline follows.
SETTLE_FRAMES = 50
#: The length of one chunk, in seconds.
CHUNK_S = 0.02

_SCALE = {"s16": 32768.0, "s32": 2147483648.0, "flt": 1.0, "dbl": 1.0}


def frame_to_pcm(frame: av.AudioFrame) -> np.ndarray:
    """An audio frame as float32 ``(samples, channels)`` in [-1, 1].

    More than two channels are mixed down to mono (the resampler knows mono and stereo).
    Raises ``ValueError`` for a sample format other than 8/16/32-bit integer or float.
    """
    fmt = frame.format.name.rstrip("p")
    channels = len(frame.layout.channels)
    raw = frame.to_ndarray()
    # Packed formats come as (1, samples * channels), interleaved; planar as (channels, n).
    pcm = raw.T if frame.format.is_planar else raw.reshape(-1, channels)
    if fmt == "u8":
        out = (pcm.astype(np.float32) - 128.0) / 128.0
    elif fmt in _SCALE:
        out = pcm.astype(np.float32) / np.float32(_SCALE[fmt])
    else:
        raise ValueError(f"audio sample format {frame.format.name!r} is not supported")
    if channels > 2:
        mixed: np.ndarray = out.mean(axis=1, keepdims=True, dtype=np.float32)
        return mixed
    return np.ascontiguousarray(out)


def _to_channels(pcm: np.ndarray, channels: int) -> np.ndarray:
    # Done here rather than by swresample, whose stereo-to-mono mix is -3 dB per channel
    # (a full-scale tone in both channels would come out at 1.41): averaging keeps levels.
    if pcm.shape[1] == channels:
        return pcm
    if channels == 2:
        return np.repeat(pcm, 2, axis=1)
    mono: np.ndarray = pcm.mean(axis=1, keepdims=True, dtype=np.float32)
    return mono


class AudioChunker:
    """Decoded frames in, ``(chunk, pts_ns)`` pairs out: ``chunk`` float32 ``(rate // 50,
    channels)``.

    ``held_frames``: how many frame durations the frames' release lags their packets'
    arrival (:data:`RECEIVER_PREFETCH` for frames from an aiortc receiver).
    """

    def __init__(self, rate: int, channels: int, held_frames: int = 0) -> None:
        self.rate, self.channels = rate, channels
        self.held_frames = held_frames
        self.chunk = rate // 50
        self._resampler: Resampler | None = None
        self._in_format: tuple[int, int] = (0, 0)
        self._origin_ns = 0  # when output sample 0 of the current run sounds
        self._in_samples = 0  # input samples of the current run
        self._out_samples = 0  # output samples of the current run already chunked
        self._pending = np.zeros((0, channels), np.float32)
        self._late: list[int] = []  # how late each frame since the last adjustment came, ns
        self.restarts = 0
        """How many times the timeline started again (the first start included)."""

    def push(self, frame: av.AudioFrame, released_ns: int) -> list[tuple[np.ndarray, int]]:
        """Take one decoded frame handed over at ``released_ns``; return the chunks it
        completes, oldest first."""
        pcm = _to_channels(frame_to_pcm(frame), self.channels)
        in_rate, in_channels = int(frame.sample_rate), self.channels
        if len(pcm) == 0:
            return []
        duration_ns = len(pcm) * 1_000_000_000 // in_rate
        arrived_ns = released_ns - self.held_frames * duration_ns
        expected_end = self._origin_ns + (self._in_samples + len(pcm)) * 1_000_000_000 // max(
            self._in_format[0], 1)
        late = arrived_ns - expected_end
        if (self._resampler is None or (in_rate, in_channels) != self._in_format
                or abs(late) > RESYNC_S * 1e9):
            self._restart(in_rate, in_channels, arrived_ns - duration_ns)
        elif late < 0:  # earlier than the timeline: the timeline was late
            self._origin_ns += late
            self._late.clear()
        else:
            self._late.append(late)
            if len(self._late) >= SETTLE_FRAMES:
                self._origin_ns += min(self._late)
                self._late.clear()
        assert self._resampler is not None
        self._in_samples += len(pcm)
        converted = self._resampler(pcm)
        pending = np.concatenate([self._pending, converted]) if len(self._pending) else converted
        out: list[tuple[np.ndarray, int]] = []
        at = 0
        while len(pending) - at >= self.chunk:
            pts = self._origin_ns + self._out_samples * 1_000_000_000 // self.rate
            out.append((np.ascontiguousarray(pending[at:at + self.chunk], np.float32), pts))
            at += self.chunk
            self._out_samples += self.chunk
        self._pending = pending[at:]
        return out

    def _restart(self, in_rate: int, in_channels: int, origin_ns: int) -> None:
        self._resampler = Resampler(in_rate, in_channels, self.rate, self.channels)
        self._in_format = (in_rate, in_channels)
        self._origin_ns = origin_ns
        self._in_samples = self._out_samples = 0
        self._pending = np.zeros((0, self.channels), np.float32)
        self._late.clear()
        self.restarts += 1
