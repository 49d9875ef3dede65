"""Three "GPU boxes" across a network, each a daemon in its own network namespace, and
Debian's HAProxy on this side placing users as ``reactor fleet`` configures it
(:func:`reactor.fleet.start_balancer`). Three real users, Chromium, Firefox and aiortc,
open the balancer's URL: each lands on a different daemon (the web page served by the
balancer, then talking to its daemon cross-origin through ``server.public_url``) and plays
the packaged test pattern at 1280x720. A fourth gets the balancer's 503 with Retry-After;
when the first leaves, the fourth's retry lands on the daemon it freed.

The daemons run exclusive sessions, as a fleet does (one user per GPU), behind a static
token shared by the boxes; the loopback fleet of ``test_fleet_cli.py`` covers drain,
kill -9, commands and the offer race through the ``reactor fleet`` command itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from email.message import Message
from typing import Any, TypeVar

import pytest

import reactor.media
from reactor.client import Client
from reactor.fleet import Fleet, Member, balancer_states, start_balancer
from reactor.fleet.balancer import RETRY_AFTER_S
from reactor.fleet.plan import free_port
from reactor.runtime.stats import alive
from tests.support.chromium import launch_chromium, wait_playing, wait_until
from tests.support.firefox import FirefoxPage, measure_fps
from tests.support.netns import Netns, NetnsUnavailable, RemoteDaemon, netns
from tests.support.rtc import video_offer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which("haproxy", path="/usr/sbin:/usr/bin") is None,
                       reason="needs Debian's haproxy (apt-get install haproxy)"),
]

T = TypeVar("T")
PORT = 8081  # every box's own port: each namespace has its own
TOKEN = "fleet-boxes-token"
MIN_FPS = 25.0
CONFIG = {"session": {"exclusive": True, "orphan_timeout_s": 0}}


@pytest.fixture(autouse=True)
def client_media_patches() -> None:
    """The aiortc user talks to boxes across a network, not to this machine only (the
    integration conftest's loopback ICE)."""
    reactor.media.install(loopback=False)


class Loop:
    """An asyncio loop in a thread of its own, for the aiortc users: Playwright's sync API
    holds this thread's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class AiortcUser:
    """A reactor.client user placed through the balancer; counts the frames it decodes."""

    def __init__(self, loop: Loop, url: str) -> None:
        self.loop = loop
        self.client = Client(url, token=TOKEN)
        self.frames: list[tuple[float, int, int]] = []
        self._task: asyncio.Future[None] | None = None

    def watch(self) -> str:
        """Placed and watching; the daemon's URL it was placed on."""
        async def start() -> None:
            viewer = await self.client.watch(report=False)

            async def read() -> None:
                try:
                    while True:
                        f = await viewer.recv()
                        self.frames.append((time.monotonic(), f.width, f.height))
                except asyncio.CancelledError:
                    await viewer.close()
                    raise
            self._task = asyncio.ensure_future(read())
        self.loop.run(start())
        return self.client.url

    def state(self) -> str:
        """For a failure's report: the reading task's end, if it ended."""
        task = self._task
        if task is None:
            return "never watched"
        if not task.done():
            return f"reading, {len(self.frames)} frames"
        return f"stopped: {task.exception()!r}"

    def close(self) -> None:
        async def stop() -> None:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
            await self.client.close()
        self.loop.run(stop())


def fps_since(frames: list[tuple[float, int, int]], since: float) -> float:
    late = [t for t, _, _ in frames if t >= since]
    return len(late) / (time.monotonic() - since)


@pytest.fixture(scope="module")
def boxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RemoteDaemon]]:
    """Three namespaces, a daemon in each at http://198.18.x.2:8081 (its public_url)."""
    folder = tmp_path_factory.mktemp("boxes")
    with contextlib.ExitStack() as stack:
        try:
            spaces: list[Netns] = [stack.enter_context(netns(lan=True)) for _ in range(3)]
        except NetnsUnavailable as exc:
            pytest.skip(str(exc))
        daemons = []
        for i, ns in enumerate(spaces):
            cfg = {**CONFIG, "server": {"port": PORT, "public_url":
                                        f"http://{ns.inner_ip}:{PORT}"}}
            daemons.append(stack.enter_context(
                RemoteDaemon(ns, cfg, folder / f"box-{i}", token=TOKEN)))
        yield daemons


@pytest.fixture(scope="module")
def balancer(boxes: list[RemoteDaemon], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Fleet]:
    """HAProxy on this side, knowing the three boxes, on our end of the first box's link
    (an address of the lab network, as a balancer has: a browser treats a page from
    loopback as local and gathers for that, which no user behind a balancer does)."""
    host = boxes[0].ns.outer_ip
    port = free_port(host)
    directory = tmp_path_factory.mktemp("balancer")
    members = tuple(Member(i, str(d.run_dir), PORT, "cpu", f"http://{d.ns.inner_ip}:{PORT}",
                           host=d.ns.inner_ip) for i, d in enumerate(boxes))
    fleet = start_balancer(Fleet(str(directory), "boxes", f"http://{host}:{port}",
                                 host, port, members))
    try:
        yield fleet
    finally:
        pid = fleet.haproxy_pid
        if pid is not None and alive(pid):
            import os
            import signal
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def box_of(boxes: list[RemoteDaemon], url: str) -> int:
    [index] = [i for i, d in enumerate(boxes)
               if url.rstrip("/") == f"http://{d.ns.inner_ip}:{PORT}"]
    return index


