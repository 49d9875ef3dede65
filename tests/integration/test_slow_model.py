"""A model slower than its target is told, not hidden: a warning in status and the
monitor, and a ``warning`` event, naming the stage and the figure."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from reactor.client import Client

pytestmark = pytest.mark.timeout(120)


def test_a_model_under_its_target_is_warned_of_in_status_events_and_the_monitor(
        start_daemon) -> None:
    d = start_daemon({"video": {"width": 320, "height": 240, "fps": 15},
                      "model": {"module": "models:Slow", "args": {"frame_s": 0.15}}})

    async def run() -> tuple[dict[str, Any], dict[str, Any], str]:
        async with Client(d.url) as client, await client.watch() as viewer:
            events = client.events()
            await asyncio.wait_for(viewer.recv(), 20)
            warning = None
            deadline = time.monotonic() + 20
            while warning is None and time.monotonic() < deadline:
                ev = await asyncio.wait_for(anext(events), deadline - time.monotonic())
                if ev["type"] == "warning":
                    warning = ev
            status = await client.status()
            screen = await asyncio.to_thread(d.cli, "monitor", "--once", timeout=30)
            await events.aclose()
            assert warning is not None, "no warning event within 20 s"
            return warning, status, screen.stdout

    warning, status, screen = asyncio.run(run())
    assert warning["reason"].startswith("the model is slow: "), warning
    assert "fps of its 15 fps target" in warning["reason"], warning
    assert "(stage: model)" in warning["reason"], warning
    fps = float(warning["reason"].split(": ")[1].split()[0])
    assert 5 <= fps <= 8, warning  # 0.15 s a frame: 6.7 fps
    warnings = status["pipeline"]["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("the model is slow: "), warnings
    assert "the model is slow" in screen, screen
