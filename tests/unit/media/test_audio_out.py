"""Egress audio: the 48 kHz send timeline (placement, silence fill, window pacing, drops),
Opus encoded once for any number of viewers, decoded sound where its pts says, and RTCP
sender reports that map RTP time to NTP by the session clock."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCRtpSender
from aiortc.codecs.opus import OpusDecoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtcpSrPacket

from reactor.media.audio import (
    DEADLINE_NS,
    MAX_AHEAD_NS,
    WINDOW,
    WINDOW_NS,
    AudioBroadcaster,
    EncodedAudioTrack,
    SendTimeline,
)
from reactor.media.clock import MediaClock, enable_session_clock_reports, rtp_origin
from tests.support.rtc import connect, new_pc

MS = 1_000_000
EPOCH = 10_000_000_000  # an arbitrary session-clock time for the unit timelines


def clock48() -> MediaClock:
    return MediaClock(EPOCH, 48_000)


def at(sample: int) -> int:
    """Session-clock time of 48 kHz timeline sample ``sample``."""
    return EPOCH + sample * 1_000_000_000 // 48_000


def ramp(n: int, start: int = 0, channels: int = 1) -> np.ndarray:
    """Distinct, recognisable samples: value = (index + 1) / 1e6."""
    values = (np.arange(start, start + n, dtype=np.float64) + 1) / 1e6
    return np.repeat(values.astype(np.float32)[:, None], channels, axis=1)


def tone(hz: float, n: int, rate: int, start: int = 0) -> np.ndarray:
    t = (np.arange(start, start + n)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)[:, None]


def timeline(**kw: Any) -> SendTimeline:
    return SendTimeline(clock48(), 1, 48_000, 1, **kw)


# --- the timeline -------------------------------------------------------------------------

def test_chunks_laid_end_to_end_come_out_as_whole_windows_with_their_samples() -> None:
    t = timeline()
    now = at(0)
    for k in range(5):  # 5 chunks of 1600 samples (one 30 fps frame's worth), contiguous
        t.add(ramp(1600, 1600 * k), at(1600 * k), now)
    # 8000 samples are complete: 8 windows (7680), the 9th lacks 640 samples.
    windows = t.due(at(8000))
    assert [w.index for w in windows] == [WINDOW * k for k in range(8)]
    out = np.concatenate([w.pcm for w in windows])
    assert np.array_equal(out, ramp(8 * WINDOW))
    assert all(w.complete and not w.silent for w in windows)


def test_complete_windows_go_out_at_most_one_window_ahead_of_their_time() -> None:
    t = timeline()
    t.add(ramp(48_000), at(0), at(0))  # one second of sound, all at once
    # The window that has begun and the next one; not the rest of the second.
    assert [w.index for w in t.due(at(0))] == [0, WINDOW]
    assert t.due(at(0)) == []
    assert t.next_due_ns(at(0)) == at(WINDOW)
    assert [w.index for w in t.due(at(WINDOW) + 1)] == [2 * WINDOW]
    assert [w.index for w in t.due(at(5 * WINDOW))] == [3 * WINDOW, 4 * WINDOW, 5 * WINDOW,
                                                       6 * WINDOW]
    assert len(t.due(at(48_000))) == 50 - 7  # the rest, as it plays


def test_without_sound_silence_goes_out_at_each_deadline() -> None:
    t = timeline()
    assert t.due(at(0)) == []
    assert t.next_due_ns(at(0)) == at(WINDOW) + DEADLINE_NS
    assert t.due(at(WINDOW) + DEADLINE_NS - 1) == []
    windows = t.due(at(WINDOW) + DEADLINE_NS)
    assert len(windows) == 1 and windows[0].silent and not windows[0].pcm.any()
    # A second of nothing: 50 windows of silence, each on time.
    sent = [w for ms in range(40, 1040, 20) for w in t.due(at(0) + ms * MS + DEADLINE_NS)]
    assert len(sent) == 50 and all(w.silent for w in sent)
    assert t.windows_silent == 51


def test_a_window_missing_sound_at_its_deadline_goes_out_with_silence_for_the_rest() -> None:
    t = timeline()
    t.add(ramp(600), at(0), at(0))  # 600 of the first window's 960 samples
    assert t.due(at(0)) == []
    assert t.due(at(WINDOW)) == []  # incomplete, deadline not reached
    (window,) = t.due(at(WINDOW) + DEADLINE_NS)
    assert not window.complete and not window.silent
    assert np.array_equal(window.pcm[:600], ramp(600)) and not window.pcm[600:].any()
    assert t.windows_partial == 1


def test_a_gap_is_silence_and_the_next_chunk_starts_at_its_own_time() -> None:
    t = timeline()
    t.add(ramp(960), at(0), at(0))
    t.add(ramp(480, 5000), at(3000), at(0))  # 2040 samples later than the first ended
    windows = t.due(at(5 * WINDOW))
    out = np.concatenate([w.pcm for w in windows])
    assert np.array_equal(out[:960], ramp(960))
    assert not out[960:3000].any()
    assert np.array_equal(out[3000:3480], ramp(480, 5000))
    assert windows[1].complete  # the gap is known silence once later sound is placed


def test_a_chunk_within_two_samples_of_the_cursor_continues_it_exactly() -> None:
    t = timeline()
    t.add(ramp(1000), at(0), at(0))
    t.add(ramp(1000, 1000), at(1000) + 30_000, at(0))  # pts 1.4 samples late: snapped
    out = np.concatenate([w.pcm for w in t.due(at(4 * WINDOW))])
    assert np.array_equal(out[:2000], ramp(2000))


def test_sound_that_arrives_after_its_window_went_out_is_dropped_and_counted() -> None:
    t = timeline()
    assert t.due(at(0)) == []
    assert len(t.due(at(2 * WINDOW) + DEADLINE_NS)) == 2  # windows 0 and 1: silence
    t.add(ramp(2400), at(0), at(2 * WINDOW) + DEADLINE_NS)  # covers 0..2400: 1920 too late
    assert (t.chunks_late, t.samples_late) == (1, 2 * WINDOW)
    (window,) = t.due(at(3 * WINDOW) + DEADLINE_NS)
    assert np.array_equal(window.pcm[:480], ramp(480, 1920))


def test_sound_more_than_two_seconds_ahead_is_dropped_and_counted() -> None:
    t = timeline()
    ahead = MAX_AHEAD_NS * 48_000 // 1_000_000_000
    t.add(ramp(ahead + 4800), at(0), at(0))
    assert t.chunks_ahead == 1 and t.samples_ahead == 4800
    t.add(ramp(960), at(3 * 48_000), at(0))  # entirely beyond
    assert t.chunks_ahead == 2 and t.samples_ahead == 4800 + 960


def test_a_stalled_sender_skips_to_now_instead_of_bursting() -> None:
    t = timeline()
    t.due(at(0))
    windows = t.due(at(0) + 5_000_000_000)
    assert len(windows) <= 3 and t.windows_skipped >= 245


def test_resampled_sound_keeps_its_pitch_length_and_timing() -> None:
    """A 16 kHz model's 1 kHz tone in 20 ms chunks comes out at 1 kHz, as long, in place."""
    t = SendTimeline(clock48(), 1, 16_000, 1)
    start = at(4800)  # the tone starts 100 ms into the timeline
    for k in range(50):  # one second in 320-sample chunks
        pts = start + k * 320 * 1_000_000_000 // 16_000
        t.add(tone(1000, 320, 16_000, 320 * k), pts, at(0))
    windows = [w for k in range(61) for w in t.due(at(k * WINDOW))]
    out = np.concatenate([w.pcm for w in windows])[:, 0]
    loud = np.flatnonzero(np.abs(out) > 0.05)
    assert abs(loud[0] - 4800) <= 48  # within 1 ms (the filter's ramp-in)
    assert abs(loud[-1] - (4800 + 48_000)) <= 96  # the filter rings a little past a cut
    body = out[4800 + 480:4800 + 48_000 - 480]
    spectrum = np.abs(np.fft.rfft(body * np.hanning(len(body))))
    assert abs(np.fft.rfftfreq(len(body), 1 / 48_000)[np.argmax(spectrum)] - 1000) < 3
    # No click at the seams: sample-to-sample steps stay those of a 1 kHz sine.
    assert np.abs(np.diff(body)).max() < 0.5 * 2 * np.pi * 1000 / 48_000 * 1.1


