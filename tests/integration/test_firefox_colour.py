"""Colours as a Firefox ESR viewer sees them, read back from a canvas: within 8 levels.

The same check as ``browser/test_colour.py`` makes in Chromium, in Debian's Firefox driven
by ``firefox/driver.mjs`` (see ``test_firefox.py``): a ``SolidColor`` model at 1280x720
sets one colour at a time, the daemon's own page plays it, and the centre of the
``<video>``, drawn to a canvas, must come within 8 levels per channel, for H.264 and VP8
(H.264 where this Firefox can decode it: without the OpenH264 plugin it cannot).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.daemon import Daemon, run_cli, wait_for

pytestmark = [pytest.mark.timeout(180)]

TOLERANCE = 8
COLOURS = [(10, 220, 40), (220, 20, 60), (20, 40, 230), (250, 200, 20), (230, 30, 220),
           (128, 128, 128), (0, 0, 0), (255, 255, 255)]

# Mean RGB of the centre tenth of the playing <video>, drawn to a canvas.
SAMPLE_JS = """(() => {
  const v = document.getElementById('video');
  if (!v || !v.videoWidth) return null;
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d', {willReadFrequently: true});
  g.drawImage(v, 0, 0);
  const w = Math.round(c.width / 10), h = Math.round(c.height / 10);
  const d = g.getImageData((c.width - w) >> 1, (c.height - h) >> 1, w, h).data;
  let r = 0, gg = 0, b = 0;
  for (let i = 0; i < d.length; i += 4) { r += d[i]; gg += d[i + 1]; b += d[i + 2]; }
  const n = d.length / 4;
  return [r / n, gg / n, b / n];
})()"""

CODEC_JS = """async () => {
  for (const pc of window.__reactorPcs || []) {
    if (pc.connectionState !== 'connected') continue;
    const st = await pc.getStats(); let out = '';
    st.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && s.codecId)
        out = st.get(s.codecId).mimeType;
    });
    if (out) return out;
  }
  return '';
}"""


def within(got: list[float] | None, want: tuple[int, int, int]) -> bool:
    return got is not None and all(abs(a - b) <= TOLERANCE for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_firefox_shows_colours_within_8_levels(
        codec: str, start_daemon: Any, firefox: Any) -> None:
    d: Daemon = start_daemon({"model": {"module": "reactor.examples.filters:SolidColor"},
                              "video": {"width": 1280, "height": 720, "fps": 30},
                              "egress": {"codec": codec}})
    page = firefox(d.url)
    offered = page.evaluate(
        "RTCRtpReceiver.getCapabilities('video').codecs.map((c) => c.mimeType.toLowerCase())")
    if f"video/{codec}" not in offered:
        # Debian's firefox-esr decodes H.264 only with Cisco's OpenH264 plugin, which it
        # downloads on first use; offline it never arrives and Firefox offers no H.264.
        pytest.skip(f"this Firefox ({page.version}) cannot receive {codec}: it offers {offered}")
    wait_for(lambda: page.evaluate(
        "window.reactor && window.reactor.state === 'connected' && window.reactor.width"),
        45, "Firefox playing the stream")
    assert page.evaluate(CODEC_JS).lower() == f"video/{codec}"
    seen: dict[tuple[int, int, int], list[float]] = {}
    for rgb in COLOURS:
        r = run_cli("send", "--run-dir", str(d.run_dir), "set_color",
                    f"r={rgb[0]}", f"g={rgb[1]}", f"b={rgb[2]}", env=d.env)
        assert r.returncode == 0, r.stdout + r.stderr
        # Within a few frames on a quiet machine; never within 8 levels: a wrong colour.
        seen[rgb] = wait_for(lambda want=rgb: (got := page.evaluate(SAMPLE_JS))  # type: ignore[misc]
                             and within(got, want) and got, 20,
                             f"{codec}: {rgb} within {TOLERANCE} levels")
        time.sleep(0.5)
        later = page.evaluate(SAMPLE_JS)
        assert within(later, rgb), f"{codec}: {rgb} showed {seen[rgb]}, then {later}"
    print(page.version, codec, {k: tuple(round(c) for c in v) for k, v in seen.items()})
