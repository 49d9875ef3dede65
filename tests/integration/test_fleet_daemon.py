"""One daemon of a fleet, for real: busy means 503, offers that arrive together are
settled inside it, a session ends at session.max_duration_s, and a drain lets the running
session go on while new users are sent away, then stops the daemon.

One daemon serves the module (exclusive sessions, as a fleet runs them); the drain test
comes last, as it stops it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from reactor.client import Client
from reactor.runtime.stats import alive
from tests.support.daemon import Daemon, models_env, wait_for, wait_for_async
from tests.support.rtc import video_offer

SMALL = {"video": {"width": 160, "height": 120, "fps": 15}, "device": "cpu"}
FLEET = {**SMALL, "server": {"port": 0},
         "session": {"exclusive": True, "orphan_timeout_s": 0, "max_duration_s": 6}}
#: Offers fired at once at the daemon.
OFFERS = 16


@pytest.fixture(scope="module")
def fleet_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    folder = tmp_path_factory.mktemp("fleet")
    path = folder / "reactor.yaml"
    path.write_text(yaml.safe_dump(FLEET))
    d = Daemon(Path(f"/tmp/reactor-test-{os.getpid()}-fleet"), path, models_env())
    try:
        r = d.start()
        assert r.returncode == 0, f"daemon failed to start:\n{r.stdout}\n{r.stderr}"
        yield d
    finally:
        d.stop()
        d.remove_leftovers()
        shutil.rmtree(d.run_dir, ignore_errors=True)


async def readyz(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url + "/readyz") as resp:
        return resp.status, await resp.json()


class Events:
    """``GET /api/events`` read in the background: every event, in order."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.seen: list[dict[str, Any]] = []
        self._task = asyncio.ensure_future(self._read(http, url))

    async def _read(self, http: aiohttp.ClientSession, url: str) -> None:
        async with http.get(url + "/api/events",
                            timeout=aiohttp.ClientTimeout(total=None)) as resp:
            async for line in resp.content:
                if line.startswith(b"data: "):
                    self.seen.append(json.loads(line[6:]))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.seen if e["type"] == kind]

    async def wait(self, kind: str, timeout: float) -> dict[str, Any]:
        found: list[dict[str, Any]] = await wait_for_async(
            lambda: _async(self.of(kind)), timeout, f"a {kind!r} event")
        return found[-1]

    def close(self) -> None:
        self._task.cancel()


async def _async(value: Any) -> Any:
    return value


def test_offers_fired_together_admit_exactly_one_and_the_rest_get_503_retry_after(
        fleet_daemon: Daemon) -> None:
    url = fleet_daemon.url.rstrip("/")

    async def run() -> None:
        whep, whip = await video_offer("recvonly"), await video_offer("sendonly")
        async with aiohttp.ClientSession() as http:
            assert await readyz(http, url) == (200, {"ready": True})

            async def post(i: int) -> tuple[int, str | None, str | None, str]:
                kind, sdp = ("whep", whep) if i % 2 else ("whip", whip)
                async with http.post(f"{url}/{kind}", data=sdp,
                                     headers={"Content-Type": "application/sdp"}) as resp:
                    body = await resp.text()
                    return (resp.status, resp.headers.get("Retry-After"),
                            resp.headers.get("Location"), body)

            # WHIP and WHEP mixed, all at once, each a new client (no session key).
            answers = await asyncio.gather(*(post(i) for i in range(OFFERS)))
            statuses = sorted(a[0] for a in answers)
            assert statuses == [201] + [503] * (OFFERS - 1), answers
            for status, retry, _, body in answers:
                if status == 503:
                    assert retry == "5", answers
                    assert json.loads(body)["error"].startswith("busy: "), body
            ready, reason = await readyz(http, url)
            assert ready == 503 and reason["reason"].startswith("busy: "), reason
            # The one admitted leaves; the session ends (orphan_timeout_s 0): ready again.
            location = next(a[2] for a in answers if a[0] == 201)
            assert location is not None
            async with http.delete(url + location) as resp:
                assert resp.status == 200

            async def ready_again() -> bool:
                return (await readyz(http, url))[0] == 200

            await wait_for_async(ready_again, 15, "/readyz 200 after the client left")

    asyncio.run(run())


