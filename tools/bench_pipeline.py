"""``tools/bench.py pipeline``: the headless daemon pipeline against a naive Queue pipeline.

reactor: ``reactor run --lossless`` with the Identity model (file source -> input ring ->
inference -> output ring -> file sink writing an MP4). Sustained fps comes from the sink's
frame counter in the status snapshots (each heartbeat's counter is placed at the time the
heartbeat was sent, ``ts - heartbeat_age_s``), polled over the control socket of the run's
own run directory; per-stage latency is the last snapshot's. CPU and peak RSS per process
come from /proc, sampled every 100 ms while the run lasts.

naive: the same work written the obvious way: a decode process, a
``multiprocessing.Queue``, a model process, another Queue, and an encode process writing
the MP4 with the same encoder settings (reactor's ``Recorder``), so the ratio measures the
architecture, not the codec.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import ROOT, ProcSampler, ratio, reactor_cmd, write_config

from tests.support.video import make_noise_video

FULL = {"720p": (1280, 720, 600), "1080p": (1920, 1080, 300)}
QUICK = {"720p": (320, 180, 40), "1080p": (480, 270, 40)}


def _find_run_dir(base: Path) -> Path | None:
    for p in base.glob("reactor-run-*"):
        if (p / "control.sock").exists():
            return p
    return None


def run_reactor(cfg: Path, src: Path, out: Path, frames: int, tmp: Path) -> dict[str, Any]:
    from reactor.control.client import ControlClient
    from reactor.errors import ReactorError

    runs = tmp / "runs"
    runs.mkdir(exist_ok=True)
    # reactor run makes its run directory with tempfile.mkdtemp: TMPDIR puts it where the
    # bench can find its control socket.
    env = {**os.environ, "TMPDIR": str(runs)}
    t0 = time.monotonic()
    proc = subprocess.Popen(reactor_cmd("run", "-c", str(cfg), "--input", str(src), "--output",
                                        str(out), "--lossless"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    sampler = ProcSampler(proc.pid, interval=0.05).start()
    points: list[tuple[float, int]] = []  # (heartbeat wall time, sink frames)
    latency: dict[str, dict[str, float]] = {}
    client: ControlClient | None = None
    try:
        while proc.poll() is None:
            time.sleep(0.2)
            if client is None:
                run_dir = _find_run_dir(runs)
                if run_dir is None:
                    continue
                with contextlib.suppress(ReactorError):
                    client = ControlClient.connect(run_dir, timeout_s=1.0)
                continue
            try:
                snap = client.status()
            except ReactorError:
                continue
            sampler.names[snap.pid] = "supervisor"
            for w in snap.workers:
                if w.pid:
                    sampler.names[w.pid] = w.name
                if w.name == "sink":
                    points.append((snap.ts - w.heartbeat_age_s, w.frames_in))
            for st in snap.pipeline.latency:
                latency[st.stage] = {"p50_ms": round(st.p50_ms, 2), "p99_ms": round(st.p99_ms, 2)}
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if client is not None:
            client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sampler.stop()
    wall = time.monotonic() - t0
    if proc.returncode != 0 or f"{frames} frames written" not in stdout:
        raise RuntimeError(f"reactor run failed ({proc.returncode}):\n{stdout}\n{stderr[-2000:]}")
    inside = sorted({p for p in points if 0 < p[1] < frames})
    if len(inside) >= 2 and inside[-1][0] > inside[0][0] and inside[-1][1] > inside[0][1]:
        window = (inside[0][0], inside[-1][0], inside[-1][1] - inside[0][1])
        method = "sink heartbeats, steady state"
    else:  # too short for two heartbeats mid-run (--quick): the whole run, start-up included
        window = (0.0, float("inf"), frames)
        method = "whole run (too short for heartbeats)"
    return {**_steady(sampler, window, frames, wall), "fps_method": method,
            "latency_ms": latency}


def _steady(sampler: ProcSampler, window: tuple[float, float, int], frames: int,
            wall: float) -> dict[str, Any]:
    """fps and CPU per frame over ``window`` = (t0, t1, frames in it), peak RSS overall.

    A window in which no frame moved (a busy machine's stall: two heartbeats with the same
    count) is reported as a stall, fps 0 and no CPU per frame, never divided by."""
    t0, t1, n = window
    steady = t1 != float("inf")
    count = n if steady else frames
    per: dict[str, Any] = {}
    for name, st in sampler.per_process().items():
        if st.label == "resource_tracker":
            continue
        cpu = st.cpu_at(t1) - st.cpu_at(t0) if steady else st.cpu - st.cpu0
        per[name] = {"cpu_ms_per_frame": round(cpu * 1000 / count, 2) if count > 0 else None,
                     "peak_rss_mb": round(st.peak_rss / 2**20, 1)}
    span = t1 - t0 if steady else wall
    stalled = count <= 0 or span <= 0
    cpu_total = [p["cpu_ms_per_frame"] for p in per.values() if p["cpu_ms_per_frame"] is not None]
    return {"fps": 0.0 if stalled else round(count / span, 1), "stalled": stalled,
            "wall_s": round(wall, 2),
            "fps_wall": round(frames / wall, 1) if wall > 0 else 0.0, "processes": per,
            "cpu_ms_per_frame": None if stalled else round(sum(cpu_total), 2)}


# -- the naive pipeline ---------------------------------------------------------------------

def _decode(src: str, q_out: Any) -> None:
    import av

    with av.open(src) as c:
        for frame in c.decode(video=0):
            q_out.put(frame.to_ndarray(format="rgb24"))
    q_out.put(None)


def _model(q_in: Any, q_out: Any) -> None:
    while (frame := q_in.get()) is not None:
        q_out.put(frame)  # identity
    q_out.put(None)


def _encode(out: str, width: int, height: int, q_in: Any, conn: Any) -> None:
    from reactor.media.recorder import Recorder

    rec = Recorder(out, width, height, 30)
    times = []
    while (frame := q_in.get()) is not None:
        rec.write(frame)
        times.append(time.time())
    rec.close()
    conn.send(times)


def run_naive(src: Path, out: Path, width: int, height: int, frames: int) -> dict[str, Any]:
    import multiprocess

    ctx = multiprocess.get_context("spawn")
    q1, q2 = ctx.Queue(maxsize=4), ctx.Queue(maxsize=4)
    parent, child = ctx.Pipe()
    procs = {
        "decode": ctx.Process(target=_decode, args=(str(src), q1), daemon=True),
        "model": ctx.Process(target=_model, args=(q1, q2), daemon=True),
        "encode": ctx.Process(target=_encode, args=(str(out), width, height, q2, child),
                              daemon=True),
    }
    t0 = time.monotonic()
    for p in procs.values():
        p.start()
    sampler = ProcSampler([p.pid for p in procs.values()], interval=0.05).start()
    sampler.names.update({p.pid: name for name, p in procs.items()})
    try:
        if not parent.poll(300):
            raise RuntimeError("the naive pipeline did not finish within 300 s")
        times = parent.recv()
        sampler.sample()
    finally:
        sampler.stop()
        for p in procs.values():
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    wall = time.monotonic() - t0
    # The steady middle: the encoder's frame times from 10 % to 90 % of the file.
    lo, hi = len(times) // 10, len(times) - 1 - len(times) // 10
    steady = hi - lo >= 10 and times[hi] > times[lo]
    window = (times[lo], times[hi], hi - lo) if steady else (0.0, float("inf"), frames)
    return {**_steady(sampler, window, frames, wall), "frames_written": len(times),
            "fps_method": "encoder frame times, 10-90 %" if steady else "whole run"}


def run(quick: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="reactor-bench-pipeline-") as tmp_name:
        tmp = Path(tmp_name)
        for size, (w, h, n) in (QUICK if quick else FULL).items():
            src = make_noise_video(tmp / f"in-{size}.mp4", w, h, n)
            cfg = write_config(tmp / f"identity-{size}.yaml",
                               "reactor.examples.filters:Identity", w, h)
            res: dict[str, Any] = {"width": w, "height": h, "frames": n}
            res["reactor"] = run_reactor(cfg, src, tmp / f"out-{size}.mp4", n, tmp)
            res["naive"] = run_naive(src, tmp / f"naive-{size}.mp4", w, h, n)
            res["fps"] = res["reactor"]["fps"]
            res["naive_fps"] = res["naive"]["fps"]
            res["vs_naive"] = ratio(res["fps"], res["naive_fps"])
            res["cpu_vs_naive"] = ratio(res["reactor"]["cpu_ms_per_frame"],
                                        res["naive"]["cpu_ms_per_frame"])
            result[size] = res
    fps720 = result["720p"]["fps"]
    result["goal"] = {"target": ">= 30 fps at 720p", "met": None if quick or fps720 is None
                      else fps720 >= 30}
    return result


def render(result: dict[str, Any]) -> str:
    lines = []
    for size, res in result.items():
        if size == "goal":
            continue
        r, nv = res["reactor"], res["naive"]
        lines.append(f"{size} ({res['width']}x{res['height']}, {res['frames']} frames)")
        lines.append(f"  {'sustained fps reactor / naive':<34} {r['fps']!s:>8} / {nv['fps']!s:<8}"
                     f" ({res['vs_naive']}x)")
        lines += [f"  {who}: STALLED, no frame moved in its window (a busy machine?)"
                  for who, run in (("reactor", r), ("naive", nv)) if run.get("stalled")]
        lines.append(f"  {'CPU ms/frame reactor / naive':<34} {r['cpu_ms_per_frame']!s:>8} / "
                     f"{nv['cpu_ms_per_frame']!s:<8} ({res['cpu_vs_naive']}x)")
        for name, p in r["processes"].items():
            lines.append(f"    reactor {name:<24} {p['cpu_ms_per_frame']!s:>8} ms/frame "
                         f"{p['peak_rss_mb']:>8} MB peak RSS")
        for name, p in nv["processes"].items():
            lines.append(f"    naive   {name:<24} {p['cpu_ms_per_frame']!s:>8} ms/frame "
                         f"{p['peak_rss_mb']:>8} MB peak RSS")
        for stage, lat in r["latency_ms"].items():
            lines.append(f"    stage {stage:<26} p50 {lat['p50_ms']:>7} ms  "
                         f"p99 {lat['p99_ms']:>7} ms")
    g = result["goal"]
    lines.append(f"goal {g['target']}: {_met(g['met'])}")
    return "\n".join(lines)


def _met(met: bool | None) -> str:
    return "not judged (--quick)" if met is None else ("met" if met else "MISSED")
