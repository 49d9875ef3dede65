"""Other real clients on the narrow link of issue 26 (1.5 Mbit/s, a 200 ms queue), and the
send direction. The harness is ``test_network.py``'s: the daemon in a network namespace,
``tc tbf`` on a side of the veth, the namespace removed however the test ends.

- Firefox ESR (``firefox/driver.mjs``) and GStreamer's ``webrtcbin`` (``gst_client.py``)
  watch the daemon through the shaped link, with the test pattern and with the film grain.
  Each is measured by its own count of decoded frames: Firefox's ``getStats()``
  (``inbound-rtp.framesDecoded``, polled in the page every 50 ms), GStreamer's appsink
  (when each decoded frame arrived). Playback starts at the first decoded frame; what
  counts is the rate and the longest gap after its first 3 s.
- Chromium sends its fake camera over WHIP through a link shaped the other way (the
  outer end of the veth: what this machine sends into the namespace). It adapts to the
  REMB that ingress sends back; the model (``network_models:Received``) logs each frame
  it receives, and that is what is counted.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.chromium import TRACK_PCS_JS, chromium_args, launch_chromium
from tests.support.firefox import FirefoxPage
from tests.support.netlink import (
    FREEZE_MS,
    GRAIN,
    NARROW,
    TC,
    WARMUP_S,
    last_json,
    link_stats,
)
from tests.support.netns import Netns, NetnsUnavailable, RemoteDaemon, make_certificate, netns

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

HERE = Path(__file__).parent
SYSTEM_PYTHON = "/usr/bin/python3"
MIN_FPS = 25.0
#: How long playback is measured after its first 3 s.
MEASURE_S = 15.0


def playback(times: list[float], end: float) -> dict[str, Any]:
    """Rate and gaps of frames decoded at ``times`` (seconds, one clock), from 3 s after
    the first frame to ``end``; a gap over 500 ms is a freeze."""
    if not times:
        return {"frames": 0, "fps": 0.0, "max_gap_ms": None, "freezes": None}
    start = times[0] + WARMUP_S
    late = [t for t in times if start <= t < end]
    gaps = [b - a for a, b in zip([start, *late], [*late, end], strict=True)]
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    return {"frames": len(times), "fps": round(len(late) / (end - start), 2),
            "max_gap_ms": round(gaps[worst] * 1000),
            # when the longest gap began, in seconds after the first frame
            "max_gap_at_s": round([start, *late][worst] - times[0], 2),
            "freezes": sum(g * 1000 > FREEZE_MS for g in gaps),
            "frozen_s": round(sum(g for g in gaps if g * 1000 > FREEZE_MS), 2)}


def daemon_note(d: RemoteDaemon) -> str:
    """Egress's view of the viewers (estimate, loss, rate) and what the daemon sent."""
    try:
        st = d.status()
    except Exception as exc:  # a failure report must not fail on its footnote
        return f"daemon status unavailable ({exc})"
    session = st.get("session") or {}
    return (f"daemon fps_out {st.get('pipeline', {}).get('fps_out')}, "
            f"viewers {session.get('viewers_detail')}")


# --- Firefox ESR --------------------------------------------------------------------------

# Every 50 ms, Firefox's own count of decoded frames (and its freeze figures where it has
# them): [t (s), framesDecoded, freezeCount, totalFreezesDuration, packetsLost, pliCount].
FIREFOX_POLL_JS = """() => {
  if (window.__framesLog) return true;
  window.__framesLog = [];
  const tick = async () => {
    for (const pc of window.__reactorPcs || []) {
      if (pc.connectionState === 'closed') continue;
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video')
          window.__framesLog.push([performance.now() / 1000, s.framesDecoded || 0,
                                   s.freezeCount ?? null, s.totalFreezesDuration ?? null,
                                   s.packetsLost ?? null, s.pliCount ?? null]);
      });
    }
    setTimeout(tick, 50);
  };
  tick();
  return true;
}"""


def firefox_frame_times(log: list[list[Any]]) -> list[float]:
    """When the decoded count rose, once per frame (a poll that saw n new frames gives n
    entries at its time: the 50 ms poll is the resolution of a gap)."""
    times: list[float] = []
    last = 0
    for t, frames, *_ in log:
        times += [t] * max(0, frames - last)
        last = max(last, frames)
    return times


# VP8 (all Firefox can take without OpenH264) of the film grain plays on the narrow link
# because VP8 reopens at the estimate (reactor.media.encoder): libvpx keeps the rate it
# opened at (opened at 4000 kbps and set to 1000, it went on at 4046), and before that
# Firefox and GStreamer decoded 0.45-0.48 fps of it (8 freezes, 15 s frozen).


