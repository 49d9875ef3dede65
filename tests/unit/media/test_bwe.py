"""A viewer's bandwidth estimate from REMB and receiver-report loss sequences."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    pack_remb_fci,
)

from reactor.media.bwe import BandwidthEstimate, RateSteps, note_feedback
from reactor.media.pacer import PACING_FACTOR, SEQ_JUMP, Pacer

SSRC = 1234


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def estimate(start: float = 1e6, lo: float = 150e3, hi: float = 4e6) -> tuple[
        BandwidthEstimate, Clock]:
    clock = Clock()
    return BandwidthEstimate(start, lo, hi, clock=clock), clock


def report(lost: float, highest: int = 0) -> RtcpRrPacket:
    info = RtcpReceiverInfo(ssrc=SSRC, fraction_lost=round(lost * 256), packets_lost=0,
                            highest_sequence=highest, jitter=0, lsr=0, dlsr=0)
    return RtcpRrPacket(ssrc=1, reports=[info])


def remb(bps: int, ssrcs: list[int] | None = None) -> RtcpPsfbPacket:
    return RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0,
                          fci=pack_remb_fci(bps, ssrcs or [SSRC]))


def test_no_loss_grows_about_eight_percent_a_second_up_to_the_most() -> None:
    est, clock = estimate()
    for _ in range(10):
        clock.now += 1.0
        est.on_loss(0.0)
    assert est.bps == pytest.approx(1e6 * 1.08 ** 9, rel=0.02)  # the first report sets t0
    for _ in range(60):
        clock.now += 1.0
        est.on_loss(0.0)
    assert est.bps == 4e6


def test_heavy_loss_cuts_it_by_half_the_loss_and_moderate_loss_holds() -> None:
    est, clock = estimate(start=4e6)
    est.on_loss(0.4)
    assert est.bps == pytest.approx(4e6 * 0.8)
    clock.now += 0.1
    est.on_loss(0.4)  # too soon after the last cut
    assert est.bps == pytest.approx(4e6 * 0.8)
    clock.now += 0.5
    est.on_loss(0.05)
    assert est.bps == pytest.approx(4e6 * 0.8)
    for _ in range(40):
        clock.now += 0.5
        est.on_loss(0.5)
    assert est.bps == 150e3  # never below the least


def test_remb_caps_it_and_the_pacer_follows() -> None:
    est, clock = estimate(start=4e6)
    pacer = Pacer(1.0, video_types=frozenset({96}))
    est.pacer = pacer
    note_feedback(est, SSRC, remb(1_200_000))
    assert est.bps == pytest.approx(1.2e6, rel=0.01)
    assert pacer.rate_bps == pytest.approx(PACING_FACTOR * est.bps)
    note_feedback(est, SSRC, remb(900_000, [SSRC + 1]))  # another stream's: ignored
    assert est.bps == pytest.approx(1.2e6, rel=0.01)
    note_feedback(est, SSRC, report(0.0))
    clock.now += 1.0
    note_feedback(est, SSRC, report(0.0))
    assert est.bps == pytest.approx(1.2e6, rel=0.01)  # still capped by the REMB
    note_feedback(est, SSRC, remb(3_000_000))
    assert est.bps == pytest.approx(1.2e6 * 1.08, rel=0.01)  # grows from what was used


def test_receiver_reports_of_other_streams_are_ignored() -> None:
    est, _ = estimate()
    note_feedback(est, SSRC + 1, report(0.5))
    assert est.loss is None and est.bps == 1e6
    note_feedback(est, SSRC, report(0.5))
    assert est.loss == pytest.approx(0.5)


def test_rate_steps_tell_a_fifth_at_most_every_2_s_and_a_new_encoder_starts_afresh() -> None:
    steps = RateSteps()
    assert steps.step("h264", 2500, 0.0) is None  # the first rate: a join
    assert steps.step("h264", 2100, 5.0) is None  # 16 %
    assert steps.step("h264", 1900, 5.0) == (2500, 1900)
    assert steps.step("h264", 900, 6.9) is None  # within 2 s of the last
    assert steps.step("h264", 900, 7.0) == (1900, 900)
    steps.forget("h264")
    assert steps.step("h264", 4000, 8.0) is None


def test_an_outage_neither_cuts_the_estimate_nor_is_retransmitted_into() -> None:
    """A viewer cut off (its reports count nothing of what left a second before) keeps
    its estimate through the outage and the report that shows it back, whose interval
    spans the outage's loss (libwebrtc does not take a feedback gap for congestion);
    its NACKs reach aiortc in the sender's numbering, and ask for nothing meanwhile."""
    est, clock = estimate(start=2e6)
    pacer = Pacer(1e9, video_types=frozenset({96}), clock=clock)
    est.pacer = pacer

    def send(first: int, count: int) -> None:
        for seq in range(first, first + count):
            clock.now += 0.01
            packet = bytes([0x80, 96]) + seq.to_bytes(2, "big") + bytes(100)
            assert asyncio.run(pacer.pace(packet)) is not None

    send(0, 100)
    note_feedback(est, SSRC, report(0.0, highest=99))
    before = est.bps
    send(100, 150)  # the link is down
    note_feedback(est, SSRC, report(0.0, highest=99))
    assert pacer.cut_off
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=SSRC, lost=[120, 121])
    assert note_feedback(est, SSRC, nack).lost == []
    send(250, 10)
    # Back: 90 % of what the report's interval expected was lost in the outage.
    note_feedback(est, SSRC, report(0.9, highest=255 + SEQ_JUMP))
    assert not pacer.cut_off and est.bps == before
    nack.lost = [256 + SEQ_JUMP]
    assert note_feedback(est, SSRC, nack).lost == [256]
    assert nack.lost == [256 + SEQ_JUMP]  # aiortc gets a copy; the packet is not changed
    clock.now += 0.5
    note_feedback(est, SSRC, report(0.5, highest=259 + SEQ_JUMP))
    assert est.bps < before  # loss counts again


def test_a_link_is_congested_when_its_remb_falls_or_it_loses_not_while_it_climbs() -> None:
    now = [0.0]
    est = BandwidthEstimate(1_000_000, 150_000, 4_000_000, clock=lambda: now[0])
    for bps in (300_000, 600_000, 1_200_000, 2_000_000):  # a browser's REMB from its start
        est.on_remb(bps)
        now[0] += 0.5
        assert not est.congested()
    est.on_remb(1_700_000)  # its queue grew: 85 % of the last 2 s's high
    assert est.congested()
    now[0] += 2.5
    est.on_remb(1_700_000)  # the high has aged out: steady again
    assert not est.congested()
    est.on_loss(0.03)
    assert est.congested()
