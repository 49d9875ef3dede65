from __future__ import annotations

import asyncio

import pytest
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from reactor.media import jitter
from reactor.media.jitter import MarkerJitterBuffer
from tests.support.rtc import QueueVideoTrack, collect_tags, connect, new_pc, percentile

W, H = 320, 240


def _packet(seq: int, ts: int, marker: bool, data: bytes = b"x") -> RtpPacket:
    packet = RtpPacket(sequence_number=seq, timestamp=ts, marker=int(marker))
    packet._data = data  # type: ignore[attr-defined]
    return packet


def test_marker_completes_frame_without_next_packet() -> None:
    buf = MarkerJitterBuffer(capacity=128, is_video=True)
    assert buf.add(_packet(10, 1000, False, b"a")) == (False, None)
    pli, frame = buf.add(_packet(11, 1000, True, b"b"))
    assert frame is not None and frame.data == b"ab" and frame.timestamp == 1000
    assert not pli


def test_stock_buffer_waits_for_next_frame() -> None:
    buf = JitterBuffer(capacity=128, is_video=True)
    buf.add(_packet(10, 1000, False))
    assert buf.add(_packet(11, 1000, True))[1] is None
    assert buf.add(_packet(12, 4000, False))[1] is not None


def test_reordered_frame_completes_when_gap_fills() -> None:
    buf = MarkerJitterBuffer(capacity=128, is_video=True)
    buf.add(_packet(1, 0, True, b"k"))  # a first one-packet frame
    # Frame 2 arrives as 2, 4(marker), then 3: nothing until the gap is filled.
    assert buf.add(_packet(2, 3000, False, b"a"))[1] is None
    assert buf.add(_packet(4, 3000, True, b"c"))[1] is None
    frame = buf.add(_packet(3, 3000, False, b"b"))[1]
    assert frame is not None and frame.data == b"abc"


def test_lost_packet_never_yields_a_partial_frame() -> None:
    buf = MarkerJitterBuffer(capacity=16, is_video=True)
    buf.add(_packet(1, 0, True))
    buf.add(_packet(2, 3000, False))  # packet 3 of this frame is lost
    assert buf.add(_packet(4, 3000, True))[1] is None
    assert buf.add(_packet(5, 6000, True))[1] is None
    # Overflow drops the broken frame and asks for a keyframe (aiortc's own path).
    plis = [buf.add(_packet(seq, 3000 * seq, True))[0] for seq in range(6, 24)]
    assert any(plis)


def test_frame_without_marker_still_completes_on_timestamp_change() -> None:
    buf = MarkerJitterBuffer(capacity=128, is_video=True)
    buf.add(_packet(1, 0, False, b"a"))
    frame = buf.add(_packet(2, 3000, False, b"b"))[1]
    assert frame is not None and frame.data == b"a"


# H.264 as aiortc depayloads it (Annex B): a P slice, and SPS + PPS + an IDR slice.
P_SLICE = b"\x00\x00\x00\x01\x41\x9a"
IDR = b"\x00\x00\x00\x01\x67\x42\x00\x00\x00\x01\x68\xce\x00\x00\x00\x01\x65\x88"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _broken_stream(clock: FakeClock) -> MarkerJitterBuffer:
    """A buffer holding frame 2 (seq 2-4) with seq 3 lost, and frame 3 behind it."""
    buf = MarkerJitterBuffer(capacity=512, is_video=True, clock=clock)
    assert buf.add(_packet(1, 0, True, IDR))[1] is not None
    buf.add(_packet(2, 3000, False, P_SLICE))
    assert buf.add(_packet(4, 3000, True, b"\x02"))[1] is None  # seq 3 lost
    clock.now += 0.1
    assert buf.add(_packet(5, 6000, True, P_SLICE)) == (False, None)
    return buf


def test_a_retransmission_in_time_completes_the_held_frame() -> None:
    clock = FakeClock()
    buf = _broken_stream(clock)
    clock.now += 0.15
    pli, frame = buf.add(_packet(3, 3000, False, b"\x01"))  # NACK's retransmission
    assert not pli and frame is not None and frame.timestamp == 3000
    assert buf.gaps_given_up == 0


def test_a_gap_held_past_the_timeout_is_given_up_for_a_keyframe() -> None:
    """aiortc held every frame behind the gap until 512 packets had passed; now a gap
    held for GAP_TIMEOUT_S asks for a keyframe (PLI) and frames whose references are gone
    are dropped until it comes."""
    clock = FakeClock()
    buf = _broken_stream(clock)
    clock.now += jitter.GAP_TIMEOUT_S
    pli, frame = buf.add(_packet(6, 9000, True, P_SLICE))
    assert pli and frame is None, "a PLI, and no frame that references the lost one"
    assert buf.gaps_given_up == 1 and buf.frames_skipped == 2  # frames 3 and 4
    clock.now += 0.05
    assert buf.add(_packet(7, 12000, True, P_SLICE)) == (False, None)
    pli, frame = buf.add(_packet(8, 15000, True, IDR))
    assert not pli and frame is not None and frame.data == IDR
    pli, frame = buf.add(_packet(9, 18000, True, P_SLICE))
    assert frame is not None and frame.data == P_SLICE  # decodable again


