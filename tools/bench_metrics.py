"""``tools/bench.py metrics``: what ``GET /metrics`` costs.

* ``render``: the supervisor's collector rendering a page for a daemon with 64 viewers,
  in this process: every family the daemon exports, over a snapshot whose session has 64
  viewers that each reported every receive-side figure (so every per-viewer series is
  there). 64 real aiortc viewers do not fit on a 2-core machine beside the daemon; the
  collector does not depend on how the snapshot got its viewers.
* ``scrape``: a live daemon (test pattern, 320x240, idle: no session, so its own work
  is small and steady) scraped over HTTP. The supervisor's and ingress's CPU is compared
  over alternating phases with a 1 s scrape and without any; and a burst of back-to-back
  scrapes gives the CPU of one scrape and its round trip as a client sees it.

Goals (issue 18): a 1 s scrape costs at most 1 % of a core; the page renders in at most
10 ms with 64 viewers.
"""

from __future__ import annotations

import statistics
import threading
import time
import urllib.request
from typing import Any

from bench_common import daemon, percentiles_ms, proc_sample

from reactor.daemon.metrics import MetricsState, ReactorCollector, Scrape, render
from reactor.proto import control_pb2 as cpb
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb
from reactor.runtime.latency import LatencyWindow
from reactor.workers.http import ROUTES

VIEWERS = 64
ROLES = (("ingress", "front"), ("inference", "model"), ("egress", "back"))


def _snapshot() -> tpb.Snapshot:
    snap = tpb.Snapshot(state=tpb.DAEMON_STATE_RUNNING, pid=1, uptime_s=3600.0, ts=time.time(),
                        model="TestPattern")
    for name, _ in ROLES:
        snap.workers.add(name=name, pid=0, state=tpb.WORKER_STATE_RUNNING, restarts=1,
                         rss_bytes=300 << 20)
    p = snap.pipeline
    p.fps_in = p.fps_model = p.fps_out = p.target_fps = 30.0
    p.rings.add(name="input", slots=4, used=1, dropped=9, policy="latest", written=10_000)
    p.rings.add(name="output", slots=8, used=2, policy="block", written=10_000)
    snap.session.CopyFrom(tpb.SessionInfo(id="s", state=tpb.SESSION_STATE_LIVE, viewers=VIEWERS,
                                          sender=True))
    for v in range(VIEWERS):
        snap.session.viewer_stats.add(
            id=f"{v:016x}", codec="h264", connected_s=60.0, agent="browser", age_s=0.4,
            jitter_buffer_ms=20.0, frames_decoded=1800, frames_dropped=2, freeze_count=0,
            freeze_s=0.0, rtt_ms=1.5, decode_ms=2.0, width=1280, height=720, fps=30.0,
            reports=60, rejected=0, glass_to_glass_ms=45.0, rtt_source="viewer")
    return snap


def _state() -> MetricsState:
    state = MetricsState()
    stages = {"ingress": ("decode",), "inference": ("input_ring", "model"),
              "egress": ("output_ring", "encode")}
    for pid, (name, _) in enumerate(ROLES, 100):
        stats = wpb.WorkerStats(frames_in=10_000, frames_out=10_000, frames_emitted=10_000,
                                audio_samples_in=480_000, audio_samples_out=480_000)
        for stage in stages[name]:
            w = LatencyWindow(stage)
            for i in range(500):
                w.add(0.05 * i)
            st = w.stat()
            assert st is not None
            stats.latency.append(st)
        if name == "ingress":
            for route in ROUTES:
                for status in (200, 401, 404):
                    stats.http_requests.add(method=route.method, route=route.path,
                                            status=status, count=1000)
        state.on_heartbeat(name, pid, stats)
    for cmd in ("set_gain", "set_mode", "set_invert"):
        for status in (0, 422, 500):
            reply = cpb.Reply(error=cpb.Error(status=status)) if status else cpb.Reply()
            state.on_command(cmd, reply, ("set_gain", "set_mode", "set_invert"))
    return state


def run_render(quick: bool) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    snap, state = _snapshot(), _state()
    build = {"version": "0", "python": "3", "pyav": "18", "ffmpeg": "8", "device": "cpu"}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReactorCollector(
        lambda: Scrape(snapshot=snap, state=state, build=build, codec="h264", roles=ROLES,
                       commands=("set_gain", "set_mode", "set_invert"))))
    page = render(registry)
    viewer_series = sum(1 for line in page.splitlines() if line.startswith(b"reactor_viewer_"))
    assert viewer_series >= 5 * VIEWERS, viewer_series  # every viewer has its series
    times: list[float] = []
    for _ in range(20 if quick else 300):
        t0 = time.perf_counter()
        render(registry)
        times.append((time.perf_counter() - t0) * 1000)
    p50, p99 = percentiles_ms(times, 50, 99)
    return {"viewers": VIEWERS, "bytes": len(page), "viewer_series": viewer_series,
            "series": sum(1 for line in page.splitlines() if not line.startswith(b"#")),
            "p50_ms": p50, "p99_ms": p99, "max_ms": round(max(times), 3), "n": len(times)}


