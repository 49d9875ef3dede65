"""The pacer, on a fake clock: what leaves when."""

from __future__ import annotations

import asyncio

import pytest

from reactor.media.pacer import (
    BURST_S,
    CUT_OFF_S,
    RETRANSMIT_INTERVAL_S,
    SENDER_HISTORY,
    SEQ_JUMP,
    SILENT_S,
    Pacer,
    abs_send_time,
    pacer_for_answer,
    restamp,
)

VIDEO_PT, RTX_PT, AUDIO_PT = 102, 103, 111
AST_ID = 3


def rtp(seq: int, size: int = 1200, pt: int = VIDEO_PT, stamp: int = 0) -> bytes:
    """An RTP packet with a one-byte-header extension block holding abs-send-time."""
    header = bytes([0x90, pt]) + seq.to_bytes(2, "big") + bytes(8)
    ext = b"\xbe\xde\x00\x01" + bytes([(AST_ID << 4) | 2]) + stamp.to_bytes(3, "big")
    return header + ext + bytes(size - len(header) - len(ext))


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    async def sleep(self, s: float) -> None:
        self.now += s


def make(t: FakeTime, rate_bps: float) -> Pacer:
    return Pacer(rate_bps, video_types=frozenset({VIDEO_PT, RTX_PT}),
                 rtx_types=frozenset({RTX_PT}), abs_send_time_id=AST_ID,
                 clock=t.clock, sleep=t.sleep, wall=t.wall)


def test_a_60kb_keyframe_leaves_spread_at_the_pacing_rate_in_order() -> None:
    t = FakeTime()
    pacer = make(t, 3_000_000)
    sent: list[tuple[float, int]] = []

    async def main() -> None:
        for seq in range(50):  # 50 x 1200 B = 60 KB
            data = await pacer.pace(rtp(seq))
            assert data is not None
            sent.append((t.now, int.from_bytes(data[2:4], "big")))

    asyncio.run(main())
    assert [s for _, s in sent] == list(range(50))
    # 60 KB at 3 Mbit/s: 160 ms; the last packet leaves less than a burst before that.
    per_packet = 1200 * 8 / 3e6
    assert 49 * per_packet - BURST_S <= sent[-1][0] - sent[0][0] <= 49 * per_packet
    # Never more than a burst's worth (5 ms at the pacing rate, plus one packet) at once.
    for start, _ in sent:
        together = sum(1 for when, _ in sent if start <= when < start + 1e-9)
        assert together * per_packet <= BURST_S + per_packet
    assert pacer.waited >= 49 * per_packet / (BURST_S + per_packet) - 1


def test_a_waiting_packet_is_stamped_again_when_it_leaves() -> None:
    t = FakeTime()
    pacer = make(t, 1_000_000)

    async def main() -> list[bytes | None]:
        return [await pacer.pace(rtp(seq)) for seq in range(3)]

    out = asyncio.run(main())
    stamps = [int.from_bytes(p[17:20], "big") for p in out if p is not None]
    assert stamps[0] == 0  # did not wait: left as aiortc stamped it
    assert stamps[2] == abs_send_time(t.wall())
    assert stamps[2] - stamps[1] == pytest.approx(1200 * 8 / 1e6 * (1 << 18), abs=2)


def test_audio_and_rtcp_go_at_once_but_use_the_budget() -> None:
    t = FakeTime()
    pacer = make(t, 1_000_000)

    async def main() -> None:
        for seq in range(10):
            await pacer.pace(rtp(seq))
        before = t.now
        await pacer.pace(rtp(0, pt=AUDIO_PT, size=200))
        await pacer.pace(bytes([0x80, 200]) + bytes(26))  # an RTCP SR
        assert t.now == before
        await pacer.pace(rtp(10))

    asyncio.run(main())
    assert pacer.bypassed == 2
    # The eleventh video packet waited for the ten before it and the bypassed ones.
    assert t.now - 100.0 == pytest.approx((10 * 1200 + 200 + 28) * 8 / 1e6)


