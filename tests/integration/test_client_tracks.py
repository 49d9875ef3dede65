"""The Python client against a real daemon: numpy frames and a looping file sent with
``publish()``, and a viewer told when its session fails instead of waiting forever."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import numpy as np
import pytest

from reactor.client import Client, FrameTrack, SessionError, Viewer, file_track
from tests.support.http import SMALL

pytestmark = pytest.mark.timeout(120)

IDENTITY = {**SMALL, "model": {"module": "reactor.examples.filters:Identity"}}


def mean_rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)


async def frames_for(viewer: Viewer, seconds: float) -> list[float]:
    """When (monotonic) each frame arrived over ``seconds``."""
    times: list[float] = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            await asyncio.wait_for(viewer.recv(), left)
        except TimeoutError:
            break
        times.append(time.monotonic())
    return times


@pytest.mark.parametrize("form", ["uint8 callable", "float channels-first generator"])
def test_numpy_frames_published_with_a_frame_track_reach_the_model(start_daemon,
                                                                   form: str) -> None:
    d = start_daemon(IDENTITY)
    if form == "uint8 callable":
        red = np.zeros((240, 320, 3), np.uint8)
        red[..., 0] = 220
        source: object = lambda n: red  # noqa: E731
    else:
        blue = np.zeros((3, 240, 320), np.float32)
        blue[2] = 0.85
        source = (blue for _ in range(10_000))
    expected = np.array([220, 0, 0] if form == "uint8 callable" else [0, 0, 217])

    async def run() -> np.ndarray:
        async with Client(d.url) as client, \
                await client.publish(FrameTrack(source, fps=30)), \
                await client.watch() as viewer:
            frames = [await asyncio.wait_for(viewer.recv(), 20) for _ in range(20)]
            return mean_rgb(frames[-1])

    seen = asyncio.run(run())
    # H.264 in BT.601 limited range moves a saturated colour by a few levels.
    assert np.abs(seen - expected).max() < 25, seen


def _write_clip(path: Path, frames: int) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for n in range(frames):
            rgb = np.full((240, 320, 3), (n * 8) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.mark.parametrize("loop", [False, True], ids=["once", "looping"])
def test_a_file_track_plays_the_file_and_loops_when_asked(start_daemon, tmp_path: Path,
                                                          loop: bool) -> None:
    """A 0.5 s clip: played once, the model's frames stop with it; looping, they keep
    coming 3 s later (aiortc's MediaPlayer(loop=True) restarts its timestamps at zero,
    and the second pass never reached the model)."""
    clip = tmp_path / "clip.mp4"
    _write_clip(clip, 15)
    d = start_daemon(IDENTITY)

    async def run() -> list[float]:
        async with Client(d.url) as client, \
                await client.publish(file_track(clip, loop=loop)), \
                await client.watch() as viewer:
            await asyncio.wait_for(viewer.recv(), 20)
            return await frames_for(viewer, 4.0)

    start = time.monotonic()
    times = asyncio.run(run())
    late = [t for t in times if t > start + 3.0]
    if loop:
        assert len(times) >= 90 and len(late) >= 20, (len(times), len(late))
    else:
        assert len(times) <= 20 and not late, (len(times), len(late))


def test_a_missing_or_unreadable_file_is_named_at_once(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.mp4: no such file"):
        file_track(tmp_path / "nope.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(Exception, match="notes.mp4 is not a video file PyAV can read"):
        file_track(text)


def test_recv_raises_the_sessions_error_instead_of_waiting(start_daemon) -> None:
    """A model that emits a wrong-shaped frame fails its session: the viewer that started
    it gets a SessionError with the daemon's message, not a hang until its own timeout."""
    d = start_daemon({**SMALL, "model": {"module": "models:WrongShape"}})

    async def run() -> tuple[SessionError, float]:
        async with Client(d.url) as client, await client.watch() as viewer:
            start = time.monotonic()
            with pytest.raises(SessionError) as raised:
                await asyncio.wait_for(viewer.recv(), 20)
            took = time.monotonic() - start
            with pytest.raises(SessionError):  # and again, at once, on the next call
                await asyncio.wait_for(viewer.recv(), 1)
            return raised.value, took

    error, took = asyncio.run(run())
    assert "failed: " in str(error) and "FrameError" in str(error), error
    assert "(120, 320, 3)" in str(error), error
    assert took < 8, took


def test_video_fps_limits_what_a_video_to_video_model_takes(start_daemon) -> None:
    """``video.fps: 15`` with a 30 fps sender: the model takes 15 a second, and viewers get
    15 (it ran at 30 before, although the docs said video.fps sets the work per second)."""
    d = start_daemon({**IDENTITY, "video": {"width": 320, "height": 240, "fps": 15}})
    grey = np.full((240, 320, 3), 100, np.uint8)

    async def run() -> list[float]:
        async with Client(d.url) as client, \
                await client.publish(FrameTrack(grey, fps=30)), \
                await client.watch() as viewer:
            await asyncio.wait_for(viewer.recv(), 20)
            await frames_for(viewer, 2.0)  # settle
            return await frames_for(viewer, 6.0)

    times = asyncio.run(run())
    fps = (len(times) - 1) / (times[-1] - times[0])
    assert 13.5 <= fps <= 16.5, fps
