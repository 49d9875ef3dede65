"""Debian's Chromium driven by Playwright's Python package (never Playwright's own browser
downloads): launch it stock, wait for playback, sample decoded pixels, read ICE pairs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def chromium_args(fake_camera_fps: int | None = None) -> list[str]:
    """A stock browser's switches: no WebRTC, loopback or mDNS ones, as a user's browser
    has it; only the fake camera and the skipped permission prompt. ``fake_camera_fps``
    sets the fake camera's rate (its default is 20)."""
    fake = "--use-fake-device-for-media-stream"
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-ui-for-media-stream",
        f"{fake}=fps={fake_camera_fps}" if fake_camera_fps else fake,
    ]


CHROMIUM_ARGS = chromium_args()


@contextlib.contextmanager
def launch_chromium(args: list[str] | None = None) -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``), closed on exit; skips the test where
    Chromium or the playwright package is missing. Playwright's sync API keeps an event
    loop running in this thread while it is open."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"the playwright package is missing: {exc}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS if args is None else args)
        try:
            yield browser
        finally:
            browser.close()


def wait_playing(page: Any, *, width: int | None = None, height: int | None = None,
                 timeout_s: float = 20) -> None:
    """Until the viewer is connected and frames (of this size) are being decoded."""
    cond = ["r.state === 'connected'", "r.framesDecoded > 5", "r.fps > 0"]
    if width:
        cond.append(f"r.width === {width}")
    if height:
        cond.append(f"r.height === {height}")
    page.wait_for_function(
        f"(() => {{ const r = window.reactor; return !!r && {' && '.join(cond)}; }})()",
        timeout=timeout_s * 1000)


# Mean RGB of a centred square of the decoded <video>, drawn to a canvas in the page.
SAMPLE_JS = """
([id, frac]) => {
  const v = document.getElementById(id);
  if (!v || !v.videoWidth) return null;
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d', {willReadFrequently: true});
  g.drawImage(v, 0, 0);
  const w = Math.max(1, Math.round(c.width * frac)), h = Math.max(1, Math.round(c.height * frac));
  const x = Math.round((c.width - w) / 2), y = Math.round((c.height - h) / 2);
  const d = g.getImageData(x, y, w, h).data;
  let r = 0, gg = 0, b = 0;
  for (let i = 0; i < d.length; i += 4) { r += d[i]; gg += d[i + 1]; b += d[i + 2]; }
  const n = d.length / 4;
  return [r / n, gg / n, b / n];
}
"""


def sample_rgb(page: Any, frac: float = 0.02, element: str = "video") -> tuple[float, ...] | None:
    """Mean RGB of the centre ``frac`` of the video (a few pixels by default)."""
    got = page.evaluate(SAMPLE_JS, [element, frac])
    return tuple(got) if got else None


def wait_until(pred: Callable[[], Any], timeout_s: float, what: str,
               interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


def selected_pairs(page: Any) -> list[dict[str, str]]:
    """The selected ICE candidate pair of each peer connection the page made (needs
    :data:`TRACK_PCS_JS` as an init script)."""
    return page.evaluate("""async () => {
      const out = [];
      for (const pc of window.__reactorPcs || []) {
        if (pc.connectionState === 'closed') continue;
        const st = await pc.getStats(); const m = new Map(); st.forEach((s) => m.set(s.id, s));
        st.forEach((s) => {
          if (s.type !== 'transport' || !s.selectedCandidatePairId) return;
          const p = m.get(s.selectedCandidatePairId);
          out.push({local: m.get(p.localCandidateId).address,
                    remote: m.get(p.remoteCandidateId).address});
        });
      }
      return out;
    }""")


# Remembers every RTCPeerConnection the page creates, for selected_pairs().
TRACK_PCS_JS = """
(() => {
  const Orig = window.RTCPeerConnection;
  window.__reactorPcs = [];
  function Tracked(...args) {
    const pc = new Orig(...args);
    window.__reactorPcs.push(pc);
    return pc;
  }
  Tracked.prototype = Orig.prototype;
  window.RTCPeerConnection = Tracked;
})();
"""