def test_stereo_model_sound_to_a_mono_stream_is_averaged() -> None:
    t = SendTimeline(clock48(), 1, 48_000, 2)
    pcm = np.stack([np.full(960, 0.2, np.float32), np.full(960, 0.4, np.float32)], axis=1)
    t.add(pcm, at(0), at(0))
    (window,) = t.due(at(0))
    assert np.allclose(window.pcm, 0.3)


# --- encode once, fan out -----------------------------------------------------------------

def test_many_viewers_share_one_encode_of_each_window() -> None:
    async def run() -> None:
        now = time.perf_counter_ns()
        audio = AudioBroadcaster(MediaClock(now, 90_000), sample_rate=48_000, channels=1)
        tracks = [audio.add_viewer() for _ in range(25)]
        audio.feed(tone(1000, 9600, 48_000), now, now)  # 200 ms
        sent = audio.pump(now + 200 * MS)
        await asyncio.sleep(0)  # deliveries are handed to the loop
        windows = len(sent)
        assert windows >= 10
        assert audio.encoder.windows_encoded == windows  # once per window, not per viewer
        first = [await asyncio.wait_for(t.recv(), 1) for t in tracks]
        assert all(p is first[0] for p in first)  # the very same packet object
        assert first[0].time_base == Fraction(1, 48_000)
        assert all(t.sent == 1 for t in tracks)
        stats = audio.stats()
        assert stats.viewers == 25 and stats.windows_encoded == windows
        assert stats.samples_in == 9600 and stats.samples_out == windows * WINDOW
        for t in tracks[:5]:
            audio.remove_viewer(t)
            assert t.readyState == "ended"
        assert audio.stats().viewers == 20
        audio.close()

    asyncio.run(run())