def test_retransmissions_are_paced_and_dropped_when_too_late() -> None:
    t = FakeTime()
    pacer = make(t, 1_000_000)

    async def main() -> list[bytes | None]:
        for seq in range(10):
            await pacer.pace(rtp(seq))
        assert pacer.is_retransmission(rtp(3))  # NACKed, sent again without RTX
        assert pacer.is_retransmission(rtp(0, pt=RTX_PT))
        assert not pacer.is_retransmission(rtp(10))
        out = [await pacer.pace(rtp(3)), await pacer.pace(rtp(0, pt=RTX_PT))]
        pacer.rate_bps = 10_000  # a 1200 B packet now takes 0.96 s
        await pacer.pace(rtp(10))
        out.append(await pacer.pace(rtp(4)))
        return out

    out = asyncio.run(main())
    assert out[0] is not None and out[1] is not None and out[2] is None
    assert (pacer.retransmits, pacer.retransmits_dropped) == (2, 1)


def test_a_new_rate_applies_to_the_next_packet() -> None:
    t = FakeTime()
    pacer = make(t, 1_000_000)

    async def main() -> None:
        await pacer.pace(rtp(0))
        pacer.rate_bps = 4_000_000
        await pacer.pace(rtp(1))
        await pacer.pace(rtp(2))

    asyncio.run(main())
    assert t.now - 100.0 == pytest.approx(1200 * 8 / 1e6)  # the second waited for the first
    # The second and third left within one burst; the schedule has moved on at 4 Mbit/s.
    assert pacer.backlog_s() == pytest.approx(2 * 1200 * 8 / 4e6)


def test_restamp_leaves_a_packet_without_the_extension_alone() -> None:
    plain = bytes([0x80, VIDEO_PT]) + bytes(10) + b"payload"
    assert restamp(plain, AST_ID, 5) == plain
    assert restamp(rtp(1), AST_ID + 1, 5) == rtp(1)


def test_the_answer_names_the_video_types_and_the_extension() -> None:
    sdp = "\r\n".join([
        "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=rtpmap:111 opus/48000/2",
        "m=video 9 UDP/TLS/RTP/SAVPF 102 103", "a=rtpmap:102 H264/90000",
        "a=rtpmap:103 rtx/90000", "a=fmtp:103 apt=102",
        "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", ""])
    pacer = pacer_for_answer(sdp, 1e6)
    assert pacer.video_types == {102, 103}
    assert pacer.rtx_types == {103}
    assert pacer.abs_send_time_id == 3


def seq_of(data: bytes | None) -> int:
    assert data is not None
    return int.from_bytes(data[2:4], "big")


def test_a_viewer_whose_reports_count_nothing_is_cut_off_and_its_numbers_jump() -> None:
    """Reports that stop counting packets which left over a second before: the link is
    down; from the next packet the sequence numbers jump (so an aiortc viewer drops what
    it waits for at the first packet through), NACKs meanwhile ask for nothing, and a
    report past the jump shows the viewer back."""
    t = FakeTime()
    pacer = make(t, 10_000_000)

    async def send(seq: int) -> bytes | None:
        t.now += 0.01
        return await pacer.pace(rtp(seq))

    async def main() -> list[int]:
        wire = []
        for seq in range(100):  # 1 s: the viewer counts them all
            wire.append(seq_of(await send(seq)))
        assert pacer.on_report(99)
        for seq in range(100, 210):  # the link goes down: reports stay at 99
            wire.append(seq_of(await send(seq)))
            if seq < 200:  # 100 left less than CUT_OFF_S ago: a slow report, maybe
                assert pacer.on_report(99) and not pacer.cut_off
        assert not pacer.on_report(99)  # 100 left over CUT_OFF_S ago
        assert pacer.cut_off and pacer.outages == 1
        assert pacer.nacked([110, 111]) == []
        for seq in range(210, 220):
            wire.append(seq_of(await send(seq)))
        assert not pacer.on_report(99)  # still down: its loss does not count
        # Back: the first packet through is past the jump.
        assert not pacer.on_report(210 + SEQ_JUMP)  # its interval spans the outage
        assert not pacer.cut_off
        assert pacer.nacked([215 + SEQ_JUMP]) == [215]  # the sender's numbering
        # An RTX packet's original sequence number is the wire's too.
        rtx = await pacer.pace(rtp(0, pt=RTX_PT)[:20] + (215).to_bytes(2, "big") + bytes(30))
        assert rtx is not None and int.from_bytes(rtx[20:22], "big") == 215 + SEQ_JUMP
        wire.append(seq_of(await send(220)))
        assert pacer.on_report(220 + SEQ_JUMP)
        return wire

    wire = asyncio.run(main())
    assert CUT_OFF_S == 1.0  # the loop above sends 10 ms apart
    assert wire[:210] == list(range(210))
    assert wire[210:] == [seq + SEQ_JUMP for seq in range(210, 221)]


