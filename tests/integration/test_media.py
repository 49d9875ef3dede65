"""WHIP in, WHEP out, against a real daemon with real aiortc clients and real codecs."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from typing import Any

import av
import numpy as np
import pytest

from reactor.client import Client, WhipError
from tests.support.daemon import Daemon, wait_for, wait_for_async
from tests.support.tracks import SquareTrack
from tests.support.video import centre

pytestmark = pytest.mark.timeout(180)


async def fps_of(viewer: Any, seconds: float) -> tuple[float, tuple[int, int]]:
    await asyncio.wait_for(viewer.recv(), 15)  # the first frame (and keyframe) arrived
    t0, n = time.monotonic(), 0
    size = (0, 0)
    while time.monotonic() - t0 < seconds:
        f = await asyncio.wait_for(viewer.recv(), 5)
        size = (f.width, f.height)
        n += 1
    return n / (time.monotonic() - t0), size



def test_whep_viewer_gets_720p_at_full_rate(start_daemon) -> None:
    d: Daemon = start_daemon()

    async def run() -> None:
        async with Client(d.url) as client, await client.watch() as viewer:
            fps, size = await fps_of(viewer, 4.0)
            assert size == (1280, 720)
            assert fps >= 27, fps

    asyncio.run(run())


def test_whip_through_a_filter_to_whep_keeps_the_picture(start_daemon) -> None:
    d = start_daemon({"model": {"module": "reactor.examples.filters:Brightness"},
                      "video": {"width": 640, "height": 360, "fps": 30}})

    async def run() -> None:
        async with Client(d.url) as client:
            track = SquareTrack(640, 360, (20, 220, 40))
            async with await client.publish(track), await client.watch() as viewer:
                await asyncio.wait_for(viewer.recv(), 15)
                for _ in range(10):
                    f = await asyncio.wait_for(viewer.recv(), 5)
                square = centre(f, (slice(100, 170), slice(170, 310)))
                background = centre(f, (slice(300, 350), slice(500, 620)))
                assert np.allclose(square, (20, 220, 40), atol=30), square
                assert np.allclose(background, 60, atol=20), background
                # A command changes the next frames: invert the picture.
                await client.command("set_invert", invert=True)

                async def inverted() -> bool:
                    f = await asyncio.wait_for(viewer.recv(), 5)
                    square = centre(f, (slice(100, 170), slice(170, 310)))
                    return bool(np.allclose(square, (235, 35, 215), atol=30))

                # Frames already in flight when the command landed may still come first.
                await wait_for_async(inverted, 5, "the inverted square")
                status = await client.status()
                assert status["session"]["sender"] is True

                async def receiving() -> bool:  # the input rate is measured over a window
                    return bool((await client.status())["pipeline"]["fps_in"] > 10)

                await wait_for_async(receiving, 5, "an input rate above 10 fps")

    asyncio.run(run())


def test_command_changes_the_next_frames(start_daemon) -> None:
    d = start_daemon({"model": {"module": "reactor.examples.filters:SolidColor"},
                      "video": {"width": 320, "height": 240, "fps": 30}})

    async def run() -> None:
        async with Client(d.url) as client, await client.watch() as viewer:
            f = await asyncio.wait_for(viewer.recv(), 15)
            assert np.allclose(centre(f), (255, 0, 0), atol=40)
            await client.command("set_color", r=0, g=255, b=0)
            sent = time.monotonic()
            while True:
                f = await asyncio.wait_for(viewer.recv(), 5)
                if np.allclose(centre(f), (0, 255, 0), atol=40):
                    break
                assert time.monotonic() - sent < 1.0, "the colour did not change within 1 s"

    asyncio.run(run())


@pytest.mark.slow
def test_eight_viewers_one_encoder(start_daemon) -> None:
    d = start_daemon({"video": {"width": 640, "height": 360, "fps": 30}})

    async def run() -> None:
        async with Client(d.url) as client:
            viewers = [await client.watch() for _ in range(8)]
            try:
                results = await asyncio.gather(*(fps_of(v, 4.0) for v in viewers))
                rates = [r[0] for r in results]
                assert all(r >= 27 for r in rates), rates
                status = await client.status()
                assert status["session"]["viewers"] == 8
                assert status["pipeline"]["encoders_active"] == 1
                # DELETE ends a viewer.
                await viewers.pop().close()

                async def seven() -> bool:
                    return bool((await client.status())["session"]["viewers"] == 7)

                await wait_for_async(seven, 5, "7 viewers after one DELETE")
            finally:
                await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)

    asyncio.run(run())


def test_second_whip_is_refused_with_503(start_daemon) -> None:
    d = start_daemon({"model": {"module": "reactor.examples.filters:Identity"},
                      "video": {"width": 320, "height": 240, "fps": 30}})

    async def run() -> None:
        async with Client(d.url) as client:
            async with await client.publish(SquareTrack(320, 240, (255, 255, 255))):
                with pytest.raises(WhipError) as err:
                    await client.publish(SquareTrack(320, 240, (0, 0, 0)))
                assert err.value.status == 503 and "already sending" in str(err.value)
            # Once the first sender left, a new one is welcome.
            pub = await client.publish(SquareTrack(320, 240, (0, 0, 0)))
            await pub.close()

    asyncio.run(run())


def test_orphan_timeout_ends_the_session(start_daemon) -> None:
    d = start_daemon({"video": {"width": 320, "height": 240, "fps": 30},
                      "session": {"orphan_timeout_s": 1.0}})

    async def run() -> None:
        async with Client(d.url) as client:
            viewer = await client.watch()
            await asyncio.wait_for(viewer.recv(), 15)
            assert (await client.status())["session"]["viewers"] == 1
            await viewer.close()

    asyncio.run(run())
    wait_for(lambda: d.status()["session"] is None, 6, "the orphaned session to end")
    text = (d.run_dir / "logs" / "supervisor.log").read_text()
    assert "session.orphan_timeout_s" in text


def test_token_is_enforced(start_daemon) -> None:
    d = start_daemon({"server": {"token": "sekret-token-123"},
                      "video": {"width": 320, "height": 240, "fps": 30}})
    for path in ("/api/schema", "/api/status", "/api/events"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(d.url.rstrip("/") + path, timeout=5)
        assert err.value.code == 401
    req = urllib.request.Request(d.url.rstrip("/") + "/api/schema",
                                 headers={"Authorization": "Bearer wrong-token-1"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 401
    with urllib.request.urlopen(d.url.rstrip("/") + "/healthz", timeout=5) as resp:
        assert resp.status == 200

    async def run() -> None:
        async with Client(d.url) as anonymous:
            with pytest.raises(WhipError) as werr:
                await anonymous.watch()
            assert werr.value.status == 401
        async with Client(d.url, token="sekret-token-123") as client:
            assert (await client.schema())["model"] == "TestPattern"
            async with await client.watch() as viewer:
                f = await asyncio.wait_for(viewer.recv(), 15)
                assert (f.width, f.height) == (320, 240)

    asyncio.run(run())


def _frames_in_after_the_session(d: Daemon) -> int:
    """End the session and wait until egress has read its last frame: how many it read."""
    with d.client() as c:
        c.stop_session()
    wait_for(lambda: not d.snapshot().HasField("session"), 10, "the session to end")
    seen = [-1]

    def settled() -> bool:
        n = d.worker("egress").frames_in
        done = n == seen[0]
        seen[0] = n
        return done

    wait_for(settled, 10, "egress to read the session's last frame", interval=0.5)
    return seen[0]


def _check_recording(path: Any, frames_in: int, fps: int) -> None:
    """The file plays: every frame decodes, as many as egress read (within two: the
    frames on either edge of the session), first at 0, each at a later slot."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.profile == "Constrained Baseline"  # the live stream's
        packets = [p for p in container.demux(stream) if p.size]
        frames = [f for p in [*packets, None] for f in stream.codec_context.decode(p)]
        assert stream.duration is not None and stream.time_base is not None
        duration = float(stream.duration * stream.time_base)
    assert len(frames) == len(packets), "a packet in the file did not decode"
    assert abs(len(frames) - frames_in) <= 2, (len(frames), frames_in)
    assert (frames[0].width, frames[0].height) == (320, 240)
    times = [round(f.time * fps) for f in frames]
    assert times[0] == 0 and times == sorted(set(times)), times
    assert duration == pytest.approx((times[-1] + 1) / fps, abs=1e-3)


