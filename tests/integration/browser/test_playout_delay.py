"""Chromium watching through the web client is answered the ``playout-delay`` header
extension it offers (reactor.media.playout), for video only, and plays the stream with it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.chromium import sample_rgb, wait_playing

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

PLAYOUT_DELAY_URI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
RED = {"model": {"module": "reactor.examples.filters:SolidColor",
                 "args": {"color": [200, 30, 30]}},
       "video": {"width": 640, "height": 360, "fps": 30}}

# The WHEP connection's offer and answer (the page's only peer connection with a remote
# description that receives video), and its inbound video's decoded frame count.
DESCRIPTIONS_JS = """
async () => {
  for (const pc of window.__reactorPcs || []) {
    if (!pc.remoteDescription || pc.connectionState === 'closed') continue;
    if (!pc.getReceivers().some((r) => r.track && r.track.kind === 'video')) continue;
    let decoded = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') decoded = s.framesDecoded;
    });
    return {offer: pc.localDescription.sdp, answer: pc.remoteDescription.sdp, decoded};
  }
  return null;
}
"""


def extmaps(sdp: str) -> dict[str, dict[str, int]]:
    """media kind -> {extension URI: id} of each m-section."""
    out: dict[str, dict[str, int]] = {}
    kind = ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind = line[2:].split()[0]
            out.setdefault(kind, {})
        elif line.startswith("a=extmap:") and kind:
            ident, uri = line[len("a=extmap:"):].split()[:2]
            out[kind][uri] = int(ident.split("/")[0])
    return out


def test_chromium_is_answered_playout_delay_for_video_and_plays(
        reactor_daemon: Any, open_page: Any) -> None:
    d = reactor_daemon(RED)
    page = open_page(d.url)
    wait_playing(page, width=640, height=360)
    first = page.evaluate(DESCRIPTIONS_JS)
    assert first is not None, "no WHEP peer connection in the page"
    offered = extmaps(first["offer"])
    answered = extmaps(first["answer"])
    assert PLAYOUT_DELAY_URI in offered["video"], (
        "this Chromium does not offer playout-delay:\n" + first["offer"])
    assert answered["video"].get(PLAYOUT_DELAY_URI) == offered["video"][PLAYOUT_DELAY_URI], (
        first["answer"])
    assert all(PLAYOUT_DELAY_URI not in ext for kind, ext in answered.items()
               if kind != "video"), first["answer"]

    time.sleep(2)
    later = page.evaluate(DESCRIPTIONS_JS)
    assert later["decoded"] >= first["decoded"] + 30, (first["decoded"], later["decoded"])
    rgb = sample_rgb(page, 0.2)
    assert rgb is not None and all(abs(a - b) <= 40 for a, b in zip(rgb, (200, 30, 30),
                                                                    strict=True)), rgb