def test_a_viewer_with_no_report_at_all_is_cut_off() -> None:
    t = FakeTime()
    pacer = make(t, 10_000_000)

    async def main() -> None:
        for seq in range(10):
            await pacer.pace(rtp(seq))
        assert pacer.on_report(9)
        seq = 10
        while t.now - 100.0 <= SILENT_S + 0.05:  # no report: RTCP is lost too
            t.now += 0.01
            assert seq_of(await pacer.pace(rtp(seq))) == seq or pacer.cut_off
            seq += 1

    asyncio.run(main())
    assert pacer.cut_off and pacer.outages == 1


def test_a_lost_packet_or_a_slow_report_is_no_outage() -> None:
    """Random loss does not hold a report's highest number back, and reports that come
    late but count what left before them are no outage."""
    t = FakeTime()
    pacer = make(t, 10_000_000)

    async def main() -> None:
        for seq in range(300):
            t.now += 0.01
            await pacer.pace(rtp(seq))
            if seq % 150 == 149:  # a report every 1.5 s, counting up to 0.3 s ago
                assert pacer.on_report(seq - 30)

    asyncio.run(main())
    assert not pacer.cut_off and pacer.outages == 0


def test_a_packet_renacked_within_the_interval_is_not_sent_again() -> None:
    """aiortc's receiver NACKs its whole missing list at every new gap: each packet is
    retransmitted once per RETRANSMIT_INTERVAL_S, not once per NACK."""
    t = FakeTime()
    pacer = make(t, 10_000_000)

    async def main() -> None:
        for seq in range(20):
            await pacer.pace(rtp(seq))

    asyncio.run(main())
    assert pacer.nacked([3, 4]) == [3, 4]
    t.now += 0.01
    assert pacer.nacked([3, 4, 5]) == [5]
    t.now += RETRANSMIT_INTERVAL_S - 0.005
    assert pacer.nacked([3, 4, 5]) == [3, 4]  # 5 was sent again 10 ms after them
    assert pacer.nacks_repeated == 3


def test_a_nack_for_a_packet_the_sender_no_longer_holds_makes_the_numbers_jump() -> None:
    """Lost for good (aiortc keeps the last 128 packets to retransmit): the next packet's
    number jumps so that the viewer stops waiting for it; a later NACK of a number from
    before the jump does not jump again."""
    t = FakeTime()
    pacer = make(t, 10_000_000)

    async def send(seq: int) -> int:
        t.now += 0.001
        return seq_of(await pacer.pace(rtp(seq)))

    async def main() -> None:
        for seq in range(SENDER_HISTORY + 50):
            assert await send(seq) == seq
        assert pacer.nacked([10, SENDER_HISTORY + 40]) == [SENDER_HISTORY + 40]
        assert pacer.resyncs == 1 and not pacer.cut_off
        assert await send(SENDER_HISTORY + 50) == SENDER_HISTORY + 50 + SEQ_JUMP
        assert pacer.nacked([11]) == []  # from before the jump: the viewer dropped it
        assert pacer.resyncs == 1
        # The report whose interval spans the jump counts it as loss: it does not count.
        assert not pacer.on_report(SENDER_HISTORY + 50 + SEQ_JUMP)
        assert pacer.on_report(SENDER_HISTORY + 50 + SEQ_JUMP)

    asyncio.run(main())
