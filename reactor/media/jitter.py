"""Complete received video frames on the RTP marker bit instead of on the next frame.

aiortc's :class:`aiortc.jitterbuffer.JitterBuffer` decides that a video frame is complete
only when a packet with a *different* RTP timestamp follows it, i.e. when the first
packet of the next frame arrives. It ignores the marker bit, which RFC 6184 (H.264) and
RFC 7741 (VP8) both set on the last packet of a frame. Every aiortc receive hop therefore
holds each frame back by one frame interval (33 ms at 30 fps).

:class:`MarkerJitterBuffer` subclasses that buffer and changes exactly one decision:
a run of packets that is *contiguous from the buffer's origin*, shares one timestamp and
ends with the marker bit is released at once. Everything else is aiortc's own code path:

- loss: a gap before the marker stops the scan, exactly as a gap stops aiortc's scan, so
  an incomplete frame is never handed to the decoder; the receiver's NACKs still fire,
  and overflow (``smart_remove``) and the resulting PLI are untouched in ``add()``;
- reordering: packets are placed by sequence number as before, and a frame completes when
  its last missing packet arrives, whichever order they came in;
- senders that never set the marker: the timestamp change still completes the frame;
- audio (``prefetch`` > 0, ``is_video`` False) keeps aiortc's behaviour unchanged.

One more decision changes, for loss that NACK does not repair. aiortc NACKs a lost packet
once, when it sees the gap; if the retransmission is lost too, the frame at the origin
never completes and every frame behind it waits until the buffer overflows: 512 packets,
3.5 s of a WHIP camera at 1.2 Mbit/s (measured: Chromium sending film grain through a
1.5 Mbit/s link with a 200 ms queue, the model got no frame for 3.53 s). libwebrtc asks
for a keyframe instead when a frame stays undecodable. So here a gap that has held the
origin for :data:`GAP_TIMEOUT_S` (long enough for a retransmission over a queued link)
is given up: the incomplete frame is dropped, a PLI goes out (``add()``'s flag), and
frames are dropped until a keyframe, so the decoder never gets a frame whose references
it lacks; the PLI is repeated every :data:`GAP_TIMEOUT_S` until the keyframe arrives.

:func:`enable_marker_bit_completion` installs it by rebinding the ``JitterBuffer`` name
that :class:`aiortc.RTCRtpReceiver` looks up when it is constructed; receivers created
before the call keep the stock buffer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import aiortc.rtcrtpreceiver as _receiver_module
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add

logger = logging.getLogger(__name__)

_STOCK_JITTER_BUFFER = JitterBuffer

#: How long a gap may hold the frame at the origin before it is given up for a keyframe:
#: a NACK's retransmission through a link's 200 ms queue comes back well within it.
GAP_TIMEOUT_S = 0.3

_ANNEX_B = b"\x00\x00\x00\x01"
_VP8_KEYFRAME_START = b"\x9d\x01\x2a"


def is_keyframe(data: bytes) -> bool:
    """Whether ``data`` (one frame as aiortc depayloads it) starts a decoder afresh: an
    H.264 frame (Annex B, as aiortc's depayloader writes it) with an IDR slice, or a VP8
    key frame (RFC 6386: a clear P bit and the start code), the two codecs aiortc
    receives. A frame that lost its first packets is neither."""
    if data.startswith(_ANNEX_B):
        return any(nal and nal[0] & 0x1F == 5 for nal in data.split(_ANNEX_B))
    return len(data) >= 6 and not data[0] & 1 and data[3:6] == _VP8_KEYFRAME_START


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, releasing a video frame as soon as its marker packet lands,
    and giving up a frame that loss left incomplete for :data:`GAP_TIMEOUT_S`."""

    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(capacity, prefetch=prefetch, is_video=is_video)
        self._clock = clock
        self._blocked_since: float | None = None  # when a gap began holding the origin
        self._want_keyframe_since: float | None = None  # gave one up; until a keyframe
        self.gaps_given_up = 0
        self.frames_skipped = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli, frame = super().add(packet)
        if not self._is_video or self._prefetch or self._origin is None:
            return pli, frame
        now = self._clock()
        if frame is not None or not self._gap_before(packet.sequence_number):
            self._blocked_since = None
        elif self._blocked_since is None:
            self._blocked_since = now
        elif now - self._blocked_since >= GAP_TIMEOUT_S:
            self._give_up_gap(packet.sequence_number)
            self._blocked_since = None
            self._want_keyframe_since = now
            pli = True
            frame = self._remove_frame(packet.sequence_number)
        if (frame is None and self._want_keyframe_since is not None
                and now - self._want_keyframe_since >= GAP_TIMEOUT_S):
            self._want_keyframe_since = now  # the PLI or its keyframe was lost: again
            pli = True
        return pli, frame

    def _gap_before(self, sequence_number: int) -> bool:
        """Whether a packet is missing between the origin and ``sequence_number`` (the
        newest): the frame at the origin then waits for it (a NACK's retransmission)."""
        origin = self._origin
        assert origin is not None
        return any(self._packets[(origin + count) % self._capacity] is None
                   for count in range(self._span(sequence_number)))

    def _span(self, sequence_number: int) -> int:
        """How many slots from the origin come before ``sequence_number`` (0 when it is
        older than the origin: a late packet the buffer has moved past)."""
        assert self._origin is not None
        delta = uint16_add(sequence_number, -self._origin)
        return 0 if delta >= 0x8000 else min(delta, self._capacity)

    def _give_up_gap(self, sequence_number: int) -> None:
        """Drop the packets from the origin through the first gap and the rest of the
        frame the gap is in (packets of its timestamp), so the origin is a frame's start;
        never past ``sequence_number`` (the newest)."""
        assert self._origin is not None
        self.gaps_given_up += 1
        last_ts: int | None = None
        passed_gap = False
        count = 0
        while count < self._span(sequence_number):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                passed_gap = True
            elif passed_gap and packet.timestamp != last_ts:
                break
            else:
                last_ts = packet.timestamp
            count += 1
        logger.debug("video receiver: gave up %d packets behind a gap held %.0f ms; "
                     "asking for a keyframe", count,
                     (self._clock() - (self._blocked_since or self._clock())) * 1000)
        self.remove(count)

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        if not self._is_video or self._prefetch or self._origin is None:
            return super()._remove_frame(sequence_number)
        while True:
            frame = self._next_frame()
            if frame is None or self._want_keyframe_since is None:
                return frame
            if is_keyframe(frame.data):
                self._want_keyframe_since = None
                return frame
            self.frames_skipped += 1  # its references are gone: the decoder must not see it

    def _next_frame(self) -> JitterFrame | None:
        assert self._origin is not None

        packets: list[RtpPacket] = []
        timestamp: int | None = None
        for count in range(self._capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                # A gap: the frame at the origin is not complete yet (or a later
                # packet of it was lost and NACKed); wait, as aiortc does.
                return None
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                # The frame ended without a marker bit: aiortc's own rule.
                return self._pop_frame(packets, timestamp, count)
            packets.append(packet)
            if packet.marker:
                return self._pop_frame(packets, timestamp, count + 1)
        return None

    def _pop_frame(self, packets: list[RtpPacket], timestamp: int, count: int) -> JitterFrame:
        # ``_data`` is the depayloaded bitstream RTCRtpReceiver attaches to each packet.
        frame = JitterFrame(
            data=b"".join(p._data for p in packets),  # type: ignore[attr-defined]
            timestamp=timestamp,
        )
        self.remove(count)
        return frame


def enable_marker_bit_completion() -> None:
    """Make RTCRtpReceivers created from now on complete video frames on the marker bit.

    Idempotent. Loss, reordering and keyframe requests (PLI) keep working; see the
    module docstring for why this is safe.
    """
    if _receiver_module.JitterBuffer is MarkerJitterBuffer:
        return
    _receiver_module.JitterBuffer = MarkerJitterBuffer  # type: ignore[misc]
    logger.debug("aiortc receiver: marker-bit frame completion enabled")


def disable_marker_bit_completion() -> None:
    """Restore aiortc's stock jitter buffer for new receivers (tests, comparisons)."""
    _receiver_module.JitterBuffer = _STOCK_JITTER_BUFFER  # type: ignore[misc]


def marker_bit_completion_enabled() -> bool:
    """Whether new RTCRtpReceivers will use :class:`MarkerJitterBuffer`."""
    return _receiver_module.JitterBuffer is MarkerJitterBuffer
