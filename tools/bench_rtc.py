"""WebRTC sections of ``tools/bench.py``: ``e2e``, ``viewers`` and ``soak``.

e2e: an aiortc WHIP sender draws the frame number into each frame as two rows of 16
black/white blocks (the number and its complement, 64x48 px blocks that survive H.264),
and notes ``perf_counter()`` when it hands the frame to its encoder; an aiortc WHEP viewer
in the same process decodes the blocks after its decoder and takes the difference:
glass-to-glass on one clock. The same sender and viewer (both completing frames on the
RTP marker bit, as ``reactor.client`` does) run against the daemon (Identity model) and
against a plain aiortc relay in its own process (``python tools/bench_rtc.py relay``:
WHIP receive -> decode -> MediaRelay -> re-encode -> WHEP send, aiortc's defaults, stock
jitter buffer), so the only difference is the server.

viewers uses *light* viewers (:class:`RtpCounter`): real aiortc peer connections (ICE,
DTLS-SRTP, SRTCP both ways) that count frames from the SRTP packets' clear-text RTP
headers (marker bit, sequence number) as they arrive, without decrypting, depacketizing,
reassembling or decoding, and feed aiortc's receive statistics so its receiver reports go
out as usual; so the figures are the daemon's cost, not the bench's. It also measures the
frame interval, at egress and at every viewer, at 1 and 32 viewers. soak (and ``av``) use
stock aiortc receivers whose decoder only counts the frames the jitter buffer completes
(:func:`counting_decoders`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import (
    ProcSampler,
    cpu_total,
    daemon,
    percentiles_ms,
    ratio,
    slope_per_hour,
)

from tests.support.tracks import NumberedTrack, read_marker


async def _measure(url: str, width: int, height: int, seconds: float,
                   warmup: float) -> dict[str, Any]:
    import reactor.media
    from reactor.client import Client

    reactor.media.install(loopback=True)  # the client side as the daemon's: marker-bit frames
    track = NumberedTrack(width, height)
    latencies: list[float] = []
    unreadable = 0
    async with Client(url) as client:
        publisher = await client.publish(track, codec="h264")
        try:
            async with await client.watch(codec="h264") as viewer:
                t_end = time.monotonic() + warmup + seconds
                t_warm = time.monotonic() + warmup
                while time.monotonic() < t_end:
                    frame = await asyncio.wait_for(viewer.recv(), 10)
                    now = time.perf_counter()
                    if time.monotonic() < t_warm:
                        continue
                    y = frame.to_ndarray(format="gray") if frame.format.name != "yuv420p" \
                        else frame.to_ndarray()[:height]
                    number = read_marker(y)
                    sent = track.sent.get(number) if number is not None else None
                    if sent is None:
                        unreadable += 1
                        continue
                    latencies.append((now - sent) * 1000)
        finally:
            await publisher.close()
    p50, p90, p99 = percentiles_ms(latencies, 50, 90, 99)
    return {"p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "frames": len(latencies),
            "fps": round(len(latencies) / seconds, 1), "unreadable": unreadable}


def _relay_main() -> None:
    """A plain aiortc WHIP -> WHEP relay (aiortc defaults): the e2e baseline."""
    from aiohttp import web
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRelay

    from reactor.media.ice import restrict_ice_to_loopback

    restrict_ice_to_loopback()  # ICE on loopback only, as the daemon and clients use
    relay = MediaRelay()
    pcs: dict[str, Any] = {}
    source: asyncio.Future[Any] | None = None

    async def whip(request: web.Request) -> web.Response:
        nonlocal source
        pc = RTCPeerConnection()
        pcs["whip"] = pc
        source = asyncio.get_running_loop().create_future()

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "video" and source is not None and not source.done():
                source.set_result(track)

        await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.Response(status=201, text=pc.localDescription.sdp,
                            content_type="application/sdp", headers={"Location": "/res/whip"})

    async def whep(request: web.Request) -> web.Response:
        assert source is not None, "WHEP before WHIP"
        track = await asyncio.wait_for(source, 10)
        pc = RTCPeerConnection()
        key = f"whep{len(pcs)}"
        pcs[key] = pc
        await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
        pc.addTrack(relay.subscribe(track))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.Response(status=201, text=pc.localDescription.sdp,
                            content_type="application/sdp", headers={"Location": f"/res/{key}"})

    async def delete(request: web.Request) -> web.Response:
        pc = pcs.pop(request.match_info["key"], None)
        if pc is not None:
            await pc.close()
        return web.Response(status=200)

    async def main() -> None:
        app = web.Application()
        app.add_routes([web.post("/whip", whip), web.post("/whep", whep),
                        web.delete("/res/{key}", delete)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"PORT {port}", flush=True)
        try:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        finally:
            for pc in list(pcs.values()):
                await pc.close()
            await runner.cleanup()

    asyncio.run(main())


@contextlib.contextmanager
def relay_process() -> Any:
    """The relay in a child process; it exits when its stdin closes (killed if it hangs)."""
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "relay"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the relay did not start: {line!r}")
        yield proc, f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_e2e(quick: bool) -> dict[str, Any]:
    w, h = (1280, 720)
    seconds, warmup = (2.0, 1.0) if quick else (10.0, 2.0)
    result: dict[str, Any] = {"width": w, "height": h, "fps": 30, "seconds": seconds}
    with daemon("reactor.examples.filters:Identity", w, h) as d:
        result["daemon"] = asyncio.run(_measure(d.url, w, h, seconds, warmup))
        status = d.status()
        result["daemon_stages"] = {
            stage: {k: round(v, 2) for k, v in lat.items() if k in ("p50", "p99")}
            for stage, lat in status["pipeline"].get("latency_ms", {}).items()}
    with relay_process() as (_, url):
        result["relay"] = asyncio.run(_measure(url, w, h, seconds, warmup))
    dp, rp = result["daemon"]["p50_ms"], result["relay"]["p50_ms"]
    result["daemon_vs_relay_p50"] = ratio(dp, rp)
    result["goal"] = {"target": "daemon p50 <= 60 ms and below the relay's",
                      "met": None if quick or dp is None or rp is None
                      else dp <= 60 and dp < rp}
    return result


def render_e2e(result: dict[str, Any]) -> str:
    from bench_pipeline import _met

    lines = [f"  glass-to-glass {result['width']}x{result['height']}@30, "
             f"{result['seconds']:g} s, aiortc sender and viewer in the bench process"]
    for key in ("daemon", "relay"):
        r = result[key]
        lines.append(f"  {key + ' p50 / p90 / p99':<34} {r['p50_ms']!s:>7} / {r['p90_ms']!s:>7} / "
                     f"{r['p99_ms']!s:>7} ms  ({r['frames']} frames, {r['fps']} fps, "
                     f"{r['unreadable']} unreadable)")
    lines.append(f"  {'daemon / relay p50':<34} {result['daemon_vs_relay_p50']!s:>7} x")
    for stage, lat in result.get("daemon_stages", {}).items():
        lines.append(f"    daemon stage {stage:<19} p50 {lat.get('p50')!s:>7} ms  "
                     f"p99 {lat.get('p99')!s:>7} ms")
    g = result["goal"]
    lines.append(f"goal {g['target']}: {_met(g['met'])}")
    return "\n".join(lines)


# -- light viewers ------------------------------------------------------------------------

class _CountingDecoder:
    """Stands in for aiortc's decoder: counts completed frames, decodes nothing."""

    def __init__(self, registry: list[_CountingDecoder]) -> None:
        self.times: list[float] = []
        registry.append(self)

    def decode(self, encoded_frame: Any) -> list[Any]:
        self.times.append(time.monotonic())
        return []

    def count(self, t0: float, t1: float) -> int:
        return sum(1 for t in self.times if t0 <= t < t1)