def _cpu(pids: list[int]) -> float:
    return sum(s[0] for p in pids if (s := proc_sample(p)) is not None)


def _get(url: str) -> float:
    req = urllib.request.Request(url)
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()
    return (time.perf_counter() - t0) * 1000


def run_scrape(quick: bool) -> dict[str, Any]:
    phase_s = 2.0 if quick else 20.0
    phases = 2 if quick else 6
    burst = 20 if quick else 300
    with daemon("reactor.examples.pattern:TestPattern", 320, 240, 30,
                metrics={"public": True}) as d:
        url = d.url + "/metrics"
        _get(url)  # the first scrape reads the codec libraries' versions once
        workers = d.worker_pids()
        pids = [d.pid, workers["ingress"]]
        time.sleep(2.0)
        off: list[float] = []
        on: list[float] = []
        for i in range(phases):
            scraping = i % 2 == 1
            stop = threading.Event()

            def scraper(stop: threading.Event = stop) -> None:
                next_at = time.monotonic()
                while not stop.is_set():
                    _get(url)
                    next_at += 1.0
                    stop.wait(max(0.0, next_at - time.monotonic()))

            t = threading.Thread(target=scraper, daemon=True) if scraping else None
            c0, t0 = _cpu(pids), time.monotonic()
            if t is not None:
                t.start()
            time.sleep(phase_s)
            stop.set()
            if t is not None:
                t.join(10)
            pct = 100 * (_cpu(pids) - c0) / (time.monotonic() - t0)
            (on if scraping else off).append(pct)
        c0 = _cpu(pids)
        rtt = [_get(url) for _ in range(burst)]
        per_scrape_ms = 1000 * (_cpu(pids) - c0) / burst
        with urllib.request.urlopen(url, timeout=10) as resp:
            page = resp.read()
    p50, p99 = percentiles_ms(rtt, 50, 99)
    idle, scraped = statistics.mean(off), statistics.mean(on)
    return {"phase_s": phase_s, "phases": phases,
            "cpu_pct_without": round(idle, 3), "cpu_pct_with_1s_scrape": round(scraped, 3),
            "cpu_pct_added": round(scraped - idle, 3),
            "cpu_ms_per_scrape": round(per_scrape_ms, 3),
            "cpu_pct_per_1s_scrape": round(per_scrape_ms / 10, 3),
            "round_trip_p50_ms": p50, "round_trip_p99_ms": p99, "burst": burst,
            "page_bytes": len(page)}


def run(quick: bool) -> dict[str, Any]:
    r = run_render(quick)
    s = run_scrape(quick)
    met = None if quick else bool(r["p99_ms"] is not None and r["p99_ms"] <= 10.0
                                  and s["cpu_pct_per_1s_scrape"] <= 1.0
                                  and s["cpu_pct_added"] <= 1.0)
    return {"render": r, "scrape": s,
            "goal": {"target": "1 s scrape <= 1 % of a core; render <= 10 ms at 64 viewers",
                     "met": met}}


def render_text(result: dict[str, Any]) -> str:
    r, s, g = result["render"], result["scrape"], result["goal"]
    met = {True: "met", False: "NOT met", None: "not judged (--quick)"}[g["met"]]
    return "\n".join([
        f"  render, {r['viewers']} viewers ({r['series']} series, {r['viewer_series']} of "
        f"them per viewer, {r['bytes']} B) "
        f"p50 / p99      {r['p50_ms']} / {r['p99_ms']} ms (max {r['max_ms']}, n={r['n']})",
        f"  supervisor+ingress CPU, idle daemon: without scraping {s['cpu_pct_without']} %, "
        f"scraped every 1 s {s['cpu_pct_with_1s_scrape']} % (added "
        f"{s['cpu_pct_added']} %)",
        f"  one scrape: {s['cpu_ms_per_scrape']} ms CPU (= {s['cpu_pct_per_1s_scrape']} % "
        f"of a core at 1/s), round trip p50 / p99 {s['round_trip_p50_ms']} / "
        f"{s['round_trip_p99_ms']} ms ({s['page_bytes']} B page)",
        f"goal {g['target']}: {met}",
    ])
