"""Decoded WHIP audio into the model's 20 ms chunks: format, level, pitch and times."""

from __future__ import annotations

import asyncio
import itertools
import time

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack

from reactor.media.audio_in import (
    RECEIVER_PREFETCH,
    RESYNC_S,
    SETTLE_FRAMES,
    AudioChunker,
    frame_to_pcm,
)
from reactor.media.pcm_track import PcmTrack
from tests.support.rtc import connect, new_pc

T0 = 5_000_000_000  # an arbitrary CLOCK_MONOTONIC time, ns
MS = 1_000_000


def tone_frame(start: int, n: int = 960, rate: int = 48000, layout: str = "stereo",
               fmt: str = "s16", hz: float = 1000.0, level: float = 0.5) -> av.AudioFrame:
    """Samples ``start .. start + n`` of a sine, as aiortc's Opus decoder gives them."""
    channels = 2 if layout == "stereo" else 1
    t = (np.arange(n) + start) / rate
    wave = level * np.sin(2 * np.pi * hz * t)
    if fmt == "s16":
        data = np.repeat((wave * 32767).astype(np.int16)[:, None], channels, axis=1)
        array = data.reshape(1, -1)
    else:  # fltp: planar float
        array = np.repeat(wave.astype(np.float32)[None, :], channels, axis=0)
    frame = av.AudioFrame.from_ndarray(array, format=fmt, layout=layout)
    frame.sample_rate = rate
    return frame


def feed(chunker: AudioChunker, frames: int, *, jitter_ms: int = 0, n: int = 960,
         rate: int = 48000, start_at: int = 0) -> list[tuple[np.ndarray, int]]:
    out = []
    frame_ns = n * 1_000_000_000 // rate
    for i in range(start_at, start_at + frames):
        arrived = T0 + (i + 1) * frame_ns + (i % 3) * jitter_ms * MS
        out += chunker.push(tone_frame(i * n, n, rate), arrived)
    return out


def peak_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm[:, 0] * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm))


def test_frame_to_pcm_reads_packed_and_planar_formats() -> None:
    packed = frame_to_pcm(tone_frame(0, layout="stereo", fmt="s16"))
    planar = frame_to_pcm(tone_frame(0, layout="stereo", fmt="fltp"))
    assert packed.shape == planar.shape == (960, 2) and packed.dtype == np.float32
    assert np.allclose(packed, planar, atol=1e-4)
    assert np.allclose(packed[:, 0], packed[:, 1])
    assert abs(float(packed.max()) - 0.5) < 1e-3


@pytest.mark.parametrize(("rate", "channels"), [(48000, 1), (48000, 2), (24000, 1),
                                                (16000, 1), (44100, 2)])
