"""Each viewer's bandwidth estimate, from what the viewer sends back.

Two signals, as libwebrtc's send-side estimation reads them:

- **Loss**, from the RTCP receiver reports of the viewer's video (``fraction lost`` since
  the previous report). Above :data:`LOSS_HIGH` (10 %) the estimate is cut by half the
  loss (at most once per :data:`DECREASE_INTERVAL_S`); below :data:`LOSS_LOW` (2 %) it
  grows :data:`INCREASE_PER_S` (8 %) a second; in between it holds.
- **REMB**, the receiver's delay-based estimate, when the viewer sends one (Chromium
  without transport-wide feedback, aiortc): it caps the estimate.

The estimate stays within ``[min_bps, max_bps]`` and starts at ``start_bps``. It sets the
viewer's :class:`~reactor.media.pacer.Pacer` to :data:`~reactor.media.pacer.PACING_FACTOR`
times itself, and the :class:`~reactor.media.tracks.Broadcaster` encodes at the lowest
estimate of its viewers (see ``docs/guide/webrtc.md``); :class:`RateSteps` says which of
that rate's changes clients are told of (egress's ``viewer`` event).

A viewer cut off by an outage (:class:`~reactor.media.pacer.Pacer`: its reports count
nothing of what left a second before) is no congested viewer: its reports' loss neither
cuts nor grows the estimate until one shows it back, and the NACKs it sends meanwhile ask
for nothing (:meth:`~reactor.media.pacer.Pacer.nacked`).

The feedback reaches the estimate through the registry's ``viewer-feedback`` patch
(:mod:`reactor.media.patches`): ``RTCRtpSender._handle_rtcp_packet`` of a sender whose
track is an :class:`~reactor.media.tracks.EncodedVideoTrack` hands REMB and receiver
reports to the track's estimate first, then does what aiortc does.
"""

from __future__ import annotations

import collections
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from reactor.media.pacer import PACING_FACTOR, Pacer

LOSS_HIGH = 0.10
LOSS_LOW = 0.02
INCREASE_PER_S = 1.08
#: A REMB under this share of its highest over the last CONGESTED_WINDOW_S seconds says
#: the viewer's link is full (reactor.media.ladder moves it to a smaller rendition).
CONGESTED_SHARE = 0.9
CONGESTED_WINDOW_S = 2.0
#: The least time between two loss-based cuts (libwebrtc: 300 ms plus the round trip).
DECREASE_INTERVAL_S = 0.3

#: A change of an encoder's rate is told (a ``viewer`` event) once it moved this share
#: from the rate last told...
RATE_EVENT_STEP = 0.2
#: ...and at most once per this many seconds per encoder: an estimate that swings would
#: otherwise tell of it every few frames.
RATE_EVENT_INTERVAL_S = 2.0

_ORIGINAL = "__reactor_feedback_original__"


@dataclass(frozen=True)
class RateChange:
    """An encoder's rate stepped: every viewer of ``codec`` (``viewers``) now gets
    ``to_kbps``; ``lowest`` is the viewer whose estimate set it."""

    codec: str
    from_kbps: int
    to_kbps: int
    viewers: tuple[str, ...]
    lowest: str | None


class RateSteps:
    """Which changes of each encoder's rate are steps worth telling clients of: one of
    :data:`RATE_EVENT_STEP` or more from the rate last told, at most one per
    :data:`RATE_EVENT_INTERVAL_S`. An encoder's first rate is no step (a join is not a
    switch)."""

    def __init__(self) -> None:
        self._told: dict[str, tuple[int, float]] = {}  # the rate last told, and when

    def step(self, key: str, kbps: int, now: float) -> tuple[int, int] | None:
        """``(from_kbps, to_kbps)`` when ``key``'s encoder running at ``kbps`` is a step."""
        told = self._told.get(key)
        if told is not None:
            rate, at = told
            if abs(kbps - rate) < RATE_EVENT_STEP * rate or now - at < RATE_EVENT_INTERVAL_S:
                return None
        self._told[key] = (kbps, now)
        return None if told is None else (told[0], kbps)

    def forget(self, key: str) -> None:
        """``key``'s encoder stopped: its next one starts afresh."""
        self._told.pop(key, None)


