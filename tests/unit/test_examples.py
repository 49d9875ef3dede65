"""reactor.testing drives each example model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from reactor import CommandError
from reactor.examples.filters import Brightness, Identity, SolidColor
from reactor.examples.meter import GREEN, RED, YELLOW, LevelMeter, meter_layout
from reactor.examples.pattern import TestPattern, flash_box
from reactor.testing import ModelRunner


def test_pattern_moves_counts_and_obeys_commands() -> None:
    runner = ModelRunner(TestPattern, width=320, height=180)
    frames = runner.run(frames=6, commands={3: ("set_speed", {"speed": 0.0})})
    assert len(frames) == 6 and frames[0].shape == (180, 320, 3)
    assert not np.array_equal(frames[0][100:], frames[1][100:])  # bars move
    assert np.array_equal(frames[4][100:], frames[5][100:])  # speed 0 stops them
    assert not np.array_equal(frames[4][:30], frames[5][:30])  # the counter still counts
    with pytest.raises(CommandError):
        runner.send_command("set_speed", speed=1000)


def test_pattern_text_command_changes_the_caption() -> None:
    runner = ModelRunner(TestPattern, width=320, height=180, args={"speed": 0})
    frames = runner.run(frames=3, commands={2: ("set_text", {"text": "HELLO"})})
    caption = slice(20, 40)
    assert not np.array_equal(frames[1][caption], frames[2][caption])


def test_brightness_gain_invert_mode() -> None:
    frame = np.full((4, 6, 3), 100, np.uint8)
    runner = ModelRunner(Brightness, width=6, height=4)
    out = runner.run(
        inputs=[frame] * 4,
        commands={1: ("set_gain", {"gain": 2.0}), 2: ("set_invert", {"invert": True}),
                  3: ("set_mode", {"mode": "red"})},
    )
    assert [int(f[0, 0, 0]) for f in out] == [100, 200, 55, 55]
    assert int(out[3][0, 0, 1]) == 0


def test_identity_and_solid_color() -> None:
    frame = np.random.default_rng(1).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    assert np.array_equal(ModelRunner(Identity, width=6, height=4).run(inputs=[frame])[0], frame)
    out = ModelRunner(SolidColor, width=6, height=4).run(
        frames=2, commands={1: ("set_color", {"r": 0, "g": 255, "b": 0})}
    )
    assert tuple(out[0][0, 0]) == (255, 0, 0) and tuple(out[1][0, 0]) == (0, 255, 0)


def test_torch_example_on_cpu() -> None:
    pytest.importorskip("torch")
    from reactor.examples.torch_model import TorchStylize

    frame = np.full((8, 8, 3), 128, np.uint8)
    runner = ModelRunner(TorchStylize, width=8, height=8, args={"device": "cpu"})
    out = runner.run(inputs=[frame] * 2, commands={1: ("set_strength", {"strength": 0.0})})
    assert out[0].shape == (8, 8, 3)
    assert np.array_equal(out[1], frame)  # strength 0 is the identity
    assert not np.array_equal(out[0][2:6, 2:6], frame[2:6, 2:6])


def _onsets(mono: np.ndarray, rate: int) -> list[int]:
    """Sample indices where sound starts after at least 100 ms of silence."""
    loud = np.flatnonzero(np.abs(mono) > 0.01)
    return [int(i) for k, i in enumerate(loud) if k == 0 or i - loud[k - 1] > rate // 10]


def _tone_at(mono: np.ndarray, rate: int, hz: float) -> float:
    """The fraction of the signal's energy within 20 Hz of ``hz``."""
    spectrum = np.abs(np.fft.rfft(mono)) ** 2
    freqs = np.fft.rfftfreq(len(mono), 1 / rate)
    return float(spectrum[np.abs(freqs - hz) < 20].sum() / spectrum.sum())


@pytest.mark.parametrize(("rate", "fps", "channels"),
                         [(48000, 30, 1), (44100, 24, 2), (16000, 25, 1)])