@pytest.mark.browser
@pytest.mark.parametrize("model", ["pattern", "grain"])
def test_firefox_plays_over_a_narrow_link(narrow_ns: Netns, tmp_path: Path, firefox: Any,
                                          model: str) -> None:
    cfg = GRAIN if model == "grain" else {}
    with RemoteDaemon(narrow_ns, cfg, tmp_path / "daemon") as d:
        page: FirefoxPage = firefox(f"{d.url}#token={d.token}")
        page.evaluate(FIREFOX_POLL_JS)
        deadline = time.monotonic() + 45
        first_at: float | None = None
        while first_at is None or time.monotonic() < first_at + WARMUP_S + MEASURE_S:
            assert time.monotonic() < deadline + WARMUP_S + MEASURE_S, (
                f"Firefox decoded no frame in 45 s\n{daemon_note(d)}\n{page.log_tail()}")
            if first_at is None and page.evaluate(
                    "(window.__framesLog || []).some((e) => e[1] > 0)"):
                first_at = time.monotonic()
            time.sleep(0.5)
        log: list[list[Any]] = page.evaluate("window.__framesLog")
        note = daemon_note(d)
        logs = d.logs(20000)
        codec = page.evaluate("""async () => { for (const pc of window.__reactorPcs) {
            let c = null; (await pc.getStats()).forEach((s) => {
              if (s.type === 'codec') c = s.mimeType; }); if (c) return c; } return null; }""")
    seen = playback(firefox_frame_times(log), log[-1][0])
    report = (f"{page.version} {model} ({codec}): {seen}; at the end {log[-1]}\n{note}\n"
              f"{link_stats(narrow_ns)}")
    print(report)
    if seen["fps"] < MIN_FPS or seen["freezes"]:
        print(logs)
    assert seen["fps"] >= MIN_FPS and seen["freezes"] == 0, report


# --- GStreamer webrtcbin ------------------------------------------------------------------


@pytest.mark.parametrize(("model", "codec"), [("pattern", "h264"), ("grain", "h264"),
                                             ("grain", "vp8")])
def test_gstreamer_plays_over_a_narrow_link(narrow_ns: Netns, tmp_path: Path, model: str,
                                            codec: str) -> None:
    if not Path(SYSTEM_PYTHON).exists() or shutil.which("gst-inspect-1.0") is None:
        pytest.skip("GStreamer with python3-gi is not installed (see test_gstreamer.py)")
    cfg = GRAIN if model == "grain" else {}
    seconds = 20.0
    with RemoteDaemon(narrow_ns, cfg, tmp_path / "daemon") as d:
        proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(HERE / "gst_client.py"), "--mode", "whep", "--url", d.url,
             "--token", d.token, "--codec", codec, "--seconds", str(seconds),
             "--setup-timeout", "25", "--frame-times"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(seconds - 2)
            note = daemon_note(d)
        finally:
            res = last_json(proc, seconds + 60)
    times = res.pop("frame_times", [])
    # Playback is measured until the client stopped: --seconds after the answer.
    seen = playback(times, seconds)
    report = f"gstreamer {model} ({codec}): {seen}; {res}\n{note}\n{link_stats(narrow_ns)}"
    print(report)
    assert res["errors"] == [], report
    assert seen["fps"] >= MIN_FPS and seen["freezes"] == 0, report


# --- WHIP from Chromium over a narrow link ------------------------------------------------

#: The WHIP sender's figures, from Chromium's getStats(): what it sends and why.
SENDER_JS = """async () => {
  for (const pc of window.__reactorPcs || []) {
    if (pc.connectionState === 'closed') continue;
    const st = await pc.getStats(); const out = {};
    st.forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video')
        Object.assign(out, {width: s.frameWidth, height: s.frameHeight,
          fps: s.framesPerSecond, sent: s.framesSent, target_kbps: s.targetBitrate / 1000,
          bytes: s.bytesSent, limit: s.qualityLimitationReason, plis: s.pliCount,
          nacks: s.nackCount, retransmitted: s.retransmittedPacketsSent});
      if (s.type === 'remote-inbound-rtp' && s.kind === 'video')
        Object.assign(out, {lost: s.packetsLost, rtt: s.roundTripTime});
      if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate)
        out.available_kbps = s.availableOutgoingBitrate / 1000;
    });
    if ('sent' in out) {
      const sdp = pc.currentRemoteDescription ? pc.currentRemoteDescription.sdp : '';
      out.answer = sdp.split('\\r\\n').filter((l) => /^a=(extmap|rtcp-fb)/.test(l));
      return out;
    }
  }
  return null;
}"""


@pytest.fixture
def send_ns() -> Iterator[Netns]:
    """A namespace whose link is narrow towards the daemon: this machine's end of the veth
    (``outer_if``) sends at most 1.5 Mbit/s into it, with a 200 ms queue."""
    try:
        with netns() as ns:
            r = subprocess.run([TC, "qdisc", "replace", "dev", ns.outer_if, "root", "tbf",
                                *NARROW], capture_output=True, text=True)
            assert r.returncode == 0, f"tc on {ns.outer_if} failed: {r.stderr}"
            yield ns
    except NetnsUnavailable as exc:
        pytest.skip(str(exc))


