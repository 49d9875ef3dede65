"""``/readyz`` and ``session.exclusive`` on a real daemon: ready only when a new user can
be served; an exclusive session belongs to the client that started it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from reactor.client import Client, WhipError
from tests.support.daemon import Daemon, wait_for

SMALL = {"video": {"width": 160, "height": 120, "fps": 15}, "device": "cpu"}


def readyz(d: Daemon) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(d.url.rstrip("/") + "/readyz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_an_exclusive_session_refuses_other_clients_and_readyz_says_busy(
        start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon({**SMALL, "session": {"exclusive": True, "orphan_timeout_s": 0}})
    assert readyz(d) == (200, {"ready": True})

    async def run() -> None:
        async with Client(d.url) as owner, Client(d.url) as other:
            viewer = await owner.watch()
            await asyncio.wait_for(viewer.recv(), 20)
            status, body = readyz(d)
            assert status == 503 and body["reason"].startswith("busy: session "), body
            with pytest.raises(WhipError) as refused:
                await other.watch()
            assert refused.value.status == 503  # busy: a balancer tries another daemon
            assert "belongs to the client that started it" in str(refused.value)
            # The owner's own second connection joins its session.
            again = await owner.watch()
            await asyncio.wait_for(again.recv(), 20)
            await again.close()
            await viewer.close()
            # Its clients gone, the session ends (orphan_timeout_s 0): the next one is free.
            wait_for(lambda: readyz(d)[0] == 200, 20, "/readyz to answer 200 again")
            async with await other.watch() as viewer2:
                await asyncio.wait_for(viewer2.recv(), 20)

    asyncio.run(run())


def test_without_exclusive_a_second_client_joins_and_the_daemon_stays_ready(
        start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon(SMALL)

    async def run() -> None:
        async with Client(d.url) as a, Client(d.url) as b:
            async with await a.watch() as va, await b.watch() as vb:
                await asyncio.wait_for(va.recv(), 20)
                await asyncio.wait_for(vb.recv(), 20)
                assert readyz(d) == (200, {"ready": True})

    asyncio.run(run())


def test_readyz_is_503_restarting_while_the_inference_worker_restarts(
        start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon(SMALL)
    assert readyz(d)[0] == 200
    os.kill(d.worker_pids()["inference"], signal.SIGKILL)
    _, body = wait_for(lambda: (r := readyz(d))[0] == 503 and r, 10, "/readyz 503")
    assert body["ready"] is False and body["reason"].startswith("restarting: inference")
    wait_for(lambda: readyz(d)[0] == 200, 60, "/readyz to answer 200 after the restart")
    assert readyz(d) == (200, {"ready": True})
