"""The ``browser`` section of ``tools/bench.py``: glass to glass as a person in a browser
sees it (issue 19).

A page (``tools/bench_browser/echo.html``, served by the bench on 127.0.0.1) draws the
frame number on a 1280x720 canvas at 30 fps (two rows of 16 blocks, the number and its
complement, as ``tests/support/tracks.py`` draws it), sends the canvas's capture
(``captureStream``: see :data:`CAPTURE`) over WHIP, watches the result over WHEP in a
``<video>``, and reads the number of every frame shown in ``requestVideoFrameCallback``.
One clock, the page's ``performance.now()``:

* *sent*: just after the page drew the frame on the canvas (the capture takes it from
  there);
* *shown*: the callback's ``presentationTime``, when Chromium handed the decoded frame to
  its compositor. Not ``expectedDisplayTime``: in headless Chromium (software compositing,
  no display) it follows the begin-frame clock, not the frame: measured here it came
  before the frame's own ``receiveTime`` for half the frames of one run and 25 ms after
  ``presentationTime`` in another, so it is reported beside (p10/p50/p90) but not judged.
  ``presentationTime`` always follows ``receiveTime`` by the decode, and the stage
  breakdown adds up to it. On a real screen the frame shows at the next vsync after it
  (up to one refresh interval, 16.7 ms at 60 Hz, later), which no figure here includes.

The same page runs in Debian's Chromium (Playwright's Python package, the switches of
``tests.support.chromium``) against the daemon (Identity model, as ``e2e``) and, in the same
run, against the plain aiortc relay of ``bench_rtc.relay_process`` (it sends no CORS
headers: Playwright adds them to its responses); then in Debian's Firefox ESR
(``tests.support.firefox``: puppeteer-core over WebDriver BiDi) against the daemon, in
VP8 (Chromium sends H.264).

The breakdown is the browsers' own ``getStats()`` over the measured window (deltas of the
cumulative counters): the sender's encode time per frame and packet send delay, half the
selected pair's round trip, the viewer's jitter-buffer delay, decode and processing delay
per frame, and ``presentationTime - receiveTime`` of the shown frames; plus the daemon's
stage p50s from ``reactor daemon status --json`` and its workers' fps and ring drops over
the window. Frames are counted at each step (drawn, captured from the canvas, encoded,
received, decoded, shown), so that a loss shows where it happens. Warm-up (and the
time until 1280x720 flows both ways) is excluded from every figure.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench_common import daemon, percentiles_ms, ratio
from bench_rtc import relay_process

from tests.support.chromium import CHROMIUM, chromium_args

PAGE_DIR = Path(__file__).resolve().parent / "bench_browser"
W, H, FPS = 1280, 720, 30
#: The page draws on requestAnimationFrame at each 1/30 s tick. Chromium captures the
#: canvas with captureStream(0) and requestFrame() after each draw: with
#: captureStream(30) its capture skipped 2-8 % of the frames drawn on this loaded machine
#: (a draw less than 1/30 s after the previous capture), a loss of the page's, not the
#: server's. Firefox (153) captures a single frame that way, and about 19 fps with
#: captureStream(30) (290 of 450 draws); with captureStream() (a frame whenever the canvas
#: changed) it captures every draw.
DRAW = "raf"
CAPTURE = "request"
FIREFOX_CAPTURE = "auto"
CODEC = "h264"
#: Debian's Firefox ESR sends no H.264 (no OpenH264 plugin without a download).
FIREFOX_CODEC = "vp8"
#: The relay's aiortc receiver estimates the bandwidth so low that Chromium sends it
#: 960x540 or less with ~16 ms in its pacer, 20 s in: its answer gets this floor
#: (x-google-min-bitrate), so that the baseline is a 720p relay at its best.
RELAY_MIN_KBPS = 2500

GOALS = {"chromium_p50_ms": 25.0, "chromium_p90_ms": 35.0, "frames_back": 0.95,
         "firefox_p50_ms": 35.0}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def page_server() -> Iterator[str]:
    """The echo page on a free loopback port, in a thread, for as long as the block runs."""
    handler = functools.partial(_Quiet, directory=str(PAGE_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="bench-page", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/echo.html"
    finally:
        server.shutdown()
        server.server_close()


# -- what the page measured ---------------------------------------------------------------

def _delta(after: dict[str, Any] | None, before: dict[str, Any] | None, key: str) -> float:
    if not after or after.get(key) is None:
        return 0.0
    return float(after[key]) - float((before or {}).get(key) or 0)


def _per(after: dict[str, Any] | None, before: dict[str, Any] | None, num: str,
         den: str, scale: float = 1000.0) -> float | None:
    """(Δnum / Δden) * scale, rounded; None when the browser does not report them."""
    d = _delta(after, before, den)
    if not d or not after or after.get(num) is None:
        return None
    return round(_delta(after, before, num) / d * scale, 2)


def _interframe(after: dict[str, Any] | None, before: dict[str, Any] | None,
                ) -> list[float] | None:
    """[mean, standard deviation] in ms of the time between frames the viewer decoded
    (``totalInterFrameDelay``, ``totalSquaredInterFrameDelay``): how bursty arrival is."""
    n = _delta(after, before, "framesDecoded") - 1
    if n < 2 or not after or after.get("totalInterFrameDelay") is None:
        return None
    mean = _delta(after, before, "totalInterFrameDelay") / n
    var = _delta(after, before, "totalSquaredInterFrameDelay") / n - mean * mean
    return [round(mean * 1000, 1), round(max(var, 0.0) ** 0.5 * 1000, 1)]


def analyse(raw: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Figures from ``echo.finish()``: latencies, frames back, fps, the browser's stats."""
    drawn = {n for n, _ in raw["drawn"]}
    first: dict[int, list[Any]] = {}
    for row in raw["shown"]:  # [n, sent, cb now, expectedDisplayTime, presentation, receive]
        first.setdefault(row[0], row)
    rows = list(first.values())
    g2g = [r[4] - r[1] for r in rows]  # to presentationTime (see the module's docstring)
    to_display = [r[3] - r[1] for r in rows]
    to_callback = [r[2] - r[1] for r in rows]
    recv_to_present = [r[4] - r[5] for r in rows if r[5] is not None]
    p50, p90, p99 = percentiles_ms(g2g, 50, 90, 99)
    sb, sa = raw["before"]["sender"], raw["after"]["sender"]
    rb, ra = raw["before"]["receiver"], raw["after"]["receiver"]
    out_b, out_a, in_b, in_a = sb["out"], sa["out"], rb["in"], ra["in"]
    src_b, src_a = sb.get("source"), sa.get("source")
    rtts = [x for x in (sa.get("rtt"), ra.get("rtt")) if x is not None]
    breakdown = {
        "sender_encode_ms": _per(out_a, out_b, "totalEncodeTime", "framesEncoded"),
        "sender_packet_send_delay_ms": _per(out_a, out_b, "totalPacketSendDelay",
                                            "packetsSent"),
        "network_ms": round(max(rtts) * 1000 / 2, 2) if rtts else None,
        "viewer_jitter_buffer_ms": _per(in_a, in_b, "jitterBufferDelay",
                                        "jitterBufferEmittedCount"),
        "viewer_decode_ms": _per(in_a, in_b, "totalDecodeTime", "framesDecoded"),
        "viewer_processing_ms": _per(in_a, in_b, "totalProcessingDelay", "framesDecoded"),
        "viewer_receive_to_presentation_ms": percentiles_ms(recv_to_present, 50)[0],
        "viewer_interframe_ms": _interframe(in_a, in_b),
    }
    counts = {
        "drawn": len(drawn),
        "draw_calls": raw["draws"],
        "ticks_missed_by_page": raw["missed"],
        "canvas_frames_captured": int(_delta(src_a, src_b, "frames")) if src_a else None,
        "frames_encoded": int(_delta(out_a, out_b, "framesEncoded")),
        "frames_sent": int(_delta(out_a, out_b, "framesSent")),
        "viewer_frames_received": int(_delta(in_a, in_b, "framesReceived")),
        "viewer_frames_decoded": int(_delta(in_a, in_b, "framesDecoded")),
        "viewer_frames_dropped": int(_delta(in_a, in_b, "framesDropped")),
        "viewer_packets_lost": int(_delta(in_a, in_b, "packetsLost")),
        "viewer_nacks": int(_delta(in_a, in_b, "nackCount")),
        "viewer_plis": int(_delta(in_a, in_b, "pliCount")),
        "viewer_freezes": int(_delta(in_a, in_b, "freezeCount")),
        "shown_callbacks": raw["shown_in_window"],
        "read_back": len(rows),
        "unreadable": raw["unreadable"],
    }
    sender_info = {k: (out_a or {}).get(k) for k in (
        "encoderImplementation", "qualityLimitationReason", "frameWidth", "frameHeight")}
    sender_info["codec"] = sa.get("codec")
    viewer_info = {k: (in_a or {}).get(k) for k in ("decoderImplementation", "frameWidth",
                                                     "frameHeight")}
    viewer_info["codec"] = ra.get("codec")
    return {
        "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
        "to_expected_display_ms": percentiles_ms(to_display, 10, 50, 90),
        "to_callback_p50_ms": percentiles_ms(to_callback, 50)[0],
        "frames_back": round(len(drawn & set(first)) / len(drawn), 3) if drawn else None,
        "fps_shown": round(raw["shown_in_window"] / seconds, 1),
        "fps_encoded": round(counts["frames_encoded"] / seconds, 1),
        "breakdown": breakdown, "counts": counts, "sender": sender_info, "viewer": viewer_info,
    }


