"""A sender that vanishes (its browser killed: no DELETE, no DTLS close) frees the WHIP
slot within about 10 s, and a second sender is told how long to wait."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from reactor.client import Client, FrameTrack, WhipError
from tests.support.daemon import wait_for
from tests.support.http import SMALL

pytestmark = pytest.mark.timeout(120)

IDENTITY = {**SMALL, "model": {"module": "reactor.examples.filters:Identity"}}

# A sender in its own process, to be killed with SIGKILL as a crashed browser is.
SENDER = textwrap.dedent('''
    import asyncio, sys
    import numpy as np
    from reactor.client import Client, FrameTrack

    async def main():
        frame = np.full((240, 320, 3), 90, np.uint8)
        async with Client(sys.argv[1]) as client:
            await client.publish(FrameTrack(frame, fps=30))
            print("sending", flush=True)
            await asyncio.sleep(600)

    asyncio.run(main())
''')


def test_a_vanished_senders_slot_is_freed_within_about_10_s(start_daemon) -> None:
    d = start_daemon(IDENTITY)
    proc = subprocess.Popen([sys.executable, "-c", SENDER, d.url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "sending"
        wait_for(lambda: d.snapshot().pipeline.fps_in > 10, 15, "the sender's frames")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    async def second() -> tuple[list[str], float]:
        refusals: list[str] = []
        frame = FrameTrack(lambda n: __import__("numpy").zeros((240, 320, 3), "uint8"))
        async with Client(d.url) as client:
            while time.monotonic() - killed < 30:
                try:
                    publisher = await client.publish(frame)
                except WhipError as exc:
                    assert exc.status == 503, exc  # busy: the slot frees on its own
                    refusals.append(str(exc))
                    await asyncio.sleep(1.0)
                    continue
                took = time.monotonic() - killed
                await publisher.close()
                return refusals, took
        raise AssertionError(f"still refused 30 s after the sender was killed: {refusals}")

    refusals, took = asyncio.run(second())
    assert took <= 13, (took, refusals)  # 10 s of silence, plus the retry's second
    assert refusals, "the slot was free at once: the test did not test the wait"
    waits = [int(m.group(1)) for r in refusals if (m := re.search(r"retry in (\d+) s", r))]
    assert waits and waits[0] <= 10 and waits == sorted(waits, reverse=True), refusals
    assert "has sent nothing for" in refusals[-1], refusals
