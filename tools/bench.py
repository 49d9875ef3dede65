#!/usr/bin/env python3
"""reactor's benchmarks, one subcommand per section.

    python tools/bench.py SECTION [--json] [--quick]
    python tools/bench.py all [--json] [--quick] [--output bench-results.json]

Sections: ``ring``, ``pipeline``, ``e2e``, ``browser``, ``viewers``, ``control``,
``metrics``, ``network``, ``fleet``, ``gpu`` (all of them run by ``all``, which also writes
``bench-results.json``), ``soak`` and ``av`` (both with ``--minutes N``; not part of
``all``). Each section registers itself with :func:`section`;
it receives the parsed arguments and returns a JSON-able dict, which ``--json`` prints as
one object and otherwise its ``render`` turns into text. ``--quick`` is a seconds-long
smoke run of the same code (tiny sizes and counts; goals are not judged). Ratios compare
figures taken in the same run, because the machine is noisy. The sections past ``ring``
live in ``tools/bench_*.py``; every process and daemon they start, they stop.

Child processes are started with the ``multiprocess`` package's spawn context, as the
daemon starts its workers. Timestamps are ``time.perf_counter_ns()``, which on Linux is
CLOCK_MONOTONIC and therefore comparable across processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the bench_* helpers

import bench_av
import bench_browser
import bench_common
import bench_fleet
import bench_metrics
import bench_network
import bench_pipeline
import bench_record
import bench_rtc
from bench_common import percentiles_us, ratio


@dataclass(frozen=True)
class Section:
    name: str
    help: str
    run: Callable[[argparse.Namespace], dict[str, Any]]
    render: Callable[[dict[str, Any]], str]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


SECTIONS: dict[str, Section] = {}


def section(
    name: str,
    help: str,
    render: Callable[[dict[str, Any]], str],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Callable[[Callable[[argparse.Namespace], dict[str, Any]]], Callable[..., dict[str, Any]]]:
    """Register a benchmark section as ``tools/bench.py NAME``."""

    def register(
        run: Callable[[argparse.Namespace], dict[str, Any]],
    ) -> Callable[[argparse.Namespace], dict[str, Any]]:
        SECTIONS[name] = Section(name, help, run, render, add_arguments)
        return run

    return register


__all__ = ["SECTIONS", "Section", "main", "percentiles_us", "ratio", "section"]


# -- ring ---------------------------------------------------------------------------------

SIZES = {"720p": (720, 1280, 3), "1080p": (1080, 1920, 3)}


def _frame(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)


def _pace(start: float, i: int, interval: float, busy: bool = False) -> None:
    """Wait for tick ``i``: sleeping, or busy like a decoder or model computing a frame."""
    due = start + i * interval
    if busy:
        while time.perf_counter() < due:
            pass
    elif (delay := due - time.perf_counter()) > 0:
        time.sleep(delay)


def _ring_producer(ring: Any, count: int, interval: float, go: Any, conn: Any) -> None:
    """Write ``count`` frames, one every ``interval`` seconds (0: as fast as possible).

    Paced, it also copies the frame into a private buffer on the ticks in between, so that
    the plain memcpy it reports is timed under exactly the ring's conditions: cache and CPU
    state a frame interval after the previous copy. The producer busy-waits between ticks,
    standing in for a decoder or model computing the next frame.
    """
    src = _frame(ring.shape)
    private = np.empty_like(src)
    ring.write(src)  # claim the ring and fault everything in before timing starts
    go.wait()
    memcpy: list[int] = []
    start = time.perf_counter()
    for i in range(count):
        if not interval:
            ring.write(src, timeout=10)
            continue
        _pace(start, 2 * i, interval / 2, busy=True)
        ring.write(src, timeout=10)  # capture_ts defaults to the time write() started
        _pace(start, 2 * i + 1, interval / 2, busy=True)
        t0 = time.perf_counter_ns()
        np.copyto(private, src)
        memcpy.append(time.perf_counter_ns() - t0)
    conn.send(memcpy)
    ring.close()


def _idle_reader(ring: Any, seconds: float, conn: Any) -> None:
    """Park on an empty ring for ``seconds``; report CPU seconds used while parked."""
    reader = ring.reader()
    reader.read(timeout=5)  # the frame the parent wrote to claim the ring
    cpu0, wall0 = time.process_time(), time.perf_counter()
    frame = reader.read(timeout=seconds)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    conn.send((frame is None, cpu, wall))
    reader.close()
    ring.close()


def _queue_producer(queue: Any, shape: tuple[int, ...], count: int, interval: float) -> None:
    src = _frame(shape)
    queue.put((time.perf_counter_ns(), src))
    start = time.perf_counter()
    for i in range(count):
        _pace(start, i, interval)
        queue.put((time.perf_counter_ns(), src))
    queue.put(None)


def _zmq_producer(address: str, shape: tuple[int, ...], count: int, interval: float) -> None:
    import zmq

    src = _frame(shape).data  # a memoryview: zmq can send it without a copy
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.connect(address)
    for copy in (True, False):
        sock.send_multipart([b"warm", src], copy=copy)
        start = time.perf_counter()
        for i in range(count):
            _pace(start, i, interval)
            ts = time.perf_counter_ns().to_bytes(8, "little")
            sock.send_multipart([ts, src], copy=copy)
        sock.send_multipart([b"done", b""])
    sock.close()
    ctx.term()


def _bench_ring(
    ctx: Any, name: str, shape: tuple[int, ...], n: int, idle_s: float
) -> dict[str, Any]:
    from reactor.ipc import RingClosedError, ShmRing

    out: dict[str, Any] = {}
    ShmRing.unlink_name(name)
    # Paced (a frame every 8 ms, the reader parked in between as in the pipeline, so the
    # wake-up is included), then back to back (the producer flat out, caches warm).
    for key, interval in (("ring", 0.008), ("ring_b2b", 0.0)):
        with ShmRing.create(name, slots=4, shape=shape, policy="latest") as ring:
            reader = ring.reader()
            go = ctx.Event()
            parent, child = ctx.Pipe()
            args = (ring, n, interval, go, child)
            proc = ctx.Process(target=_ring_producer, args=args, daemon=True)
            proc.start()
            assert reader.read(timeout=30) is not None
            go.set()
            handoff: list[int] = []
            wake: list[int] = []
            while True:
                try:
                    frame = reader.read(timeout=10)
                except RingClosedError:
                    break
                now = time.perf_counter_ns()
                assert frame is not None
                handoff.append(now - frame.capture_ts)
                wake.append(now - frame.enqueue_ts)
            memcpy = parent.recv()
            out[f"{key}_dropped"] = reader.dropped
            reader.close()
            proc.join(10)
        warm = len(handoff) // 20
        out[f"{key}_p50_us"], out[f"{key}_p99_us"] = percentiles_us(handoff[warm:], 50, 99)
        if interval:
            out["wake_p50_us"], out["wake_p99_us"] = percentiles_us(wake[warm:], 50, 99)
            out["memcpy_paced_us"] = percentiles_us(memcpy[warm:], 50)[0]

    # Throughput: a block ring, producer flat out, every frame delivered.
    count = n * 2
    with ShmRing.create(name, slots=4, shape=shape, policy="block") as ring:
        reader = ring.reader()
        go = ctx.Event()
        parent, child = ctx.Pipe()
        args = (ring, count, 0.0, go, child)
        proc = ctx.Process(target=_ring_producer, args=args, daemon=True)
        proc.start()
        while ring.stats().written == 0:
            time.sleep(0.005)
        go.set()
        first = reader.read(timeout=30)
        assert first is not None
        t0 = time.perf_counter()
        for _ in range(count - 1):
            assert reader.read(timeout=10) is not None
        elapsed = time.perf_counter() - t0
        parent.recv()
        reader.close()
        proc.join(10)
    out["ring_fps"] = round((count - 1) / elapsed)
    out["ring_gb_per_s"] = round((count - 1) * int(np.prod(shape)) / elapsed / 1e9, 2)

    # Idle: a reader parked on an empty ring whose producer is alive.
    with ShmRing.create(name, slots=4, shape=shape, policy="latest") as ring:
        ring.write(np.zeros(shape, np.uint8))
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_idle_reader, args=(ring, idle_s, child), daemon=True)
        proc.start()
        assert parent.poll(idle_s + 30)
        timed_out, cpu, wall = parent.recv()
        proc.join(10)
    assert timed_out
    out["idle_cpu_percent"] = round(100.0 * cpu / wall, 3)
    return out


def _bench_queue(ctx: Any, shape: tuple[int, ...], n: int) -> dict[str, Any]:
    queue = ctx.Queue(maxsize=4)
    proc = ctx.Process(target=_queue_producer, args=(queue, shape, n, 0.02), daemon=True)
    proc.start()
    queue.get(timeout=30)
    samples: list[int] = []
    while (item := queue.get(timeout=30)) is not None:
        samples.append(time.perf_counter_ns() - item[0])
    proc.join(10)
    p50, p99 = percentiles_us(samples, 50, 99)
    return {"mp_queue_p50_us": p50, "mp_queue_p99_us": p99}


def _bench_zmq(ctx: Any, shape: tuple[int, ...], n: int) -> dict[str, Any]:
    import tempfile

    import zmq

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        address = f"ipc://{tmp}/bench.sock"
        zctx = zmq.Context()
        sock = zctx.socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(address)
        proc = ctx.Process(target=_zmq_producer, args=(address, shape, n, 0.005), daemon=True)
        proc.start()
        for key in ("zmq", "zmq_zerocopy"):
            samples: list[int] = []
            sock.recv_multipart()  # warm-up frame
            while True:
                ts, payload = sock.recv_multipart(copy=False)
                if ts.bytes == b"done":
                    break
                np.frombuffer(payload.buffer, np.uint8).reshape(shape)  # the reader has it
                samples.append(time.perf_counter_ns() - int.from_bytes(ts.bytes, "little"))
            out[f"{key}_p50_us"], out[f"{key}_p99_us"] = percentiles_us(samples, 50, 99)
        proc.join(10)
        sock.close()
        zctx.term()
    return out


def _memcpy_us(shape: tuple[int, ...], n: int) -> float | None:
    src, dst = _frame(shape), np.empty(shape, np.uint8)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        np.copyto(dst, src)
        samples.append(time.perf_counter_ns() - t0)
    return percentiles_us(samples[n // 10 :], 50)[0]


def _render_ring(result: dict[str, Any]) -> str:
    rows = [
        ("memcpy, back to back", "memcpy_us", "us"),
        ("memcpy, paced like the ring", "memcpy_paced_us", "us"),
        ("ShmRing handoff paced p50/p99", ("ring_p50_us", "ring_p99_us"), "us"),
        ("ShmRing handoff b2b p50/p99", ("ring_b2b_p50_us", "ring_b2b_p99_us"), "us"),
        ("ShmRing wake-up p50 / p99", ("wake_p50_us", "wake_p99_us"), "us"),
        ("ShmRing throughput", ("ring_fps", "ring_gb_per_s"), "fps / GB/s"),
        ("multiprocess Queue p50 / p99", ("mp_queue_p50_us", "mp_queue_p99_us"), "us"),
        ("zmq copy p50 / p99", ("zmq_p50_us", "zmq_p99_us"), "us"),
        ("zmq zero-copy p50 / p99", ("zmq_zerocopy_p50_us", "zmq_zerocopy_p99_us"), "us"),
        ("idle reader CPU", "idle_cpu_percent", "% of a core"),
        ("paced handoff / paced memcpy", "ring_vs_memcpy_paced", "x (target <= 1.5)"),
        ("b2b handoff / memcpy", "ring_b2b_vs_memcpy", "x (target <= 1.5)"),
        ("paced handoff / memcpy", "ring_vs_memcpy", "x"),
        ("Queue / paced handoff", "queue_vs_ring", "x (target >= 50)"),
        ("Queue / b2b handoff", "queue_vs_ring_b2b", "x (target >= 50)"),
    ]
    lines = []
    for size, res in result.items():
        lines.append(f"{size}")
        for label, keys, unit in rows:
            keys = keys if isinstance(keys, tuple) else (keys,)
            value = " / ".join(str(res[k]) for k in keys)
            lines.append(f"  {label:<30} {value:>18} {unit}")
    return "\n".join(lines)


@section("ring", "frame hand-off between processes: ShmRing vs Queue, zmq, memcpy", _render_ring)
def bench_ring(args: argparse.Namespace) -> dict[str, Any]:
    import multiprocess

    ctx = multiprocess.get_context("spawn")
    n = 60 if args.quick else 400
    idle_s = 0.5 if args.quick else 2.0
    name = f"reactor-bench-{os.getpid()}"
    result: dict[str, Any] = {}
    for size, shape in SIZES.items():
        res: dict[str, Any] = {"memcpy_us": _memcpy_us(shape, 50 if args.quick else 300)}
        res.update(_bench_ring(ctx, name, shape, n, idle_s))
        res.update(_bench_queue(ctx, shape, max(10, n // 5)))
        res.update(_bench_zmq(ctx, shape, max(20, n // 2)))
        res["ring_vs_memcpy"] = ratio(res["ring_p50_us"], res["memcpy_us"])
        res["ring_vs_memcpy_paced"] = ratio(res["ring_p50_us"], res["memcpy_paced_us"])
        res["ring_b2b_vs_memcpy"] = ratio(res["ring_b2b_p50_us"], res["memcpy_us"])
        res["queue_vs_ring"] = ratio(res["mp_queue_p50_us"], res["ring_p50_us"], 1)
        res["queue_vs_ring_b2b"] = ratio(res["mp_queue_p50_us"], res["ring_b2b_p50_us"], 1)
        result[size] = res
    return result


# -- sections in tools/bench_*.py --------------------------------------------------------

section("pipeline", "headless daemon pipeline (reactor run --lossless, Identity) vs a naive "
        "Queue pipeline: fps, stage latency, CPU/frame and RSS per process",
        bench_pipeline.render)(lambda args: bench_pipeline.run(args.quick))


section("e2e", "glass-to-glass WHIP -> Identity -> WHEP at 720p30 with frame markers, vs a "
        "plain aiortc relay", bench_rtc.render_e2e)(lambda args: bench_rtc.run_e2e(args.quick))
section("browser", "glass-to-glass in Chromium (and Firefox): a numbered 720p30 canvas over "
        "WHIP -> Identity -> WHEP, read back in requestVideoFrameCallback, vs the plain "
        "aiortc relay; getStats() and stage breakdown", bench_browser.render)(
    lambda args: bench_browser.run(args.quick))
section("viewers", "WHEP viewers the daemon holds at >= 27 fps each, CPU per added viewer",
        bench_rtc.render_viewers)(lambda args: bench_rtc.run_viewers(args.quick))


def _soak_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="how long to stream (default: %(default)s; --quick: 0.25)")


section("soak", "RSS and fds per process while viewers join and leave; slopes per hour",
        bench_rtc.render_soak, _soak_arguments)(
    lambda args: bench_rtc.run_soak(args.quick, args.minutes))


def _av_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=5.0,
                        help="how long Chromium watches and the file lasts (default: "
                             "%(default)s; --quick: 20 s)")


section("av", "sound against picture: beep/flash offset and drift in Chromium and in a "
        "headless MP4, egress CPU with audio on vs off", bench_av.render, _av_arguments)(
    lambda args: bench_av.run(args.quick, args.minutes))

section("record", "egress CPU with egress.record off vs on (720p30, one H.264 viewer): the "
        "recording muxes the live encoder's packets", bench_record.render)(
    lambda args: bench_record.run(args.quick))

section("network", "viewers across shaped, lossy and cut links (a daemon in a network "
        "namespace, aiortc viewers): fps, freezes, recovery, bitrate against the cap; the "
        "pacer's and estimate's CPU per viewer against none", bench_network.render)(
    lambda args: bench_network.run(args.quick))

section("fleet", "placing users on a fleet (reactor fleet start --count 3, HAProxy in "
        "front): offer -> 201 and -> first frame through the balancer vs straight to a "
        "daemon; sessions placed per second until all three are busy", bench_fleet.render)(
    lambda args: bench_fleet.run(args.quick))

section("metrics", "GET /metrics: the page's render time with 64 viewers, and the CPU a 1 s "
        "scrape costs the supervisor and ingress", bench_metrics.render_text)(
    lambda args: bench_metrics.run(args.quick))


# -- control ----------------------------------------------------------------------------

def _zmq_echo(address: str) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(address)
    while True:
        frames = sock.recv_multipart()
        sock.send_multipart(frames)
        if frames[-1] == b"stop":
            break
    sock.close()
    ctx.term()


class _ZmqEcho:
    """The floor under the control plane: a DEALER/ROUTER echo over ipc:// in another
    process (no protobuf, no supervisor logic). Measured interleaved with the daemon's
    requests, so that both see the same machine load."""

    def __enter__(self) -> _ZmqEcho:
        import tempfile

        import multiprocess
        import zmq

        self._tmp = tempfile.TemporaryDirectory()
        address = f"ipc://{self._tmp.name}/echo.sock"
        self._proc = multiprocess.get_context("spawn").Process(
            target=_zmq_echo, args=(address,), daemon=True)
        self._proc.start()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(address)
        return self

    def __call__(self, payload: bytes = b"x" * 64) -> None:
        self._sock.send_multipart([b"", payload])
        if not self._sock.poll(10_000):
            raise RuntimeError("the zmq echo process did not answer")
        self._sock.recv_multipart()

    def __exit__(self, *exc: object) -> None:
        try:
            self._sock.send_multipart([b"", b"stop"])
            self._sock.poll(2000)
        finally:
            self._sock.close()
            self._ctx.term()
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
            self._tmp.cleanup()


def _render_control(result: dict[str, Any]) -> str:
    lines = []
    for kind in ("zmq_echo", "status", "command", "command_applied"):
        r = result[kind]
        lines.append(f"  {kind + ' round trip p50 / p99':<34} {r['p50_us']!s:>8} / "
                     f"{r['p99_us']!s:<8} us  (max {r['max_us']} us, n={r['n']})")
    g = result["goal"]
    lines.append(f"goal {g['target']}: {bench_pipeline._met(g['met'])}")
    return "\n".join(lines)


@section("control", "control-plane round trips (ControlClient): status and model commands",
         _render_control)
def bench_control(args: argparse.Namespace) -> dict[str, Any]:
    """status: the supervisor answers. command: a command the inference worker's link
    thread answers at once (it fails validation, so it never waits for the model): both
    hops of the control plane. zmq_echo: a bare zmq round trip, the floor. The three take
    turns, so a noisy moment hits them alike. command_applied: a valid command, answered
    once the model's thread has run it between two frames (30 fps), sent at random phases.
    """
    import random

    from reactor.control.client import ControlClient
    from reactor.errors import CommandError

    n = 100 if args.quick else 1000
    result: dict[str, Any] = {}
    with (bench_common.daemon("reactor.examples.filters:SolidColor", 320, 240) as d,
          ControlClient.connect(d.run_dir) as client, _ZmqEcho() as echo):
        client.start_session()  # a model command needs a running session

        def rejected() -> None:
            try:
                client.command("set_color", {"r": 999})
            except CommandError:
                return
            raise AssertionError("set_color r=999 was accepted")

        calls: dict[str, Callable[[], object]] = {
            "zmq_echo": echo, "status": client.status, "command": rejected,
        }
        samples: dict[str, list[int]] = {kind: [] for kind in calls}
        for i in range(n + max(10, n // 10)):
            for kind, call in calls.items():
                t0 = time.perf_counter_ns()
                call()
                if i >= max(10, n // 10):  # the first ones warm sockets, caches, pydantic
                    samples[kind].append(time.perf_counter_ns() - t0)
        applied: list[int] = []
        for _ in range(max(20, n // 5)):
            time.sleep(random.uniform(0, 1 / 30))  # not in step with the model's frames
            t0 = time.perf_counter_ns()
            client.command("set_color", {"r": 1, "g": 2, "b": 3})
            applied.append(time.perf_counter_ns() - t0)
        samples["command_applied"] = applied
    for kind, values in samples.items():
        p50, p99, top = percentiles_us(values, 50, 99, 100)
        result[kind] = {"p50_us": p50, "p99_us": p99, "max_us": top, "n": len(values)}
    worst = max(result["status"]["p99_us"] or 0, result["command"]["p99_us"] or 0)
    result["goal"] = {"target": "p99 <= 1 ms (status, command)",
                      "met": None if args.quick else worst <= 1000}
    return result


# -- encode -------------------------------------------------------------------------------

def _moving_720p(n: int) -> list[np.ndarray]:
    """16-pixel blocks of random colour panning 3 pixels a frame: motion an encoder must
    search for, at about the cost of natural video (the test pattern is far cheaper)."""
    small = np.random.default_rng(2).integers(0, 255, (45, 80 + 3 * n // 16 + 1, 3),
                                              dtype=np.uint8)
    base = np.kron(small, np.ones((16, 16, 1), np.uint8))
    return [np.ascontiguousarray(base[:, 3 * i: 3 * i + 1280]) for i in range(n)]


def _encode_times(codec: str, frames: list[np.ndarray], busy: bool) -> dict[str, Any]:
    from reactor.media.encoder import Encoder

    enc = Encoder(codec, 1280, 720)  # type: ignore[arg-type]
    enc.encode(frames[0], 0)  # the first keyframe and allocations, outside the clock
    spinner = (subprocess.Popen([sys.executable, "-c", "while True: pass"])
               if busy else None)
    times: list[int] = []
    try:
        start = time.perf_counter()
        for i, rgb in enumerate(frames[1:], 1):
            t0 = time.perf_counter_ns()
            enc.encode(rgb, i * 3000)
            times.append(time.perf_counter_ns() - t0)
        elapsed = time.perf_counter() - start
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    p50, p99 = percentiles_us(times, 50, 99)
    return {"p50_ms": round((p50 or 0) / 1000, 2), "p99_ms": round((p99 or 0) / 1000, 2),
            "fps": round(len(times) / elapsed, 1)}


def _render_encode(result: dict[str, Any]) -> str:
    lines = []
    for key, r in result["runs"].items():
        lines.append(f"  {key:<34} p50 {r['p50_ms']:>6} ms  p99 {r['p99_ms']:>6} ms  "
                     f"{r['fps']:>6} fps")
    for g in result["goals"]:
        lines.append(f"goal {g['target']}: {bench_pipeline._met(g['met'])} ({g['figure']})")
    return "\n".join(lines)


@section("encode", "720p encode per frame (libx264, VP8) on moving video, alone and beside "
         "a busy core", _render_encode)
def bench_encode(args: argparse.Namespace) -> dict[str, Any]:
    frames = _moving_720p(61 if args.quick else 301)
    runs = {f"{codec} {'busy core' if busy else 'alone'}": _encode_times(codec, frames, busy)
            for codec in ("h264", "vp8") for busy in (False, True)}
    x264 = runs["h264 alone"]["p99_ms"]
    vp8 = runs["vp8 busy core"]["fps"]
    goals = [
        {"target": "libx264 720p p99 <= 8 ms", "figure": f"{x264} ms",
         "met": None if args.quick else x264 <= 8},
        {"target": "VP8 720p >= 30 fps beside a busy core", "figure": f"{vp8} fps",
         "met": None if args.quick else vp8 >= 30},
    ]
    return {"runs": runs, "goals": goals}


# -- gpu ----------------------------------------------------------------------------------

def _render_gpu(result: dict[str, Any]) -> str:
    if not result["available"]:
        return f"  skipped: {result['reason']}"
    return "\n".join(f"  {k:<34} {v}" for k, v in result.items() if k != "available")


@section("gpu", "CudaRing handoff, GPU colour conversion, NVENC vs libx264 1080p (CUDA only)",
         _render_gpu)
def bench_gpu(args: argparse.Namespace) -> dict[str, Any]:
    import bench_gpu

    return bench_gpu.run(args.quick)


# -- all --------------------------------------------------------------------------------

ALL = ("ring", "pipeline", "e2e", "browser", "viewers", "encode", "control", "record",
       "metrics", "network", "fleet", "gpu")


def run_all(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Every section in ``ALL`` in one run; a failed section is reported, not fatal."""
    results: dict[str, Any] = {"machine": bench_common.machine(), "quick": args.quick}
    failed: list[str] = []
    started = time.monotonic()
    for name in ALL:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            results[name] = SECTIONS[name].run(args)
        except Exception as exc:
            failed.append(name)
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"bench: {name} failed: {exc}", file=sys.stderr, flush=True)
        results.setdefault("seconds", {})[name] = round(time.monotonic() - t0, 1)
    results["seconds"]["total"] = round(time.monotonic() - started, 1)
    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return results, failed