@contextlib.contextmanager
def counting_decoders() -> Any:
    import aiortc.rtcrtpreceiver as receiver

    registry: list[_CountingDecoder] = []
    original = receiver.get_decoder
    receiver.get_decoder = lambda codec: _CountingDecoder(registry)  # type: ignore[assignment,return-value]
    try:
        yield registry
    finally:
        receiver.get_decoder = original


_RTP_HEADER = struct.Struct("!HII")  # sequence number, timestamp, SSRC (bytes 2..11)


class _Header:
    """What aiortc's ``StreamStatistics.add`` reads of a packet."""

    __slots__ = ("sequence_number", "timestamp")

    def __init__(self, sequence_number: int, timestamp: int) -> None:
        self.sequence_number = sequence_number
        self.timestamp = timestamp


class RtpCounter:
    """The receive side of one light viewer: frames counted from SRTP packets' headers.

    SRTP encrypts an RTP packet's payload, not its header, so the sequence number, the
    timestamp, the SSRC and the marker bit (the last packet of a frame) are read from the
    packet as it arrives, without decrypting it. Installed in place of the viewer's ICE
    connection's ``data_received`` (see :func:`_light`): every datagram that is not
    SRTP (STUN, DTLS, SRTCP) takes aiortc's own path, so ICE consent, the DTLS handshake
    and the RTCP of both sides are aiortc's; SRTP packets stop here. Each packet also
    feeds aiortc's ``StreamStatistics`` of the viewer's ``RTCRtpReceiver``, so that its
    RTCP task sends real receiver reports (highest sequence, loss, jitter, LSR/DLSR for
    the sender's round trip) as a stock aiortc viewer does.

    A frame counts as complete when its marker packet arrives and no sequence number went
    missing since the previous frame's; ``times[ssrc]`` holds when each complete frame's
    last packet arrived (``time.monotonic()``).
    """

    def __init__(self, receiver: Any) -> None:
        from aiortc.rtcrtpreceiver import StreamStatistics

        self._statistics = StreamStatistics
        # The receiver's own per-SSRC statistics, which its RTCP task reports.
        self._streams: dict[int, Any] = receiver._RTCRtpReceiver__remote_streams
        self.times: dict[int, list[float]] = {}
        self.broken = 0  # frames with a packet missing (not counted in ``times``)
        self.packets = 0
        self._next_seq: dict[int, int] = {}
        self._gap: dict[int, bool] = {}

    def rtp(self, data: bytes) -> None:
        seq, ts, ssrc = _RTP_HEADER.unpack_from(data, 2)
        self.packets += 1
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = self._statistics(90_000)
            self.times[ssrc] = []
            self._gap[ssrc] = True  # joined mid-frame: the first frame is not whole
        else:
            expected = self._next_seq[ssrc]
            if seq != expected:
                self._gap[ssrc] = True
        stream.add(_Header(seq, ts))  # type: ignore[arg-type]  # reads only these two
        self._next_seq[ssrc] = (seq + 1) & 0xFFFF
        if data[1] & 0x80:  # marker: the frame's last packet
            if self._gap[ssrc]:
                self.broken += 1
                self._gap[ssrc] = False
            else:
                self.times[ssrc].append(time.monotonic())

    def video(self) -> list[float]:
        """Arrival times of the complete frames of the stream with the most of them."""
        return max(self.times.values(), key=len, default=[])

    def count(self, t0: float, t1: float) -> int:
        times = self.video()
        return bisect.bisect_left(times, t1) - bisect.bisect_left(times, t0)

    def intervals_ms(self, t0: float, t1: float) -> list[float]:
        times = self.video()
        window = times[bisect.bisect_left(times, t0):bisect.bisect_left(times, t1)]
        return [(b - a) * 1000 for a, b in itertools.pairwise(window)]


