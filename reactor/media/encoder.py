"""Encode RGB frames once into H.264 or VP8 packets for every viewer.

One :class:`Encoder` per codec in use; the egress worker hands its packets to all viewers
(see :mod:`reactor.media.tracks`), so a frame is encoded exactly once however many people
watch. Settings favour latency and browser compatibility:

- H.264: NVENC (``h264_nvenc``) when asked for and it opens, else libx264 ``ultrafast`` /
  ``zerolatency``. No B-frames (they reorder, which costs latency and which WebRTC
  receivers handle badly), constrained-baseline profile (every browser decodes it, and it
  matches the ``profile-level-id=42e01f`` aiortc offers), SPS/PPS repeated in-band before
  every IDR so a viewer that joins mid-stream can start at the next keyframe, and Annex B
  output (no global header), which is what aiortc's H.264 packetizer splits on.

  libx264's ``zerolatency`` tune is what makes it low-latency; the options string x264
  writes into the stream shows it: ``sliced_threads=1`` (each frame is cut into one slice
  per thread and the threads encode the slices of the *same* frame, so ``encode()``
  returns the frame it was given, with no frame-thread delay), ``rc_lookahead=0``, no
  sync look-ahead, no mb-tree. Sliced threading would take one thread per core; reactor
  caps it at :data:`X264_MAX_THREADS` (4). A frame's slices are separate NAL units, which
  aiortc packs into packets of one RTP timestamp with the marker on the last, and a
  receiver decodes them as one frame. Measured at 720p on moving video (issue 19), 8 and
  16 slices cost 15 % and 33 % more CPU per frame than 2 (3.9 and 4.5 ms against 3.4 ms)
  with no better picture, 4 cost 1 % more; on 2 cores the cap changes nothing (x264's own
  choice is 2). One thread (no slices) was tried too: encoding the same frames interleaved
  with 2 and 4 threads on the shared 2-core machine, its p50 was the same (about 4 ms) and
  its p99 no steadier, so two stay.
- VP8: libvpx with ``deadline=realtime``, no lag (no look-ahead frames), error-resilient
  mode so a lost packet damages one frame, not the rest of the GOP, CBR at the configured
  rate, and two settings that make its cost per frame small and steady:

  - **One thread.** libvpx's VP8 encoder splits a frame into macroblock rows across its
    threads, and a row waits for the row above by spinning (``vp8_atomic_spin_wait``:
    pause, ``sched_yield``, check again), never sleeping. FFmpeg gives it as many threads
    as there are cores. On a busy 2-core machine the spinning thread takes the core the
    thread it waits for needs: 1280x720 frames that take 3-4 ms on one thread took 100 ms
    to 2 s on two, and a WHEP viewer got about 6 fps while H.264 got 30 (measured; figures
    in docs/performance.md). One thread encodes 720p in a few ms, well inside the 33 ms a
    frame at 30 fps allows, and leaves the other cores to the model and to the event loop
    that sends the packets. libwebrtc also gives 720p VP8 one thread on a 2-core machine.
  - **A fixed speed**, ``cpu-used`` -6. In realtime mode a *positive* ``cpu-used`` N
    means "choose the speed yourself so that a frame takes (16 - N)/16 of the frame
    interval", judged by wall-clock encode time; on a shared machine that time is mostly
    other processes' load, so the speed (and the picture quality) wandered from run to
    run. A negative value fixes the speed at its magnitude (0..16, higher is faster and
    blurrier). At 6, a moving 720p texture measured 43.9 dB Y-PSNR at 4 Mbps for about
    7 ms of CPU a frame; 8 lost 1.6 dB and 16 lost 12 dB for under 1 ms saved.

Colour (see :mod:`reactor.media.convert` for what receivers do, measured): frames are
converted with the BT.601 matrix, limited range. H.264 says so in its VUI
(``matrix_coefficients`` 6, ``colour_primaries`` and ``transfer_characteristics`` 1,
``video_full_range_flag`` 0), set on the codec context, which libx264 and NVENC both write
into every SPS. VP8 has no such field; BT.601 limited range is what VP8 decoders assume.

Packets carry ``pts`` in the 90 kHz RTP clock with ``time_base`` set, which is what
aiortc's ``Encoder.pack()`` converts from; ``packet.is_keyframe`` says which are keyframes.
"""

from __future__ import annotations

import fractions
import logging
import os
import threading
from typing import Any, Literal

import av
from av.codec.context import CodecContext
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType

from reactor.errors import EncoderError as EncoderError  # defined there, exported here too
from reactor.media.convert import (
    BT601,
    VIDEO_TIME_BASE,
    RgbArray,
    YuvColour,
    describe_colour,
    rgb_to_frame,
)
from reactor.media.gpu import open_h264

logger = logging.getLogger(__name__)

Codec = Literal["h264", "vp8"]
CODECS: tuple[Codec, ...] = ("h264", "vp8")
#: The colour each codec's frames are made in (and, for H.264, signalled as).
COLOUR: dict[Codec, YuvColour] = {"h264": BT601, "vp8": BT601}
#: How far (a factor either way) the rate may move from the one the encoder's VBV was
#: opened with before the encoder is opened again at the new rate (see set_bitrate).
REOPEN_FACTOR = 1.5
#: libvpx takes its rate when it opens and ignores a change of ``bit_rate`` after (measured:
#: 360p noise kept 1.5-1.7 Mbit/s after a change from 1.6 to 0.4), so VP8 reopens for a
#: lower rate already past this factor: an encoder above its viewers' estimate overfills
#: their links. A higher rate waits for :data:`REOPEN_FACTOR` (below the estimate is only
#: a softer picture, and every reopen costs a keyframe).
VP8_DOWN_FACTOR = 1.2
#: The most threads (slices a frame) libx264 gets, whatever the number of cores.
X264_MAX_THREADS = 4


def x264_threads() -> int:
    """libx264's thread count here: one per core this process may run on, at most
    :data:`X264_MAX_THREADS`."""
    return max(1, min(X264_MAX_THREADS, len(os.sched_getaffinity(0))))


