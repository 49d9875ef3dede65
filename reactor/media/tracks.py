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

Long module: the Broadcaster's encoders per (codec, rendition), its viewers' placement on
the ladder and the delivery of packets share one lock and one keyframe discipline; the
track and the keyframe patch are the small part.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpsender import RTCRtpSender

from reactor.media.bwe import BandwidthEstimate, RateChange, RateSteps
from reactor.media.clock import MediaClock
from reactor.media.convert import RgbArray, YuvColour, rgb_to_frame
from reactor.media.encoder import CODECS, Codec, Encoder, EncoderError
from reactor.media.ladder import Move, Placement, Rendition, build_ladder
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
    ``rendition`` is the ladder rung whose packets it takes now (0: the full size), and
    ``target`` the one it is to take from that rung's next keyframe on (the
    :class:`Broadcaster` sets both).
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
        self.rendition = 0
        self.target = 0

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
    #: The rendition it is sent now (0: the full size) and that rendition's size.
    rendition: int = 0
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class LadderRateChange(RateChange):
    """A :class:`RateChange` of one rendition's encoder (``rendition``: which)."""

    rendition: Rendition | None = None


@dataclass(frozen=True)
class Switch:
    """Viewer ``viewer`` (of ``codec``) now gets rendition ``dst`` instead of ``src``:
    ``why`` is the :class:`~reactor.media.ladder.Move`'s; ``estimate_kbps`` its
    estimate when the move was decided."""

    viewer: str
    codec: Codec
    src: Rendition
    dst: Rendition
    why: str
    estimate_kbps: float

    @property
    def way(self) -> str:
        return "down" if self.dst.index > self.src.index else "up"


#: An encoder: one codec at one rendition (its index in the ladder; 0 is the full size).
Key = tuple[Codec, int]


class _Meter:
    """What one encoder produced over the last whole second, kbit/s (None: not yet)."""

    def __init__(self, now: float) -> None:
        self._start = now
        self._bytes = 0
        self.kbps: float | None = None

    def add(self, size: int, now: float) -> None:
        self._bytes += size
        if now - self._start >= 1.0:
            self.kbps = self._bytes * 8 / 1000 / (now - self._start)
            self._start, self._bytes = now, 0


#: An encoder whose output over the last second stayed under this share of the rate it
#: was given has an easy picture: a rendition needs no more than that output
#: (reactor.media.ladder's need_kbps).
EASY_SHARE = 0.7