def _light(pc: Any, registry: list[RtpCounter]) -> None:
    """Make ``pc`` (one recvonly video transceiver, before the offer) a light viewer."""
    (transceiver,) = pc.getTransceivers()
    counter = RtpCounter(transceiver.receiver)
    registry.append(counter)
    connection = transceiver.receiver.transport.transport._connection  # aioice
    stock = connection.data_received

    def data_received(data: bytes, component: int) -> None:
        # RFC 7983 demultiplexing, as aiortc's: 128..191 is RTP or RTCP, and RTCP's packet
        # types (192..208 in the second byte) go on to aiortc, to be decrypted and read.
        if 127 < data[0] < 192 and len(data) >= 12 and not 192 <= data[1] <= 208:
            counter.rtp(data)
        else:
            stock(data, component)

    connection.data_received = data_received


async def _watch(url: str, registry: list[RtpCounter] | None = None) -> Any:
    from reactor.media.whip_client import whep_watch

    prepare = None if registry is None else (lambda pc: _light(pc, registry))
    pc, _, resource = await whep_watch(url + "/whep", codec="h264", prepare=prepare)
    return pc, resource


async def _leave(viewer: Any) -> None:
    from reactor.media.whip_client import delete_resource

    pc, resource = viewer
    with contextlib.suppress(Exception):
        await delete_resource(resource)
    await pc.close()