def test_pattern_beeps_1khz_for_100ms_from_the_first_sample_of_each_flash_frame(
    rate: int, fps: int, channels: int
) -> None:
    runner = ModelRunner(TestPattern, width=320, height=180, fps=fps,
                         audio={"output": True, "sample_rate": rate, "channels": channels})
    frames = runner.run(frames=3 * fps + 5)
    box = flash_box(180, 320)
    flashes = [n for n, f in enumerate(frames) if f[box].mean() > 250]
    assert flashes == [0, fps, 2 * fps, 3 * fps]
    assert all(f[box].max() == 0 for n, f in enumerate(frames) if n not in flashes)
    # Every frame carries its own share of sound, none missing: the audio lasts as the frames.
    assert len(runner.audio_chunks) == len(frames)
    assert sum(len(pcm) for _, pcm in runner.audio_chunks) == (3 * fps + 5) * rate // fps
    # ...and starts with its frame, within a sample, however many frames went before.
    for n, (t, _) in enumerate(runner.audio_chunks):
        assert t == pytest.approx(n / fps, abs=1 / rate)
    mono = runner.audio[:, 0]
    assert np.array_equal(runner.audio[:, -1], mono)  # the same beep on every channel
    # Each beep starts within 2 ms of its flash frame's first sample (the fade-in)...
    flash_samples = [n * rate // fps for n in flashes]
    onsets = _onsets(mono, rate)
    assert len(onsets) == len(flashes)
    for start, onset in zip(flash_samples, onsets, strict=True):
        assert 0 <= onset - start <= rate // 500
        beep = mono[start:start + rate // 10]
        # ...is 100 ms of a 1 kHz tone, loud through its middle and silent after.
        assert _tone_at(beep, rate, 1000.0) > 0.95
        assert np.abs(beep[rate // 100:-rate // 100]).max() > 0.4
        assert np.abs(mono[start + rate // 10:start + rate // 10 + rate // 5]).max() == 0.0


def test_pattern_without_audio_output_emits_no_sound() -> None:
    runner = ModelRunner(TestPattern, width=320, height=180)
    frames = runner.run(frames=31)
    assert runner.audio_chunks == [] and not runner.audio.any()
    box = flash_box(180, 320)
    assert frames[0][box].min() == 255 and frames[30][box].min() == 255


def _bar_length(frame: np.ndarray) -> int:
    rows, _ = meter_layout(*frame.shape[:2])
    row = frame[rows.start + 1]
    lit = np.zeros(len(row), bool)
    for colour in (GREEN, YELLOW, RED):
        lit |= np.all(row == colour, axis=1)
    return int(lit.sum())


def _meter_after(amplitude: float, commands: dict[int, Any] | None = None) -> int:
    h, w, rate = 180, 320, 16000
    runner = ModelRunner(LevelMeter, width=w, height=h,
                         audio={"input": True, "sample_rate": rate})
    tone = amplitude * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    camera = np.full((h, w, 3), 90, np.uint8)
    frames = runner.run(inputs=[camera] * 20, audio_inputs=tone, commands=commands)
    assert np.array_equal(frames[-1][:100], camera[:100])  # the camera shows through
    return _bar_length(frames[-1])


def test_meter_draws_a_longer_bar_for_a_louder_microphone() -> None:
    _, cols = meter_layout(180, 320)
    width = cols.stop - cols.start
    quiet, loud = _meter_after(0.01), _meter_after(1.0)
    # A sine's RMS is 3 dB under its peak: -43 dBFS and -3 dBFS on a -60..0 dB scale.
    assert quiet == pytest.approx(width * 17 / 60, abs=3)
    assert loud == pytest.approx(width * 57 / 60, abs=3)
    assert _meter_after(0.0) == 0
    # On a -120..0 dB scale -43 dBFS reaches further.
    wide = _meter_after(0.01, {0: ("set_floor", {"floor_db": -120.0})})
    assert wide == pytest.approx(width * 77 / 120, abs=3)


def test_meter_refuses_a_floor_out_of_range_naming_the_arg() -> None:
    with pytest.raises(ValueError, match=r"model\.args\.floor_db.*found 0"):
        ModelRunner(LevelMeter, width=32, height=32, args={"floor_db": 0})


def test_meter_reads_the_sound_of_each_frame_without_waiting() -> None:
    # A click in the sound at 0.5 s shows on the frame of 0.5 s, not before.
    h, w, rate, fps = 180, 320, 16000, 30
    sound = np.zeros(rate, np.float32)
    sound[rate // 2:rate // 2 + rate // 50] = 0.9
    runner = ModelRunner(LevelMeter, width=w, height=h, fps=fps,
                         audio={"input": True, "sample_rate": rate})
    frames = runner.run(inputs=[np.zeros((h, w, 3), np.uint8)] * fps, audio_inputs=sound)
    lengths = [_bar_length(f) for f in frames]
    first = next(n for n, length in enumerate(lengths) if length)
    assert first == fps // 2
    assert lengths[first + 1] < lengths[first]  # and falls back after it


def test_meter_without_audio_input_passes_the_camera_through() -> None:
    camera = np.full((180, 320, 3), 90, np.uint8)
    frames = ModelRunner(LevelMeter, width=320, height=180).run(inputs=[camera] * 3)
    assert len(frames) == 3 and _bar_length(frames[-1]) == 0
    assert np.array_equal(frames[-1][:100], camera[:100])