class Broadcaster:
    """Encodes each pushed RGB frame once per (codec, rendition) in use and fans the
    packets out to viewers.

    An :class:`Encoder` exists only while at least one viewer of its codec is on (or
    switching to) its rendition, or a :meth:`hold` on the codec (a recording, of the full
    size, which muxes the packets :meth:`push` returns instead of encoding the frames
    again: keyframes forced for viewers are in it too). Call :meth:`add_viewer` /
    :meth:`remove_viewer` on the event loop thread; :meth:`push` may be called from any
    thread (e.g. ``await loop.run_in_executor(None, b.push, rgb, pts)`` to keep the loop
    free while encoding): delivery is handed to the loop thread.
    PLI/FIR requests are coalesced to at most one forced keyframe per
    ``min_keyframe_interval_s`` and encoder, a gap that doubles (up to
    :data:`MAX_KEYFRAME_INTERVAL_S`) while requests keep coming within twice the gap, so
    one lossy viewer cannot make everyone's stream all keyframes; a join forces one at
    once. With ``min_bitrate_kbps`` each viewer's track has a
    :class:`~reactor.media.bwe.BandwidthEstimate` (starting at ``start_bitrate_kbps``, at
    most ``bitrate_kbps``) and each encoder runs at the lowest estimate of its viewers,
    within its rendition's top; ``on_rate`` hears of the steps :class:`RateSteps` tells.

    The ladder (``renditions``: ``(scale, bitrate_share)`` pairs, the full size first;
    used only with ``min_bitrate_kbps``): a frame is converted to YUV once and scaled once
    per smaller rendition in use, whatever the number of viewers; each viewer is placed
    by a :class:`~reactor.media.ladder.Placement` and switched on a keyframe of its new
    rendition (asked of that encoder when the move is decided; until it comes the viewer
    keeps the old rendition's packets). ``on_switch`` (on the event loop thread) hears of
    each switch when it is made. ``clock`` (90 kHz) is what pushed ``pts`` are read on;
    its viewers' tracks carry it (``media_clock``) for their sender reports.
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
        renditions: Sequence[tuple[float, float]] = ((1.0, 1.0),),
        hardware: bool = False,
        queue_size: int = 4,
        min_keyframe_interval_s: float = 0.25,
        clock: MediaClock | None = None,
        on_sent: Callable[[float], None] | None = None,
        on_rate: Callable[[RateChange], None] | None = None,
        on_switch: Callable[[Switch], None] | None = None,
        intra_refresh: bool = False,
    ) -> None:
        self.intra_refresh = intra_refresh  # egress.intra_refresh, for each Encoder
        self.on_rate = on_rate  # called on push()'s thread
        self.on_switch = on_switch  # called on the event loop thread
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
        #: The renditions, the full size first; one unless adapting with a ladder.
        self.ladder = build_ladder(width, height, bitrate_kbps,
                                   renditions if min_bitrate_kbps is not None
                                   else ((1.0, 1.0),))
        self.hardware = hardware
        self.queue_size = queue_size
        self.min_keyframe_interval_s = min_keyframe_interval_s
        self.frames_pushed = 0
        self.frames_encoded = 0
        self.frames_scaled = 0
        self.switches = 0
        self._encoders: dict[Key, Encoder] = {}
        self._meters: dict[Key, _Meter] = {}
        self._viewers: dict[Codec, list[EncodedVideoTrack]] = {c: [] for c in CODECS}
        self._placements: dict[EncodedVideoTrack, Placement] = {}
        self._moves: dict[EncodedVideoTrack, tuple[Move, float]] = {}
        self._holds: dict[Codec, int] = {c: 0 for c in CODECS}
        self._lock = threading.Lock()  # viewers and encoders vs. push() on another thread
        # Held while push() encodes: an encoder is closed only between two encodes, never
        # under one running on the reader thread (closing costs at most one frame's wait).
        self._encode_lock = threading.Lock()
        self._pending_keyframe: set[Key] = set()
        self._last_forced: dict[Key, float] = {}
        self._keyframe_gap: dict[Key, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    @property
    def packets_dropped(self) -> int:
        """Packets viewers skipped since the start (a slow viewer's queue overflowed, or
        it waited for a keyframe), those of viewers that left included."""
        return self._dropped_gone + sum(t.dropped for t in self.viewers)

    @property
    def encoders_active(self) -> int:
        """How many encoders run now (one per codec and rendition with at least one
        viewer, or a hold)."""
        return len(self._encoders)

    @property
    def viewers(self) -> list[EncodedVideoTrack]:
        with self._lock:
            return [t for tracks in self._viewers.values() for t in tracks]

    def encoder(self, codec: Codec, rendition: int = 0) -> Encoder | None:
        """The live encoder for ``codec`` at ``rendition`` (0: the full size), if any."""
        return self._encoders.get((codec, rendition))

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
            if estimate is not None and len(self.ladder) > 1:
                # Placed by its start estimate; it has no keyframe to wait for yet.
                placement = Placement(self.ladder, estimate.bps, time.monotonic())
                self._placements[track] = placement
                track.rendition = track.target = placement.current
            self._start_encoder((codec, track.rendition))
            self._viewers[codec].append(track)
        return track

    def hold(self, codec: Codec) -> None:
        """Keep ``codec``'s full-size encoder running without a viewer (any thread),
        until a matching :meth:`release`: a recording consumes the packets :meth:`push`
        returns. A hold on a running encoder forces a keyframe, where the new consumer
        starts."""
        with self._lock:
            self._start_encoder((codec, 0))
            self._holds[codec] += 1

    def release(self, codec: Codec) -> None:
        """End one :meth:`hold`; the encoder stops if no viewer of it is left."""
        with self._lock:
            if self._holds[codec] <= 0:
                raise ValueError(f"release({codec!r}) without a hold")
            self._holds[codec] -= 1
            retired = self._retire((codec, 0))
        self._close_retired(retired, "no viewers or recording")

    def _start_encoder(self, key: Key) -> None:
        """Under ``_lock``: open ``key``'s encoder if it is not running, and make its
        next frame a keyframe (a joining or switching viewer, or a recording, starts
        there)."""
        codec, index = key
        if key not in self._encoders:
            r = self.ladder[index]
            # Opening an encoder takes milliseconds; doing it under the lock keeps a
            # concurrent push() from seeing a consumer without its encoder.
            self._encoders[key] = Encoder(
                codec,
                r.width,
                r.height,
                fps=self.fps,
                # Opened at its most (its VBV limits stay); push() sets the target.
                bitrate_kbps=r.top_kbps,
                hardware=self.hardware,
                intra_refresh=self.intra_refresh,
            )
            self._meters[key] = _Meter(time.monotonic())
            logger.info("start %s encoder %s (%s)", codec, r.size, self._encoders[key].name)
        self._encoders[key].force_keyframe()
        self._last_forced[key] = time.monotonic()

    def _in_use(self, key: Key) -> bool:
        codec, index = key
        return ((index == 0 and self._holds[codec] > 0)
                or any(index in (t.rendition, t.target) for t in self._viewers[codec]))

    def _retire(self, key: Key) -> Encoder | None:
        """Under ``_lock``: take ``key``'s encoder away if nothing consumes it."""
        if key not in self._encoders or self._in_use(key):
            return None
        self._pending_keyframe.discard(key)
        self._steps.forget(f"{key[0]}/{key[1]}")
        self._meters.pop(key, None)
        return self._encoders.pop(key)

    def _close_retired(self, retired: Encoder | None, why: str) -> None:
        if retired is not None:
            with self._encode_lock:
                retired.close()
            logger.info("stop %s encoder %dx%d (%s)", retired.codec, retired.width,
                        retired.height, why)

    def remove_viewer(self, track: EncodedVideoTrack) -> None:
        """Stop ``track`` and forget it; the last viewer of an encoder stops it."""
        with self._lock:
            tracks = self._viewers[track.codec]
            if track in tracks:
                tracks.remove(track)
                self._dropped_gone += track.dropped
            self._placements.pop(track, None)
            self._moves.pop(track, None)
            retired = [self._retire(key) for key in list(self._encoders)
                       if key[0] == track.codec]
        for encoder in retired:
            self._close_retired(encoder, "no viewers")
        if track.readyState == "live":
            track.stop()

    def push(self, rgb: RgbArray | av.VideoFrame, pts: int) -> dict[Codec, list[av.Packet[Any]]]:
        """Encode one RGB frame once per active codec and rendition and deliver it to
        every viewer.

        ``pts`` is in the 90 kHz RTP clock. Returns the full size's packets per codec
        (for recording).
        """
        self.frames_pushed += 1
        with self._lock:
            now = time.monotonic()
            self._place(now)
            # An encoder nobody uses any longer (its viewers all switched away).
            retired = [self._retire(key) for key in list(self._encoders)]
            encoders = dict(self._encoders)
            for key in list(self._pending_keyframe):
                last = self._last_forced.get(key, 0.0)
                gap = self._keyframe_gap.get(key, self.min_keyframe_interval_s)
                if now - last >= gap:
                    # Requests that keep coming right after a forced keyframe (a link
                    # that loses every keyframe) back off, doubling the gap up to
                    # MAX_KEYFRAME_INTERVAL_S; a quiet spell resets it.
                    self._keyframe_gap[key] = (
                        min(2 * gap, MAX_KEYFRAME_INTERVAL_S) if now - last < 2 * gap
                        else self.min_keyframe_interval_s)
                    self._pending_keyframe.discard(key)
                    self._last_forced[key] = now
                    if key in encoders:
                        encoders[key].force_keyframe()
            targets = {key: self._target_kbps(key) for key in encoders}
        for encoder in retired:
            self._close_retired(encoder, "its viewers switched away")
        out: dict[Key, list[av.Packet[Any]]] = {}
        frames: dict[tuple[YuvColour, int], av.VideoFrame] = {}
        with self._encode_lock:
            for key, encoder in encoders.items():
                if encoder.closed:
                    continue  # its last viewer left while we took the list
                target = targets[key]
                if abs(target - encoder.bitrate_kbps) > 0.05 * encoder.bitrate_kbps:
                    encoder.set_bitrate(target)
                frame = self._frame(rgb, pts, encoder.colour, key[1], frames)
                packets = out[key] = encoder.encode(frame, pts)
                self.frames_encoded += 1
                meter = self._meters.get(key)
                if meter is not None:
                    meter.add(sum(p.size for p in packets), now)
        changes: list[RateChange] = []
        on_rate = self.on_rate
        if on_rate is not None:
            # The encoders' own rates (within 5 % of the targets), as status shows them;
            # one retired meanwhile is no longer in _encoders, and reports nothing.
            with self._lock:
                changes = [c for key, encoder in encoders.items()
                           if self._encoders.get(key) is encoder
                           and (c := self._rate_change(key, encoder.bitrate_kbps, now))]
        if any(out.values()):
            self._dispatch(out, time.perf_counter_ns())
        if on_rate is not None:
            for change in changes:
                on_rate(change)
        return {codec: packets for (codec, index), packets in out.items() if index == 0}

    def _frame(self, rgb: RgbArray | av.VideoFrame, pts: int, colour: YuvColour, index: int,
               frames: dict[tuple[YuvColour, int], av.VideoFrame]) -> av.VideoFrame:
        """The pushed frame in YUV at rendition ``index``: converted once, scaled once per
        smaller rendition, whatever the number of codecs and viewers (``frames`` keeps
        what this push made)."""
        key = (colour, index)
        if key in frames:
            return frames[key]
        if index:
            full = self._frame(rgb, pts, colour, 0, frames)
            r = self.ladder[index]
            # swscale's area average: a downscale without the aliasing of bilinear.
            frame = full.reformat(width=r.width, height=r.height, interpolation="AREA")
            self.frames_scaled += 1
        elif isinstance(rgb, av.VideoFrame):
            frame = rgb
        else:
            if rgb.shape[:2] != (self.height, self.width):
                raise EncoderError(f"the broadcaster expects {self.width}x{self.height} "
                                   f"frames, found {rgb.shape[1]}x{rgb.shape[0]}")
            frame = rgb_to_frame(rgb, pts, colour=colour)
        frames[key] = frame
        return frame

    def _place(self, now: float) -> None:
        """Under ``_lock``: move each viewer its estimate allows (reactor.media.ladder);
        the encoder of a viewer's new rendition starts, with a keyframe to switch on."""
        if not self._placements:
            return
        easy: dict[Codec, dict[int, float]] = {c: {} for c in CODECS}
        for key, meter in self._meters.items():
            encoder = self._encoders.get(key)
            if (meter.kbps is not None and encoder is not None
                    and meter.kbps < EASY_SHARE * encoder.bitrate_kbps):
                easy[key[0]][key[1]] = meter.kbps
        for track, placement in self._placements.items():
            if track.estimate is None:
                continue
            move = placement.update(track.estimate.bps, now, easy[track.codec],
                                    track.estimate.congested())
            if move is None:
                continue
            self._moves[track] = (move, track.estimate.bps / 1000)
            track.target = move.dst
            if move.dst != track.rendition:
                self._start_encoder((track.codec, move.dst))

    def _rate_change(self, key: Key, kbps: int, now: float) -> RateChange | None:
        """Under ``_lock``: the step to tell of ``key``'s encoder now at ``kbps``."""
        codec, index = key
        step = self._steps.step(f"{codec}/{index}", kbps, now)
        if step is None:
            return None
        tracks = [t for t in self._viewers[codec] if t.target == index]
        measured = [(t.estimate.bps, t.id) for t in tracks if t.estimate is not None]
        args = (codec, *step, tuple(t.id for t in tracks),
                min(measured)[1] if measured else None)
        if len(self.ladder) == 1:
            return RateChange(*args)
        return LadderRateChange(*args, self.ladder[index])

    def _target_kbps(self, key: Key) -> int:
        """Under ``_lock``: the rate ``key``'s encoder should run at: the lowest estimate
        of the viewers placed on it (encode once: the narrowest viewer sets it), within
        the rendition's top, else that top (a recording alone, or no estimates).

        A viewer trying the rendition out (a probe, :mod:`reactor.media.ladder`) counts
        only when no settled viewer is on it: it gets the stream the others get, and its
        estimate says whether its link takes it, without lowering theirs for the trial
        (measured: a narrow viewer's probes pulled a wide viewer's 720p from 3.1 to 1.4
        Mbit/s while they lasted)."""
        codec, index = key
        top = self.ladder[index].top_kbps
        on = [t for t in self._viewers[codec] if t.estimate is not None and t.target == index]
        settled = [t for t in on if not self._probing(t)]
        estimates = [t.estimate.bps for t in settled or on if t.estimate is not None]
        if not estimates:
            return top
        return max(1, min(top, round(min(estimates) / 1000)))

    def _probing(self, track: EncodedVideoTrack) -> bool:
        placement = self._placements.get(track)
        return placement is not None and placement.probing

    def _dispatch(self, packets: dict[Key, list[av.Packet[Any]]], encoded_ns: int) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self._deliver(packets, encoded_ns)
        else:
            self._loop.call_soon_threadsafe(self._deliver, packets, encoded_ns)

    def _deliver(self, packets: dict[Key, list[av.Packet[Any]]], encoded_ns: int) -> None:
        switched: list[Switch] = []
        with self._lock:
            tracks = [t for codec in {k[0] for k in packets} for t in self._viewers[codec]]
            for track in tracks:
                if track.target != track.rendition:
                    new = packets.get((track.codec, track.target))
                    # The switch happens on the new rendition's keyframe, never before:
                    # the viewer's decoder starts the new size there.
                    if new and new[0].is_keyframe:
                        switched.append(self._switched(track))
        for track in tracks:
            for packet in packets.get((track.codec, track.rendition), ()):
                track.deliver(packet, encoded_ns)
        if self.on_switch is not None:
            for switch in switched:
                self.on_switch(switch)

    def _switched(self, track: EncodedVideoTrack) -> Switch:
        """Under ``_lock``: ``track`` takes its target rendition from this frame on."""
        src, dst = self.ladder[track.rendition], self.ladder[track.target]
        move, kbps = self._moves.pop(track, (Move(src.index, dst.index, "estimate"), 0.0))
        track.rendition = track.target
        self.switches += 1
        logger.info("viewer %s switched %s from %s to %s (%s, estimate %.0f kbps)",
                    track.id, "down" if dst.index > src.index else "up", src.size,
                    dst.size, move.why, kbps)
        return Switch(track.id, track.codec, src, dst, move.why, kbps)

    def _keyframe_requested(self, track: EncodedVideoTrack) -> None:
        # Called from the event loop (PLI/FIR, or a track that fell behind): defer to
        # push() so requests from many viewers coalesce into one keyframe.
        with self._lock:
            self._pending_keyframe.add((track.codec, track.rendition))

    def stats(self) -> list[ViewerStats]:
        """A snapshot of every viewer's counters."""
        out = []
        for t in self.viewers:
            r = self.ladder[t.rendition]
            out.append(ViewerStats(t.id, t.codec, t.sent, t.dropped, len(t._queue),
                                   t.estimate.bps if t.estimate else None,
                                   t.estimate.loss if t.estimate else None,
                                   r.index, r.width, r.height))
        return out

    def close(self) -> None:
        """Stop every viewer track and encoder (holds included)."""
        for track in self.viewers:
            self.remove_viewer(track)
        with self._lock:
            self._holds = {c: 0 for c in CODECS}
            retired = [self._retire(key) for key in list(self._encoders)]
        for encoder in retired:
            self._close_retired(encoder, "closed")
