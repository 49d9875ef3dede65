"""Colours as a viewer sees them: the web client in Chromium, pixels read back from a canvas.

A ``SolidColor`` model fills 1280x720 frames with one colour at a time (set with
``reactor send``); the page's ``<video>`` is drawn to a canvas and the centre read back.
Each colour must show within 8 levels per channel, for H.264 and for VP8. Before the
colour work, frames went out as BT.601 without saying so and Chromium read H.264 as
BT.709: (10, 220, 40) showed as (0, 189, 40).

And the other way: a camera whose colours are known (a canvas, as ``getUserMedia``'s
answer) sent with the page's "Send camera" through the ``Identity`` model comes back
within 8 levels when it travels as H.264, which says how its colours are coded.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from tests.support.chromium import sample_rgb, wait_playing, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

SIZE = (1280, 720)
TOLERANCE = 8
# Saturated primaries and secondaries (the blue and the yellow move most when a matrix is
# wrong), greys, black and white.
COLOURS = [(10, 220, 40), (220, 20, 60), (20, 40, 230), (250, 200, 20), (230, 30, 220),
           (128, 128, 128), (0, 0, 0), (255, 255, 255)]


def within(got: tuple[float, ...] | None, want: tuple[int, int, int]) -> bool:
    return got is not None and all(abs(a - b) <= TOLERANCE for a, b in zip(got, want, strict=True))


def shown_within(page: Any, want: tuple[int, int, int], what: str) -> tuple[float, ...]:
    """Wait until the centre of the page's video is within TOLERANCE of ``want``.

    A changed colour reaches the page within a few frames; the 15 s only cover a loaded
    machine. Never getting within the tolerance means the colour is wrong; and once there,
    it must stay there (a frame caught mid-change does not count)."""
    def sample() -> tuple[float, ...] | None:
        got = sample_rgb(page, 0.1)
        return got if within(got, want) else None
    first: tuple[float, ...] = wait_until(sample, 15, f"{what} {want} within {TOLERANCE} levels")
    time.sleep(0.5)
    later = sample_rgb(page, 0.1)
    assert within(later, want), f"{what} {want}: showed {first}, then {later}"
    return first


def rtp_codec(page: Any, direction: str) -> str:
    """The mime type of the video the page receives (``inbound-rtp``) or sends
    (``outbound-rtp``), from getStats."""
    return str(page.evaluate("""async (type) => {
      for (const pc of window.__reactorPcs || []) {
        if (pc.connectionState !== 'connected') continue;
        const st = await pc.getStats(); let out = '';
        st.forEach((s) => {
          if (s.type === type && s.kind === 'video' && s.codecId)
            out = st.get(s.codecId).mimeType;
        });
        if (out) return out;
      }
      return '';
    }""", direction))


def set_colour(run_dir: str, rgb: tuple[int, int, int]) -> None:
    r = subprocess.run([sys.executable, "-m", "reactor.cli", "send", "--run-dir", run_dir,
                        "set_color", f"r={rgb[0]}", f"g={rgb[1]}", f"b={rgb[2]}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_watched_colours_show_within_8_levels(
        codec: str, reactor_daemon: Any, open_page: Any) -> None:
    d = reactor_daemon({"model": {"module": "reactor.examples.filters:SolidColor"},
                        "video": {"width": SIZE[0], "height": SIZE[1], "fps": 30},
                        "egress": {"codec": codec}})
    page = open_page(d.url)
    wait_playing(page, width=SIZE[0], height=SIZE[1], timeout_s=40)
    assert rtp_codec(page, "inbound-rtp").lower() == f"video/{codec}"
    seen = {}
    for rgb in COLOURS:
        set_colour(str(d.run_dir), rgb)
        seen[rgb] = shown_within(page, rgb, f"{codec}: set")
    print({k: tuple(round(c) for c in v) for k, v in seen.items()})


FAKE_CAMERA_JS = """
(() => {
  // The camera is a canvas painted with window.__camColour: its colours are known.
  const canvas = document.createElement('canvas');
  window.__camColour = [0, 0, 0];
  navigator.mediaDevices.getUserMedia = async () => {
    canvas.width = %d; canvas.height = %d;
    const g = canvas.getContext('2d');
    const paint = () => {
      g.fillStyle = `rgb(${window.__camColour.join(',')})`;
      g.fillRect(0, 0, canvas.width, canvas.height);
    };
    paint(); setInterval(paint, 33);
    return canvas.captureStream(30);
  };
  // Chromium offers VP8 first; this camera goes as H.264.
  const add = RTCPeerConnection.prototype.addTransceiver;
  RTCPeerConnection.prototype.addTransceiver = function (track, init) {
    const t = add.call(this, track, init);
    if (init && init.direction === 'sendonly') {
      const codecs = RTCRtpSender.getCapabilities('video').codecs;
      const h264 = (c) => c.mimeType.toLowerCase() === 'video/h264';
      t.setCodecPreferences([...codecs.filter(h264), ...codecs.filter((c) => !h264(c))]);
    }
    return t;
  };
})();
"""


def test_sent_camera_colours_come_back_within_8_levels(
        reactor_daemon: Any, open_page: Any) -> None:
    # Chromium codes a canvas as BT.709 full range and, in H.264, says so; ingress reads
    # it as described. (In VP8 it cannot say so, and VP8 is BT.601 by definition, so a
    # canvas sent as VP8 comes out wrong in any receiver: Chromium's camera, BT.601
    # limited range, does not have that problem.)
    d = reactor_daemon({"model": {"module": "reactor.examples.filters:Identity"},
                        "video": {"width": 640, "height": 360, "fps": 30},
                        "egress": {"codec": "vp8"}})
    page = open_page("about:blank")
    page.context.add_init_script(FAKE_CAMERA_JS % (640, 360))
    page.goto(d.url)
    page.wait_for_function("window.reactor && window.reactor.schemaLoaded")
    page.locator("#send-btn").click()
    page.wait_for_function("window.reactor.sendState === 'connected'", timeout=20000)
    wait_playing(page, width=640, height=360, timeout_s=40)
    assert rtp_codec(page, "outbound-rtp").lower() == "video/h264"
    seen = {}
    for rgb in COLOURS:
        page.evaluate(f"window.__camColour = {list(rgb)}")
        seen[rgb] = shown_within(page, rgb, "sent")
    print({k: tuple(round(c) for c in v) for k, v in seen.items()})
