"""The file source's sound: any decoded format in, exact 20 ms chunks of the model's format
out, laid end to end from the first sample's time in the file."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from reactor.workers.source import SoundIn


def decoded(samples: np.ndarray, rate: int, layout: str, fmt: str, pts: int) -> av.AudioFrame:
    """A frame as a decoder hands it over: ``samples`` float in [-1, 1], ``(n, channels)``."""
    if fmt == "s16":
        data = (samples * 32767).astype(np.int16).reshape(1, -1)  # packed: interleaved
    else:
        data = np.ascontiguousarray(samples.T.astype(np.float32))  # planar: one row a channel
    frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
    return frame


def sine(n: int, rate: int, hz: float = 440.0, start: int = 0) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * hz * (start + np.arange(n)) / rate)


@pytest.mark.parametrize(("rate", "layout", "fmt", "out_rate", "out_channels"), [
    (44100, "stereo", "fltp", 48000, 1),
    (48000, "mono", "s16", 16000, 2),
    (48000, "stereo", "s16", 48000, 2),
])
def test_chunks_are_20_ms_end_to_end_in_the_models_format(
    rate: int, layout: str, fmt: str, out_rate: int, out_channels: int
) -> None:
    sound = SoundIn(out_rate, out_channels)
    channels = 2 if layout == "stereo" else 1
    chunks = []
    for k in range(50):  # 50 frames of 1024 samples: ~1.07 s at 48 kHz
        pcm = np.repeat(sine(1024, rate, start=k * 1024)[:, None], channels, axis=1)
        chunks += sound.add(decoded(pcm, rate, layout, fmt, k * 1024), 0.25 + k * 1024 / rate)
    chunks += sound.end()
    step = out_rate // 50
    assert all(c.shape == (step, out_channels) and c.dtype == np.float32 for c, _, _ in chunks)
    # Laid end to end from the first sample's time, 20 ms apart.
    starts = [at for _, at, _ in chunks]
    assert starts == pytest.approx([0.25 + i * 0.02 for i in range(len(chunks))])
    # Every sample: only the last chunk is short, and its length says by how much.
    assert all(n == step for _, _, n in chunks[:-1]) and 0 < chunks[-1][2] <= step
    total = sum(n for _, _, n in chunks)
    assert total == pytest.approx(50 * 1024 * out_rate / rate, abs=2)
    # The same tone at the same level (a downmix averages, an upmix copies).
    pcm = np.concatenate([c[:n] for c, _, n in chunks])
    middle = pcm[out_rate // 10: -out_rate // 10]
    assert np.sqrt(np.mean(middle**2, axis=0)) == pytest.approx([0.5 / np.sqrt(2)] * out_channels,
                                                                 rel=0.02)
    freqs = np.fft.rfftfreq(len(middle), 1 / out_rate)
    assert freqs[np.abs(np.fft.rfft(middle[:, 0])).argmax()] == pytest.approx(440, abs=2)


def test_more_than_two_channels_are_mixed_down() -> None:
    sound = SoundIn(48000, 2)
    pcm = np.repeat(sine(960 * 3, 48000)[:, None], 6, axis=1)
    chunks = sound.add(decoded(pcm, 48000, "5.1", "fltp", 0), 0.0) + sound.end()
    assert len(chunks) == 3 and all(c.shape == (960, 2) for c, _, _ in chunks)
    assert np.abs(np.concatenate([c for c, _, _ in chunks])).max() > 0.1