def test_without_viewers_nothing_is_encoded_but_time_goes_on() -> None:
    async def run() -> None:
        now = time.perf_counter_ns()
        audio = AudioBroadcaster(MediaClock(now, 90_000), sample_rate=48_000, channels=1)
        audio.pump(now)
        sent = audio.pump(now + 500 * MS)
        assert len(sent) >= 20 and audio.encoder.windows_encoded == 0
        track = audio.add_viewer()
        audio.pump(now + 560 * MS)
        await asyncio.sleep(0)
        assert audio.encoder.windows_encoded >= 1 and track.queued >= 1

    asyncio.run(run())


def test_a_viewer_that_falls_behind_loses_its_oldest_packets_only() -> None:
    async def run() -> None:
        track = EncodedAudioTrack(queue_size=3)
        packets = [av.Packet(bytes([i])) for i in range(5)]
        for p in packets:
            track.deliver(p)
        assert track.dropped == 2
        assert [bytes(await track.recv()) for _ in range(3)] == [b"\x02", b"\x03", b"\x04"]

    asyncio.run(run())


def test_decoded_sound_lands_where_its_rtp_timestamps_say() -> None:
    """The encoder's lookahead is in the packets' pts: a beep placed at timeline sample
    s decodes (as aiortc's receiver decodes) at RTP time s, within a millisecond."""
    async def run() -> None:
        now = time.perf_counter_ns()
        clock = MediaClock(now, 48_000)
        audio = AudioBroadcaster(clock, sample_rate=48_000, channels=1)
        track = audio.add_viewer()
        base = clock.rtp(now) // WINDOW * WINDOW
        beep_at = base + 3 * WINDOW + 123
        pcm = np.zeros((10 * WINDOW, 1), np.float32)
        pcm[beep_at - base:beep_at - base + 4800] = tone(1000, 4800, 48_000)
        audio.feed(pcm, clock.time_ns(base) + 1, now)
        audio.pump(clock.time_ns(base + 10 * WINDOW))
        await asyncio.sleep(0)
        decoder = OpusDecoder()
        decoded: list[tuple[int, np.ndarray]] = []
        while track.queued:
            packet = await track.recv()
            assert packet.pts is not None
            frame = JitterFrame(data=bytes(packet), timestamp=packet.pts)
            for f in decoder.decode(frame):
                assert isinstance(f, av.AudioFrame) and f.pts is not None
                decoded.append((f.pts, f.to_ndarray().reshape(-1, 2)[:, 0] / 32768))
        first = decoded[0][0]
        signal = np.zeros(decoded[-1][0] + 960 - first)
        for pts, samples in decoded:
            signal[pts - first:pts - first + len(samples)] = samples
        onset = first + int(np.flatnonzero(np.abs(signal) > 0.1)[0])
        assert abs(onset - beep_at) <= 48, (onset, beep_at)

    asyncio.run(run())


def test_a_stereo_model_is_sent_as_stereo_opus() -> None:
    """Left and right stay apart through the encoder: 1 kHz left, silence right."""
    async def run() -> None:
        now = time.perf_counter_ns()
        clock = MediaClock(now, 48_000)
        audio = AudioBroadcaster(clock, sample_rate=24_000, channels=2)
        track = audio.add_viewer()
        base = clock.rtp(now) // WINDOW * WINDOW
        pcm = np.zeros((2400, 2), np.float32)  # 100 ms at 24 kHz
        pcm[:, 0] = tone(1000, 2400, 24_000)[:, 0]
        audio.feed(pcm, clock.time_ns(base), now)
        audio.pump(clock.time_ns(base + 6 * WINDOW))
        await asyncio.sleep(0)
        decoder = OpusDecoder()
        left, right = [], []
        while track.queued:
            packet = await track.recv()
            assert packet.pts is not None
            for f in decoder.decode(JitterFrame(data=bytes(packet), timestamp=packet.pts)):
                assert isinstance(f, av.AudioFrame)
                both = f.to_ndarray().reshape(-1, 2) / 32768
                left.append(both[:, 0])
                right.append(both[:, 1])
        assert np.sqrt(np.mean(np.concatenate(left) ** 2)) > 0.2
        assert np.abs(np.concatenate(right)).max() < 0.05

    asyncio.run(run())


