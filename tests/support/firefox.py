"""A stock headless Firefox ESR driven over WebDriver BiDi (``tests/integration/firefox``'s
``driver.mjs``, puppeteer-core under node): open a page, evaluate script, read its WebRTC
stats."""

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

FIREFOX = Path(os.environ.get("REACTOR_FIREFOX", "/usr/bin/firefox-esr"))
DRIVER_DIR = Path(__file__).resolve().parents[1] / "integration" / "firefox"
DRIVER = DRIVER_DIR / "driver.mjs"

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
                # Firefox's own shutdown over BiDi takes ~15 s here; its profile is
                # temporary, so after a short grace the process group is killed.
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        self._log.close()


def stats_of(stats: list[dict[str, Any]], direction: str) -> dict[str, Any] | None:
    """The first video stream of ``stats`` (``FirefoxPage.stats()``) going ``direction``
    (``in`` or ``out``), or None."""
    found = [s for s in stats if s.get("dir") == direction]
    return found[0] if found else None


def measure_fps(page: FirefoxPage, direction: str,
                seconds: float = 5.0) -> tuple[float, dict[str, Any]]:
    """Frames per second decoded (``in``) or sent (``out``) by the page over ``seconds``."""
    first = stats_of(page.stats(), direction)
    assert first is not None, page.stats()
    time.sleep(seconds)
    last = stats_of(page.stats(), direction)
    assert last is not None, page.stats()
    return (last["frames"] - first["frames"]) / (last["t"] - first["t"]), last


def firefox_pages(tmp_path: Path) -> Iterator[Callable[[str], FirefoxPage]]:
    """The body of a ``firefox`` fixture: skips where Firefox, node or the driver's
    packages are missing; yields ``open(url)``; closes every page it opened."""
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
