"""One media clock for sound and picture, and RTCP sender reports that tell receivers so.

Lip sync on the wire: a receiver plays an audio and a video stream in sync by mapping each
stream's RTP timestamps to NTP wall-clock time with the stream's RTCP sender reports (SR:
"RTP timestamp R is NTP time N"). Egress stamps every frame and every audio window from
one session clock (CLOCK_MONOTONIC ns, ``time.perf_counter_ns()``): RTP pts =
``rate * (pts_ns - epoch_ns) / 1e9`` with one ``epoch_ns`` per egress process
(:class:`MediaClock`). The SRs must say the same thing.

How aiortc 1.16 makes a sender report (``rtcrtpsender.py``): ``RTCRtpSender._run_rtp``
adds a random ``timestamp_origin`` (a local variable) to each frame's timestamp and, after
each packet, remembers ``__rtp_timestamp`` = that packet's timestamp and
``__ntp_timestamp`` = the wall clock *when it was sent*; ``_run_rtcp`` puts those two in
every SR. So an SR maps a frame's RTP time to its *send* time: a video frame sent 12 ms
after its pts (the encode) and an audio window sent as soon as it is complete disagree by
however much their send delays differ, and the receiver "syncs" them that far apart.

:func:`enable_session_clock_reports` (idempotent, installed by :func:`reactor.media.install`)
fixes that for tracks that carry a ``media_clock`` (:class:`MediaClock`): egress's video
and audio tracks. Two wrappers on ``RTCRtpSender``:

- ``_next_encoded_frame`` runs once per frame, after every packet of the previous frame
  was sent; the sender's last RTP timestamp is then exactly ``origin + t`` for the
  previous frame's timestamp ``t`` (which the wrapper saw it return), so the random
  origin is learned as ``R - t``;
- ``_send_rtcp`` rewrites the SR of such a sender to ``rtp = origin + clock.rtp(now)``,
  ``ntp = now`` (both read together), and keeps the sender's LSR bookkeeping (the
  round-trip time from receiver reports) consistent with the NTP time actually sent.

Other tracks, and a sender that has not sent a frame yet, keep aiortc's SR.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from aiortc import clock as rtc_clock
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RtcpSrPacket

__all__ = ["MediaClock", "disable_session_clock_reports", "enable_session_clock_reports",
           "rtp_origin"]

_PATCH_ATTR = "__reactor_session_clock_original__"
_ORIGIN = "_reactor_rtp_origin"  # on a sender: its learned timestamp_origin
_LAST_TS = "_reactor_last_timestamp"  # on a sender: the last frame's timestamp, pre-origin

# aiortc keeps these private (name-mangled) on RTCRtpSender; read and written here only.
_SENDER_RTP = "_RTCRtpSender__rtp_timestamp"
_SENDER_LSR = "_RTCRtpSender__lsr"
_SENDER_LSR_TIME = "_RTCRtpSender__lsr_time"


class MediaClock:
    """An RTP clock of ``rate`` Hz that reads 0 at ``epoch_ns`` on the session clock.

    ``epoch_ns`` is a ``time.perf_counter_ns()`` value (CLOCK_MONOTONIC): the same clock as
    every frame's and audio chunk's ``pts`` in every process of the daemon.
    """

    def __init__(self, epoch_ns: int, rate: int) -> None:
        self.epoch_ns = epoch_ns
        self.rate = rate

    def rtp(self, t_ns: int) -> int:
        """RTP ticks (not wrapped) at session-clock time ``t_ns``."""
        return (t_ns - self.epoch_ns) * self.rate // 1_000_000_000

    def time_ns(self, ticks: int) -> int:
        """Session-clock time of RTP tick ``ticks``."""
        return self.epoch_ns + ticks * 1_000_000_000 // self.rate

    def now(self) -> int:
        """RTP ticks now."""
        return self.rtp(time.perf_counter_ns())

    def with_rate(self, rate: int) -> MediaClock:
        """The same epoch at another rate (video 90 kHz, Opus 48 kHz)."""
        return MediaClock(self.epoch_ns, rate)

    def __repr__(self) -> str:
        return f"MediaClock(epoch_ns={self.epoch_ns}, rate={self.rate})"


def _clock_of(sender: RTCRtpSender) -> MediaClock | None:
    clock = getattr(sender.track, "media_clock", None)
    return clock if isinstance(clock, MediaClock) else None


def rtp_origin(sender: RTCRtpSender) -> int | None:
    """The random RTP timestamp origin ``sender`` adds to its frames' timestamps, once it
    has sent a frame of a track with a media clock (else ``None``)."""
    origin = getattr(sender, _ORIGIN, None)
    return origin if isinstance(origin, int) else None


def enable_session_clock_reports() -> None:
    """Make RTCP sender reports of tracks with a ``media_clock`` map RTP time to NTP by
    the session clock (see the module docstring). Idempotent; affects no other track."""
    next_frame = RTCRtpSender._next_encoded_frame
    if not hasattr(next_frame, _PATCH_ATTR):

        @functools.wraps(next_frame)
        async def _next_encoded_frame(self: RTCRtpSender, codec: Any) -> Any:
            last = getattr(self, _LAST_TS, None)
            if last is not None and _clock_of(self) is not None:
                # Every packet of the frame that returned ``last`` has been sent (the RTP
                # loop asks for the next frame only after that): R = origin + last.
                setattr(self, _ORIGIN, (getattr(self, _SENDER_RTP) - last) & 0xFFFFFFFF)
            frame = await next_frame(self, codec)
            # None (sender disabled, nothing to pack) sends nothing: keep the older one.
            if frame is not None:
                setattr(self, _LAST_TS, frame.timestamp)
            return frame

        setattr(_next_encoded_frame, _PATCH_ATTR, next_frame)
        RTCRtpSender._next_encoded_frame = _next_encoded_frame  # type: ignore[method-assign]

    send_rtcp = RTCRtpSender._send_rtcp
    if not hasattr(send_rtcp, _PATCH_ATTR):

        @functools.wraps(send_rtcp)
        async def _send_rtcp(self: RTCRtpSender, packets: list[Any]) -> None:
            clock = _clock_of(self)
            origin = rtp_origin(self)
            if clock is not None and origin is not None:
                for packet in packets:
                    if isinstance(packet, RtcpSrPacket) and packet.ssrc == self._ssrc:
                        _session_clock_report(self, packet, clock, origin)
            await send_rtcp(self, packets)

        setattr(_send_rtcp, _PATCH_ATTR, send_rtcp)
        RTCRtpSender._send_rtcp = _send_rtcp  # type: ignore[method-assign]


def disable_session_clock_reports() -> None:
    """Undo :func:`enable_session_clock_reports` (tests, comparisons). Idempotent."""
    for name in ("_next_encoded_frame", "_send_rtcp"):
        original = getattr(getattr(RTCRtpSender, name), _PATCH_ATTR, None)
        if original is not None:
            setattr(RTCRtpSender, name, original)


def _session_clock_report(sender: RTCRtpSender, packet: RtcpSrPacket, clock: MediaClock,
                          origin: int) -> None:
    now_ns = time.perf_counter_ns()
    ntp = rtc_clock.current_ntp_time()
    info = packet.sender_info
    info.rtp_timestamp = (origin + clock.rtp(now_ns)) & 0xFFFFFFFF
    info.ntp_timestamp = ntp
    # aiortc computed LSR from the NTP time it would have sent; receivers echo the one
    # they got, so RTT from receiver reports needs the one sent.
    setattr(sender, _SENDER_LSR, (ntp >> 16) & 0xFFFFFFFF)
    setattr(sender, _SENDER_LSR_TIME, time.time())