def test_egress_record_with_no_viewer_writes_a_playable_mp4_from_the_live_encoder(
    start_daemon, tmp_path
) -> None:
    rec = tmp_path / "recording.mp4"
    d = start_daemon({"video": {"width": 320, "height": 240, "fps": 30},
                      "egress": {"record": str(rec)}})
    with d.client() as c:
        c.start_session()
        wait_for(lambda: d.worker("egress").frames_in >= 60, 15, "60 frames encoded")
        # Nobody watches: the one encoder running is the live H.264 one, kept for the file.
        p = d.snapshot().pipeline
        assert (p.encoders_active, d.snapshot().session.viewers) == (1, 0)
    frames_in = _frames_in_after_the_session(d)
    d.stop()
    _check_recording(rec, frames_in, 30)


def test_egress_record_and_an_h264_viewer_share_one_encoder(start_daemon, tmp_path) -> None:
    rec = tmp_path / "recording.mp4"
    d = start_daemon({"video": {"width": 320, "height": 240, "fps": 30},
                      "egress": {"record": str(rec)}})

    async def watch() -> None:
        async with Client(d.url) as client:
            async with await client.watch("h264") as viewer:
                for _ in range(30):
                    f = await asyncio.wait_for(viewer.recv(), 15)
                    assert (f.width, f.height) == (320, 240)
                status = await client.status()
                assert status["session"]["viewers"] == 1
                assert status["pipeline"]["encoders_active"] == 1

    with d.client() as c:
        c.start_session()
    asyncio.run(watch())
    frames_in = _frames_in_after_the_session(d)
    d.stop()
    _check_recording(rec, frames_in, 30)