def _echo_js(base: str, seconds: float, warmup: float, min_kbps: int = 0,
             codec: str = CODEC, capture: str = CAPTURE) -> list[tuple[str, float]]:
    """The page calls in order, with each one's timeout (s)."""
    opts = (f'{{draw: "{DRAW}", capture: "{capture}", codec: "{codec}", '
            f'minKbps: {min_kbps}}}')
    return [
        (f'() => window.echo.start("{base}", {opts})', 60),
        (f"() => new Promise((r) => setTimeout(() => r(true), {warmup * 1000}))", warmup + 30),
        ("() => window.echo.waitSize(20)", 40),
        (MARK.format(seconds=seconds), seconds + 30),
        ("() => new Promise((r) => setTimeout(() => r(true), 500))", 30),
        ("() => window.echo.finish()", 30),
    ]


MARK = "() => window.echo.mark({seconds})"
Probe = Callable[[], dict[str, Any]]


def _run_steps(evaluate: Callable[[str, float], Any], steps: list[tuple[str, float]],
               probe: Probe | None) -> tuple[Any, dict[str, Any]]:
    """Each page call in turn; ``probe`` (the daemon's status) just before and just after
    the measured window. Returns the last call's value and the two probes."""
    value: Any = None
    probes: dict[str, Any] = {}
    for js, timeout in steps:
        marking = js.startswith(MARK.split("{")[0])
        if marking and probe is not None:
            probes["before"] = probe()
        value = evaluate(js, timeout)
        if marking and probe is not None:
            probes["after"] = probe()
    return value, probes