def test_the_keyframe_request_repeats_until_a_keyframe_comes() -> None:
    clock = FakeClock()
    buf = _broken_stream(clock)
    clock.now = 100.5  # binary fractions from here: no rounding at the 0.3 s boundary
    assert buf.add(_packet(6, 9000, True, P_SLICE))[0]
    plis = []
    for seq in range(7, 17):  # P frames only, 125 ms apart: the PLI or keyframe was lost
        clock.now += 0.125
        pli, frame = buf.add(_packet(seq, 3000 * seq, True, P_SLICE))
        assert frame is None
        plis.append(pli)
    # Every GAP_TIMEOUT_S (0.3 s: at 0.375, 0.75 and 1.125 s), not on every packet.
    assert plis == [False, False, True, False, False, True, False, False, True, False], plis


def test_keyframes_are_recognised_in_h264_and_vp8() -> None:
    assert jitter.is_keyframe(IDR) and not jitter.is_keyframe(P_SLICE)
    vp8_key = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x00, 0x05])  # P bit clear
    vp8_inter = bytes([0x11, 0x02, 0x00, 0x00, 0x00, 0x00])
    assert jitter.is_keyframe(vp8_key) and not jitter.is_keyframe(vp8_inter)
    assert not jitter.is_keyframe(b"\x01")  # the middle of a frame whose start was lost


def test_enable_is_idempotent_and_reversible() -> None:
    import aiortc.rtcrtpreceiver as receiver_module

    jitter.enable_marker_bit_completion()
    jitter.enable_marker_bit_completion()
    assert receiver_module.JitterBuffer is MarkerJitterBuffer
    jitter.disable_marker_bit_completion()
    assert receiver_module.JitterBuffer is JitterBuffer


async def _arrived(arrivals: dict[int, float], tag: int, within: float) -> None:
    """Return once ``tag`` arrived, or after ``within`` seconds (the caller judges)."""
    deadline = asyncio.get_running_loop().time() + within
    while tag not in arrivals and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


async def _loopback(frames: int, lone_tag: int) -> tuple[list[float], bool]:
    """Send ``frames`` at 30 fps, then one more frame alone. Return latencies, lone seen."""
    sender, receiver = new_pc(), new_pc()
    track = QueueVideoTrack()
    arrivals: dict[int, float] = {}
    tasks: list[asyncio.Task[None]] = []
    receiver.on("track", lambda t: tasks.append(asyncio.ensure_future(collect_tags(t, arrivals))))
    sender.addTrack(track)
    try:
        await connect(sender, receiver)
        # Warm up until the first frames flow (ICE, DTLS, keyframe).
        for tag in range(1, 1000):
            track.put(tag, W, H)
            await asyncio.sleep(1 / 30)
            if len(arrivals) >= 3:
                break
        start = max(arrivals) + 2
        for tag in range(start, start + frames):
            track.put(tag, W, H)
            await asyncio.sleep(1 / 30)
        # The last measured frame (the stock buffer holds the very last until another comes).
        await _arrived(arrivals, start + frames - 2, 2.0)
        latencies = [
            (arrivals[t] - track.sent_at[t]) * 1000
            for t in range(start, start + frames - 1)
            if t in arrivals
        ]
        # One frame, then silence: does it arrive without a following frame?
        track.put(lone_tag, W, H)
        # Half a second at 30 fps is 15 frame intervals: a buffer that completes frames on
        # the marker bit has long delivered it by then.
        await _arrived(arrivals, lone_tag, 0.5)
        return latencies, lone_tag in arrivals
    finally:
        await sender.close()
        await receiver.close()
        for task in tasks:
            task.cancel()


@pytest.mark.timeout(60)
def test_marker_bit_completion_removes_a_frame_interval_on_loopback() -> None:
    stock, stock_lone = asyncio.run(_loopback(45, 4000))
    jitter.enable_marker_bit_completion()
    marker, marker_lone = asyncio.run(_loopback(45, 4000))
    stock_p50, marker_p50 = percentile(stock, 0.5), percentile(marker, 0.5)
    print(f"aiortc loopback {W}x{H} p50: stock {stock_p50:.1f} ms, marker {marker_p50:.1f} ms")
    assert len(stock) > 35 and len(marker) > 35
    # The stock buffer holds a frame until the next one is sent; ours does not.
    assert not stock_lone
    assert marker_lone
    assert marker_p50 + 20 < stock_p50