def post_offer(url: str, sdp: str) -> tuple[int, Message, str]:
    req = urllib.request.Request(url + "/whep", data=sdp.encode(), method="POST",
                                 headers={"Content-Type": "application/sdp",
                                          "Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


#: The ICE candidates and pairs of the page's peer connections, for a failure's report.
CANDIDATES_JS = """async () => { const out = [];
  for (const pc of window.__reactorPcs || []) (await pc.getStats()).forEach((s) => {
    if (/candidate/.test(s.type)) out.push([s.type, s.address, s.port, s.candidateType,
                                             s.state, s.localCandidateId]); });
  return JSON.stringify(out); }"""


def chromium_fps(page: Any, seconds: float) -> float:
    first = page.evaluate("window.reactor.framesDecoded")
    time.sleep(seconds)
    return float(page.evaluate("window.reactor.framesDecoded") - first) / seconds


def test_three_users_land_on_three_daemons_a_fourth_waits_for_the_first_to_leave(
        boxes: list[RemoteDaemon], balancer: Fleet, firefox: Any) -> None:
    loop = Loop()
    users: list[AiortcUser] = []
    try:
        with launch_chromium() as browser:
            # 1. Chromium opens the page the balancer serves, and is placed.
            page = browser.new_page()
            page.goto(f"{balancer.url}/#token={TOKEN}")
            wait_playing(page, width=1280, height=720, timeout_s=40)
            chromium_box = box_of(boxes, page.evaluate("window.reactor.daemonUrl"))
            # 2. Firefox, once the balancer has seen that daemon busy.
            wait_until(lambda: balancer_states(balancer)[f"daemon-{chromium_box}"] == "DOWN",
                       10, "Chromium's daemon out of rotation")
            ff: FirefoxPage = firefox(f"{balancer.url}/#token={TOKEN}")
            try:
                wait_until(lambda: ff.evaluate("window.reactor && window.reactor.framesDecoded"
                                               " > 5 && window.reactor.daemonUrl"),
                           40, "Firefox playing")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{ff.evaluate('JSON.stringify(window.reactor)')}"
                                     f"\n{ff.evaluate(CANDIDATES_JS)}\n{ff.log_tail()}"
                                     ) from None
            firefox_box = box_of(boxes, ff.evaluate("window.reactor.daemonUrl"))
            wait_until(lambda: balancer_states(balancer)[f"daemon-{firefox_box}"] == "DOWN",
                       10, "Firefox's daemon out of rotation")
            # 3. aiortc (reactor.client).
            third = AiortcUser(loop, balancer.url)
            users.append(third)
            aiortc_box = box_of(boxes, third.watch())
            assert sorted([chromium_box, firefox_box, aiortc_box]) == [0, 1, 2]
            # Each plays 1280x720 at 25 fps or more, all three at once.
            try:
                wait_until(lambda: len(third.frames) > 10, 20, "aiortc decoding")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {third.state()}") from None
            since = time.monotonic()
            ff_fps, _ = measure_fps(ff, "in", 6.0)
            ch_fps = chromium_fps(page, 3.0)
            ai_fps = fps_since(third.frames, since)
            sizes = {(w, h) for _, w, h in third.frames[-20:]}
            figures = {"chromium": round(ch_fps, 1), "firefox": round(ff_fps, 1),
                       "aiortc": round(ai_fps, 1), "aiortc sizes": sizes}
            print(f"three users at once: {figures}")
            assert sizes == {(1280, 720)}, figures
            assert min(ch_fps, ff_fps, ai_fps) >= MIN_FPS, figures
            assert page.evaluate("[window.reactor.width, window.reactor.height]") == [1280, 720]
            # 4. A fourth: every daemon is busy, and the balancer itself says when to retry.
            wait_until(lambda: set(balancer_states(balancer).values()) == {"DOWN"}, 10,
                       "every daemon out of rotation")
            sdp = loop.run(video_offer())
            status, headers, body = post_offer(balancer.url, sdp)
            assert status == 503, (status, body)
            assert headers.get("Retry-After") == str(RETRY_AFTER_S), headers
            assert "No server is available" in body, body  # HAProxy's, not a daemon's
            # 5. The first user leaves (closes the tab: the page's DELETE on pagehide).
            page.close()
            deadline = time.monotonic() + 30
            placed: tuple[int, Message, str] | None = None
            while time.monotonic() < deadline:
                status, headers, body = post_offer(balancer.url, sdp)
                if status == 201:
                    placed = (status, headers, body)
                    break
                assert status == 503, (status, body)
                time.sleep(min(float(headers.get("Retry-After", "1")), 1.0))
            assert placed is not None, "the fourth user was never placed"
            location = placed[1]["Location"]
            assert location.startswith(f"http://{boxes[chromium_box].ns.inner_ip}:{PORT}/"), (
                location, chromium_box)
            # The others played on.
            assert fps_since(third.frames, time.monotonic() - 3) > 0
            req = urllib.request.Request(location, method="DELETE",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 200
    finally:
        for user in users:
            with contextlib.suppress(Exception):
                user.close()
        loop.close()