def _h264_options(kind: str, bitrate_bps: int, fps: int,
                  intra_refresh: bool = False) -> dict[str, str]:
    if kind == "h264_nvenc":
        nvenc = {
            "preset": "p1",  # fastest
            "tune": "ull",  # ultra-low latency: no look-ahead, no reordering
            "zerolatency": "1",
            "delay": "0",  # hand each packet back with its frame, not after a queue
            "rc": "cbr",
            "profile": "baseline",
            "forced-idr": "1",
            "maxrate": str(bitrate_bps),
            "bufsize": str(bitrate_bps // 2),
        }
        if intra_refresh:
            # Not measured here (no GPU): NVENC's own periodic intra refresh, one wave
            # a GOP; a forced IDR (forced-idr above) still starts a join.
            nvenc["intra-refresh"] = "1"
        return nvenc
    params = "repeat-headers=1:aud=0"
    if intra_refresh:
        # A column of intra blocks sweeps the picture once a GOP instead of an IDR at
        # each GOP; a forced keyframe (a join, a PLI) is still an IDR (forced-idr).
        params += ":intra-refresh=1"
    return {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "profile": "baseline",
        # A forced keyframe must be an IDR, or a joining decoder cannot start there.
        "forced-idr": "1",
        # repeat-headers: SPS/PPS before every IDR (the default without a global header,
        # stated here because a joining viewer depends on it).
        "x264-params": params,
        "maxrate": str(bitrate_bps),
        "bufsize": str(bitrate_bps // 2),
    }


def _vp8_options(bitrate_bps: int) -> dict[str, str]:
    return {
        "deadline": "realtime",
        # Negative: a fixed speed of 6 (libwebrtc's desktop default); a positive value
        # would make libvpx pick the speed itself from measured wall time (see above).
        "cpu-used": "-6",
        "lag-in-frames": "0",
        "error-resilient": "default",
        "auto-alt-ref": "0",
        "static-thresh": "1",
        # CBR: a constant rate keeps frame sizes, and thus send bursts, even.
        "minrate": str(bitrate_bps),
        "maxrate": str(bitrate_bps),
        "bufsize": str(bitrate_bps // 2),
        "undershoot-pct": "100",
        "overshoot-pct": "15",
    }


def _has_idr(data: bytes) -> bool:
    """Whether Annex B ``data`` holds an IDR slice (NAL unit type 5)."""
    at = data.find(b"\x00\x00\x01")
    while at >= 0 and at + 3 < len(data):
        if data[at + 3] & 0x1F == 5:
            return True
        at = data.find(b"\x00\x00\x01", at + 3)
    return False


def _open_context(
    name: str, width: int, height: int, fps: int, bitrate_bps: int, gop: int,
    intra_refresh: bool = False,
) -> VideoCodecContext:
    ctx = CodecContext.create(name, "w")
    assert isinstance(ctx, VideoCodecContext)
    ctx.width = width
    ctx.height = height
    ctx.pix_fmt = "yuv420p"
    ctx.bit_rate = bitrate_bps
    ctx.framerate = fractions.Fraction(fps, 1)
    # Encode directly in the RTP clock so packets need no rescaling downstream.
    ctx.time_base = VIDEO_TIME_BASE
    ctx.gop_size = gop
    ctx.max_b_frames = 0
    colour = COLOUR["vp8" if name == "libvpx" else "h264"]
    # The colour description. libvpx's VP8 ignores these (VP8 cannot carry them).
    describe_colour(ctx, colour)
    if name == "libvpx":
        # One thread: libvpx's VP8 row threads wait for each other by spinning (see the
        # module docstring); on a busy machine that made a 4 ms frame take hundreds of ms.
        # Set before open(): libvpx takes its thread count when the encoder is created.
        ctx.thread_count = 1
        ctx.qmin, ctx.qmax = 2, 56
        ctx.options = _vp8_options(bitrate_bps)
    else:
        if name == "libx264":
            # Sliced threads, at most X264_MAX_THREADS slices a frame (module docstring).
            ctx.thread_count = x264_threads()
        ctx.options = _h264_options(name, bitrate_bps, fps, intra_refresh)
    ctx.open()
    return ctx


class Encoder:
    """Encodes RGB frames of one size into packets of one codec.

    ``codec`` is ``"h264"`` or ``"vp8"``. With ``hardware=True`` H.264 tries NVENC first and
    falls back to libx264 (logged) when NVENC does not open; :attr:`name` tells which
    encoder runs. Not thread-safe except :meth:`force_keyframe`, which may be called from
    any thread (e.g. the event loop while :meth:`encode` runs in an executor).
    """

    def __init__(
        self,
        codec: Codec,
        width: int,
        height: int,
        *,
        fps: int = 30,
        bitrate_kbps: int = 4000,
        hardware: bool = False,
        keyframe_interval_s: float = 4.0,
        intra_refresh: bool = False,
    ) -> None:
        if codec not in CODECS:
            raise EncoderError(f"unknown codec {codec!r}: expected one of {', '.join(CODECS)}")
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise EncoderError(f"frame size must be positive and even, found {width}x{height}")
        self.codec: Codec = codec
        #: The matrix and range frames are converted with (see :data:`COLOUR`).
        self.colour: YuvColour = COLOUR[codec]
        self.width = width
        self.height = height
        self.fps = fps
        self.bitrate_kbps = bitrate_kbps
        gop = max(1, round(fps * keyframe_interval_s))
        #: Why H.264 runs on libx264 although NVENC was asked for ("" when it was not, or
        #: when NVENC opened): no NVENC, or its session limit (reactor.media.gpu).
        self.fallback = ""

        #: Periodic intra refresh instead of an IDR each GOP (H.264 only; see
        #: egress.intra_refresh): the largest frame is a forced keyframe's, not the GOP's.
        self.intra_refresh = intra_refresh and codec == "h264"

        def open_named(name: str, kbps: int = bitrate_kbps) -> VideoCodecContext:
            return _open_context(name, width, height, fps, kbps * 1000, gop,
                                 self.intra_refresh)

        self._open = open_named
        self._vbv_kbps = bitrate_kbps  # the rate the VBV limits were opened with
        self.reopened = 0
        if codec == "vp8":
            try:
                ctx = open_named("libvpx")
            except (av.FFmpegError, ValueError) as exc:
                raise EncoderError(f"no vp8 encoder could be opened: libvpx: {exc}") from exc
        else:
            ctx, _, self.fallback = open_h264("h264_nvenc" if hardware else "libx264",
                                              open_named)
        self._ctx: VideoCodecContext | None = ctx
        self.name: str = ctx.name
        self._keyframe_requested = threading.Event()
        self._keyframe_requested.set()  # the first frame is a keyframe anyway; make it so
        self.frames_encoded = 0
        self.keyframes = 0
        self.bytes_out = 0

    def force_keyframe(self) -> None:
        """Make the next encoded frame a keyframe (IDR for H.264). Thread-safe."""
        self._keyframe_requested.set()

    def encode(self, rgb: RgbArray | av.VideoFrame, pts: int) -> list[av.Packet[Any]]:
        """Encode one RGB uint8 HxWx3 frame; ``pts`` is in the 90 kHz RTP clock.

        A ``yuv420p`` ``av.VideoFrame`` in :attr:`colour` (the GPU path's planes, see
        :mod:`reactor.media.gpu_colour`) is encoded as it is, at ``pts``.
        """
        if isinstance(rgb, av.VideoFrame):
            rgb.pts = pts
            return self.encode_frame(rgb)
        if rgb.shape[:2] != (self.height, self.width):
            raise EncoderError(
                f"{self.codec} encoder expects {self.width}x{self.height} frames, "
                f"found {rgb.shape[1]}x{rgb.shape[0]}"
            )
        return self.encode_frame(rgb_to_frame(rgb, pts, colour=self.colour))

    def encode_frame(self, frame: av.VideoFrame) -> list[av.Packet[Any]]:
        """Encode a yuv420p frame of the encoder's size whose pts is in the 90 kHz clock.

        The frame must be in :attr:`colour` (made by ``rgb_to_frame(..., colour=...)``):
        its samples are sent as they are, and a receiver reads them with that colour.
        """
        if self._ctx is None:
            raise EncoderError(f"{self.name} encoder is closed")
        if self._keyframe_requested.is_set():
            self._keyframe_requested.clear()
            frame.pict_type = PictureType.I
        else:
            # Let the encoder choose; a reused frame object could still carry an old I.
            frame.pict_type = PictureType.NONE
        try:
            packets = list(self._ctx.encode(frame))
        except av.FFmpegError as exc:
            raise EncoderError(f"{self.name} failed to encode a frame: {exc}") from exc
        self.frames_encoded += 1
        for packet in packets:
            packet.time_base = VIDEO_TIME_BASE
            if self.intra_refresh and packet.is_keyframe and not _has_idr(bytes(packet)):
                # x264 flags the frame that starts a refresh wave (a recovery point) as
                # a key frame; a decoder can only join at an IDR, and viewers wait for
                # "keyframes" (reactor.media.tracks), so only an IDR is one here.
                packet.is_keyframe = False
            self.keyframes += bool(packet.is_keyframe)
            self.bytes_out += packet.size
        return packets

    def set_bitrate(self, kbps: int) -> None:
        """Encode the next frames at ``kbps`` (the viewers' estimate, see
        :mod:`reactor.media.bwe`).

        libx264 and NVENC in FFmpeg reconfigure their average rate when the context's
        ``bit_rate`` changes between frames (measured with libx264 on 360p noise: 1.9
        Mbit/s, then 0.8 Mbit/s over the 2 s after a change to 0.5 Mbit/s). Their VBV
        (``maxrate``, ``bufsize``: what caps a keyframe) is fixed when the context opens,
        and PyAV cannot change it on an open one; measured on a 1.5 Mbit/s link, 720p
        grain at 0.5 Mbit/s under a 4 Mbit/s VBV made keyframes that took the pacer
        longer than the viewer's queue holds, and every keyframe was lost again. So a
        rate beyond :data:`REOPEN_FACTOR` of the one the VBV was opened at reopens the
        encoder at it (the next frame is a keyframe, sized for the new rate).

        libvpx (VP8) keeps the rate it was opened at whatever ``bit_rate`` says after
        (measured, see :data:`VP8_DOWN_FACTOR`; libwebrtc reconfigures it with
        ``vpx_codec_enc_config_set``, which PyAV does not reach): it reopens at a rate
        below the opened one by :data:`VP8_DOWN_FACTOR`, or above it by
        :data:`REOPEN_FACTOR`, and in between it stays at its opened rate.
        """
        if self._ctx is None or kbps == self.bitrate_kbps:
            return
        self.bitrate_kbps = kbps
        down = VP8_DOWN_FACTOR if self.codec == "vp8" else REOPEN_FACTOR
        if not self._vbv_kbps / down <= kbps <= self._vbv_kbps * REOPEN_FACTOR:
            try:
                ctx = self._open(self.name, kbps)
            except (av.FFmpegError, ValueError) as exc:
                # NVENC's session limit, say: keep the open encoder, its VBV as it was.
                logger.warning("%s could not be opened again at %d kbps (%s); its rate "
                               "changes, its VBV stays at %d kbps", self.name, kbps, exc,
                               self._vbv_kbps)
            else:
                self._ctx = ctx
                self._vbv_kbps = kbps
                self.reopened += 1
                self._keyframe_requested.set()
                return
        self._ctx.bit_rate = kbps * 1000

    @property
    def closed(self) -> bool:
        return self._ctx is None

    def close(self) -> None:
        """Drop the codec context; PyAV frees it when the last reference goes."""
        self._ctx = None

    def __repr__(self) -> str:
        return (
            f"Encoder({self.name}, {self.width}x{self.height}@{self.fps}, "
            f"{self.bitrate_kbps} kbps, frames={self.frames_encoded})"
        )
