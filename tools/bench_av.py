"""``tools/bench.py av``: how far sound and picture are apart, and what sound costs egress.

The beeping TestPattern (``configs/pattern-audio.yaml``: 1280x720 at 30 fps, a 1 kHz beep
of 100 ms starting with the frame on which the counter and the top-right square flash, once
a second) is measured three ways (``tests.support.av`` holds the measuring code):

- **chromium**: a real daemon watched by Debian's headless Chromium (stock switches) on a
  page at the daemon's origin that does WHEP itself (video and audio, the receivers'
  ``jitterBufferTarget`` at 0 as the web client sets it). An ``AudioWorklet`` on the remote
  audio finds each beep's first sample; its WebAudio time is mapped to ``performance.now()``
  with ``AudioContext.getOutputTimestamp()`` (when that sample reaches the output).
  ``requestVideoFrameCallback`` reads the square of every frame shown and notes the flash
  frames' ``expectedDisplayTime`` (``performance.now()`` too). offset = beep - flash.
- **wire**: what the daemon sends, before any browser: an aiortc viewer in the bench notes
  each RTP packet's arrival and maps its timestamp to the session clock with the stream's
  latest RTCP sender report; arrival - media time per kind, and audio's minus video's (the
  skew a receiver that trusts the sender reports must undo).
- **file**: ``reactor run -c configs/pattern-audio.yaml --output x.mp4 --duration S``; the
  file is decoded and each flash frame's pts compared with the beep onset's time (audio pts
  plus sample index).
- **cpu**: egress CPU (% of a core, from /proc) with ``audio.output`` on and off, on the
  same 720p30 TestPattern with one light aiortc viewer (video and audio receivers that
  count, not decode), in one run, alternating off/on so that the machine's noise hits both.

The offset is reported as signed p1/p50/p99 (positive: the sound is late) and absolute
p50/p99; the drift is the least-squares slope of the offset over the run (ms per minute,
and what it adds up to over the run). Chromium's first ``WARMUP_S`` are left out: its
lip sync moves the playout delay a step a second (from ~250 ms apart to settled took
~20 s here), and the figures are for the settled stream. ``--minutes`` sets the Chromium
watch (after the warm-up) and the file's length (default 5); ``--quick`` is a short smoke
run whose goals are not judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from bench_common import ROOT, config_daemon, proc_sample, reactor_cmd

from tests.support import av as avm
from tests.support.daemon import Daemon

CONFIG = ROOT / "configs" / "pattern-audio.yaml"
#: Chromium's beeps in the first seconds (lip sync still converging) are not counted.
WARMUP_S = 30.0
CHROMIUM = Path("/usr/bin/chromium")

GOALS = {
    "chromium_abs_p50_ms": 20.0,
    "chromium_abs_p99_ms": 45.0,
    "file_abs_max_ms": 20.0,
    "drift_ms": 10.0,  # what the slope adds up to over the run, either way
    "audio_egress_cpu_percent": 5.0,
}


def _config(audio: bool = True, **sections: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    cfg["audio"]["output"] = audio
    cfg["server"] = {"host": "127.0.0.1", "port": 0}
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value)
    return cfg




# -- chromium ---------------------------------------------------------------------------

def _log(msg: str) -> None:
    print(f"bench: av {msg}", file=sys.stderr, flush=True)


def run_chromium(seconds: float, warmup: float = WARMUP_S) -> dict[str, Any]:
    if not CHROMIUM.exists():
        return {"error": f"{CHROMIUM} is missing (apt-get install chromium)"}
    from playwright.sync_api import sync_playwright

    from tests.support.chromium import CHROMIUM_ARGS

    with config_daemon(_config()) as d, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(d.url + "/healthz")
            answer_audio = avm.start_watch(page)
            t_start = time.monotonic()
            t_end = t_start + warmup + seconds
            chrome_view: list[float] = []  # Chromium's own idea of the offset, once a poll
            while (left := t_end - time.monotonic()) > 0:
                time.sleep(min(left, 10.0))
                seen = avm.read_watch(page)
                own = avm.receive_stats(page).get("playout_audio_late_ms")
                if time.monotonic() - t_start >= warmup and own is not None:
                    chrome_view.append(own)
                stats = avm.offset_stats(avm.watch_offsets(seen, skip_s=warmup))
                _log(f"chromium {warmup + seconds - max(left - 10, 0):.0f}/"
                     f"{warmup + seconds:.0f} s: {len(seen['beeps'])} beeps, "
                     f"{len(seen['flashes'])} flashes, settled offset p50 {stats.get('p50_ms')} ms")
            seen = avm.read_watch(page)
            rtc = avm.receive_stats(page)
            with contextlib.suppress(Exception):
                page.evaluate("() => fetch(window.av.resource, {method: 'DELETE'})")
        finally:
            browser.close()
    pairs = avm.watch_offsets(seen, skip_s=warmup)
    first = avm.watch_offsets(seen)[:5]
    return {"seconds": seconds, "warmup_s": warmup,
            "first_offsets_ms": [round(o) for _, o in first],
            "answer_has_audio": answer_audio, "frames": seen["frames"],
            "frames_skipped": seen["skipped"], "beeps": len(seen["beeps"]),
            "flashes": len(seen["flashes"]), "webaudio": seen["audio"],
            "beep_hz": round(sorted(b["hz"] for b in seen["beeps"])[len(seen["beeps"]) // 2], 1)
            if seen["beeps"] else None,
            "errors": seen["errors"][:5], "receive": rtc,
            "chromium_playout_audio_late_ms": {
                "n": len(chrome_view),
                "p50": round(float(np.median(chrome_view)), 1) if chrome_view else None,
                "min": min(chrome_view, default=None), "max": max(chrome_view, default=None)},
            "offset": avm.offset_stats(pairs)}


# -- wire ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _wire_taps() -> Iterator[dict[str, Any]]:
    """Note every RTP packet's arrival and every sender report aiortc's receivers get (its
    packet handlers are wrapped while the section runs)."""
    import aiortc.rtcrtpreceiver as receiver
    from aiortc.rtp import RtcpSrPacket

    taps: dict[str, Any] = {"rtp": {"audio": [], "video": []},
                            "sr": {"audio": [], "video": []}}
    cls = receiver.RTCRtpReceiver
    rtp0, rtcp0 = cls._handle_rtp_packet, cls._handle_rtcp_packet

    async def rtp(self: Any, packet: Any, arrival_time_ms: int) -> None:
        if self.track is not None and (packet.marker or self.track.kind == "audio"):
            taps["rtp"][self.track.kind].append((time.time(), packet.timestamp))
        await rtp0(self, packet, arrival_time_ms)

    async def rtcp(self: Any, packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket) and self.track is not None:
            ntp = packet.sender_info.ntp_timestamp
            t = (ntp >> 32) - 2208988800 + (ntp & 0xFFFFFFFF) / 2**32  # NTP era 1900 -> Unix
            taps["sr"][self.track.kind].append((t, packet.sender_info.rtp_timestamp))
        await rtcp0(self, packet)

    cls._handle_rtp_packet, cls._handle_rtcp_packet = rtp, rtcp  # type: ignore[method-assign]
    try:
        yield taps
    finally:
        cls._handle_rtp_packet, cls._handle_rtcp_packet = rtp0, rtcp0  # type: ignore[method-assign]


def _lag_ms(packets: list[tuple[float, int]], srs: list[tuple[float, int]],
            rate: int) -> list[float]:
    """Arrival - media time (ms) of each packet, its RTP time mapped to wall time with the
    latest sender report before it (unwrapping 32-bit RTP time)."""
    out: list[float] = []
    j = -1
    for arrival, ts in packets:
        while j + 1 < len(srs) and srs[j + 1][0] <= arrival:
            j += 1
        if j < 0:
            continue
        ntp, rtp = srs[j]
        delta = (ts - rtp + 2**31) % 2**32 - 2**31
        out.append((arrival - (ntp + delta / rate)) * 1000)
    return out


async def _wire(url: str, seconds: float) -> None:
    from bench_rtc import _leave

    from reactor.media.ice import restrict_ice_to_loopback

    restrict_ice_to_loopback()
    viewer = await _light_viewer(url)
    try:
        await asyncio.sleep(seconds)
    finally:
        await _leave(viewer)


def run_wire(seconds: float) -> dict[str, Any]:
    from bench_common import percentiles_ms
    from bench_rtc import counting_decoders

    with counting_decoders(), _wire_taps() as taps, config_daemon(_config()) as d:
        asyncio.run(_wire(d.url, seconds))
    out: dict[str, Any] = {"seconds": seconds}
    lags: dict[str, list[float]] = {}
    for kind, rate in (("audio", 48000), ("video", 90000)):
        pk = taps["rtp"][kind]
        lags[kind] = _lag_ms(pk[len(pk) // 10:], taps["sr"][kind], rate)  # past start-up
        p1, p50, p99 = percentiles_ms(lags[kind], 1, 50, 99)
        out[kind] = {"sender_reports": len(taps["sr"][kind]), "packets": len(lags[kind]),
                     "lag_p1_ms": p1, "lag_p50_ms": p50, "lag_p99_ms": p99}
    a, v = lags["audio"], lags["video"]
    out["audio_minus_video_p50_ms"] = (round(float(np.median(a) - np.median(v)), 1)
                                       if a and v else None)
    return out


# -- file ---------------------------------------------------------------------------------

def run_file(seconds: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="reactor-bench-av-"))
    try:
        cfg = tmp / "pattern-audio.yaml"
        cfg.write_text(yaml.safe_dump(_config()))
        out = tmp / "av.mp4"
        t0 = time.monotonic()
        r = subprocess.run(reactor_cmd("run", "-c", str(cfg), "--output", str(out),
                                       "--duration", f"{seconds:g}"),
                           capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "TMPDIR": str(tmp)}, timeout=seconds * 4 + 120)
        render_s = time.monotonic() - t0
        if r.returncode != 0:
            return {"error": f"reactor run failed ({r.returncode}): {r.stderr[-1500:]}"}
        res = avm.file_av(out)
        res.pop("pairs")
        return {"seconds": seconds, "render_s": round(render_s, 1), **res}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- cpu ----------------------------------------------------------------------------------

async def _light_viewer(url: str) -> tuple[Any, str]:
    """An aiortc WHEP viewer with a video and an audio receiver (bench_rtc's counting
    decoders stand in for the decoders while the section runs)."""
    from urllib.parse import urljoin

    import aiohttp
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with (aiohttp.ClientSession() as http,
                http.post(url + "/whep", data=pc.localDescription.sdp,
                          headers={"Content-Type": "application/sdp"}) as resp):
        answer = await resp.text()
        if resp.status != 201:
            await pc.close()
            raise RuntimeError(f"POST {url}/whep answered {resp.status}: {answer[:300]}")
        resource = urljoin(url + "/whep", resp.headers["Location"])
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return pc, resource


async def _received(pc: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for receiver in pc.getReceivers():
        stats = await receiver.getStats()
        for s in stats.values():
            if s.type == "inbound-rtp":
                out[receiver.track.kind] = out.get(receiver.track.kind, 0) + s.packetsReceived
    return out


async def _egress_window(d: Daemon, warm: float, window: float) -> dict[str, Any]:
    from bench_rtc import _leave

    from reactor.media.ice import restrict_ice_to_loopback

    restrict_ice_to_loopback()
    egress = d.worker_pids()["egress"]
    viewer = await _light_viewer(d.url)
    try:
        await asyncio.sleep(warm)
        s0, t0 = proc_sample(egress), time.monotonic()
        got0 = await _received(viewer[0])
        await asyncio.sleep(window)
        s1, t1 = proc_sample(egress), time.monotonic()
        got1 = await _received(viewer[0])
    finally:
        await _leave(viewer)
    if s0 is None or s1 is None:
        raise RuntimeError("the egress worker went away during the measurement")
    return {"egress_cpu_percent": round((s1[0] - s0[0]) / (t1 - t0) * 100, 1),
            "packets_per_s": {k: round((got1.get(k, 0) - got0.get(k, 0)) / (t1 - t0), 1)
                              for k in got1}}


def run_cpu(rounds: int, warm: float, window: float) -> dict[str, Any]:
    from bench_rtc import counting_decoders

    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with counting_decoders():
        for _ in range(rounds):
            for key in ("off", "on"):
                with config_daemon(_config(audio=key == "on")) as d:
                    res = asyncio.run(_egress_window(d, warm, window))
                runs[key].append(res)
                _log(f"cpu audio {key}: {res}")
    mean = {k: round(sum(r["egress_cpu_percent"] for r in v) / len(v), 1)
            for k, v in runs.items()}
    return {"rounds": rounds, "window_s": window, "runs": runs,
            "egress_cpu_percent_off": mean["off"], "egress_cpu_percent_on": mean["on"],
            "audio_egress_cpu_percent": round(mean["on"] - mean["off"], 1)}


# -- the section --------------------------------------------------------------------------

def run(quick: bool, minutes: float) -> dict[str, Any]:
    seconds = 20.0 if quick else minutes * 60
    result: dict[str, Any] = {"quick": quick, "minutes": round(seconds / 60, 2)}
    for key, call in (("chromium", lambda: run_chromium(seconds, 10.0 if quick else WARMUP_S)),
                      ("wire", lambda: run_wire(5.0 if quick else 30.0)),
                      ("file", lambda: run_file(seconds)),
                      ("cpu", lambda: run_cpu(1, 3.0, 5.0) if quick
                       else run_cpu(2, 5.0, 20.0))):
        _log(f"{key} ...")
        try:
            result[key] = call()
        except Exception as exc:  # one part failing still reports the others
            result[key] = {"error": f"{type(exc).__name__}: {exc}"}
            _log(f"{key} failed: {exc}")
    result["goals"] = _goals(result, quick)
    return result


def _goals(result: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    def judge(ok: bool | None) -> bool | None:
        return None if quick or ok is None else ok

    ch = result["chromium"].get("offset", {})
    fi = result["file"].get("offset", {})
    cpu = result["cpu"].get("audio_egress_cpu_percent")
    file_abs = (max(abs(fi["min_ms"]), abs(fi["max_ms"])) if fi.get("n") else None)

    def drift_ok(stats: dict[str, Any]) -> bool | None:
        d = stats.get("drift_ms")
        return None if d is None else abs(d) <= GOALS["drift_ms"]

    return [
        {"target": f"Chromium |offset| p50 <= {GOALS['chromium_abs_p50_ms']:g} ms and p99 <= "
                   f"{GOALS['chromium_abs_p99_ms']:g} ms",
         "figure": f"{ch.get('abs_p50_ms')} / {ch.get('abs_p99_ms')} ms (n={ch.get('n', 0)})",
         "met": judge(None if not ch.get("n") else
                      ch["abs_p50_ms"] <= GOALS["chromium_abs_p50_ms"]
                      and ch["abs_p99_ms"] <= GOALS["chromium_abs_p99_ms"])},
        {"target": f"file |offset| <= {GOALS['file_abs_max_ms']:g} ms (every beep)",
         "figure": f"max {file_abs} ms (n={fi.get('n', 0)})",
         "met": judge(None if file_abs is None else file_abs <= GOALS["file_abs_max_ms"])},
        {"target": f"no drift: |slope x run| <= {GOALS['drift_ms']:g} ms in Chromium and file",
         "figure": f"Chromium {ch.get('drift_ms')} ms ({ch.get('drift_ms_per_min')} ms/min), "
                   f"file {fi.get('drift_ms')} ms",
         "met": judge(None if drift_ok(ch) is None or drift_ok(fi) is None
                      else bool(drift_ok(ch) and drift_ok(fi)))},
        {"target": f"audio adds <= {GOALS['audio_egress_cpu_percent']:g} % of a core in egress",
         "figure": f"{cpu} %",
         "met": judge(None if cpu is None else cpu <= GOALS["audio_egress_cpu_percent"])},
    ]


def _offset_line(label: str, o: dict[str, Any]) -> str:
    if not o.get("n"):
        return f"  {label:<24} no beep paired with a flash"
    return (f"  {label:<24} offset p1/p50/p99 {o['p1_ms']} / {o['p50_ms']} / {o['p99_ms']} ms, "
            f"|offset| p50/p99 {o['abs_p50_ms']} / {o['abs_p99_ms']} ms, n={o['n']} over "
            f"{o['span_s']} s; drift {o['drift_ms_per_min']} ms/min ({o['drift_ms']} ms)")


def render(result: dict[str, Any]) -> str:
    from bench_pipeline import _met

    lines = [f"  beeping TestPattern 1280x720@30, {result['minutes']:g} min; offset = beep - "
             "flash (positive: sound late)"]
    ch, fi, cpu = result["chromium"], result["file"], result["cpu"]
    wi = result["wire"]
    if "error" in ch:
        lines.append(f"  chromium FAILED: {ch['error']}")
    else:
        lines.append(_offset_line("chromium (WebAudio/rVFC)", ch["offset"]))
        lines.append(f"    {ch['beeps']} beeps ({ch['beep_hz']} Hz), {ch['flashes']} flashes, "
                     f"{ch['frames']} frames shown ({ch['frames_skipped']} skipped); "
                     f"WebAudio {ch['webaudio']}" + (f"; errors {ch['errors']}"
                                                     if ch["errors"] else ""))
        lines.append(f"    Chromium's receivers: {ch['receive']}")
        cv = ch["chromium_playout_audio_late_ms"]
        lines.append(f"    Chromium's own view (estimatedPlayoutTimestamp, video - audio): "
                     f"p50 {cv['p50']} ms, {cv['min']}..{cv['max']} (n={cv['n']})")
        lines.append(f"    first offsets (lip sync settling, not counted: first "
                     f"{ch['warmup_s']:g} s): {ch['first_offsets_ms']} ms")
    if "error" in wi:
        lines.append(f"  wire FAILED: {wi['error']}")
    else:
        lines.append(f"  {'wire (aiortc, SR-mapped)':<24} arrival - media time p50 audio "
                     f"{wi['audio']['lag_p50_ms']} ms (p99 {wi['audio']['lag_p99_ms']}), video "
                     f"{wi['video']['lag_p50_ms']} ms (p99 {wi['video']['lag_p99_ms']}): "
                     f"audio - video {wi['audio_minus_video_p50_ms']} ms; "
                     f"{wi['audio']['sender_reports']}/{wi['video']['sender_reports']} SRs "
                     f"in {wi['seconds']:g} s")
    if "error" in fi:
        lines.append(f"  file FAILED: {fi['error']}")
    else:
        lines.append(_offset_line("file (pts/samples)", fi["offset"]))
        lines.append(f"    {fi['video_codec']} + {fi['audio_codec']} {fi['sample_rate']} Hz, "
                     f"{fi['frames']} frames, {fi['audio_s']} s of sound, {fi['beeps']} beeps "
                     f"({fi['beep_hz']} Hz), {fi['flashes']} flashes; rendered in "
                     f"{fi['render_s']} s")
    if "error" in cpu:
        lines.append(f"  cpu FAILED: {cpu['error']}")
    else:
        lines.append(f"  {'egress CPU, one viewer':<24} audio off {cpu['egress_cpu_percent_off']}"
                     f" %, on {cpu['egress_cpu_percent_on']} % of a core: audio adds "
                     f"{cpu['audio_egress_cpu_percent']} % ({cpu['rounds']} x "
                     f"{cpu['window_s']:g} s each, alternating)")
    for g in result["goals"]:
        lines.append(f"goal {g['target']}: {_met(g['met'])} ({g['figure']})")
    return "\n".join(lines)