def test_max_duration_ends_the_session_with_an_ending_event_and_counts_it(
        fleet_daemon: Daemon) -> None:
    url = fleet_daemon.url.rstrip("/")

    async def run() -> None:
        async with aiohttp.ClientSession() as http, Client(url) as client:
            events = Events(http, url)
            try:
                viewer = await client.watch()
                await asyncio.wait_for(viewer.recv(), 20)
                started = time.monotonic()
                status = await client.status()
                assert 0 < status["session"]["ends_in_s"] <= 6, status["session"]
                ending = await events.wait("ending", 10)
                took = time.monotonic() - started
                why = "the session reached its time limit of 6 s (session.max_duration_s)"
                assert (ending["reason"], ending["data"]) == (why, {"cause": "max_duration"})
                ended = await events.wait("ended", 10)
                assert ended["reason"] == why and ended["session_id"] == ending["session_id"]
                assert took <= 6.5, took
                # The ending came first: the clients heard why before the end.
                kinds = [e["type"] for e in events.seen if e["type"] in ("ending", "ended")]
                assert kinds[:2] == ["ending", "ended"], events.seen
                await viewer.close()
            finally:
                events.close()
            status = await client.status()
            assert status["session_ends"]["max_duration"] >= 1, status["session_ends"]
            async with http.get(url + "/metrics") as resp:
                text = await resp.text()
            assert 'reactor_sessions_ended_total{reason="max_duration"} 1.0' in text, text

    asyncio.run(run())


def test_drain_sends_new_users_away_lets_the_session_play_then_stops(
        fleet_daemon: Daemon) -> None:
    d = fleet_daemon
    url = d.url.rstrip("/")

    async def run() -> None:
        async with aiohttp.ClientSession() as http, Client(url) as owner:
            async def until_ready() -> bool:
                return (await readyz(http, url))[0] == 200

            await wait_for_async(until_ready, 15, "/readyz 200 before the drain")
            events = Events(http, url)
            try:
                viewer = await owner.watch()
                await asyncio.wait_for(viewer.recv(), 20)
                r = await asyncio.to_thread(d.cli, "daemon", "drain", "--timeout", "2",
                                            "--no-wait")
                assert r.returncode == 0, r.stderr
                assert "no new sessions" in r.stdout and "2 s at most" in r.stdout
                draining = await events.wait("draining", 5)
                assert draining["data"]["timeout_s"] == 2
                status, body = await readyz(http, url)
                assert status == 503 and body["reason"].startswith("draining: "), body
                st = await owner.status()
                assert st["draining"] is True and st["drain"]["timeout_s"] == 2
                async with http.get(url + "/metrics") as resp:
                    assert "reactor_draining 1.0" in await resp.text()
                # A new user is sent elsewhere; the session's own client still gets in.
                async with http.post(url + "/whep", data=await video_offer("recvonly"),
                                     headers={"Content-Type": "application/sdp"}) as resp:
                    assert resp.status == 503 and resp.headers["Retry-After"] == "5"
                    assert (await resp.json())["error"].startswith("draining: ")
                again = await owner.watch()
                await again.close()
                # The user on it keeps playing until the drain's timeout ends the session.
                frames = 0
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline:
                    await asyncio.wait_for(viewer.recv(), 5)
                    frames += 1
                assert frames >= 8, frames
                ending = await events.wait("ending", 10)
                assert ending["data"] == {"cause": "drained"}
                assert "draining" in ending["reason"]
                ended = await events.wait("ended", 5)
                assert ended["reason"] == ending["reason"]
            finally:
                events.close()
            await viewer.close()

    asyncio.run(run())
    wait_for(lambda: not alive(d.pid), 15, "the drained daemon to stop")
    d.stopped = True


def test_sigterm_with_drain_timeout_drains_rather_than_stops(
        start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon({**SMALL, "session": {"drain_timeout_s": 30}})
    url = d.url.rstrip("/")

    async def run() -> None:
        async with aiohttp.ClientSession() as http, Client(url) as client:
            viewer = await client.watch()
            await asyncio.wait_for(viewer.recv(), 20)
            os.kill(d.pid, signal.SIGTERM)

            async def draining() -> bool:
                return (await readyz(http, url))[1].get("reason", "").startswith("draining")

            await wait_for_async(draining, 5, "/readyz 503 draining after SIGTERM")
            for _ in range(10):  # still playing
                await asyncio.wait_for(viewer.recv(), 5)
            assert alive(d.pid)
            # Its last client leaves: nobody to wait for, so the daemon stops.
            await viewer.close()

    asyncio.run(run())
    wait_for(lambda: not alive(d.pid), 15, "the drained daemon to stop after its client left")
    d.stopped = True