# --- sender reports on the session clock ----------------------------------------------------

def test_sender_reports_map_rtp_to_ntp_by_the_session_clock() -> None:
    """Packets stamped 300 ms before they are sent (as a frame that waited to be encoded):
    the SR still says RTP time = the session clock's time, not the send time."""
    enable_session_clock_reports()
    lag = 300 * MS

    async def run() -> None:
        clock = MediaClock(time.perf_counter_ns(), 48_000)
        track = EncodedAudioTrack(clock)
        sender_pc, receiver_pc = new_pc(), new_pc()
        sender_pc.addTransceiver(track, direction="sendonly")
        receiver_pc.addTransceiver("audio", direction="recvonly")
        reports: list[tuple[float, int, int]] = []  # (ntp s, rtp, perf_counter_ns on arrival)
        first_rtp: list[int] = []
        receiver = receiver_pc.getTransceivers()[0].receiver
        handle_rtcp, handle_rtp = receiver._handle_rtcp_packet, receiver._handle_rtp_packet

        async def on_rtcp(packet: Any) -> None:
            if isinstance(packet, RtcpSrPacket):
                info = packet.sender_info
                reports.append((info.ntp_timestamp / 2**32, info.rtp_timestamp,
                                time.perf_counter_ns()))
            await handle_rtcp(packet)

        async def on_rtp(packet: Any, arrival_time_ms: int) -> None:
            if not first_rtp:
                first_rtp.append(packet.timestamp)
            await handle_rtp(packet, arrival_time_ms)

        receiver._handle_rtcp_packet = on_rtcp  # type: ignore[method-assign]
        receiver._handle_rtp_packet = on_rtp  # type: ignore[method-assign]
        await connect(sender_pc, receiver_pc)
        encoder = AudioBroadcaster(clock, sample_rate=48_000, channels=1).encoder
        first_pts: int | None = None
        t_end = time.monotonic() + 3.5
        while time.monotonic() < t_end and len(reports) < 2:
            index = clock.rtp(time.perf_counter_ns() - lag) // WINDOW * WINDOW
            for packet in encoder.encode(np.zeros((WINDOW, 1), np.float32), index):
                assert packet.pts is not None
                first_pts = packet.pts if first_pts is None else first_pts
                track.deliver(packet)
            await asyncio.sleep(WINDOW_NS / 1e9)
        sender: RTCRtpSender = sender_pc.getTransceivers()[0].sender
        origin = rtp_origin(sender)
        await sender_pc.close()
        await receiver_pc.close()
        assert reports, "no sender report in 3.5 s"
        assert first_rtp and first_pts is not None
        assert origin == (first_rtp[0] - first_pts) & 0xFFFFFFFF
        # Wall clock minus session clock, now (NTP is seconds since 1900).
        wall_minus_mono = time.time() - time.perf_counter_ns() / 1e9 + 2_208_988_800
        for ntp, rtp, _ in reports:
            ticks = (rtp - origin) & 0xFFFFFFFF
            session_s = (clock.time_ns(ticks)) / 1e9 + wall_minus_mono
            assert abs(session_s - ntp) < 0.005, (session_s - ntp, "s off the session clock")

    asyncio.run(run())


def test_tracks_without_a_media_clock_keep_aiortcs_reports() -> None:
    enable_session_clock_reports()

    async def run() -> None:
        track = EncodedAudioTrack(None)
        pc_a, pc_b = new_pc(), new_pc()
        pc_a.addTransceiver(track, direction="sendonly")
        pc_b.addTransceiver("audio", direction="recvonly")
        await connect(pc_a, pc_b)
        sender = pc_a.getTransceivers()[0].sender
        clock = MediaClock(time.perf_counter_ns(), 48_000)
        encoder = AudioBroadcaster(clock, sample_rate=48_000, channels=1).encoder
        for k in range(5):
            for packet in encoder.encode(np.zeros((WINDOW, 1), np.float32), k * WINDOW):
                track.deliver(packet)
            await asyncio.sleep(0.03)
        assert rtp_origin(sender) is None
        await pc_a.close()
        await pc_b.close()

    asyncio.run(run())


@pytest.mark.parametrize("rate", [90_000, 48_000])
def test_media_clock_reads_rtp_ticks_since_its_epoch(rate: int) -> None:
    clock = MediaClock(5_000_000_000, rate)
    assert clock.rtp(5_000_000_000) == 0
    assert clock.rtp(6_000_000_000) == rate
    assert clock.time_ns(rate // 2) == 5_500_000_000
    assert clock.with_rate(48_000).epoch_ns == clock.epoch_ns