# -- browsers -----------------------------------------------------------------------------

def _chromium_echo(browser: Any, page_url: str, base: str, seconds: float, warmup: float,
                   cors: bool = False, min_kbps: int = 0,
                   probe: Probe | None = None) -> dict[str, Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        if cors:  # the relay sends no CORS headers: add them to its answers
            def add_cors(route: Any) -> None:
                resp = route.fetch()
                headers = {**resp.headers, "access-control-allow-origin": "*",
                           "access-control-expose-headers": "Location"}
                route.fulfill(response=resp, headers=headers)

            page.route(f"{base}/**", add_cors)
        page.goto(page_url)

        def evaluate(js: str, timeout: float) -> Any:
            page.set_default_timeout(timeout * 1000)
            return page.evaluate(js)

        value, probes = _run_steps(evaluate, _echo_js(base, seconds, warmup, min_kbps), probe)
        page.evaluate("() => window.echo.stop()")
        if errors:
            raise RuntimeError(f"the echo page failed: {errors}")
        return {**analyse(value, seconds), **_daemon_window(probes, seconds),
                "capture": CAPTURE}
    finally:
        ctx.close()


def _firefox_echo(page_url: str, base: str, seconds: float, warmup: float,
                  probe: Probe | None = None) -> dict[str, Any]:
    from tests.support.firefox import DRIVER_DIR, FIREFOX, FirefoxPage

    if not FIREFOX.exists():
        return {"skipped": f"{FIREFOX} is missing (apt-get install firefox-esr)"}
    if shutil.which("node") is None:
        return {"skipped": "node is missing (apt-get install nodejs npm)"}
    if not (DRIVER_DIR / "node_modules" / "puppeteer-core").is_dir():
        return {"skipped": f"puppeteer-core is not installed: run `npm ci` in {DRIVER_DIR}"}
    with tempfile.TemporaryDirectory(prefix="reactor-bench-firefox-") as tmp:
        page = FirefoxPage(page_url, Path(tmp) / "firefox.log")
        try:
            value, probes = _run_steps(
                lambda js, timeout: page.evaluate(js, timeout_s=timeout),
                _echo_js(base, seconds, warmup, codec=FIREFOX_CODEC, capture=FIREFOX_CAPTURE),
                probe)
            page.evaluate("() => window.echo.stop()")
        finally:
            page.close()
    result = {**analyse(value, seconds), **_daemon_window(probes, seconds),
              "capture": FIREFOX_CAPTURE}
    result["version"] = page.version
    return result


def _daemon_window(probes: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The daemon's own rates over the measured window, from two status snapshots: each
    worker's counters are as of its last heartbeat (``uptime_s - heartbeat_age_s``)."""
    if "before" not in probes or "after" not in probes:
        return {}
    b, a = probes["before"], probes["after"]
    fps = {}
    for wb, wa in zip(b["workers"], a["workers"], strict=True):
        span = ((wa["uptime_s"] - wa["heartbeat_age_s"])
                - (wb["uptime_s"] - wb["heartbeat_age_s"])) or seconds
        for key in ("frames_in", "frames_out"):
            fps[f"{wa['name']}_{key}"] = round((wa[key] - wb[key]) / span, 1)
    drops = {rb["name"]: ra["dropped"] - rb["dropped"]
             for rb, ra in zip(b["pipeline"]["rings"], a["pipeline"]["rings"], strict=True)}
    # Each stage's p50/p99 is over its last 512 frames (reactor.runtime.latency.LatencyWindow):
    # about the window (17 s at 30 fps), taken at its end.
    return {"daemon_fps": fps, "daemon_ring_drops": drops, "daemon_stages": _stages(a)}


def _stages(status: dict[str, Any]) -> dict[str, Any]:
    """Each server stage's p50/p99, and egress's frame interval beside them."""
    windows = dict(status["pipeline"].get("latency_ms", {}))
    if status["pipeline"].get("frame_interval_ms"):
        windows["frame_interval"] = status["pipeline"]["frame_interval_ms"]
    return {stage: {k: round(v, 2) for k, v in lat.items() if k in ("p50", "p99")}
            for stage, lat in windows.items()}


def run(quick: bool) -> dict[str, Any]:
    seconds, warmup = (4.0, 2.0) if quick else (15.0, 3.0)
    result: dict[str, Any] = {"width": W, "height": H, "fps": FPS, "seconds": seconds,
                              "warmup_s": warmup, "draw": DRAW, "shown": "presentationTime"}
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        return {**result, "skipped": reason, "goals": []}
    from playwright.sync_api import sync_playwright

    with page_server() as page_url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=chromium_args())
        try:
            result["chromium_version"] = browser.version
            with daemon("reactor.examples.filters:Identity", W, H) as d:
                result["daemon"] = _chromium_echo(browser, page_url, d.url, seconds, warmup,
                                                  probe=d.status)
                result["daemon_stages"] = result["daemon"].get("daemon_stages", {})
                if quick:
                    result["firefox"] = {"skipped": "--quick runs Chromium only"}
                else:
                    try:
                        result["firefox"] = _firefox_echo(page_url, d.url, seconds, warmup,
                                                          probe=d.status)
                    except Exception as exc:
                        result["firefox"] = {"skipped": f"{type(exc).__name__}: {exc}"[:500]}
            with relay_process() as (_, url):
                result["relay"] = _chromium_echo(browser, page_url, url, seconds, warmup,
                                                 cors=True, min_kbps=RELAY_MIN_KBPS)
        finally:
            browser.close()
    dp, rp = result["daemon"]["p50_ms"], result["relay"]["p50_ms"]
    result["daemon_vs_relay_p50"] = ratio(dp, rp)
    result["goals"] = _goals(result, quick)
    return result


def _goals(result: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    d, r, ff = result["daemon"], result["relay"], result.get("firefox", {})

    def judge(ok: bool | None) -> bool | None:
        return None if quick or ok is None else ok

    def le(x: float | None, limit: float) -> bool | None:
        return None if x is None else x <= limit

    goals = [
        {"target": f"Chromium via the daemon p50 <= {GOALS['chromium_p50_ms']:g} ms",
         "figure": f"{d['p50_ms']} ms", "met": judge(le(d["p50_ms"], GOALS["chromium_p50_ms"]))},
        {"target": f"Chromium via the daemon p90 <= {GOALS['chromium_p90_ms']:g} ms",
         "figure": f"{d['p90_ms']} ms", "met": judge(le(d["p90_ms"], GOALS["chromium_p90_ms"]))},
        {"target": f"Chromium via the daemon >= {GOALS['frames_back']:.0%} of frames back",
         "figure": f"{d['frames_back']:.1%}" if d["frames_back"] is not None else "None",
         "met": judge(None if d["frames_back"] is None
                      else d["frames_back"] >= GOALS["frames_back"])},
        {"target": "Chromium via the daemon p50 below the relay's",
         "figure": f"{d['p50_ms']} vs {r['p50_ms']} ms",
         "met": judge(None if d["p50_ms"] is None or r["p50_ms"] is None
                      else d["p50_ms"] < r["p50_ms"])},
    ]
    ff_p50 = ff.get("p50_ms")
    goals.append({"target": f"Firefox via the daemon p50 <= {GOALS['firefox_p50_ms']:g} ms",
                  "figure": f"{ff_p50} ms" if "skipped" not in ff
                  else f"skipped: {ff['skipped']}",
                  "met": judge(le(ff_p50, GOALS["firefox_p50_ms"]))})
    return goals


def _fmt(x: Any, unit: str = "") -> str:
    return "n/a" if x is None else f"{x}{unit}"


def render(result: dict[str, Any]) -> str:
    from bench_pipeline import _met

    if "skipped" in result:
        return f"  skipped: {result['skipped']}"
    lines = [f"  canvas echo {result['width']}x{result['height']}@{result['fps']}, "
             f"{result['seconds']:g} s measured after {result['warmup_s']:g} s warm-up; "
             f"drawn on {result['draw']}; shown = rVFC {result['shown']}; "
             f"Chromium {result.get('chromium_version')}"]
    runs = [("Chromium -> daemon", result["daemon"]), ("Chromium -> relay", result["relay"]),
            ("Firefox -> daemon", result.get("firefox", {"skipped": "not run"}))]
    for label, r in runs:
        if "skipped" in r:
            lines.append(f"  {label:<20} skipped: {r['skipped']}")
            continue
        c, b = r["counts"], r["breakdown"]
        lines.append(f"  {label:<20} p50 / p90 / p99 {r['p50_ms']!s:>6} / {r['p90_ms']!s:>6} / "
                     f"{r['p99_ms']!s:>6} ms; frames back "
                     f"{_fmt(r['frames_back'])} ({c['read_back']}/{c['drawn']}); "
                     f"shown {r['fps_shown']} fps, encoded {r['fps_encoded']} fps")
        lines.append(f"    {'other clocks':<18} to expectedDisplayTime p10/50/90 "
                     f"{r['to_expected_display_ms']} ms, to the rVFC callback p50 "
                     f"{r['to_callback_p50_ms']} ms")
        lines.append(f"    {'counts':<18} draws {c['draw_calls']} (ticks the page "
                     f"missed {c['ticks_missed_by_page']}), canvas captured "
                     f"{_fmt(c['canvas_frames_captured'])}, encoded {c['frames_encoded']}, "
                     f"sent {c['frames_sent']}; viewer received {c['viewer_frames_received']}, "
                     f"decoded {c['viewer_frames_decoded']}, dropped "
                     f"{c['viewer_frames_dropped']}, shown {c['shown_callbacks']}, unreadable "
                     f"{c['unreadable']}; lost {c['viewer_packets_lost']} pkts, nacks "
                     f"{c['viewer_nacks']}, plis {c['viewer_plis']}, freezes "
                     f"{c['viewer_freezes']}")
        lines.append(f"    {'breakdown (ms)':<18} encode {_fmt(b['sender_encode_ms'])}, "
                     f"packet send delay {_fmt(b['sender_packet_send_delay_ms'])}, network "
                     f"(rtt/2) {_fmt(b['network_ms'])}, viewer jitter buffer "
                     f"{_fmt(b['viewer_jitter_buffer_ms'])}, decode "
                     f"{_fmt(b['viewer_decode_ms'])}, processing "
                     f"{_fmt(b['viewer_processing_ms'])}, receive->presentation p50 "
                     f"{_fmt(b['viewer_receive_to_presentation_ms'])}, interval between "
                     f"decoded frames mean/sd {_fmt(b['viewer_interframe_ms'])}")
        if "daemon_fps" in r:
            lines.append(f"    {'daemon, window':<18} fps {r['daemon_fps']}; ring drops "
                         f"{r['daemon_ring_drops']}")
            lines.append(f"    {'daemon stages':<18} p50 (p99) ms: " + ", ".join(
                f"{k} {v.get('p50')} ({v.get('p99')})" for k, v in r["daemon_stages"].items()))
        s, v = r["sender"], r["viewer"]
        capture = {"request": "captureStream(0) + requestFrame()",
                   "auto": "captureStream()"}.get(r.get("capture", ""), "captureStream(30)")
        lines.append(f"    {'codecs':<18} {capture}; sender {s['codec']} "
                     f"{s['encoderImplementation']} {s['frameWidth']}x{s['frameHeight']} (limited: "
                     f"{s['qualityLimitationReason']}); viewer {v['codec']} "
                     f"{v['decoderImplementation']} {v['frameWidth']}x{v['frameHeight']}")
    lines.append(f"  {'daemon / relay p50':<20} {_fmt(result['daemon_vs_relay_p50'], ' x')}")
    for g in result["goals"]:
        lines.append(f"goal {g['target']}: {_met(g['met'])} ({g['figure']})")
    return "\n".join(lines)
