"""Record the output stream to an MP4 file (``egress.record``, ``reactor run --output``).

Video is H.264, in one of two modes that share everything past the encoder:

- **packets** (``egress.record``, ``encode=False``): the recorder muxes the H.264 packets
  egress's live encoder already made for the viewers (:meth:`Recorder.write_packets`), so
  a frame is encoded once whether it is watched, recorded or both. The file is then the
  live stream itself: libx264 ``ultrafast``, constrained baseline, at ``egress.bitrate_kbps``
  (NVENC where egress uses it), with a keyframe every 4 s *and* wherever a viewer forced one
  (a viewer joining, a PLI/FIR after loss): those extra IDRs are in the file too. Packets
  come as the live encoder writes them, Annex B with SPS/PPS before every IDR; FFmpeg's MP4
  muxer takes the first keyframe's SPS/PPS as the ``avcC`` and rewrites each packet with
  length prefixes. The first packet written is a keyframe (packets before one are
  dropped: a recorder that starts on a running encoder waits for the next IDR).
- **encoding** (``reactor run --output``, ``encode=True``): no live encoder exists, so the
  recorder encodes RGB frames itself (:meth:`Recorder.write`) with libx264 ``veryfast`` /
  ``zerolatency`` (no B-frames, one packet per frame) at the same bitrate, and muxes its
  packets the same way.

With ``audio.output`` on, the model's sound is an AAC track at the model's own rate
(``audio.sample_rate``: AAC takes 16, 24, 44.1 and 48 kHz alike, so nothing is
resampled). Both are placed on the file's timeline by presentation time: the first video
frame written is time 0, a frame whose ``pts`` is ``t`` ns later is shown at ``t``, and a
chunk of sound whose ``pts`` is ``t`` ns later starts at sample ``t * rate / 1e9`` -- so the
file keeps the picture and the sound as far apart as the model made them, however late
either reached the recorder. Gaps in the sound are silence.
"""

from __future__ import annotations

import fractions
import io
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.codec.context import CodecContext
from av.video.codeccontext import VideoCodecContext

from reactor.errors import ReactorError
from reactor.media.convert import YuvColour, describe_colour, rgb_to_frame
from reactor.media.encoder import COLOUR

log = logging.getLogger(__name__)

#: A chunk that starts this close to where the sound so far ends continues it seamlessly
#: (the rounding of two clocks, not a gap or an overlap).
SNAP_SAMPLES = 2

#: Chunks of sound kept while no frame has come yet (the oldest go first).
MAX_WAITING = 256

_LAYOUTS = {1: "mono", 2: "stereo"}


def _h264_stream(container: av.container.OutputContainer, width: int, height: int,
                 fps: int, colour: YuvColour) -> av.video.stream.VideoStream:
    """An H.264 stream of ``container`` that muxes packets made elsewhere.

    The stream is made from a template, and PyAV (17 and later) leaves the codec context
    of such a stream unopened, so no encoder runs for it; the colour description set on
    its context reaches the stream's parameters when the header is written, and so the
    MP4's ``colr`` box, as the SPS's VUI has it.
    """
    scratch = av.open(io.BytesIO(), "w", format="mp4")
    try:
        template = scratch.add_stream("h264", rate=fps, width=width, height=height)
        stream = container.add_stream_from_template(template)
    finally:
        scratch.close()
    describe_colour(stream.codec_context, colour)
    return stream


def _x264_context(width: int, height: int, fps: int, bitrate_kbps: int,
                  colour: YuvColour) -> VideoCodecContext:
    """The encoder of the encoding mode: Annex B, SPS/PPS in band, one packet a frame."""
    ctx = CodecContext.create("libx264", "w")
    assert isinstance(ctx, VideoCodecContext)
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.bit_rate = bitrate_kbps * 1000
    ctx.framerate = fractions.Fraction(fps, 1)
    ctx.time_base = fractions.Fraction(1, fps)
    ctx.max_b_frames = 0
    describe_colour(ctx, colour)
    ctx.options = {"preset": "veryfast", "tune": "zerolatency"}
    ctx.open()
    return ctx