def outer_link_stats(ns: Netns) -> str:
    return subprocess.run([TC, "-s", "qdisc", "show", "dev", ns.outer_if],
                          capture_output=True, text=True).stdout


def grain_y4m(path: Path, width: int = 1280, height: int = 720, frames: int = 30) -> Path:
    """A camera that is hard to compress, for Chromium's ``--use-file-for-fake-video-capture``
    (which loops it): film grain over a moving gradient, like ``network_models:Grain``, as
    I420 frames at 30 fps; x264 or libvpx want well over 1.5 Mbit/s for it at 720p."""
    rng = np.random.default_rng(26)
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    luma = ((x + y) * 0.35 + 40).astype(np.int16)
    cw, ch = width // 2, height // 2
    u = np.broadcast_to(np.linspace(90, 170, cw, dtype=np.float32), (ch, cw)).astype(np.uint8)
    v = np.broadcast_to(np.linspace(170, 90, ch, dtype=np.float32)[:, None],
                        (ch, cw)).astype(np.uint8)
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(frames):
            grain = rng.integers(-24, 25, (height, width), np.int16)
            f.write(b"FRAME\n")
            f.write((np.roll(luma, 8 * n, axis=1) + grain).clip(16, 235).astype(np.uint8)
                    .tobytes())
            f.write(u.tobytes())
            f.write(v.tobytes())
    return path


@pytest.mark.browser
@pytest.mark.parametrize("camera", ["fake", "grain"])
def test_chromium_sends_its_camera_to_the_model_over_a_narrow_link(
        send_ns: Netns, tmp_path: Path, camera: str) -> None:
    """``fake``: Chromium's own fake camera, which needs about 1 Mbit/s; ``grain``: a
    camera (a Y4M file) that would want far more than the link: Chromium must follow the
    estimate ingress sends back (REMB) or the link's queue overflows."""
    args = chromium_args(fake_camera_fps=30)
    if camera == "grain":
        args.append("--use-file-for-fake-video-capture="
                    f"{grain_y4m(tmp_path / 'grain.y4m')}")
    work = tmp_path / "daemon"
    cert, key = make_certificate(send_ns.inner_ip, work)
    received = work / "received.log"
    cfg = {"model": {"module": "network_models:Received", "args": {"log": str(received)}},
           "video": {"width": 1280, "height": 720, "fps": 30},
           "server": {"tls_cert": str(cert), "tls_key": str(key)}}
    with RemoteDaemon(send_ns, cfg, work, token="whip-token") as d, \
            launch_chromium(args) as browser:
        # The camera needs a secure context: the daemon's https, with the test's own cert.
        ctx = browser.new_context(viewport={"width": 1280, "height": 800},
                                  ignore_https_errors=True)
        ctx.add_init_script(TRACK_PCS_JS)
        page = ctx.new_page()
        page.goto(f"{d.url}#token={d.token}")
        page.wait_for_function("window.reactor && window.reactor.schemaLoaded",
                               timeout=30_000)
        page.locator("#send-btn").click()
        page.wait_for_function("window.reactor.sendState === 'connected'", timeout=30_000)
        deadline = time.monotonic() + 30
        while not (received.exists() and received.read_text().strip()):
            assert time.monotonic() < deadline, (
                f"the model received no frame in 30 s: {page.evaluate(SENDER_JS)}\n"
                f"{outer_link_stats(send_ns)}\n{d.logs()}")
            time.sleep(0.2)
        history = []
        first = float(received.read_text().split()[0])
        while time.monotonic() < first + WARMUP_S + MEASURE_S:
            time.sleep(1.0)
            s = page.evaluate(SENDER_JS) or {}
            history.append({k: s.get(k) for k in ("width", "height", "fps", "target_kbps",
                                                    "available_kbps", "limit", "lost")})
        sender = page.evaluate(SENDER_JS)
        ingress = next((w for w in d.status().get("workers", [])
                        if isinstance(w, dict) and w.get("name") == "ingress"), None)
        page.locator("#send-btn").click()  # stop the camera as a user does (DELETE)
    times = [float(x) for x in received.read_text().split()]
    seen = playback(times, first + WARMUP_S + MEASURE_S)
    report = (f"model received {seen}\nsender each second {history}\nsender at the end "
              f"{sender}\ningress {ingress}\n{outer_link_stats(send_ns)}")
    print(report)
    # The floor for the send direction is 20 fps. No freeze either: before ingress
    # gave up frames that lost packets held (reactor.media.jitter), the grain froze 2.5-3.5 s
    # at the model in three runs of four (a lost retransmission held every later frame
    # until 512 packets had passed); since, in four runs, no gap over 129 ms.
    assert seen["fps"] >= 20 and seen["freezes"] == 0, report
