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

:func:`enable_marker_bit_completion` installs it by rebinding the ``JitterBuffer`` name
that :class:`aiortc.RTCRtpReceiver` looks up when it is constructed; receivers created
before the call keep the stock buffer.
"""

from __future__ import annotations

import logging

import aiortc.rtcrtpreceiver as _receiver_module
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

logger = logging.getLogger(__name__)

_STOCK_JITTER_BUFFER = JitterBuffer


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, releasing a video frame as soon as its marker packet lands."""

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        if not self._is_video or self._prefetch or self._origin is None:
            return super()._remove_frame(sequence_number)

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