class Recorder:
    """H.264 (and AAC) in MP4.

    ``encode=True``: ``write(rgb, pts_ns)`` encodes and adds a frame. ``encode=False``:
    ``write_packets(packets, pts_ns)`` adds a frame some live H.264 encoder made (see the
    module docstring). Either way ``write_audio(pcm, pts_ns)`` adds sound and ``close()``
    ends the file, with the sound padded with silence to the end of the last frame.
    Without ``pts_ns`` frames are stamped one after another at the configured fps.

    With ``duration_s`` the file holds at most that much: later frames and sound are
    dropped (``reactor run --duration``).

    Frames and sound may come from two threads (egress reads them apart): one lock
    serialises the encoders and the muxer.

    Colour as the live H.264 stream has it (:data:`reactor.media.encoder.COLOUR`), with
    the same colour description in the SPS and in the MP4's ``colr`` box.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: int,
                 bitrate_kbps: int = 4000, *, audio: tuple[int, int] | None = None,
                 duration_s: float | None = None, encode: bool = True) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), mode="w")
        except (OSError, av.FFmpegError) as exc:
            raise ReactorError(f"cannot record to {self.path}: {exc}") from None
        self._colour = COLOUR["h264"]
        self._stream = _h264_stream(self._container, width, height, fps, self._colour)
        self._encoder = (_x264_context(width, height, fps, bitrate_kbps, self._colour)
                         if encode else None)
        # Frames are stamped in 1/fps. Not ``stream.time_base``: the muxer replaces that with
        # its own (1/15360 for MP4) when it writes the header, and frame numbers read in
        # that base collapse onto the same timestamps (the muxer then rejects frame 257).
        self._time_base = fractions.Fraction(1, fps)
        self._stream.time_base = self._time_base
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
        log.info("recording to %s%s (%s)", self.path, " with sound" if audio else "",
                 "encoding" if encode else "the live H.264 packets")

    @property
    def audio_samples(self) -> int:
        """Samples of sound placed in the file so far (silence included)."""
        return self._audio.cursor if self._audio is not None else 0

    def write(self, rgb: np.ndarray, pts_ns: int | None = None) -> bool:
        """Encode one RGB frame shown at ``pts_ns`` (CLOCK_MONOTONIC ns; ``None``: the
        next frame at the fps). Returns False when it was dropped: past ``duration_s``,
        or on a place on the timeline already taken."""
        if self._encoder is None:
            raise ReactorError("this recorder muxes packets (encode=False): use write_packets")
        with self._lock:
            index = self._place(pts_ns)
            if index is None:
                return False
            # rgb_to_frame wraps the array and converts once (libswscale): 1.4 ms at 720p,
            # against 4.9 ms for from_ndarray, which copies row by row first.
            frame = rgb_to_frame(rgb, index, self._time_base, self._colour)
            return self._mux_video(self._encoder.encode(frame), index)

    def write_packets(self, packets: Sequence[av.Packet[Any]], pts_ns: int) -> bool:
        """Add the H.264 packets a live encoder made of the frame shown at ``pts_ns``
        (CLOCK_MONOTONIC ns), without decoding or encoding them. They are copied: the
        viewers' senders may be reading them. Returns False when the frame was dropped:
        past ``duration_s``, on a place already taken, or before the first keyframe."""
        if self._encoder is not None:
            raise ReactorError("this recorder encodes (encode=True): use write")
        with self._lock:
            if self.origin_ns is None and not any(p.is_keyframe for p in packets):
                return False  # the file starts at a keyframe
            index = self._place(pts_ns)
            if index is None:
                return False
            copies = []
            for packet in packets:
                copy = av.Packet(bytes(packet))
                copy.is_keyframe = packet.is_keyframe
                copies.append(copy)
            return self._mux_video(copies, index)

    def _place(self, pts_ns: int | None) -> int | None:
        """The frame's place on the file's timeline, in frames; None to drop it."""
        if self._closed:
            return None
        if pts_ns is None:  # no clock: the sound, if any, starts with its first chunk
            index = self._index + 1
        else:
            if self.origin_ns is None:
                self._set_origin(pts_ns)
            assert self.origin_ns is not None
            index = round((pts_ns - self.origin_ns) * self.fps / 1e9)
            if index <= self._index:
                return None
        if self._max_frames is not None and index >= self._max_frames:
            return None
        return index

    def _mux_video(self, packets: Sequence[av.Packet[Any]], index: int) -> bool:
        """Mux one frame's packets at ``index``. Both encoders give one packet a frame (no
        look-ahead, no B-frames); a packet more would be a frame more, at the next place."""
        for packet in packets:
            packet.stream = self._stream
            packet.time_base = self._time_base
            packet.pts = packet.dts = index
            packet.duration = 1
            self._container.mux(packet)
            self._index = index
            index += 1
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
            if self._encoder is not None:
                self._mux_video(self._encoder.encode(None), self._index + 1)
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
