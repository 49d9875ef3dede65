"""``reactor run`` with sound: the input's sound to the model, the model's into the MP4,
and ``--duration`` (a generative model rendered on its own clock, or an input cut short).

The files are read back with PyAV: a flash is a frame whose top-right square is white,
a beep the first loud sample after a silence; both on the file's own timeline.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from tests.support.daemon import Daemon, models_env, wait_for

W, H, FPS = 320, 240, 30

#: One audio frame of the live stream (Opus, 20 ms): the most sound and picture may be apart.
AUDIO_FRAME_S = 0.020


def reactor_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reactor.cli", "run", *args],
                          capture_output=True, text=True, timeout=120, env=models_env())


def write_config(path: Path, module: str, **audio: object) -> Path:
    path.write_text(yaml.safe_dump({
        "model": {"module": module},
        "video": {"width": W, "height": H, "fps": FPS},
        "audio": audio,
        "session": {"stall_timeout_s": 2},
    }))
    return path


def flash_square(frame: np.ndarray) -> float:
    """The mean level of the square TestPattern turns white on its flash frames."""
    from reactor.examples.pattern import flash_box

    return float(frame[flash_box(*frame.shape[:2])].mean())


def read_frames(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def read_sound(path: Path) -> tuple[np.ndarray, int, float]:
    """The first channel of the file's sound, its rate, and the time of its first sample."""
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
    rate = frames[0].sample_rate
    pcm = np.concatenate([f.to_ndarray()[0] for f in frames])  # AAC decodes to planar
    assert frames[0].time is not None
    return pcm, rate, float(frames[0].time)


