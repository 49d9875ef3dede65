"""Firefox ESR (Debian's ``firefox-esr``) watches and sends through a loopback daemon.

Playwright cannot drive Debian's Firefox, so ``firefox/driver.mjs`` does, over WebDriver
BiDi with ``puppeteer-core`` from npm (``npm ci`` in ``tests/integration/firefox``). The
browser is stock: its only prefs are the fake camera and the skipped permission prompt
(what ``--use-fake-device-for-media-stream`` does for Chromium); nothing that changes
WebRTC or ICE. It opens the daemon's own page, as a user does.

Firefox offers mDNS-only host candidates and ``a=end-of-candidates``; before
``reactor.media.ice.enable_end_of_candidates_grace`` the daemon's answer held no
candidate and ICE failed. Figures are read from Firefox's own ``getStats()``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from reactor.media.ice import own_addresses
from tests.support.daemon import Daemon, wait_for
from tests.support.firefox import measure_fps, stats_of

MIN_FPS = 25.0


def _load(fps_out: float) -> str:
    return (f"daemon fps_out {fps_out:.1f}, load average {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} CPUs")


def assert_on_this_machine(entry: dict[str, Any]) -> None:
    pair = entry.get("pair")
    assert pair, f"no selected candidate pair: {entry}"
    # Firefox shows its own end as an mDNS name; the daemon's end is one of its host
    # candidates: loopback or this machine's own interface address.
    assert pair["remote"] in own_addresses(), pair


def test_firefox_watches_the_daemon_page_at_720p_25fps(start_daemon: Any, firefox: Any) -> None:
    d: Daemon = start_daemon()
    page = firefox(d.url)
    wait_for(lambda: (s := stats_of(page.stats(), "in")) and s["state"] == "connected"
             and s["frames"] > 10 and s, 45, "Firefox decoding the stream")
    time.sleep(2)  # past the first keyframe's catch-up
    fps, last = measure_fps(page, "in")
    fps_out = d.status()["pipeline"]["fps_out"]  # what the daemon sends, mid-stream
    print(f"{page.version} WHEP: {fps:.1f} fps {last['width']}x{last['height']}, "
          f"pair {last.get('pair')}; {_load(fps_out)}")
    assert (last["width"], last["height"]) == (1280, 720), last
    # The daemon encodes VP8 on the CPU: on a busy machine it falls behind for every
    # viewer, so a failure names what the daemon itself sent.
    assert fps >= MIN_FPS, f"{fps:.1f} fps decoded: {last}; {_load(fps_out)}"
    assert_on_this_machine(last)


def test_firefox_sends_its_camera_at_720p_25fps(start_daemon: Any, firefox: Any) -> None:
    d: Daemon = start_daemon({"model": {"module": "reactor.examples.filters:Identity"}})
    page = firefox(d.url)
    wait_for(lambda: page.evaluate("window.reactor && window.reactor.schemaLoaded"), 30,
             "the page to load the model's schema")
    page.click("#send-btn")
    wait_for(lambda: page.evaluate("window.reactor.sendState") == "connected", 30,
             "Firefox's WHIP connection")
    # Firefox starts below 720p and steps up as its bandwidth estimate grows.
    wait_for(lambda: (s := stats_of(page.stats(), "out")) and s["width"] == 1280
             and s["height"] == 720 and s, 30, "Firefox sending 1280x720")
    fps, last = measure_fps(page, "out")
    before = d.worker("ingress").frames_in
    t0 = time.monotonic()
    time.sleep(5)
    got = (d.worker("ingress").frames_in - before) / (time.monotonic() - t0)
    print(f"{page.version} WHIP: sent {fps:.1f} fps {last['width']}x{last['height']}, "
          f"daemon decoded {got:.1f} fps, pair {last.get('pair')}")
    assert (last["width"], last["height"]) == (1280, 720), last
    assert fps >= MIN_FPS, f"Firefox sent {fps:.1f} fps: {last}"
    assert got >= MIN_FPS, f"the daemon decoded {got:.1f} fps from Firefox; {_load(0)}"
    assert_on_this_machine(last)