def _interval_stats(per_viewer: list[list[float]]) -> dict[str, Any]:
    """Each viewer's p99 inter-frame interval; the worst and the median of those."""
    p99s = sorted(float(np.percentile(v, 99)) for v in per_viewer if v)
    if not p99s:
        return {"p99_ms_worst_viewer": None, "p99_ms_median_viewer": None}
    everything = [x for v in per_viewer for x in v]
    return {"p50_ms": round(float(np.percentile(everything, 50)), 2),
            "p99_ms_median_viewer": round(p99s[len(p99s) // 2], 2),
            "p99_ms_worst_viewer": round(p99s[-1], 2),
            "max_ms": round(max(everything), 2)}


def _egress_frames(d: Any) -> tuple[int, float]:
    """Frames egress has handed on since it started, and when (``time.monotonic()``) it
    said so: the figure is its last heartbeat's, ``heartbeat_age_s`` old."""
    now = time.monotonic()
    w = next(w for w in d.status()["workers"] if w["name"] == "egress")
    return int(w["frames_out"]), now - float(w["heartbeat_age_s"])


async def _measure_step(d: Any, n: int, registry: list[RtpCounter], window: float,
                        smooth: bool, pids: list[int], egress_pids: list[int],
                        ) -> dict[str, Any]:
    # d.status() runs the CLI: off the loop the viewers receive on, and outside the window,
    # or its wait would show as a gap and a burst at every viewer.
    loop = asyncio.get_running_loop()
    out0 = await loop.run_in_executor(None, _egress_frames, d)
    cpu0, own0, t0 = cpu_total(pids), time.process_time(), time.monotonic()
    egress0 = cpu_total(egress_pids)
    broken0 = sum(c.broken for c in registry)
    await asyncio.sleep(window)
    t1 = time.monotonic()
    cpu = (cpu_total(pids) - cpu0) / (t1 - t0) * 100
    egress = (cpu_total(egress_pids) - egress0) / (t1 - t0) * 100
    own = (time.process_time() - own0) / (t1 - t0) * 100
    out1 = await loop.run_in_executor(None, _egress_frames, d)
    fps = sorted(c.count(t0, t1) / (t1 - t0) for c in registry)
    step: dict[str, Any] = {
        "viewers": n, "min_fps": round(fps[0], 1), "mean_fps": round(sum(fps) / len(fps), 1),
        # What the pipeline made for everyone: when it is below 27 too, the whole daemon
        # slowed (the machine's load), not its fan-out to this many viewers.
        "egress_fps": round((out1[0] - out0[0]) / max(out1[1] - out0[1], 1e-3), 1),
        "daemon_cpu_percent": round(cpu, 1), "egress_cpu_percent": round(egress, 1),
        "bench_cpu_percent": round(own, 1),
        # Frames that reached a viewer with packets missing, in this window: egress
        # skipped them (a viewer's queue overflowed and it waits for a keyframe).
        "broken_frames": sum(c.broken for c in registry) - broken0}
    if smooth:
        step["receive_interval"] = _interval_stats([c.intervals_ms(t0, t1) for c in registry])
        status = await loop.run_in_executor(None, d.status)
        interval = status["pipeline"].get("frame_interval_ms")
        if interval:
            step["egress_interval"] = {k: round(v, 2) for k, v in interval.items()}
    step["ok"] = step["min_fps"] >= 27
    return step


async def _viewer_steps(d: Any, steps: list[int], warm: float, window: float,
                        intervals_at: tuple[int, ...], smooth_window: float,
                        ) -> list[dict[str, Any]]:
    from reactor.media.ice import restrict_ice_to_loopback

    restrict_ice_to_loopback()
    registry: list[RtpCounter] = []
    viewers: list[Any] = []
    out: list[dict[str, Any]] = []
    pids = d.pids()
    names = {pid: name for name, pid in d.worker_pids().items()}
    egress_pids = [p for p, k in names.items() if k == "egress"]
    try:
        for n in steps:
            while len(viewers) < n:
                viewers.append(await _watch(d.url, registry))
            await asyncio.sleep(warm)
            smooth = n in intervals_at
            # Where smoothness is judged, the window outlasts egress's own (its last 512
            # frame intervals), so both sides describe the same steady stream.
            span = max(window, smooth_window) if smooth else window
            step = await _measure_step(d, n, registry, span, smooth, pids, egress_pids)
            if not step["ok"]:
                # The machine is shared: one noisy window is not a limit. Measure again.
                print(f"bench: viewers {step} (measuring again)", file=sys.stderr, flush=True)
                retry = await _measure_step(d, n, registry, span, smooth, pids, egress_pids)
                retry["first_try"] = {k: step[k] for k in ("min_fps", "mean_fps", "egress_fps")}
                step = retry
            out.append(step)
            print(f"bench: viewers {step}", file=sys.stderr, flush=True)
            if not step["ok"]:
                break
    finally:
        await asyncio.gather(*(_leave(v) for v in viewers), return_exceptions=True)
    return out


def run_viewers(quick: bool) -> dict[str, Any]:
    """Light viewers, all in this process: see :class:`RtpCounter` for what they do.

    They are real WebRTC peers (aiortc's ICE, DTLS-SRTP key exchange, SRTCP both ways:
    the daemon's sender reports in, receiver reports out), but they count frames from the
    SRTP packets' clear-text headers as the packets arrive. They do not decrypt or
    authenticate the RTP payload, depacketize, reassemble frames in a jitter buffer,
    decode, ask for retransmissions (NACK) or keyframes (PLI), nor estimate bandwidth
    (REMB): per packet, one header unpack and aiortc's receive statistics. So the limit
    found is the daemon's, not the bench's Python receive path.
    """
    steps = [1, 2] if quick else [1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 80, 96, 128]
    intervals_at = (1, 2) if quick else (1, 32)
    warm, window = (1.0, 1.0) if quick else (2.0, 4.0)
    smooth_window = 1.0 if quick else 18.0  # 540 frames at 30 fps
    with daemon("reactor.examples.pattern:TestPattern", server={"max_viewers": 256}) as d:
        idle_pids = d.pids()
        c0, t0 = cpu_total(idle_pids), time.monotonic()
        time.sleep(window / 2)
        idle = (cpu_total(idle_pids) - c0) / (time.monotonic() - t0) * 100
        result_steps = asyncio.run(_viewer_steps(d, steps, warm, window, intervals_at,
                                                 smooth_window))
    passed = [s for s in result_steps if s["ok"]]
    held = passed[-1]["viewers"] if passed else 0
    per_viewer = per_viewer_egress = None
    if len(passed) >= 2:
        xs = [s["viewers"] for s in passed]
        per_viewer = round(float(np.polyfit(xs, [s["daemon_cpu_percent"] for s in passed], 1)[0]),
                           3)
        per_viewer_egress = round(float(np.polyfit(
            xs, [s["egress_cpu_percent"] for s in passed], 1)[0]), 3)
    limit = None if len(passed) == len(result_steps) else result_steps[-1]["viewers"]
    # The receivers share the machine: when the bench process (one Python thread for every
    # viewer's packets) nears a full core, the limit found is the bench's.
    last = result_steps[-1]
    limited_by = None if limit is None else (
        "the bench's receivers (bench process near a full core)"
        if last["bench_cpu_percent"] >= 85 else
        f"the pipeline's own frame rate (egress made {last['egress_fps']} fps for everyone: "
        "the machine's load)" if last["egress_fps"] < 27 else
        f"egress's fan-out: it made {last['egress_fps']} fps but could not send them all "
        f"({last['broken_frames']} frames skipped in viewers' queues)"
        if last["broken_frames"] else "the daemon's fan-out (or the machine's load)")
    smooth = {s["viewers"]: s for s in result_steps if "receive_interval" in s}
    worst = [v for s in smooth.values() for v in (
        s["receive_interval"].get("p99_ms_worst_viewer"),
        s.get("egress_interval", {}).get("p99")) if v is not None]
    return {"limited_by": limited_by, "width": 1280, "height": 720, "fps": 30,
            "receiver": "light (SRTP headers counted, payload not decrypted)",
            "steps": result_steps, "viewers_held": held, "first_failed_step": limit,
            "idle_no_viewer_cpu_percent": round(idle, 1),
            "cpu_percent_per_viewer": per_viewer,
            "egress_cpu_percent_per_viewer": per_viewer_egress,
            "goal": {"target": "128 viewers at >= 27 fps each",
                     "met": None if quick else held >= 128},
            "smoothness_goal": {
                "target": "frame interval p99 <= 40 ms at 1 and 32 viewers (egress and "
                          "every viewer)",
                "met": None if quick or len(smooth) < len(intervals_at) or not worst
                else max(worst) <= 40}}


def render_viewers(result: dict[str, Any]) -> str:
    from bench_pipeline import _met

    lines = [f"  720p30 TestPattern, {result['receiver']} aiortc viewers in the bench process"]
    for s in result["steps"]:
        lines.append(f"    {s['viewers']:>3} viewers: min {s['min_fps']:>5} fps, mean "
                     f"{s['mean_fps']:>5} (egress {s['egress_fps']:>4}); "
                     f"daemon CPU {s['daemon_cpu_percent']:>6} % "
                     f"(egress {s['egress_cpu_percent']} %), bench {s['bench_cpu_percent']} %")
    lines.append(f"  {'viewers held at >= 27 fps each':<34} {result['viewers_held']}"
                 + (f" (failed at {result['first_failed_step']})"
                    if result["first_failed_step"] else " (every step passed)"))
    if result.get("limited_by"):
        lines.append(f"  {'limited by':<34} {result['limited_by']}")
    lines.append(f"  {'daemon CPU per added viewer':<34} {result['cpu_percent_per_viewer']} % "
                 f"of a core (egress {result['egress_cpu_percent_per_viewer']} %)")
    lines.append(f"  {'daemon CPU, session, no viewer':<34} "
                 f"{result['idle_no_viewer_cpu_percent']} %")
    for s in result["steps"]:
        if "receive_interval" not in s:
            continue
        r, e = s["receive_interval"], s.get("egress_interval", {})
        label = f"frame interval, {s['viewers']} viewer(s)"
        lines.append(f"  {label:<34} egress p50 / p99 "
                     f"{e.get('p50')} / {e.get('p99')} ms; received p50 {r.get('p50_ms')}, "
                     f"p99 {r.get('p99_ms_median_viewer')} (median viewer) / "
                     f"{r.get('p99_ms_worst_viewer')} ms (worst), max {r.get('max_ms')} ms")
    for key in ("goal", "smoothness_goal"):
        g = result[key]
        lines.append(f"goal {g['target']}: {_met(g['met'])}")
    return "\n".join(lines)


# -- soak -------------------------------------------------------------------------------

async def _soak(d: Any, minutes: float, every: float, churn_s: float,
                sampler: ProcSampler) -> dict[str, Any]:
    from reactor.media.ice import restrict_ice_to_loopback

    restrict_ice_to_loopback()
    steady = await _watch(d.url)
    joins = 0
    t_end = time.monotonic() + minutes * 60
    next_sample = time.monotonic()
    try:
        while time.monotonic() < t_end:
            if time.monotonic() >= next_sample:
                sampler.sample()
                next_sample += every
            churn = await _watch(d.url)
            joins += 1
            await asyncio.sleep(churn_s)
            await _leave(churn)
            await asyncio.sleep(churn_s / 2)
        sampler.sample()
    finally:
        await _leave(steady)
    return {"joins": joins}


def run_soak(quick: bool, minutes: float) -> dict[str, Any]:
    if quick:
        minutes = min(minutes, 0.25)
    every = 2.0 if quick else 10.0
    churn = 1.0 if quick else 3.0
    w, h = (320, 240) if quick else (1280, 720)
    with counting_decoders() as registry, daemon("reactor.examples.pattern:TestPattern", w,
                                                 h) as d:
        sampler = ProcSampler(d.pid, interval=3600)  # sampled explicitly, every ``every`` s
        sampler.names.update({pid: name for name, pid in d.worker_pids().items()})
        sampler.names[d.pid] = "supervisor"
        sampler.sample()
        info = asyncio.run(_soak(d, minutes, every, churn, sampler))
        restarts = {w["name"]: w["restarts"] for w in d.status()["workers"]}
    procs: dict[str, Any] = {}
    for name, st in sampler.per_process().items():
        if st.label == "resource_tracker" or len(st.samples) < 2:
            continue
        ts = [s[0] for s in st.samples]
        # The second half only: start-up and the first viewer's encoder are warm-up, not
        # growth; a leak keeps its slope there.
        half = [s for s in st.samples if s[0] >= (ts[0] + ts[-1]) / 2]
        procs[name] = {
            "rss_mb_start": round(st.samples[0][1] / 2**20, 1),
            "rss_mb_end": round(st.samples[-1][1] / 2**20, 1),
            "rss_mb_per_hour": slope_per_hour(ts, [s[1] / 2**20 for s in st.samples]),
            "fds_start": st.samples[0][2], "fds_end": st.samples[-1][2],
            "fds_per_hour": slope_per_hour(ts, [s[2] for s in st.samples]),
            "rss_mb_per_hour_2nd_half": slope_per_hour([s[0] for s in half],
                                                       [s[1] / 2**20 for s in half]),
            "fds_per_hour_2nd_half": slope_per_hour([s[0] for s in half],
                                                    [s[2] for s in half]),
            "samples": len(st.samples)}
    frames = sum(len(dec.times) for dec in registry)
    return {"minutes": minutes, "sample_every_s": every, "churn_every_s": churn * 1.5,
            "width": w, "height": h, "viewer_joins": info["joins"],
            "frames_received": frames, "restarts": restarts, "processes": procs}


def render_soak(result: dict[str, Any]) -> str:
    lines = [f"  {result['minutes']:g} min at {result['width']}x{result['height']}: one steady "
             f"viewer, {result['viewer_joins']} joins/leaves, samples every "
             f"{result['sample_every_s']:g} s; restarts {result['restarts']}"]
    for name, p in result["processes"].items():
        lines.append(f"    {name:<18} RSS {p['rss_mb_start']:>7} -> {p['rss_mb_end']:>7} MB "
                     f"({p['rss_mb_per_hour']!s:>7} MB/h)  fds {p['fds_start']:>4} -> "
                     f"{p['fds_end']:>4} ({p['fds_per_hour']!s:>6}/h); 2nd half "
                     f"{p['rss_mb_per_hour_2nd_half']} MB/h, {p['fds_per_hour_2nd_half']} fds/h")
    return "\n".join(lines)


if __name__ == "__main__" and sys.argv[1:] == ["relay"]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    _relay_main()
