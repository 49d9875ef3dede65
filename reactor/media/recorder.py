"""Record the output stream to an MP4 file (``egress.record``, ``reactor run --output``).

Video is H.264; with ``audio.output`` on, the model's sound is an AAC track at the model's
own rate (``audio.sample_rate``: AAC takes 16, 24, 44.1 and 48 kHz alike, so nothing is
resampled). Both are placed on the file's timeline by presentation time: the first video
frame written is time 0, a frame whose ``pts`` is ``t`` ns later is shown at ``t``, and a
chunk of sound whose ``pts`` is ``t`` ns later starts at sample ``t * rate / 1e9`` -- so the
file keeps the picture and the sound as far apart as the model made them, however late
either reached the recorder. Gaps in the sound are silence.
"""

from __future__ import annotations

import fractions
import logging
import threading
from pathlib import Path

import av
import numpy as np

from reactor.config import Config
from reactor.errors import ReactorError
from reactor.media.convert import rgb_to_frame
from reactor.media.encoder import COLOUR

log = logging.getLogger(__name__)

#: A chunk that starts this close to where the sound so far ends continues it seamlessly
#: (the rounding of two clocks, not a gap or an overlap).
SNAP_SAMPLES = 2

#: Chunks of sound kept while no frame has come yet (the oldest go first).
MAX_WAITING = 256

_LAYOUTS = {1: "mono", 2: "stereo"}


class Recorder:
    """H.264 (and AAC) in MP4.

    ``write(rgb, pts_ns)`` adds a frame; ``write_audio(pcm, pts_ns)`` adds sound;
    ``close()`` ends the file, with the sound padded with silence to the end of the last
    frame. Without ``pts_ns`` frames are stamped one after another at the configured fps.

    With ``duration_s`` the file holds at most that much: later frames and sound are
    dropped (``reactor run --duration``).

    Frames and sound may come from two threads (egress reads them apart): one lock
    serialises the encoders and the muxer.

    Colour as the live H.264 stream has it (:data:`reactor.media.encoder.COLOUR`), with
    the same colour description in the SPS (and so in the MP4's ``colr`` box).
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: int,
                 bitrate_kbps: int = 4000, *, audio: tuple[int, int] | None = None,
                 duration_s: float | None = None) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), mode="w")
        except (OSError, av.FFmpegError) as exc:
            raise ReactorError(f"cannot record to {self.path}: {exc}") from None
        stream = self._container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bitrate_kbps * 1000
        stream.options = {"preset": "veryfast", "tune": "zerolatency"}
        self._colour = COLOUR["h264"]
        ctx = stream.codec_context
        ctx.colorspace = self._colour.colorspace
        ctx.color_primaries = self._colour.primaries
        ctx.color_trc = self._colour.trc
        ctx.color_range = self._colour.range
        # Frames are stamped in 1/fps. Not ``stream.time_base``: the muxer replaces that with
        # its own (1/15360 for MP4) when it writes the header, and frame numbers read in
        # that base collapse onto the same timestamps (the muxer then rejects frame 257).
        self._time_base = fractions.Fraction(1, fps)
        stream.time_base = self._time_base
        self._stream = stream
        self.fps = fps
        self._max_frames = None if duration_s is None else round(duration_s * fps)
        self._closed = False
        self._lock = threading.Lock()
        self.frames = 0
        self._index = -1  # the last frame's place on the timeline, in frames
        self.origin_ns: int | None = None  # the first frame's pts: time 0 of the file
        self._audio: _AudioTrack | None = None
        if audio is not None:
            rate, channels = audio
            limit = None if duration_s is None else round(duration_s * rate)
            self._audio = _AudioTrack(self._container, rate, channels, limit)
        log.info("recording to %s%s", self.path, " with sound" if audio else "")

    @classmethod
    def open(cls, config: Config, path: str | Path | None = None, *,
             duration_s: float | None = None) -> Recorder:
        """A recorder for ``config``'s video (and, with ``audio.output``, its sound)."""
        v, a = config.video, config.audio
        target = path or config.egress.record
        assert target is not None
        return cls(target, v.width, v.height, v.fps, config.egress.bitrate_kbps,
                   audio=(a.sample_rate, a.channels) if a.output else None,
                   duration_s=duration_s)

    @property
    def audio_samples(self) -> int:
        """Samples of sound placed in the file so far (silence included)."""
        return self._audio.cursor if self._audio is not None else 0

    def write(self, rgb: np.ndarray, pts_ns: int | None = None) -> bool:
        """Encode one RGB frame shown at ``pts_ns`` (CLOCK_MONOTONIC ns; ``None``: the
        next frame at the fps). Returns False when it was dropped: past ``duration_s``,
        or on a place on the timeline already taken."""
        with self._lock:
            return self._write(rgb, pts_ns)

    def _write(self, rgb: np.ndarray, pts_ns: int | None) -> bool:
        if self._closed:
            return False
        if pts_ns is None:  # no clock: the sound, if any, starts with its first chunk
            index = self._index + 1
        else:
            if self.origin_ns is None:
                self._set_origin(pts_ns)
            assert self.origin_ns is not None
            index = round((pts_ns - self.origin_ns) * self.fps / 1e9)
            if index <= self._index:
                return False
        if self._max_frames is not None and index >= self._max_frames:
            return False
        # rgb_to_frame wraps the array and converts once (libswscale): 1.4 ms at 720p,
        # against 4.9 ms for from_ndarray, which copies row by row first.
        frame = rgb_to_frame(rgb, index, self._time_base, self._colour)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._index = index
        self.frames += 1
        return True

    def write_audio(self, pcm: np.ndarray, pts_ns: int) -> None:
        """Place float32 ``(samples, channels)`` sound starting at ``pts_ns``. Sound that
        comes before the first frame waits for it (the first frame is time 0)."""
        if self._audio is None:
            raise ReactorError("this recording has no audio track (audio.output is off)")
        with self._lock:
            if not self._closed:
                self._audio.add(np.asarray(pcm, np.float32), pts_ns)

    def _set_origin(self, pts_ns: int) -> None:
        self.origin_ns = pts_ns
        if self._audio is not None:
            self._audio.start(pts_ns)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            if self._audio is not None:
                if self.origin_ns is None:  # no frame with a pts: the sound starts the file
                    self._audio.start(self._audio.first_pts())
                end = (self._index + 1) * self._audio.rate // self.fps
                self._audio.finish(end)
        finally:
            self._container.close()
            log.info("recorded %d frames%s to %s", self.frames,
                     f" and {self.audio_samples} samples of sound" if self._audio else "",
                     self.path)


