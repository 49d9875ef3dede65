"""The GPU path against a real daemon: `device: cuda` keeps frames on the device from the
model to egress (CudaRing), converts colour there, and encodes with NVENC or libx264.

Only the first test runs without a GPU (a config asking for a missing device fails the
start with a clear error); the rest are ``cuda``-marked and run by ``make gpu-check``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from reactor.client import Client
from tests.support.daemon import Daemon, shm_segments, wait_for_async
from tests.support.tracks import SquareTrack
from tests.support.video import centre

pytestmark = pytest.mark.timeout(180)
SMALL = {"video": {"width": 640, "height": 360, "fps": 30}}



def test_a_cuda_device_the_machine_lacks_fails_the_start_naming_device(start_daemon) -> None:
    d: Daemon = start_daemon({**SMALL, "device": "cuda:99"}, expect_ok=False)
    r = d.extra["start"]
    assert r.returncode != 0
    # "... asks for a GPU, and this machine has no CUDA device", or with GPUs "... asks
    # for CUDA device 99, and this machine has 2: cuda:0 ..."
    assert "start failed: device: cuda:99 asks for " in r.stderr
    assert ", and this machine has " in r.stderr
    assert shm_segments(f"reactor-{d.pid}-") == set()  # nothing was made


@pytest.mark.cuda
def test_a_cuda_model_reaches_a_whep_viewer_through_the_gpu_path(start_daemon) -> None:
    d = start_daemon({**SMALL, "device": "cuda", "model": {"module": "gpu_models:CudaSolid"}})

    async def run() -> None:
        async with Client(d.url) as client, await client.watch() as viewer:
            f = await asyncio.wait_for(viewer.recv(), 20)
            for _ in range(5):
                f = await asyncio.wait_for(viewer.recv(), 5)
            assert np.allclose(centre(f), (200, 40, 90), atol=6), centre(f)
            await client.command("set_color", r=10, g=220, b=40)

            async def green() -> bool:
                got = centre(await asyncio.wait_for(viewer.recv(), 5))
                return bool(np.allclose(got, (10, 220, 40), atol=6))

            await wait_for_async(green, 5, "the new colour")
            gpu: dict[str, Any] = (await client.status())["gpu"]
            assert (gpu["ring"], gpu["index"]) == ("cuda", 0)
            nvenc = gpu["encoder_plan"] == "h264_nvenc" and not gpu["encoder_fallback"]
            assert gpu["encoder"] == ("h264_nvenc" if nvenc else "libx264")
            assert {r["name"]: r["policy"] for r in (await client.status())["pipeline"]["rings"]
                    }["output"] == "block"

    asyncio.run(run())


@pytest.mark.cuda
def test_device_cuda_gives_the_model_cuda_inputs_and_keeps_the_picture(start_daemon) -> None:
    d = start_daemon({**SMALL, "device": "cuda", "model": {"module": "gpu_models:CudaEcho"}})

    async def run() -> None:
        async with Client(d.url) as client:
            track = SquareTrack(640, 360, (20, 220, 40))
            async with await client.publish(track), await client.watch() as viewer:
                await asyncio.wait_for(viewer.recv(), 20)
                for _ in range(10):
                    f = await asyncio.wait_for(viewer.recv(), 5)
                square = centre(f, (slice(100, 170), slice(170, 310)))
                assert np.allclose(square, (235, 35, 215), atol=30), square
                status = await client.status()
                assert status["session"] is not None and status["session"]["state"] == "live"

    asyncio.run(run())