def render_all(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [f"machine: {m['nproc']} x {m['cpu_model']}, load {m['loadavg']} -> "
           f"{m.get('loadavg_end')}, Python {m['python']}"
           + (" (--quick: smoke sizes, goals not judged)" if results["quick"] else "")]
    for name in ALL:
        res = results[name]
        out.append(f"\n== {name} ({results['seconds'][name]} s)")
        out.append(f"  FAILED: {res['error']}" if "error" in res else SECTIONS[name].render(res))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/bench.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="section", required=True, metavar="SECTION")
    for sec in SECTIONS.values():
        p = sub.add_parser(sec.name, help=sec.help, description=sec.help)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
        if sec.add_arguments is not None:
            sec.add_arguments(p)
    p = sub.add_parser("all", help=f"every section but soak ({', '.join(ALL)})")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true", help="a smoke run (under a minute)")
    p.add_argument("--output", default="bench-results.json",
                   help="where to write the results (default: %(default)s; '' for nowhere)")
    args = parser.parse_args(argv)
    if args.section == "all":
        results, failed = run_all(args)
        if args.output:
            with open(args.output, "w") as f:
                json.dump(results, f, indent=1, sort_keys=True)
                f.write("\n")
        print(json.dumps(results, sort_keys=True) if args.json else render_all(results))
        if failed:
            print(f"bench: failed sections: {', '.join(failed)}", file=sys.stderr)
        return 1 if failed else 0
    sec = SECTIONS[args.section]
    result = sec.run(args)
    print(json.dumps(result, sort_keys=True) if args.json else sec.render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
