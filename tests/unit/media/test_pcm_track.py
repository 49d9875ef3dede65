"""PcmTrack: numpy sound as 20 ms aiortc audio frames, in real time."""

from __future__ import annotations

import asyncio
import time

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from reactor.errors import AudioError
from reactor.media.pcm_track import PcmTrack


async def frames_of(track: PcmTrack, limit: int = 1000) -> list[av.AudioFrame]:
    out = []
    for _ in range(limit):
        try:
            out.append(await track.recv())
        except MediaStreamError:
            break
    return out


def samples(frames: list[av.AudioFrame]) -> np.ndarray:
    return np.concatenate([f.to_ndarray().reshape(-1, 2) for f in frames]).astype(np.float32)


def test_an_array_plays_once_in_20_ms_stereo_frames_then_ends() -> None:
    ramp = np.linspace(-0.5, 0.5, 16000 // 50 * 3 + 100, dtype=np.float32)  # 3 frames + 100
    track = PcmTrack(ramp, 16000)
    frames = asyncio.run(frames_of(track))
    assert len(frames) == 4 and track.readyState == "ended"
    assert all(f.samples == 320 and f.sample_rate == 16000 and f.format.name == "s16"
               and f.layout.name == "stereo" for f in frames)
    assert [f.pts for f in frames] == [0, 320, 640, 960]
    pcm = samples(frames) / 32767
    assert np.allclose(pcm[:, 0], pcm[:, 1])  # mono in both channels, at full level
    assert np.allclose(pcm[: len(ramp), 0], ramp, atol=1e-4)
    assert not pcm[len(ramp):].any()  # the last frame is padded with silence


def test_frames_go_out_in_real_time() -> None:
    track = PcmTrack(np.zeros(48000 // 50 * 11, np.float32), 48000)
    t0 = time.monotonic()
    frames = asyncio.run(frames_of(track))
    assert len(frames) == 11
    # The first frame at once, the eleventh 200 ms later.
    assert 0.18 < time.monotonic() - t0 < 0.5


def test_a_generator_of_chunks_of_any_length_and_int16_stereo() -> None:
    def chunks():  # 7 ms, then 50 ms, of int16 stereo
        yield np.full((336, 2), 1000, np.int16)
        yield np.full((2400, 2), -1000, np.int16)

    frames = asyncio.run(frames_of(PcmTrack(chunks(), 48000, channels=2)))
    pcm = samples(frames)
    assert len(frames) == 3 and len(pcm) == 2880
    assert (pcm[:336] > 0).all() and (pcm[336:2736] < 0).all() and not pcm[2736:].any()


def test_loop_repeats_an_array() -> None:
    track = PcmTrack(np.ones(480, np.float32) * 0.25, 48000, loop=True)
    frames = asyncio.run(frames_of(track, limit=5))
    assert len(frames) == 5 and track.readyState == "live"
    assert np.allclose(samples(frames) / 32767, 0.25, atol=1e-3)
    track.stop()


def test_bad_sources_are_refused_with_what_was_given() -> None:
    with pytest.raises(ValueError, match="channels must be 1 or 2"):
        PcmTrack(np.zeros(10), 48000, channels=3)
    with pytest.raises(ValueError, match="multiple of 50 Hz"):
        PcmTrack(np.zeros(10), 44123)
    with pytest.raises(TypeError, match="not int"):
        PcmTrack(5, 48000)
    track = PcmTrack(np.zeros((960, 2), np.float32), 48000)  # stereo given to a mono track
    with pytest.raises(AudioError, match=r"PcmTrack source.*\(960, 2\)"):
        asyncio.run(track.recv())
