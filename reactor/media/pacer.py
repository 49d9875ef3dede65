"""Per-viewer pacing: the packets of a frame leave spread over time, never as one burst.

Without it, aiortc's RTP loop hands every packet of a frame to the socket at once: a
720p keyframe (tens of packets) arrives at a narrow link's queue in a few microseconds.
Measured with a 1.5 Mbit/s link and a 200 ms queue (``tc tbf``) and a high-entropy 720p
picture: the queue dropped 9454 packets in 20 s and an aiortc viewer decoded no frame at
all (every lost keyframe brings a PLI, and the next keyframe overflows again).

A :class:`Pacer` belongs to one peer connection (one viewer), so a slow viewer never
delays another. It sends at ``rate_bps``, which the viewer's estimate sets to
:data:`PACING_FACTOR` times the bitrate the viewer is sent (libwebrtc's factor): fast
enough that the pacer itself adds little delay, slow enough that a keyframe reaches the
bottleneck's queue at a rate it can hold. Each video packet is given the next free slot
on that schedule (``len * 8 / rate`` seconds after the previous one's), and the sender's
RTP loop waits for it, so packets leave in order; what the loop has not sent yet stays in
the viewer's track queue, which skips to the next keyframe when it overflows
(:class:`~reactor.media.tracks.EncodedVideoTrack`).

Not paced, but counted against the schedule: RTCP and audio (small, and late audio is
heard). Retransmissions (an RTX packet, or a video packet whose sequence number is not
newer than the last one paced) are paced too, without making aiortc's RTCP handler wait
(it sends them, and the transport's receive loop awaits it): each one leaves from a task
of its own, and one that would wait over :data:`MAX_RETRANSMIT_WAIT_S` is dropped.
Measured: sent at once, the retransmissions a lost keyframe's NACKs asked for overflowed
the narrow link's queue again.

**An outage.** A viewer whose receiver reports say it got nothing of what left a while ago
(:data:`CUT_OFF_S` before the report came, or :data:`SILENT_S` with no report at all) is
*cut off*: the link is down. The packets sent meanwhile are lost for good, but an aiortc
viewer cannot know that: its video jitter buffer (512 packets, aiortc 1.16) waits at the
first missing packet until one arrives 512 sequence numbers past it, and only then drops
what it holds and sends a PLI; the packets it NACKs are the last 128 only. Measured: a 3 s
outage left a gap of about 340 packets (the test pattern at 1 Mbit/s), and frames came
back 2.1-3.2 s after the link did, when 170 more packets had made up the 512. So the
moment a viewer is found cut off, its video's sequence numbers jump by
:data:`SEQ_JUMP` (each packet's number is rewritten here, and a NACK's numbers back, see
:meth:`Pacer.nacked`): the first packet that gets through tells the receiver at once that
what it waits for is gone, it sends a PLI, and the keyframe follows. Until a report shows
a packet after the jump, NACKs are not answered (they ask for what was sent into the
outage) and reports' loss does not count against the estimate (:meth:`Pacer.on_report`):
an outage is not congestion, as libwebrtc does not cut its estimate for a feedback gap.

**A packet lost for good** stalls an aiortc viewer the same way: one NACKed after aiortc's
sender has let it go (it keeps the last 128 packets: a third of a second at 4 Mbit/s,
less than a 200 ms queue and a round trip), or a retransmission the pacer dropped as too
late. Measured on a step from 6 to 1.5 Mbit/s: frames stopped for 4.3 s. The numbers
jump then too (without ignoring NACKs: nothing was sent into an outage), and the viewer
asks for the keyframe at once.

The hook is the registry's ``pacing`` patch (:mod:`reactor.media.patches`):
``RTCDtlsTransport._send_rtp``, which every RTP packet of a peer connection passes
through. aiortc stamps the ``abs-send-time`` header extension when it *builds* the packet,
before it awaits ``_send_rtp``; receivers' delay-based estimators (REMB) read it as the
time the packet left, so a paced packet is stamped again when it really leaves.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc.rtcdtlstransport import RTCDtlsTransport

logger = logging.getLogger(__name__)

#: Pacing rate / target bitrate (libwebrtc's ``kDefaultPaceMultiplier``).
PACING_FACTOR = 2.5
#: The attribute a transport's pacer hangs on.
PACER_ATTR = "_reactor_pacer"
#: The attribute of the patched ``_send_rtp`` that keeps aiortc's own.
ORIGINAL = "__reactor_pacing_original__"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
# Seconds from the NTP epoch (1900) to the Unix epoch (1970).
_NTP_OFFSET = 2_208_988_800
#: A retransmission that would wait longer than this is dropped.
MAX_RETRANSMIT_WAIT_S = 0.5
#: A packet whose slot is less than this far off leaves at once: the pacer wakes at most
#: once per interval and sends what is due by its end (libwebrtc's pacer processes every
#: 5 ms too). Measured: a timer per packet cost 1.7 % of a core at 4 Mbit/s.
BURST_S = 0.005
#: A receiver report that does not yet count a packet which left this long before the
#: report arrived means the viewer gets nothing: cut off. (A packet lost at random does
#: not hold the report's highest sequence number back, only the loss of all of them does;
#: a round trip with queueing is well under this.)
CUT_OFF_S = 1.0
#: No report counting a packet this long after it left (reports stopped too, as in a real
#: outage): cut off. aiortc reports every 0.5-1.5 s, libwebrtc about every second.
SILENT_S = 2.5
#: How far a cut-off viewer's sequence numbers jump: past aiortc's video jitter buffer
#: (512 packets) and past libwebrtc's NACK list (1000), which then drops what it waits for
#: and asks for a keyframe at once, rather than NACKing the gap; below RFC 3550's
#: MAX_DROPOUT (3000), so no receiver takes it for a new source.
SEQ_JUMP = 1024
#: A packet NACKed again within this long of its last retransmission is not sent again
#: (libwebrtc waits a round trip). aiortc's receiver NACKs its whole missing list at
#: every new gap: measured on a step from 6 to 1.5 Mbit/s, the same 20-80 packets were
#: asked for about every 7 ms, and sent again each time into the queue that had lost them.
#: (It asks for nothing again without a new gap, so a lost retransmission can stall it;
#: sending each one twice, 100 ms apart, was tried and stalled it longer: 6.1 s.)
RETRANSMIT_INTERVAL_S = 0.1
#: How many packets aiortc's sender keeps to retransmit (``RTP_HISTORY_SIZE``, 1.16).
SENDER_HISTORY = 128
#: How many packets' send times are kept to date a report's first uncounted packet.
SEND_LOG = 4096


def abs_send_time(unix_s: float) -> int:
    """The 24-bit abs-send-time of ``unix_s``: NTP seconds in 6.18 fixed point, as aiortc
    and libwebrtc write it."""
    return int((unix_s + _NTP_OFFSET) * (1 << 18)) & 0xFFFFFF


def restamp(data: bytes, ext_id: int, value: int) -> bytes:
    """``data`` (one RTP packet) with its one-byte header extension ``ext_id`` of 3 bytes
    set to ``value``; unchanged when it has no such element."""
    if len(data) < 12 or not data[0] & 0x10:
        return data
    offset = 12 + 4 * (data[0] & 0x0F)
    if len(data) < offset + 4 or data[offset:offset + 2] != b"\xbe\xde":
        return data  # no extension, or two-byte ones (aiortc writes those only if it must)
    end = offset + 4 + 4 * int.from_bytes(data[offset + 2:offset + 4], "big")
    i = offset + 4
    while i < min(end, len(data)):
        head = data[i]
        if head == 0:  # padding
            i += 1
            continue
        element_id, length = head >> 4, (head & 0x0F) + 1
        if element_id == 15:
            break
        if element_id == ext_id and length == 3 and i + 4 <= len(data):
            out = bytearray(data)
            out[i + 1:i + 4] = value.to_bytes(3, "big")
            return bytes(out)
        i += 1 + length
    return data


def _payload_offset(data: bytes) -> int:
    """Where ``data``'s RTP payload starts (after the CSRCs and the header extension)."""
    offset = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10 and len(data) >= offset + 4:
        offset += 4 + 4 * int.from_bytes(data[offset + 2:offset + 4], "big")
    return offset