class _AudioTrack:
    """The AAC stream of a recording: places chunks by pts, fills gaps with silence and
    feeds the encoder whole frames."""

    def __init__(self, container: av.container.OutputContainer, rate: int, channels: int,
                 limit: int | None) -> None:
        self.rate, self.channels, self.limit = rate, channels, limit
        stream = container.add_stream("aac", rate=rate)
        stream.layout = _LAYOUTS[channels]
        stream.format = "fltp"
        stream.bit_rate = 64_000 * channels
        # As for video: stamped in our own base, which the muxer may replace in the stream.
        self._time_base = fractions.Fraction(1, rate)
        stream.time_base = self._time_base
        self._container = container
        self._stream = stream
        self._frame_size = 1024  # AAC-LC's frame
        self._origin: int | None = None
        self._waiting: list[tuple[np.ndarray, int]] = []
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._encoded = 0  # samples handed to the encoder
        self.cursor = 0  # samples placed (encoded + pending)

    def first_pts(self) -> int:
        return min((pts for _, pts in self._waiting), default=0)

    def start(self, origin_ns: int) -> None:
        self._origin = origin_ns
        waiting, self._waiting = self._waiting, []
        for pcm, pts in waiting:
            self.add(pcm, pts)

    def add(self, pcm: np.ndarray, pts_ns: int) -> None:
        if pcm.ndim != 2 or pcm.shape[1] != self.channels:
            raise ReactorError(f"recorder: expected sound shaped (samples, {self.channels}), "
                               f"got {pcm.shape}")
        if self._origin is None:
            self._waiting.append((pcm.copy(), pts_ns))
            del self._waiting[:-MAX_WAITING]
            return
        index = round((pts_ns - self._origin) * self.rate / 1e9)
        if abs(index - self.cursor) <= SNAP_SAMPLES:
            index = self.cursor
        if index < self.cursor:  # overlaps what is placed already (or starts before 0)
            pcm = pcm[self.cursor - index:]
            index = self.cursor
        if index > self.cursor:
            self._silence(index - self.cursor)
        self._place(pcm)

    def finish(self, end: int) -> None:
        """Pad with silence to sample ``end``, encode what is left and flush."""
        if self._waiting and self._origin is not None:
            self.start(self._origin)
        if end > self.cursor:
            self._silence(end - self.cursor)
        self._encode(final=True)
        for packet in self._stream.encode(None):
            self._container.mux(packet)

    def _silence(self, n: int) -> None:
        while n > 0:
            step = min(n, self.rate)
            self._place(np.zeros((step, self.channels), np.float32))
            n -= step

    def _place(self, pcm: np.ndarray) -> None:
        if self.limit is not None:
            pcm = pcm[:max(0, self.limit - self.cursor)]
        if not len(pcm):
            return
        self._pending.append(pcm)
        self._pending_n += len(pcm)
        self.cursor += len(pcm)
        if self._pending_n >= self._frame_size:
            self._encode(final=False)

    def _encode(self, *, final: bool) -> None:
        if not self._pending_n:
            return
        data = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        size = self._frame_size
        whole = len(data) if final else len(data) // size * size
        for at in range(0, whole, size):
            part = np.ascontiguousarray(data[at:at + size].T)
            frame = av.AudioFrame.from_ndarray(part, format="fltp",
                                               layout=_LAYOUTS[self.channels])
            frame.sample_rate = self.rate
            frame.pts = self._encoded
            frame.time_base = self._time_base
            self._encoded += part.shape[1]
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        rest = data[whole:]
        self._pending = [rest] if len(rest) else []
        self._pending_n = len(rest)
