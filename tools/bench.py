#!/usr/bin/env python3
"""reactor's benchmarks, one subcommand per section.

    python tools/bench.py ring [--json] [--quick]

Each section registers itself with :func:`section`; it receives the parsed arguments and
returns a JSON-able dict, which ``--json`` prints as one object and otherwise its ``render``
turns into text. ``--quick`` is a seconds-long smoke run of the same code. Sections to come:
``pipeline``, ``e2e``, ``viewers``, ``control``.

Child processes are started with the ``multiprocess`` package's spawn context, as the
daemon starts its workers. Timestamps are ``time.perf_counter_ns()``, which on Linux is
CLOCK_MONOTONIC and therefore comparable across processes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def percentiles_us(samples_ns: list[int], *qs: float) -> list[float | None]:
    """Percentiles in microseconds; ``None`` when a phase collected no samples."""
    if not samples_ns:
        return [None for _ in qs]
    arr = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    return [round(float(np.percentile(arr, q)), 1) for q in qs]


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return None if a is None or not b else round(a / b, digits)


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
        while ring.stats()["written"] == 0:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/bench.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="section", required=True, metavar="SECTION")
    for sec in SECTIONS.values():
        p = sub.add_parser(sec.name, help=sec.help, description=sec.help)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
        if sec.add_arguments is not None:
            sec.add_arguments(p)
    args = parser.parse_args(argv)
    sec = SECTIONS[args.section]
    result = sec.run(args)
    print(json.dumps(result, sort_keys=True) if args.json else sec.render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