def onsets(pcm: np.ndarray, rate: int, start: float, level: float = 0.05) -> list[float]:
    """When each sound starts after at least 0.1 s of quiet, in seconds on the file's clock."""
    loud = np.flatnonzero(np.abs(pcm) > level)
    if not len(loud):
        return []
    firsts = [loud[0]] + [b for a, b in itertools.pairwise(loud) if b - a > rate // 10]
    return [start + i / rate for i in firsts]


def stream_seconds(path: Path, kind: str) -> float:
    with av.open(str(path)) as c:
        s = c.streams.audio[0] if kind == "audio" else c.streams.video[0]
        assert s.duration is not None and s.time_base is not None
        return float(s.duration * s.time_base)


def make_tone_video(path: Path, seconds: float, tone: tuple[float, float], *,
                    rate: int = 44100, hz: float = 440.0) -> None:
    """An MP4 with a stereo AAC track at ``rate`` that sounds ``hz`` from ``tone[0]`` to
    ``tone[1]`` seconds and is silent otherwise, and frames that are white while it sounds
    and black otherwise."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        a = c.add_stream("aac", rate=rate)
        a.layout = "stereo"
        for i in range(round(seconds * FPS)):
            lit = tone[0] <= i / FPS < tone[1]
            f = av.VideoFrame.from_ndarray(np.full((H, W, 3), 255 if lit else 0, np.uint8),
                                           format="rgb24")
            f.pts, f.time_base = i, Fraction(1, FPS)
            for p in v.encode(f):
                c.mux(p)
        t = np.arange(round(seconds * rate)) / rate
        sound = np.where((t >= tone[0]) & (t < tone[1]), 0.5 * np.sin(2 * np.pi * hz * t), 0)
        stereo = np.stack([sound, sound]).astype(np.float32)
        for at in range(0, stereo.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, at:at + 1024]),
                                            format="fltp", layout="stereo")
            af.sample_rate, af.pts, af.time_base = rate, at, Fraction(1, rate)
            for p in a.encode(af):
                c.mux(p)
        for s in (v, a):
            for p in s.encode(None):
                c.mux(p)


@pytest.fixture
def beeping_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "beep.yaml", "reactor.examples.pattern:TestPattern",
                        output=True, sample_rate=48000, channels=1)


def test_generative_run_for_a_duration_beeps_in_sync_with_its_flashes(
    tmp_path: Path, beeping_config: Path
) -> None:
    out = tmp_path / "out.mp4"
    r = reactor_run("-c", str(beeping_config), "--output", str(out), "--duration", "4")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"120 frames rendered (4 s at 30 fps) to {out}" in r.stdout
    frames = read_frames(out)
    assert len(frames) == 4 * FPS
    assert [t for t, _ in frames] == pytest.approx([n / FPS for n in range(4 * FPS)], abs=1e-3)
    flashes = [t for t, f in frames if flash_square(f) > 128]
    assert flashes == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=1e-3)
    pcm, rate, start = read_sound(out)
    assert rate == 48000
    beeps = onsets(pcm, rate, start)
    assert len(beeps) == 4, beeps
    offsets = [b - f for b, f in zip(beeps, flashes, strict=True)]
    assert all(abs(o) <= AUDIO_FRAME_S for o in offsets), offsets
    # S seconds of sound: the track's length says so; decoded, AAC rounds up to its frame.
    assert stream_seconds(out, "audio") == pytest.approx(4.0, abs=1e-3)
    assert 4.0 <= len(pcm) / rate < 4.0 + 1024 / rate + 1e-9


def test_input_sound_goes_through_the_model_to_the_file_in_sync(tmp_path: Path) -> None:
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_tone_video(src, 3.0, (1.0, 2.0))
    cfg = write_config(tmp_path / "through.yaml", "sound_models:SoundThrough", input=True,
                       output=True, sample_rate=48000, channels=1)
    r = reactor_run("-c", str(cfg), "--input", str(src), "--output", str(out), "--lossless")
    assert r.returncode == 0, r.stdout + r.stderr
    # The summary's count of frames written comes from the sink's last heartbeat, which
    # may be a frame behind; the file is the truth.
    assert "90 input frames: 90 processed, 0 dropped;" in r.stdout
    frames = read_frames(out)
    assert len(frames) == 90
    lit = [t for t, f in frames if f.mean() > 128]
    assert lit[0] == pytest.approx(1.0, abs=1e-3) and len(lit) == FPS, lit
    pcm, rate, start = read_sound(out)
    assert onsets(pcm, rate, start) == pytest.approx([1.0], abs=AUDIO_FRAME_S)
    # The tone, at its pitch and level, for the second it lasts; quiet around it.
    tone = pcm[round((1.0 - start) * rate) + 960:round((2.0 - start) * rate) - 960]
    spectrum = np.abs(np.fft.rfft(tone))
    assert np.fft.rfftfreq(len(tone), 1 / rate)[spectrum.argmax()] == pytest.approx(440, abs=2)
    assert np.sqrt(np.mean(tone**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)
    quiet = np.concatenate([pcm[:round((0.9 - start) * rate)],
                            pcm[round((2.1 - start) * rate):]])
    assert np.abs(quiet).max() < 0.05


def test_duration_caps_a_run_with_input_frames_and_sound(tmp_path: Path) -> None:
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_tone_video(src, 3.0, (0.5, 2.5))
    cfg = write_config(tmp_path / "through.yaml", "sound_models:SoundThrough", input=True,
                       output=True, sample_rate=24000, channels=2)
    r = reactor_run("-c", str(cfg), "--input", str(src), "--output", str(out), "--lossless",
                    "--duration", "1.5")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "45 input frames: 45 processed, 0 dropped;" in r.stdout
    assert len(read_frames(out)) == 45
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.layout.nb_channels == 2
    pcm, rate, start = read_sound(out)
    assert rate == 24000
    assert stream_seconds(out, "audio") == pytest.approx(1.5, abs=1e-3)
    assert onsets(pcm, rate, start) == pytest.approx([0.5], abs=AUDIO_FRAME_S)
    assert np.abs(pcm[round(1.0 * rate):round(1.45 * rate)]).max() > 0.4  # sounding at the cut


def test_duration_without_input_needs_a_generative_model(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "through.yaml", "sound_models:SoundThrough", input=True,
                       output=True)
    r = reactor_run("-c", str(cfg), "--output", str(tmp_path / "out.mp4"), "--duration", "1")
    assert r.returncode == 1
    assert "a model that reads input frames needs --input" in r.stderr, r.stderr


def test_duration_run_whose_model_stops_short_fails_with_the_reason(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "stalls.yaml", "models:Stalls")
    r = reactor_run("-c", str(cfg), "--output", str(tmp_path / "out.mp4"), "--duration", "2")
    assert r.returncode == 1
    assert "the model's session ended after 3 of 60 frames (--duration)" in r.stderr, r.stderr
    assert "session.stall_timeout_s" in r.stderr


def test_output_without_input_or_duration_is_a_clear_error(
    tmp_path: Path, beeping_config: Path
) -> None:
    r = reactor_run("-c", str(beeping_config), "--output", str(tmp_path / "out.mp4"))
    assert r.returncode == 1
    assert "needs --input" in r.stderr and "--duration" in r.stderr
    r = reactor_run("-c", str(beeping_config), "--output", str(tmp_path / "out.mp4"),
                    "--duration", "0")
    assert r.returncode == 1 and "--duration 0: expected seconds" in r.stderr


def test_egress_record_carries_the_beeps_in_sync_with_the_flashes(
    start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    rec = tmp_path / "recording.mp4"
    d = start_daemon({"video": {"width": W, "height": H, "fps": FPS},
                      "audio": {"output": True, "sample_rate": 16000},
                      "egress": {"record": str(rec)}})
    with d.client() as c:
        c.start_session()
        wait_for(lambda: d.worker("egress").frames_in >= 3.5 * FPS, 20, "3.5 s of frames")
    d.stop()
    frames = read_frames(rec)
    # Live, frames are stamped when published: the file shows each at its 1/fps slot.
    flashes = [t for t, f in frames if flash_square(f) > 128]
    pcm, rate, start = read_sound(rec)
    assert rate == 16000
    beeps = onsets(pcm, rate, start)
    assert len(flashes) >= 3 and len(beeps) == len(flashes), (flashes, beeps)
    offsets = [b - f for b, f in zip(beeps, flashes, strict=True)]
    assert all(abs(o) <= AUDIO_FRAME_S for o in offsets), offsets