def test_chunks_are_exactly_20_ms_of_the_same_tone_at_the_same_level(rate: int,
                                                                     channels: int) -> None:
    chunker = AudioChunker(rate, channels)
    chunks = feed(chunker, 100)  # 2 s of Opus frames
    assert all(c.shape == (rate // 50, channels) and c.dtype == np.float32 for c, _ in chunks)
    # All but the resampler's held-back millisecond comes out.
    assert len(chunks) >= 99
    pcm = np.concatenate([c for c, _ in chunks])
    assert abs(peak_hz(pcm, rate) - 1000.0) < 5
    # Stereo to mono averages: the level stays 0.5 (not swresample's +3 dB mix).
    assert abs(float(np.abs(pcm[rate // 10:]).max()) - 0.5) < 0.02


def test_pts_follow_the_arrival_times_end_to_end_despite_jitter() -> None:
    chunker = AudioChunker(16000, 1)
    chunks = feed(chunker, 50, jitter_ms=15)
    pts = [p for _, p in chunks]
    # The first frame's last sample arrived at T0 + 20 ms: its first sample sounds at T0.
    assert pts[0] == T0
    assert all(b - a == 20 * MS for a, b in itertools.pairwise(pts))
    assert chunker.restarts == 1


def test_the_timeline_follows_the_earliest_arrivals() -> None:
    """A first frame stamped 40 ms late (a busy loop) does not make every later chunk 40 ms
    late: the first frame that arrives on time pulls the timeline back."""
    chunker = AudioChunker(48000, 1)
    pts = [p for _, p in chunker.push(tone_frame(0), T0 + 20 * MS + 40 * MS)]
    for i in range(1, 10):
        pts += [p for _, p in chunker.push(tone_frame(i * 960), T0 + (i + 1) * 20 * MS)]
    assert pts[0] == T0 + 40 * MS  # what the first frame alone said
    assert pts[2:] == [T0 + i * 20 * MS for i in range(2, 10)]
    assert chunker.restarts == 1


def test_a_timeline_that_every_frame_misses_late_moves_later_after_settling() -> None:
    """A sender whose clock is slower than ours: every frame comes a little later than the
    timeline says; after SETTLE_FRAMES of that the timeline moves by the least delay."""
    chunker = AudioChunker(48000, 1)
    pts: list[int] = []
    for i in range(SETTLE_FRAMES + 5):
        drift = i * 100_000  # 0.1 ms more per frame: 0.5 %
        pts += [p for _, p in chunker.push(tone_frame(i * 960), T0 + (i + 1) * 20 * MS + drift)]
    assert chunker.restarts == 1
    assert pts[SETTLE_FRAMES - 1] == T0 + (SETTLE_FRAMES - 1) * 20 * MS
    # Moved later by the least of the last frames' delays (the first of them: 0.1 ms).
    assert pts[SETTLE_FRAMES] == T0 + SETTLE_FRAMES * 20 * MS + 100_000


def test_a_gap_restarts_the_timeline_at_the_arrival_time() -> None:
    chunker = AudioChunker(48000, 1)
    before = feed(chunker, 10)
    gap_frames = int(RESYNC_S * 50) + 5  # frames lost: longer than RESYNC_S
    after = feed(chunker, 10, start_at=10 + gap_frames)
    assert chunker.restarts == 2
    assert before[-1][1] == T0 + 9 * 20 * MS
    assert after[0][1] == T0 + (10 + gap_frames) * 20 * MS
    assert len(before) == len(after) == 10


def test_a_new_input_format_restarts_the_resampler() -> None:
    chunker = AudioChunker(16000, 1)
    feed(chunker, 5)
    # G.711 decodes to 8 kHz mono: the same chunks come out of it.
    out = []
    for i in range(20):
        out += chunker.push(tone_frame(i * 160, 160, 8000, layout="mono"),
                            T0 + 120 * MS + (i + 1) * 20 * MS)
    assert chunker.restarts == 2
    assert len(out) >= 19 and all(c.shape == (320, 1) for c, _ in out)
    assert abs(peak_hz(np.concatenate([c for c, _ in out]), 16000) - 1000.0) < 10


class TimedPcm(PcmTrack):
    """A PcmTrack noting when each frame is handed to aiortc's encoder."""

    def __init__(self, seconds: float) -> None:
        super().__init__(np.zeros(int(48000 * seconds), np.float32), 48000)
        self.sent: list[int] = []

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        self.sent.append(time.perf_counter_ns())
        return frame


def test_pts_of_sound_through_an_aiortc_receiver_are_its_capture_times() -> None:
    """Over a real aiortc connection on loopback (no network delay), a chunk's pts is when
    its first sample was captured: 20 ms before its frame was sent. Without taking the
    receiver's held-back frames off, it would be 80 ms later."""

    async def run() -> tuple[list[int], list[int]]:
        sender, receiver = new_pc(), new_pc()
        source = TimedPcm(4.0)
        sender.addTrack(source)
        got: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        receiver.on("track", got.set_result)
        await connect(sender, receiver)
        track = await asyncio.wait_for(got, 10)
        chunker = AudioChunker(48000, 1, held_frames=RECEIVER_PREFETCH)
        pts: list[int] = []
        try:
            for _ in range(150):
                frame = await asyncio.wait_for(track.recv(), 5)
                pts += [p for _, p in chunker.push(frame, time.perf_counter_ns())]  # type: ignore[arg-type]
        finally:
            await sender.close()
            await receiver.close()
        return pts, source.sent

    pts, sent = asyncio.run(run())
    # 48 kHz mono out of 48 kHz Opus: chunk k holds frame k's samples.
    errors_ms = [(p - (s - 20 * MS)) / 1e6 for p, s in zip(pts[25:], sent[25:], strict=False)]
    assert abs(float(np.median(errors_ms))) < 10, np.median(errors_ms)
