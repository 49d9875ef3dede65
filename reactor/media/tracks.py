"""Fan pre-encoded video out to many WebRTC viewers: encode once, send to all.

How aiortc sends pre-encoded media (checked in aiortc 1.16, ``rtcrtpsender.py``):
``RTCRtpSender._next_encoded_frame`` awaits ``track.recv()``; an ``av.Frame`` is encoded
by the sender's own encoder, but anything else (an ``av.Packet``) goes to
``encoder.pack(packet)``, which only packetizes: H.264 splits the Annex B bitstream into
NAL units (STAP-A/FU-A), VP8 prefixes payload descriptors. The RTP timestamp comes from
``packet.pts`` converted from ``packet.time_base``. So one ``av.Packet`` can be handed to
many senders; ``pack`` only reads it.

Keyframe requests: ``RTCRtpSender._handle_rtcp_packet`` answers an RTCP PLI or FIR by
calling ``self._send_keyframe()``, which only sets a flag consulted when the sender
encodes an ``av.Frame`` itself; with packets the request is silently lost. We wrap
``RTCRtpSender._send_keyframe`` (idempotently, see :func:`enable_keyframe_requests`) so
that when the sender's track is an :class:`EncodedVideoTrack`, the request reaches the
track, and through it the shared :class:`~reactor.media.encoder.Encoder`. It is the
registry's ``keyframe-requests`` patch (:mod:`reactor.media.patches`), installed by
:func:`reactor.media.install`, which egress calls at start; making a track patches nothing.

Sender reports: a track's ``media_clock`` (:class:`~reactor.media.clock.MediaClock`, set
by the :class:`Broadcaster` that made it) says which session-clock time its packets'
``pts`` stand for, so the RTCP sender reports of its sender map RTP time to NTP by that
clock (:mod:`reactor.media.clock`), as the audio track's do: a receiver lines them up.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpsender import RTCRtpSender

from reactor.media.bwe import BandwidthEstimate, RateChange, RateSteps
from reactor.media.clock import MediaClock
from reactor.media.convert import RgbArray
from reactor.media.encoder import CODECS, Codec, Encoder
from reactor.media.sdp import codec_preferences

logger = logging.getLogger(__name__)

_PATCH_ATTR = "__reactor_keyframe_original__"
#: The longest a keyframe request waits, however often requests come (see push()).
MAX_KEYFRAME_INTERVAL_S = 2.0


def enable_keyframe_requests() -> None:
    """Route PLI/FIR from a viewer to its :class:`EncodedVideoTrack`. Idempotent.

    Other tracks keep aiortc's behaviour (the sender's own encoder makes a keyframe).
    """
    current = RTCRtpSender._send_keyframe
    if hasattr(current, _PATCH_ATTR):
        return

    @functools.wraps(current)
    def _send_keyframe(self: RTCRtpSender) -> None:
        track = self.track
        if isinstance(track, EncodedVideoTrack):
            track.request_keyframe()
        current(self)

    setattr(_send_keyframe, _PATCH_ATTR, current)
    RTCRtpSender._send_keyframe = _send_keyframe  # type: ignore[method-assign]


def disable_keyframe_requests() -> None:
    """Undo :func:`enable_keyframe_requests` (tests, comparisons). Idempotent."""
    original = getattr(RTCRtpSender._send_keyframe, _PATCH_ATTR, None)
    if original is not None:
        RTCRtpSender._send_keyframe = original  # type: ignore[method-assign]


def keyframe_requests_enabled() -> bool:
    """Whether :func:`enable_keyframe_requests` is in effect."""
    return hasattr(RTCRtpSender._send_keyframe, _PATCH_ATTR)


class EncodedVideoTrack(MediaStreamTrack):
    """A video track whose ``recv()`` returns pre-encoded ``av.Packet``\\ s of one codec.

    Packets are queued by :meth:`deliver` (on the event loop thread). The queue holds at
    most ``queue_size`` packets: when a viewer falls that far behind, its queue is cleared
    and it skips ahead to the next keyframe, asking for one, so it is never buffered
    without bound and never decodes a frame whose references it lacks. A new track also
    waits for a keyframe. ``sent`` and ``dropped`` count packets. ``media_clock``, when
    set, is the clock the packets' ``pts`` (90 kHz) are read on (for sender reports).
    """

    kind = "video"

    def __init__(
        self,
        codec: Codec,
        *,
        queue_size: int = 4,
        on_keyframe_request: Callable[[EncodedVideoTrack], None] | None = None,
        media_clock: MediaClock | None = None,
        on_sent: Callable[[float], None] | None = None,
        estimate: BandwidthEstimate | None = None,
    ) -> None:
        super().__init__()
        #: What this viewer's path carries (fed by its RTCP, :mod:`reactor.media.bwe`).
        self.estimate = estimate
        self._on_sent = on_sent
        self._stamps: collections.deque[int] = collections.deque()
        self.codec: Codec = codec
        self.media_clock = media_clock
        self.queue_size = queue_size
        self.sent = 0
        self.dropped = 0
        self.keyframe_requests = 0
        self._on_keyframe_request = on_keyframe_request
        self._queue: collections.deque[av.Packet[Any]] = collections.deque()
        self._ready = asyncio.Event()
        self._needs_keyframe = True

    def deliver(self, packet: av.Packet[Any], encoded_ns: int = 0) -> None:
        """Queue one packet for this viewer (event loop thread only); ``encoded_ns``
        (``perf_counter_ns``) is when its frame finished encoding, for ``on_sent``."""
        if self.readyState != "live":
            return
        if self._needs_keyframe:
            if not packet.is_keyframe:
                self.dropped += 1
                return
            self._needs_keyframe = False
        elif len(self._queue) >= self.queue_size:
            # Fell behind: what is queued is stale, and the packets after it reference
            # frames this viewer will now never see. Skip to the next keyframe.
            self.dropped += len(self._queue)
            self._queue.clear()
            self._stamps.clear()
            if not packet.is_keyframe:
                self.dropped += 1
                self._needs_keyframe = True
                self.request_keyframe()
                return
        self._queue.append(packet)
        self._stamps.append(encoded_ns)
        self._ready.set()

    def request_keyframe(self) -> None:
        """Ask the encoder feeding this track for a keyframe (PLI/FIR, join, lag)."""
        self.keyframe_requests += 1
        if self._on_keyframe_request is not None:
            self._on_keyframe_request(self)

    async def recv(self) -> av.Packet[Any]:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        self.sent += 1
        encoded_ns = self._stamps.popleft()
        if self._on_sent is not None and encoded_ns:
            # The send stage: from the encoded frame to its sender taking it (this
            # viewer's queue and the event loop's hand-off); the sender packetizes next.
            self._on_sent((time.perf_counter_ns() - encoded_ns) / 1e6)
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        self._queue.clear()
        self._stamps.clear()
        self._ready.set()  # wake recv() so the sender sees MediaStreamError and exits


def add_encoded_track(pc: RTCPeerConnection, track: EncodedVideoTrack) -> RTCRtpTransceiver:
    """Add ``track`` to ``pc`` so that exactly its codec is negotiated.

    Call *before* ``pc.setRemoteDescription(offer)``: aiortc fixes a transceiver's codecs
    while applying the remote description (later ``setCodecPreferences`` calls are
    ignored for that negotiation) and reuses a not-yet-negotiated transceiver of the same
    kind for the offer's m-line. The sender packs packets with whatever codec was
    negotiated, so a mismatch would send H.264 bytes labelled VP8.
    """
    transceiver = pc.addTransceiver(track, direction="sendonly")
    transceiver.setCodecPreferences(codec_preferences(track.codec))
    return transceiver


@dataclass(frozen=True)
class ViewerStats:
    """One viewer's counters, as :meth:`Broadcaster.stats` reports them."""

    id: str
    codec: Codec
    sent: int
    dropped: int
    queued: int
    estimate_bps: float | None = None
    loss: float | None = None


