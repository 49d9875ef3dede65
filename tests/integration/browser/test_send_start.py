"""A browser's camera reaches the daemon at full size from the start of a call.

Before reactor's answer carried a start bitrate and its receiver spoke REMB from the first
packet, Chromium began at 300 kbit/s, sent 640x360 and took 25-30 s to climb to 1280x720.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

IDENTITY_720P = {"model": {"module": "reactor.examples.filters:Identity"},
                 "video": {"width": 1280, "height": 720, "fps": 30}}

SENDER_JS = """async () => {
  for (const pc of window.__reactorPcs || []) {
    for (const s of (await pc.getStats()).values()) {
      if (s.type === 'outbound-rtp' && s.kind === 'video' && s.frameWidth)
        return {width: s.frameWidth, height: s.frameHeight, limit: s.qualityLimitationReason,
                target: s.targetBitrate};
    }
  }
  return null;
}"""


def test_chromium_camera_is_sent_at_720p_within_seconds(reactor_daemon: Any,
                                                        open_page: Any) -> None:
    d = reactor_daemon(IDENTITY_720P)
    page = open_page(d.url)
    page.wait_for_function("window.reactor.schemaLoaded")
    page.locator("#send-btn").click()
    page.wait_for_function("window.reactor.sendState === 'connected'", timeout=15000)
    connected = time.monotonic()
    history = []
    while time.monotonic() - connected < 5:
        sent = page.evaluate(SENDER_JS)
        history.append(sent)
        if sent and (sent["width"], sent["height"]) == (1280, 720):
            break
        time.sleep(0.25)
    # The fake camera is 1280x720 (Chromium's default capture size): nothing but the
    # bandwidth estimate would make Chromium send less.
    assert sent is not None and (sent["width"], sent["height"]) == (1280, 720), history
    # And it stays there: the estimate is not cut back to the start rate after 3 s.
    time.sleep(4)
    later = page.evaluate(SENDER_JS)
    assert (later["width"], later["height"]) == (1280, 720), later
    assert later["limit"] != "bandwidth", later
