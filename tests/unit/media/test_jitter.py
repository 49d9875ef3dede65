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