def _newer(a: int, b: int) -> bool:
    """Whether 16-bit sequence number ``a`` comes after ``b`` (RFC 3550 wrap-around)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


class Pacer:
    """Paces the video packets of one peer connection at ``rate_bps``.

    ``video_types`` are the payload types to pace (the video section's; others are sent
    at once); ``rtx_types`` the RTX ones among them (sent at once, as retransmissions);
    ``abs_send_time_id`` the negotiated id of the abs-send-time extension (None: not
    negotiated, nothing to stamp again). ``clock``, ``sleep`` and ``wall`` are for tests.
    """

    def __init__(
        self,
        rate_bps: float,
        *,
        video_types: frozenset[int],
        rtx_types: frozenset[int] = frozenset(),
        abs_send_time_id: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.rate_bps = rate_bps
        self.video_types = video_types
        self.rtx_types = rtx_types
        self.abs_send_time_id = abs_send_time_id
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self._next = 0.0  # when the schedule is free for the next paced packet
        self._last_seq: int | None = None
        self.packets = 0  # paced
        self.waited = 0  # of those, how many waited for their slot
        self.bypassed = 0  # RTCP and audio
        self.retransmits = 0
        self.retransmits_dropped = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.max_wait_s = 0.0
        # The outage (see the module): what the wire numbers video packets, aiortc's plus
        # _offset; when each recent one left; the first the viewer's reports do not count.
        self._offset = 0
        self._last_wire: int | None = None
        self._sent_seq = [-1] * SEND_LOG
        self._sent_at = [0.0] * SEND_LOG
        self._uncounted_since: float | None = None
        self._jumped_from: int | None = None  # the last wire number before the jump
        self._discount = False  # reports do not count until one past the jump
        #: Jumps for a packet lost for good (no outage), see nacked().
        self.resyncs = 0
        #: Whether the viewer is cut off now, and how many times it was.
        self.cut_off = False
        self.outages = 0
        self._retransmitted: dict[int, float] = {}  # aiortc's number: when last asked for
        self.nacks_repeated = 0  # NACKed numbers not sent again (RETRANSMIT_INTERVAL_S)

    @property
    def rate_bps(self) -> float:
        return self._rate_bps

    @rate_bps.setter
    def rate_bps(self, value: float) -> None:
        if value <= 0:
            raise ValueError(f"pacing rate must be positive, found {value}")
        self._rate_bps = float(value)

    def backlog_s(self) -> float:
        """How long until a packet paced now would leave (0: the schedule is free)."""
        return max(0.0, self._next - self._clock())

    async def pace(self, data: bytes) -> bytes | None:
        """Wait for ``data``'s slot if it is paced; return it to send now (stamped again
        when it waited), or None to drop it: a retransmission that would wait longer than
        :data:`MAX_RETRANSMIT_WAIT_S` (the receiver has given up on it by then)."""
        now = self._clock()
        duration = len(data) * 8 / self._rate_bps
        kind = self._kind(data)
        if kind == "bypass":
            self.bypassed += 1
            # Sent now, but it used the link: the paced packets after it wait for it.
            self._next = max(self._next, now) + duration
            return data
        start = max(self._next, now)
        wait = start - now
        if kind == "retransmit":
            if wait > MAX_RETRANSMIT_WAIT_S:
                self.retransmits_dropped += 1
                at = _payload_offset(data) if data[1] & 0x7F in self.rtx_types else 2
                wire = (int.from_bytes(data[at:at + 2], "big") + self._offset) & 0xFFFF
                if self._jumped_from is None or _newer(wire, self._jumped_from):
                    self._jump(now, outage=False)  # lost for good, as in nacked()
                return None
            self.retransmits += 1
        else:
            self.packets += 1
            self._last_seq = int.from_bytes(data[2:4], "big")
            if (not self.cut_off and self._uncounted_since is not None
                    and now - self._uncounted_since > SILENT_S):
                self._jump(now, outage=True)
        if self._offset:
            data = self._renumber(data)
        if kind == "video":
            self._log(int.from_bytes(data[2:4], "big"), start)
        self._next = start + duration
        if wait < BURST_S:
            return data
        self.waited += 1
        self.max_wait_s = max(self.max_wait_s, wait)
        await self._sleep(wait)
        if self.abs_send_time_id is None:
            return data
        return restamp(data, self.abs_send_time_id, abs_send_time(self._wall()))

    def on_report(self, highest_seq: int) -> bool:
        """A receiver report of the video counts packets up to ``highest_seq`` (the
        extended highest sequence number, wire numbering): whether its loss counts (not
        while the viewer is cut off, nor the report that shows it back, whose interval
        spans the outage). Finds the viewer cut off, or back."""
        now = self._clock()
        highest = highest_seq & 0xFFFF
        if self._last_wire is None:
            return True
        if self._discount:
            if self._jumped_from is not None and _newer(highest, self._jumped_from):
                logger.debug("viewer back: a report counts %d, past the jump", highest)
                self.cut_off = self._discount = False
                self._jumped_from = None
                self._count(highest)
            return False
        self._count(highest)
        if self._uncounted_since is not None and now - self._uncounted_since > CUT_OFF_S:
            self._jump(now, outage=True)
            return False
        return True

    def nacked(self, lost: list[int]) -> list[int]:
        """The sequence numbers (aiortc's) to retransmit for a NACK of ``lost`` (wire
        numbers): none while the viewer is cut off, they were sent into the outage, nor
        one retransmitted less than :data:`RETRANSMIT_INTERVAL_S` ago. A packet aiortc
        no longer holds (its history is the last :data:`SENDER_HISTORY` packets) is lost
        for good: the numbers jump, as for an outage, so the viewer stops waiting for it."""
        if self.cut_off:
            return []
        now = self._clock()
        if len(self._retransmitted) > SEND_LOG:
            self._retransmitted = {seq: at for seq, at in self._retransmitted.items()
                                   if now - at < RETRANSMIT_INTERVAL_S}
        out = []
        gone = False
        for wire in lost:
            seq = (wire - self._offset) & 0xFFFF
            if self._last_seq is not None and (self._last_seq - seq) & 0xFFFF >= SENDER_HISTORY:
                # Sent before the last jump: the viewer dropped it already.
                stale = self._jumped_from is not None and not _newer(wire, self._jumped_from)
                gone = gone or (not stale and self._sent_seq[wire % SEND_LOG] == wire)
                continue
            if now - self._retransmitted.get(seq, -1e9) < RETRANSMIT_INTERVAL_S:
                self.nacks_repeated += 1
                continue
            self._retransmitted[seq] = now
            out.append(seq)
        if gone:
            self._jump(now, outage=False)
        return out

    def _count(self, highest: int) -> None:
        """The viewer counts every packet up to ``highest``: date the first it does not."""
        assert self._last_wire is not None
        if not _newer(self._last_wire, highest):
            self._uncounted_since = None
            return
        first = (highest + 1) & 0xFFFF
        i = first % SEND_LOG
        # A packet no longer in the log left long ago.
        self._uncounted_since = self._sent_at[i] if self._sent_seq[i] == first else -1e9

    def _jump(self, now: float, *, outage: bool) -> None:
        if outage:
            self.cut_off = True
            self.outages += 1
            logger.debug("viewer cut off: nothing counted of what left %.2f s ago; "
                         "sequence numbers jump by %d",
                         now - (self._uncounted_since or now), SEQ_JUMP)
        else:
            self.resyncs += 1
            logger.debug("a NACKed packet is lost for good; sequence numbers jump by %d",
                         SEQ_JUMP)
        self._discount = True
        self._jumped_from = self._last_wire
        self._offset = (self._offset + SEQ_JUMP) & 0xFFFF

    def _log(self, wire_seq: int, at: float) -> None:
        i = wire_seq % SEND_LOG
        self._sent_seq[i] = wire_seq
        self._sent_at[i] = at
        self._last_wire = wire_seq
        if self._uncounted_since is None:
            self._uncounted_since = at

    def _renumber(self, data: bytes) -> bytes:
        """``data`` with its sequence number moved to the wire's (an RTX packet: the
        original sequence number in its payload)."""
        out = bytearray(data)
        at = _payload_offset(data) if data[1] & 0x7F in self.rtx_types else 2
        if len(out) < at + 2:
            return data
        seq = (int.from_bytes(out[at:at + 2], "big") + self._offset) & 0xFFFF
        out[at:at + 2] = seq.to_bytes(2, "big")
        return bytes(out)

    def is_retransmission(self, data: bytes) -> bool:
        """Whether ``data`` is a retransmission (its sender must not wait for it: aiortc
        retransmits from its RTCP handler, which the transport's receive loop awaits)."""
        return self._kind(data) == "retransmit"

    def _kind(self, data: bytes) -> str:
        if len(data) < 12 or 192 <= data[1] <= 223:  # RTCP (RFC 5761 demultiplexing)
            return "bypass"
        payload_type = data[1] & 0x7F
        if payload_type not in self.video_types:
            return "bypass"
        if payload_type in self.rtx_types:
            return "retransmit"
        seq = int.from_bytes(data[2:4], "big")
        if self._last_seq is not None and not _newer(seq, self._last_seq):
            return "retransmit"  # NACKed, sent again without RTX
        return "video"


def pacer_for_answer(sdp: str, rate_bps: float) -> Pacer:
    """A pacer for the peer connection whose local description is ``sdp``: its video
    section's payload types (RTX ones marked) and abs-send-time id."""
    video = ""
    for section in re.split(r"\r?\n(?=m=)", sdp):
        if section.startswith("m=video"):
            video = section
            break
    types = frozenset(int(p) for p in video.splitlines()[0].split()[3:]) if video else frozenset()
    rtx = frozenset(int(m) for m in re.findall(r"a=rtpmap:(\d+) rtx/", video))
    found = re.search(rf"a=extmap:(\d+)(?:/\w+)? {re.escape(ABS_SEND_TIME_URI)}", sdp)
    return Pacer(rate_bps, video_types=types, rtx_types=rtx,
                 abs_send_time_id=int(found.group(1)) if found else None)


def attach(transport: RTCDtlsTransport, pacer: Pacer | None) -> None:
    """Pace what ``transport`` (one peer connection's, with BUNDLE) sends with ``pacer``;
    None: send at once again."""
    setattr(transport, PACER_ATTR, pacer)


def enable_pacing() -> None:
    """Make ``RTCDtlsTransport._send_rtp`` wait for its transport's pacer (a transport
    without one sends as aiortc does). Idempotent."""
    current = RTCDtlsTransport._send_rtp
    if hasattr(current, ORIGINAL):
        return

    @functools.wraps(current)
    async def _send_rtp(self: RTCDtlsTransport, data: bytes) -> None:
        pacer: Pacer | None = getattr(self, PACER_ATTR, None)
        if pacer is None:
            await current(self, data)
        elif pacer.is_retransmission(data):
            task = asyncio.ensure_future(_send_paced(current, self, pacer, data))
            pacer.tasks.add(task)
            task.add_done_callback(pacer.tasks.discard)
        else:
            paced = await pacer.pace(data)
            if paced is not None:
                await current(self, paced)

    setattr(_send_rtp, ORIGINAL, current)
    RTCDtlsTransport._send_rtp = _send_rtp  # type: ignore[method-assign]


async def _send_paced(send: Callable[[RTCDtlsTransport, bytes], Awaitable[None]],
                      transport: RTCDtlsTransport, pacer: Pacer, data: bytes) -> None:
    paced = await pacer.pace(data)
    if paced is None:
        return
    try:
        await send(transport, paced)
    except ConnectionError:
        pass  # the connection closed while the packet waited: nobody to send it to


def disable_pacing() -> None:
    """Undo :func:`enable_pacing`. Idempotent."""
    original = getattr(RTCDtlsTransport._send_rtp, ORIGINAL, None)
    if original is not None:
        RTCDtlsTransport._send_rtp = original  # type: ignore[method-assign]