class Broadcaster:
    """Encodes each pushed RGB frame once per codec in use and fans packets to viewers.

    An :class:`Encoder` exists only while at least one viewer of its codec does, or a
    :meth:`hold` on the codec (a recording, which muxes the packets :meth:`push` returns
    instead of encoding the frames again: keyframes forced for viewers are in it too). Call
    :meth:`add_viewer` / :meth:`remove_viewer` on the event loop thread; :meth:`push` may
    be called from any thread (e.g. ``await loop.run_in_executor(None, b.push, rgb, pts)``
    to keep the loop free while encoding): delivery is handed to the loop thread.
    PLI/FIR requests are coalesced to at most one forced keyframe per
    ``min_keyframe_interval_s``, a gap that doubles (up to :data:`MAX_KEYFRAME_INTERVAL_S`)
    while requests keep coming within twice the gap, so one lossy viewer cannot make
    everyone's stream all keyframes; a join forces one at once. With ``min_bitrate_kbps``
    each viewer's track has a :class:`~reactor.media.bwe.BandwidthEstimate` (starting at
    ``start_bitrate_kbps``, at most ``bitrate_kbps``) and each encoder runs at the lowest
    estimate of its viewers; ``on_rate`` hears of the steps :class:`RateSteps` tells.
    ``clock`` (90 kHz) is what pushed ``pts`` are
    read on; its viewers' tracks carry it (``media_clock``) for their sender reports.
    """

    def __init__(
        self,
        width: int,
        height: int,
        *,
        fps: int = 30,
        bitrate_kbps: int = 4000,
        min_bitrate_kbps: int | None = None,
        start_bitrate_kbps: int | None = None,
        hardware: bool = False,
        queue_size: int = 4,
        min_keyframe_interval_s: float = 0.25,
        clock: MediaClock | None = None,
        on_sent: Callable[[float], None] | None = None,
        on_rate: Callable[[RateChange], None] | None = None,
        intra_refresh: bool = False,
    ) -> None:
        self.intra_refresh = intra_refresh  # egress.intra_refresh, for each Encoder
        self.on_rate = on_rate  # called on push()'s thread
        self._steps = RateSteps()
        self.clock = clock
        self.on_sent = on_sent  # ms from an encoded frame to a viewer's sender taking it
        self._dropped_gone = 0  # packets skipped by viewers that have left
        self.width = width
        self.height = height
        self.fps = fps
        #: The most an encoder is given; it follows the lowest estimate of its viewers
        #: down to ``min_bitrate_kbps`` (None: it stays at ``bitrate_kbps``).
        self.bitrate_kbps = bitrate_kbps
        self.min_bitrate_kbps = min_bitrate_kbps
        # A start above the most (bitrate_kbps lowered below the default start) is the most.
        self.start_bitrate_kbps = min(start_bitrate_kbps or bitrate_kbps, bitrate_kbps)
        self.hardware = hardware
        self.queue_size = queue_size
        self.min_keyframe_interval_s = min_keyframe_interval_s
        self.frames_pushed = 0
        self.frames_encoded = 0
        self._encoders: dict[Codec, Encoder] = {}
        self._viewers: dict[Codec, list[EncodedVideoTrack]] = {c: [] for c in CODECS}
        self._holds: dict[Codec, int] = {c: 0 for c in CODECS}
        self._lock = threading.Lock()  # viewers and encoders vs. push() on another thread
        # Held while push() encodes: an encoder is closed only between two encodes, never
        # under one running on the reader thread (closing costs at most one frame's wait).
        self._encode_lock = threading.Lock()
        self._pending_keyframe: set[Codec] = set()
        self._last_forced: dict[Codec, float] = {}
        self._keyframe_gap: dict[Codec, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    @property
    def packets_dropped(self) -> int:
        """Packets viewers skipped since the start (a slow viewer's queue overflowed, or
        it waited for a keyframe), those of viewers that left included."""
        return self._dropped_gone + sum(t.dropped for t in self.viewers)

    @property
    def encoders_active(self) -> int:
        """How many encoders run now (one per codec with at least one viewer or hold)."""
        return len(self._encoders)

    @property
    def viewers(self) -> list[EncodedVideoTrack]:
        with self._lock:
            return [t for tracks in self._viewers.values() for t in tracks]

    def encoder(self, codec: Codec) -> Encoder | None:
        """The live encoder for ``codec``, if any viewer uses it."""
        return self._encoders.get(codec)

    def add_viewer(self, codec: Codec) -> EncodedVideoTrack:
        """A new track for one viewer; add it to that viewer's peer connection."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        estimate = None
        if self.min_bitrate_kbps is not None:
            estimate = BandwidthEstimate(self.start_bitrate_kbps * 1000,
                                         self.min_bitrate_kbps * 1000,
                                         self.bitrate_kbps * 1000)
        track = EncodedVideoTrack(
            codec, queue_size=self.queue_size, on_keyframe_request=self._keyframe_requested,
            media_clock=self.clock, on_sent=self.on_sent, estimate=estimate,
        )
        track.on("ended", lambda: self.remove_viewer(track))
        with self._lock:
            self._start_encoder(codec)
            self._viewers[codec].append(track)
        return track

    def hold(self, codec: Codec) -> None:
        """Keep ``codec``'s encoder running without a viewer (any thread), until a
        matching :meth:`release`: a recording consumes the packets :meth:`push` returns.
        A hold on a running encoder forces a keyframe, where the new consumer starts."""
        with self._lock:
            self._start_encoder(codec)
            self._holds[codec] += 1

    def release(self, codec: Codec) -> None:
        """End one :meth:`hold`; the encoder stops if no viewer of ``codec`` is left."""
        with self._lock:
            if self._holds[codec] <= 0:
                raise ValueError(f"release({codec!r}) without a hold")
            self._holds[codec] -= 1
            retired = self._retire(codec)
        self._close_retired(retired, "no viewers or recording")

    def _start_encoder(self, codec: Codec) -> None:
        """Under ``_lock``: open ``codec``'s encoder if it is not running, and make its
        next frame a keyframe (a joining viewer, or a recording, starts there)."""
        if codec not in self._encoders:
            # Opening an encoder takes milliseconds; doing it under the lock keeps a
            # concurrent push() from seeing a consumer without its encoder.
            self._encoders[codec] = Encoder(
                codec,
                self.width,
                self.height,
                fps=self.fps,
                # Opened at the most (its VBV limits stay); push() sets the target.
                bitrate_kbps=self.bitrate_kbps,
                hardware=self.hardware,
                intra_refresh=self.intra_refresh,
            )
            logger.info("start %s encoder (%s)", codec, self._encoders[codec].name)
        self._encoders[codec].force_keyframe()
        self._last_forced[codec] = time.monotonic()

    def _retire(self, codec: Codec) -> Encoder | None:
        """Under ``_lock``: take ``codec``'s encoder away if nothing consumes it."""
        if self._viewers[codec] or self._holds[codec] or codec not in self._encoders:
            return None
        self._pending_keyframe.discard(codec)
        self._steps.forget(codec)
        return self._encoders.pop(codec)

    def _close_retired(self, retired: Encoder | None, why: str) -> None:
        if retired is not None:
            with self._encode_lock:
                retired.close()
            logger.info("stop %s encoder (%s)", retired.codec, why)

    def remove_viewer(self, track: EncodedVideoTrack) -> None:
        """Stop ``track`` and forget it; the last viewer of a codec stops its encoder."""
        with self._lock:
            tracks = self._viewers[track.codec]
            if track in tracks:
                tracks.remove(track)
                self._dropped_gone += track.dropped
            retired = self._retire(track.codec)
        self._close_retired(retired, "no viewers")
        if track.readyState == "live":
            track.stop()

    def push(self, rgb: RgbArray | av.VideoFrame, pts: int) -> dict[Codec, list[av.Packet[Any]]]:
        """Encode one RGB frame once per active codec and deliver it to every viewer.

        ``pts`` is in the 90 kHz RTP clock. Returns the packets per codec (for recording).
        """
        self.frames_pushed += 1
        out: dict[Codec, list[av.Packet[Any]]] = {}
        with self._lock:
            encoders = dict(self._encoders)
            now = time.monotonic()
            for codec in list(self._pending_keyframe):
                last = self._last_forced.get(codec, 0.0)
                gap = self._keyframe_gap.get(codec, self.min_keyframe_interval_s)
                if now - last >= gap:
                    # Requests that keep coming right after a forced keyframe (a link
                    # that loses every keyframe) back off, doubling the gap up to
                    # MAX_KEYFRAME_INTERVAL_S; a quiet spell resets it.
                    self._keyframe_gap[codec] = (
                        min(2 * gap, MAX_KEYFRAME_INTERVAL_S) if now - last < 2 * gap
                        else self.min_keyframe_interval_s)
                    self._pending_keyframe.discard(codec)
                    self._last_forced[codec] = now
                    if codec in encoders:
                        encoders[codec].force_keyframe()
            targets = {codec: self._target_kbps(codec) for codec in encoders}
        with self._encode_lock:
            for codec, encoder in encoders.items():
                if encoder.closed:
                    continue  # its last viewer left while we took the list
                target = targets[codec]
                if abs(target - encoder.bitrate_kbps) > 0.05 * encoder.bitrate_kbps:
                    encoder.set_bitrate(target)
                out[codec] = encoder.encode(rgb, pts)
                self.frames_encoded += 1
        changes: list[RateChange] = []
        on_rate = self.on_rate
        if on_rate is not None:
            # The encoders' own rates (within 5 % of the targets), as status shows them;
            # one retired meanwhile is no longer in _encoders, and reports nothing.
            with self._lock:
                changes = [c for codec, encoder in encoders.items()
                           if self._encoders.get(codec) is encoder
                           and (c := self._rate_change(codec, encoder.bitrate_kbps, now))]
        if any(out.values()):
            self._dispatch(out, time.perf_counter_ns())
        if on_rate is not None:
            for change in changes:
                on_rate(change)
        return out

    def _rate_change(self, codec: Codec, kbps: int, now: float) -> RateChange | None:
        """Under ``_lock``: the step to tell of ``codec``'s encoder now at ``kbps``."""
        step = self._steps.step(codec, kbps, now)
        if step is None:
            return None
        tracks = self._viewers[codec]
        measured = [(t.estimate.bps, t.id) for t in tracks if t.estimate is not None]
        return RateChange(codec, *step, tuple(t.id for t in tracks),
                          min(measured)[1] if measured else None)

    def _target_kbps(self, codec: Codec) -> int:
        """Under ``_lock``: the rate ``codec``'s encoder should run at: the lowest
        estimate of its viewers (encode once: the narrowest viewer sets it), else the
        configured rate (a recording alone, or no estimates)."""
        estimates = [t.estimate.bps for t in self._viewers[codec] if t.estimate is not None]
        if not estimates:
            return self.bitrate_kbps
        return max(1, round(min(estimates) / 1000))

    def _dispatch(self, packets: dict[Codec, list[av.Packet[Any]]], encoded_ns: int) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self._deliver(packets, encoded_ns)
        else:
            self._loop.call_soon_threadsafe(self._deliver, packets, encoded_ns)

    def _deliver(self, packets: dict[Codec, list[av.Packet[Any]]], encoded_ns: int) -> None:
        with self._lock:
            targets = {codec: list(self._viewers[codec]) for codec in packets}
        for codec, tracks in targets.items():
            for track in tracks:
                for packet in packets[codec]:
                    track.deliver(packet, encoded_ns)

    def _keyframe_requested(self, track: EncodedVideoTrack) -> None:
        # Called from the event loop (PLI/FIR, or a track that fell behind): defer to
        # push() so requests from many viewers coalesce into one keyframe.
        with self._lock:
            self._pending_keyframe.add(track.codec)

    def stats(self) -> list[ViewerStats]:
        """A snapshot of every viewer's counters."""
        return [
            ViewerStats(t.id, t.codec, t.sent, t.dropped, len(t._queue),
                        t.estimate.bps if t.estimate else None,
                        t.estimate.loss if t.estimate else None)
            for t in self.viewers
        ]

    def close(self) -> None:
        """Stop every viewer track and encoder (holds included)."""
        for track in self.viewers:
            self.remove_viewer(track)
        with self._lock:
            self._holds = {c: 0 for c in CODECS}
            retired = [self._retire(c) for c in CODECS]
        for encoder in retired:
            self._close_retired(encoder, "closed")
