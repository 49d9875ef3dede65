"""Recorder: frames written are the frames in the file, at the configured rate; sound is
placed by presentation time against the first frame."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from reactor.errors import ReactorError
from reactor.media.recorder import Recorder


def test_long_recording_keeps_every_frame_and_its_timestamp(tmp_path: Path) -> None:
    # Past 256 frames: timestamps read in the muxer's time base (1/15360) used to collapse
    # and the muxer rejected frame 257.
    path = tmp_path / "out.mp4"
    rec = Recorder(path, 64, 48, 30)
    for i in range(300):
        rec.write(np.full((48, 64, 3), i % 256, np.uint8))
    rec.close()
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        pts = [f.time for f in c.decode(stream)]
    assert len(pts) == 300
    assert abs(pts[-1] - 299 / 30) < 0.01


def test_recording_describes_its_colour_and_keeps_it(tmp_path: Path) -> None:
    from reactor.media.convert import frame_to_rgb

    path = tmp_path / "colour.mp4"
    rec = Recorder(path, 1280, 720, 30)
    for _ in range(5):
        rec.write(np.full((720, 1280, 3), (20, 40, 230), np.uint8))
    rec.close()
    with av.open(str(path)) as c:
        ctx = c.streams.video[0].codec_context
        # As the live H.264 stream: BT.601 matrix, BT.709 (sRGB) primaries and transfer,
        # limited range, read back from the file's own stream header.
        assert (ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range) == \
            (6, 1, 1, 1)
        frame = next(c.decode(video=0))
    centre = frame_to_rgb(frame, 1280, 720)[360, 640].astype(int)
    assert np.abs(centre - np.array((20, 40, 230))).max() <= 4, centre


# --- packets: egress.record muxes the live encoder's H.264 -----------------------------

def test_live_h264_packets_are_muxed_as_they_are_from_the_first_keyframe(tmp_path: Path) -> None:
    from reactor.media.convert import frame_to_rgb
    from reactor.media.encoder import Encoder
    from tests.support.rtc import read_tag, tagged_rgb

    w, h = 320, 240
    encoder = Encoder("h264", w, h, fps=FPS)  # the live encoder: Annex B, baseline
    path = tmp_path / "live.mp4"
    rec = Recorder(path, w, h, FPS, encode=False)
    kept, sizes = [], []
    for i in range(75):
        if i == 8:
            encoder.force_keyframe()  # a viewer's PLI: the recording starts here
        packets = encoder.encode(tagged_rgb(i, w, h), i * 3000)
        if i < 5:
            continue  # the recorder attached to an encoder already running
        before = [(p.pts, p.time_base, bytes(p)) for p in packets]
        if rec.write_packets(packets, T0 + i * SECOND // FPS):
            kept.append(i)
            sizes.append(sum(p.size for p in packets))
        # The same packets go to the viewers' senders: the recorder leaves them alone.
        assert [(p.pts, p.time_base, bytes(p)) for p in packets] == before
    rec.close()
    assert kept == list(range(8, 75)) and rec.frames == 67
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        ctx = stream.codec_context
        assert ctx.profile == "Constrained Baseline"
        assert (ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range) == \
            (6, 1, 1, 1)
        assert stream.frames == 67
        assert stream.duration is not None and stream.time_base is not None
        assert float(stream.duration * stream.time_base) == pytest.approx(67 / FPS, abs=1e-3)
        packets = [p for p in c.demux(stream) if p.size]
        frames = [f for p in [*packets, None] for f in ctx.decode(p)]
    # Not re-encoded: each sample is the live packet, length-prefixed instead of Annex B.
    assert [p.size for p in packets] == pytest.approx(sizes, abs=64)
    assert packets[0].is_keyframe
    assert len(frames) == 67
    assert [read_tag(frame_to_rgb(f, w, h)) for f in frames] == kept
    assert [round(f.time * FPS) for f in frames] == list(range(67))
    encoder.close()


def test_a_packet_recorder_does_not_encode_and_an_encoding_one_takes_no_packets(
    tmp_path: Path,
) -> None:
    muxing = Recorder(tmp_path / "a.mp4", 64, 48, FPS, encode=False)
    with pytest.raises(ReactorError, match="write_packets"):
        muxing.write(np.zeros((48, 64, 3), np.uint8))
    muxing.close()
    encoding = Recorder(tmp_path / "b.mp4", 64, 48, FPS)
    with pytest.raises(ReactorError, match="use write"):
        encoding.write_packets([], T0)
    encoding.close()


# --- sound ------------------------------------------------------------------------------

FPS, RATE = 30, 48000
T0 = 5_000_000_000_000  # the first frame's pts: any point on CLOCK_MONOTONIC
SECOND = 1_000_000_000


def tone(seconds: float, hz: float = 1000.0, rate: int = RATE, level: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)[:, None]


def sound_recorder(path: Path, duration_s: float | None = None) -> Recorder:
    return Recorder(path, 64, 48, FPS, audio=(RATE, 1), duration_s=duration_s)


def write_frames(rec: Recorder, n: int) -> None:
    for i in range(n):
        rec.write(np.zeros((48, 64, 3), np.uint8), T0 + i * SECOND // FPS)


def decoded_sound(path: Path) -> tuple[np.ndarray, float]:
    """Mono samples and the time of the first (the file's clock)."""
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
    assert frames[0].time is not None
    return np.concatenate([f.to_ndarray()[0] for f in frames]), float(frames[0].time)


def loud_spans(pcm: np.ndarray, start: float, level: float = 0.05) -> list[tuple[float, float]]:
    """(first, last) loud sample times of each run of sound, 10 ms of quiet apart."""
    loud = np.flatnonzero(np.abs(pcm) > level)
    spans, first = [], loud[0]
    for a, b in itertools.pairwise(loud):
        if b - a > RATE // 100:
            spans.append((first, a))
            first = b
    spans.append((first, loud[-1]))
    return [(start + a / RATE, start + b / RATE) for a, b in spans]


def test_sound_is_placed_by_pts_against_the_first_frame_with_silence_in_the_gaps(
    tmp_path: Path,
) -> None:
    path = tmp_path / "av.mp4"
    rec = sound_recorder(path)
    write_frames(rec, 2 * FPS)
    rec.write_audio(tone(0.1), T0 + SECOND // 2)
    rec.write_audio(tone(0.1), T0 + SECOND * 5 // 4)
    rec.close()
    pcm, start = decoded_sound(path)
    spans = loud_spans(pcm, start)
    assert [round(a, 3) for a, _ in spans] == [0.5, 1.25], spans
    assert [round(b - a, 2) for a, b in spans] == [0.1, 0.1], spans
    with av.open(str(path)) as c:  # sound to the end of the last frame
        s = c.streams.audio[0]
        assert s.duration is not None and s.time_base is not None
        assert float(s.duration * s.time_base) == pytest.approx(2.0, abs=1e-3)


def test_sound_that_comes_before_the_first_frame_waits_for_it(tmp_path: Path) -> None:
    path = tmp_path / "early.mp4"
    rec = sound_recorder(path)
    rec.write_audio(tone(0.1), T0 - SECOND // 20)  # half of it before the first frame
    rec.write_audio(tone(0.1), T0 + SECOND * 3 // 10)
    write_frames(rec, FPS)
    rec.close()
    pcm, start = decoded_sound(path)
    spans = loud_spans(pcm, start)
    assert [(round(a, 3), round(b, 2)) for a, b in spans] == [(0.0, 0.05), (0.3, 0.4)], spans


def test_overlapping_sound_keeps_what_was_placed_first(tmp_path: Path) -> None:
    rec = sound_recorder(tmp_path / "overlap.mp4")
    write_frames(rec, 1)
    rec.write_audio(tone(0.2, 440), T0)
    rec.write_audio(tone(0.2, 880), T0 + SECOND // 10)  # its first half overlaps
    assert rec.audio_samples == round(0.3 * RATE)
    rec.close()
    pcm, start = decoded_sound(tmp_path / "overlap.mp4")
    assert start == 0.0
    first, second = pcm[round(0.02 * RATE):round(0.18 * RATE)], pcm[round(0.22 * RATE):]

    def pitch(x: np.ndarray) -> float:
        return float(np.fft.rfftfreq(len(x), 1 / RATE)[np.abs(np.fft.rfft(x)).argmax()])

    assert pitch(first) == pytest.approx(440, abs=10)
    assert pitch(second[:round(0.06 * RATE)]) == pytest.approx(880, abs=20)


def test_chunks_a_sample_off_continue_without_a_gap_or_a_cut(tmp_path: Path) -> None:
    # Two clocks' rounding: 44.1 kHz chunks of 20 ms whose pts are a sample early or late.
    rec = Recorder(tmp_path / "jitter.mp4", 64, 48, FPS, audio=(44100, 2))
    rec.write(np.zeros((48, 64, 3), np.uint8), T0)
    chunk = np.full((882, 2), 0.25, np.float32)
    for i in range(100):
        jitter = (1, -1, 0)[i % 3] * SECOND // 44100
        rec.write_audio(chunk, T0 + i * SECOND // 50 + jitter)
    assert rec.audio_samples == 100 * 882
    rec.close()


def test_duration_caps_frames_and_sound(tmp_path: Path) -> None:
    path = tmp_path / "capped.mp4"
    rec = sound_recorder(path, duration_s=1.0)
    for i in range(45):
        kept = rec.write(np.zeros((48, 64, 3), np.uint8), T0 + i * SECOND // FPS)
        assert kept == (i < FPS)
    rec.write_audio(tone(1.5), T0)
    assert rec.audio_samples == RATE
    rec.close()
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == FPS
        s = c.streams.audio[0]
        assert s.duration is not None and s.time_base is not None
        assert float(s.duration * s.time_base) == pytest.approx(1.0, abs=1e-3)


def test_sound_without_an_audio_track_is_a_clear_error(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "mute.mp4", 64, 48, FPS)
    with pytest.raises(ReactorError, match="audio.output is off"):
        rec.write_audio(tone(0.02), T0)
    rec.close()