class BandwidthEstimate:
    """One viewer's estimate of what its path carries, in bit/s (see the module)."""

    def __init__(self, start_bps: float, min_bps: float, max_bps: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < min_bps <= max_bps:
            raise ValueError(f"need 0 < min_bps <= max_bps, found {min_bps}, {max_bps}")
        self.min_bps = min_bps
        self.max_bps = max_bps
        self._clock = clock
        self._loss_based = min(max(start_bps, min_bps), max_bps)
        self.remb_bps: float | None = None
        self.loss: float | None = None  # the last report's fraction lost, 0..1
        self.reports = 0
        self._last_update: float | None = None
        self._last_decrease = -1e9
        self._rembs: collections.deque[tuple[float, float]] = collections.deque()
        self.pacer: Pacer | None = None
        self._apply()

    def congested(self) -> bool:
        """Whether the viewer's link shows it is full: its last report lost
        :data:`LOSS_LOW` or more, or its REMB fell under :data:`CONGESTED_SHARE` of its
        highest over the last :data:`CONGESTED_WINDOW_S` (a delay-based receiver lowers it
        when its queue grows). A REMB still climbing from a low start says nothing."""
        if self.loss is not None and self.loss >= LOSS_LOW:
            return True
        if self.remb_bps is None or not self._rembs:
            return False
        return self.remb_bps < CONGESTED_SHARE * max(b for _, b in self._rembs)
    @property
    def bps(self) -> float:
        """The estimate now: the loss-based one, capped by the REMB, within the limits."""
        est = self._loss_based if self.remb_bps is None else min(self._loss_based,
                                                                 self.remb_bps)
        return min(max(est, self.min_bps), self.max_bps)

    def on_remb(self, bps: float) -> None:
        now = self._clock()
        self.remb_bps = float(bps)
        self._rembs.append((now, self.remb_bps))
        while self._rembs and now - self._rembs[0][0] > CONGESTED_WINDOW_S:
            self._rembs.popleft()
        self._apply()

    def on_loss(self, fraction: float, *, counts: bool = True) -> None:
        """One receiver report: ``fraction`` of the packets since the last one lost.
        ``counts`` false (the viewer was cut off, see the module): the estimate holds."""
        now = self._clock()
        self.reports += 1
        elapsed = 0.0 if self._last_update is None else min(now - self._last_update, 1.0)
        self._last_update = now
        if not counts:
            return
        self.loss = fraction
        if fraction > LOSS_HIGH:
            if now - self._last_decrease >= DECREASE_INTERVAL_S:
                self._last_decrease = now
                self._loss_based = max(self.min_bps,
                                       min(self._loss_based, self.bps) * (1 - 0.5 * fraction))
        elif fraction < LOSS_LOW:
            # Grow from what is used (a REMB below it caps it), not from an old high mark.
            self._loss_based = min(self.max_bps,
                                   self.bps * INCREASE_PER_S ** elapsed + 1000 * elapsed)
        self._apply()

    def _apply(self) -> None:
        if self.pacer is not None:
            self.pacer.rate_bps = PACING_FACTOR * self.bps


def enable_viewer_feedback() -> None:
    """Hand REMB and receiver reports of a pre-encoded video track's viewer to the
    track's estimate. Idempotent."""
    current = RTCRtpSender._handle_rtcp_packet
    if hasattr(current, _ORIGINAL):
        return

    @functools.wraps(current)
    async def _handle_rtcp_packet(self: RTCRtpSender, packet: Any) -> None:
        estimate: BandwidthEstimate | None = getattr(self.track, "estimate", None)
        if estimate is not None:
            packet = note_feedback(estimate, self._ssrc, packet)
        await current(self, packet)

    setattr(_handle_rtcp_packet, _ORIGINAL, current)
    RTCRtpSender._handle_rtcp_packet = _handle_rtcp_packet  # type: ignore[method-assign]


def disable_viewer_feedback() -> None:
    """Undo :func:`enable_viewer_feedback`. Idempotent."""
    original = getattr(RTCRtpSender._handle_rtcp_packet, _ORIGINAL, None)
    if original is not None:
        RTCRtpSender._handle_rtcp_packet = original  # type: ignore[method-assign]


def note_feedback(estimate: BandwidthEstimate, ssrc: int, packet: Any) -> Any:
    """What one RTCP packet from the viewer says about stream ``ssrc``'s path; returns the
    packet for aiortc to handle: a NACK's sequence numbers in the sender's numbering, as
    the viewer's pacer has them (it renumbers after an outage)."""
    pacer = estimate.pacer
    if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
        for report in packet.reports:
            if report.ssrc == ssrc:
                counts = pacer is None or pacer.on_report(report.highest_sequence)
                estimate.on_loss(report.fraction_lost / 256, counts=counts)
    elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
        try:
            bitrate, ssrcs = unpack_remb_fci(packet.fci)
        except ValueError:
            return packet
        if ssrc in ssrcs:
            estimate.on_remb(bitrate)
    elif (isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK
          and pacer is not None and packet.media_ssrc == ssrc):
        nack = RtcpRtpfbPacket(fmt=packet.fmt, ssrc=packet.ssrc, media_ssrc=packet.media_ssrc)
        nack.lost = pacer.nacked(packet.lost)
        return nack
    return packet
