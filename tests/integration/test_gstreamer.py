"""A second WebRTC stack: GStreamer's ``webrtcbin`` sends (WHIP) to and watches (WHEP) a real
daemon. The client is ``gst_client.py``, run with Debian's ``/usr/bin/python3`` (it has
``gi``; the venv does not); it prints one JSON line of what it saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from reactor.client import Client
from tests.support.daemon import Daemon
from tests.support.gst import CLIENT, SYSTEM_PYTHON, require_gstreamer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

GREEN = (0, 255, 0)


@pytest.fixture(scope="module", autouse=True)
def gstreamer() -> None:
    # Everything gst_client.py builds to send and watch H.264 and VP8.
    require_gstreamer("webrtcbin", "nicesrc", "nicesink", "dtlssrtpenc", "videotestsrc",
                      "videoconvert", "x264enc", "rtph264pay", "vp8enc", "rtpvp8pay",
                      "decodebin", "avdec_h264", "vp8dec", "appsink")


class GstRun:
    """One gst_client.py process; killed if still running when the test ends."""

    def __init__(self, mode: str, url: str, codec: str = "h264", seconds: float = 5.0,
                 token: str | None = None) -> None:
        self.seconds = seconds
        args = [SYSTEM_PYTHON, str(CLIENT), "--mode", mode, "--url", url, "--codec", codec,
                "--seconds", str(seconds), "--setup-timeout", "20"]
        if token is not None:
            args += ["--token", token]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def result(self) -> tuple[int, dict[str, Any]]:
        try:
            out, err = self.proc.communicate(timeout=self.seconds + 40)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"gst_client.py did not exit:\n{out}\n{err[-3000:]}") from None
        lines = out.strip().splitlines()
        assert lines, f"gst_client.py printed nothing (exit {self.proc.returncode}):\n{err[-3000:]}"
        try:
            return self.proc.returncode, json.loads(lines[-1])
        except json.JSONDecodeError:
            raise AssertionError(f"not JSON: {lines[-1]!r}\n{err[-3000:]}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def gst() -> Iterator[type[GstRun]]:
    runs: list[GstRun] = []

    class Tracked(GstRun):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            runs.append(self)

    yield Tracked
    for run in runs:
        run.kill()


def assert_connected(res: dict[str, Any]) -> None:
    assert res["errors"] == [], res
    assert res["dtls_state"] == "connected", res
    assert "connected" in res["connection_states"], res
    assert res["offer_candidates"] >= 1 and res["answer_candidates"] >= 1, res
    assert res["delete_status"] == 200, res


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_gstreamer_watches_the_test_pattern_at_720p30(start_daemon, gst, codec: str) -> None:
    d: Daemon = start_daemon({"egress": {"codec": codec}})
    viewer = gst("whep", d.url, codec=codec, seconds=5.0)
    time.sleep(4.0)
    fps_out = d.status()["pipeline"]["fps_out"]  # what the daemon sends, mid-stream
    rc, res = viewer.result()
    assert rc == 0, res
    assert_connected(res)
    assert (res["width"], res["height"]) == (1280, 720), res
    # The daemon encodes on the CPU here; on a busy machine VP8 at 720p can fall behind
    # for every viewer (aiortc's too), so a failure names what the daemon itself sent.
    why = (f"{res}; daemon fps_out {fps_out:.1f}, "
           f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    assert res["fps"] >= 25, why
    assert res["frames"] >= 100, why


def test_gstreamer_sends_through_identity_to_an_aiortc_viewer(start_daemon, gst) -> None:
    d: Daemon = start_daemon({"model": {"module": "reactor.examples.filters:Identity"},
                              "video": {"width": 1280, "height": 720, "fps": 30}})
    for codec in ("h264", "vp8"):
        sender = gst("whip", d.url, codec=codec, seconds=6.0)

        async def watch() -> tuple[tuple[int, int], np.ndarray]:
            async with Client(d.url) as client, await client.watch() as viewer:
                await asyncio.wait_for(viewer.recv(), 20)  # the sender is connected
                for _ in range(15):
                    frame = await asyncio.wait_for(viewer.recv(), 5)
            a = frame.to_ndarray(format="rgb24")
            h, w = a.shape[:2]
            return (w, h), a[h // 2 - 8 : h // 2 + 8, w // 2 - 8 : w // 2 + 8].reshape(-1, 3)

        size, centre = asyncio.run(watch())
        rc, res = sender.result()
        assert rc == 0, res
        assert_connected(res)
        assert res["frames_sent"] >= 60 and res["packets_sent"] > 0, res
        assert size == (1280, 720)
        # Solid green through two encodes (GStreamer's, then the daemon's) and back to RGB.
        assert np.abs(centre.mean(axis=0) - GREEN).max() < 24, (codec, centre.mean(axis=0))


def test_gstreamer_needs_the_token(start_daemon, gst) -> None:
    d: Daemon = start_daemon({"server": {"token": "s3cret-token"}})
    for mode in ("whep", "whip"):
        rc, res = gst(mode, d.url, seconds=1.0).result()
        assert rc == 1 and res["http_status"] == 401, res
        rc, res = gst(mode, d.url, seconds=1.0, token="wrong").result()
        assert rc == 1 and res["http_status"] == 401, res
    rc, res = gst("whep", d.url, seconds=2.0, token="s3cret-token").result()
    assert rc == 0, res
    assert_connected(res)
    assert res["frames"] > 0 and (res["width"], res["height"]) == (1280, 720), res
