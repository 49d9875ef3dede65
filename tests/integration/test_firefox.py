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

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reactor.media.ice import own_addresses
from tests.support.daemon import Daemon, wait_for

FIREFOX = Path(os.environ.get("REACTOR_FIREFOX", "/usr/bin/firefox-esr"))
DRIVER_DIR = Path(__file__).with_name("firefox")
DRIVER = DRIVER_DIR / "driver.mjs"
MIN_FPS = 25.0

# Per peer connection the page made: state, video in/out counters and the selected pair.
STATS_JS = """async () => {
  const out = [];
  for (const pc of window.__reactorPcs || []) {
    if (pc.connectionState === 'closed') continue;
    const st = await pc.getStats();
    const m = new Map(); st.forEach((s) => m.set(s.id, s));
    const e = {state: pc.connectionState, t: performance.now() / 1000};
    st.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video')
        Object.assign(e, {dir: 'in', frames: s.framesDecoded || 0,
                          width: s.frameWidth || 0, height: s.frameHeight || 0});
      if (s.type === 'outbound-rtp' && s.kind === 'video')
        Object.assign(e, {dir: 'out', frames: s.framesSent || 0,
                          width: s.frameWidth || 0, height: s.frameHeight || 0});
      if (s.type === 'candidate-pair' && s.selected && s.state === 'succeeded') {
        const l = m.get(s.localCandidateId), r = m.get(s.remoteCandidateId);
        e.pair = {local: l && l.address, localType: l && l.candidateType,
                  remote: r && r.address, remoteType: r && r.candidateType};
      }
    });
    out.push(e);
  }
  return out;
}"""


class FirefoxPage:
    """One headless Firefox showing one page, driven by ``driver.mjs`` over stdin/stdout."""

    def __init__(self, url: str, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            ["node", str(DRIVER), url], cwd=DRIVER_DIR, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1,
            start_new_session=True)
        hello = self._read(timeout_s=90)
        assert hello.get("ready"), hello
        self.version = hello.get("version")

    def _read(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        box: list[str] = []
        out = self.proc.stdout
        reader = threading.Thread(target=lambda: box.append(out.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not box or not box[0]:
            raise AssertionError(f"the Firefox driver did not answer within {timeout_s} s "
                                 f"(exit {self.proc.poll()}):\n{self.log_tail()}")
        reply: dict[str, Any] = json.loads(box[0])
        return reply

    def _ask(self, req: dict[str, Any], timeout_s: float = 30) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        res = self._read(timeout_s)
        if not res.get("ok"):
            raise AssertionError(f"Firefox: {res.get('error')}\n{self.log_tail()}")
        return res.get("value")

    def evaluate(self, js: str, timeout_s: float = 30) -> Any:
        return self._ask({"eval": js}, timeout_s)

    def click(self, selector: str) -> None:
        self._ask({"click": selector})

    def stats(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.evaluate(STATS_JS)
        return found

    def log_tail(self, n: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._ask({"quit": True}, timeout_s=1)
            except Exception:
                pass  # quit answers nothing; the driver exits
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        self._log.close()


@pytest.fixture
def firefox(tmp_path: Path) -> Iterator[Callable[[str], FirefoxPage]]:
    """``firefox(url)``: a stock headless Firefox ESR at ``url``; closed at the end."""
    if not FIREFOX.exists():
        pytest.skip(f"{FIREFOX} is missing (apt-get install firefox-esr)")
    if shutil.which("node") is None:
        pytest.skip("node is missing (apt-get install nodejs npm)")
    if not (DRIVER_DIR / "node_modules" / "puppeteer-core").is_dir():
        pytest.skip(f"puppeteer-core is not installed: run `npm ci` in {DRIVER_DIR}")
    pages: list[FirefoxPage] = []

    def open_(url: str) -> FirefoxPage:
        page = FirefoxPage(url, tmp_path / f"firefox-{len(pages)}.log")
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.close()


def _one(stats: list[dict[str, Any]], direction: str) -> dict[str, Any] | None:
    found = [s for s in stats if s.get("dir") == direction]
    return found[0] if found else None


def measure_fps(page: FirefoxPage, direction: str,
                seconds: float = 5.0) -> tuple[float, dict[str, Any]]:
    """Frames per second decoded (``in``) or sent (``out``) by the page over ``seconds``."""
    first = _one(page.stats(), direction)
    assert first is not None, page.stats()
    time.sleep(seconds)
    last = _one(page.stats(), direction)
    assert last is not None, page.stats()
    return (last["frames"] - first["frames"]) / (last["t"] - first["t"]), last


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
    wait_for(lambda: (s := _one(page.stats(), "in")) and s["state"] == "connected"
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
    wait_for(lambda: (s := _one(page.stats(), "out")) and s["width"] == 1280
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
