"""``tools/bench.py gpu``: the GPU path's figures at 1080p, against the issue's goals.

* ``cuda_ring``: the CudaRing hand-off across processes (a device-to-device write in a
  spawned producer, the read in this one): latency from publish to read, p50/p99, and the
  CUDA IPC handles the reader opened in steady state (goal: p99 <= 50 us, 0 opens).
* ``rgb_to_i420``: the colour conversion on the device, p50/p99 (goal: <= 0.5 ms), and
  with the planes' copy to pinned host memory (what egress does per frame).
* ``encode``: NVENC and libx264 at 1080p from the GPU path's I420 pictures, fps
  (goal: NVENC >= 120 fps where the GPU has it; Hopper has none).
* ``model``: a torch model rendering 1080p on the device at 30 fps, its frames through
  ``Session.emit()`` into a CudaRing that a spawned egress-like consumer (PlanesReader and
  the planned H.264 encoder) drains: end-to-end fps, and the share of each frame interval
  spent in ``emit()`` (goal: <= 1 %).

Runs only where CUDA is present (torch with a CUDA device); elsewhere it returns
``{"available": false, "reason": ...}`` and the table says it was skipped. Nothing here
has been measured on a GPU yet: see docs/performance.md.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from bench_common import percentiles_us

W, H = 1920, 1080
GOALS = {"cuda_ring_p99_us": 50.0, "rgb_to_i420_p50_us": 500.0, "nvenc_fps": 120.0,
         "emit_share_percent": 1.0}


def cuda_reason() -> str:
    """Why the GPU bench cannot run here ("" when it can)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed (pip install 'reactor-live[torch]')"
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return ""


def _picture(i: int) -> np.ndarray:
    """A moving gradient: encoders see real motion, not noise."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([(x + 4 * i) % 256, (y + 2 * i) % 256, ((x + y) // 4) % 256],
                    -1).astype(np.uint8)


def _produce(ring: Any, count: int) -> None:
    """Spawned: write ``count`` 1080p device frames (device-to-device copies)."""
    import torch

    src = torch.randint(0, 256, (H, W, 3), dtype=torch.uint8, device="cuda")
    for _ in range(count):
        ring.write(src, timeout=10)
        time.sleep(0.002)  # a consumer that keeps up: latency, not queueing
    torch.cuda.synchronize()
    time.sleep(0.5)
    ring.close()


def bench_cuda_ring(n: int) -> dict[str, Any]:
    import multiprocess

    from reactor.ipc import RingClosedError
    from reactor.ipc.cuda_ring import CudaRing

    name = f"reactor-bench-gpu-{time.monotonic_ns()}"
    ring = CudaRing.create(name, slots=4, shape=(H, W, 3), policy="block")
    try:
        reader = ring.reader()
        proc = multiprocess.get_context("spawn").Process(target=_produce, args=(ring, n))
        proc.start()
        lat, opens_after_warmup = [], None
        while True:
            try:
                frame = reader.read(timeout=30)
            except RingClosedError:
                break
            if frame is None:
                break
            lat.append(time.perf_counter_ns() - frame.enqueue_ts)
            frame.release()
            if len(lat) == 10:
                opens_after_warmup = reader.handle_opens
        proc.join(30)
        steady = lat[10:]
        p50, p99 = percentiles_us(steady, 50, 99)
        opens = (reader.handle_opens - opens_after_warmup
                 if opens_after_warmup is not None else None)
        reader.close()
        return {"frames": len(lat), "handoff_p50_us": p50, "handoff_p99_us": p99,
                "handle_opens_total": reader.handle_opens, "handle_opens_steady": opens}
    finally:
        ring.close()
        ring.unlink()


def bench_convert(n: int) -> dict[str, Any]:
    import torch

    from reactor.media.gpu_colour import HostPlanes, rgb_to_i420

    rgb = torch.from_numpy(_picture(0)).cuda()
    planes = HostPlanes(W, H)
    convert, with_copy = [], []
    for _ in range(n):
        torch.cuda.synchronize()
        t0 = time.perf_counter_ns()
        rgb_to_i420(rgb)
        torch.cuda.synchronize()
        t1 = time.perf_counter_ns()
        planes.frame(rgb, 0)
        t2 = time.perf_counter_ns()
        convert.append(t1 - t0)
        with_copy.append(t2 - t1)
    warm = n // 5
    c50, c99 = percentiles_us(convert[warm:], 50, 99)
    h50, h99 = percentiles_us(with_copy[warm:], 50, 99)
    return {"rgb_to_i420_p50_us": c50, "rgb_to_i420_p99_us": c99,
            "with_copy_to_pinned_p50_us": h50, "with_copy_to_pinned_p99_us": h99}


def bench_encode(n: int) -> dict[str, Any]:
    import torch

    from reactor.media.encoder import Encoder
    from reactor.media.gpu_colour import HostPlanes

    planes = HostPlanes(W, H)
    pics = [torch.from_numpy(_picture(i)).cuda() for i in range(8)]
    out: dict[str, Any] = {}
    for hardware in (True, False):
        enc = Encoder("h264", W, H, fps=30, bitrate_kbps=8000, hardware=hardware)
        if hardware and enc.name != "h264_nvenc":
            out["nvenc"] = f"unavailable: {enc.fallback}"
            enc.close()
            continue
        frames = [planes.frame(p, None) for p in pics[:1]]  # warm up the encoder
        enc.encode(frames[0], 0)
        t0 = time.perf_counter()
        for i in range(n):
            enc.encode(planes.frame(pics[i % len(pics)], None), (i + 1) * 3000)
        fps = round(n / (time.perf_counter() - t0), 1)
        out[f"{enc.name}_fps"] = fps
        enc.close()
    return out


def _drain(ring: Any, encoder: str, stop_after_s: float, conn: Any) -> None:
    """Spawned: egress's reading and encoding of the output ring, counting frames."""
    from reactor.ipc import RingClosedError
    from reactor.media.encoder import Encoder
    from reactor.workers.gpu_reader import PlanesReader

    reader = PlanesReader(ring)
    enc = Encoder("h264", W, H, fps=30, bitrate_kbps=8000, hardware=encoder == "h264_nvenc")
    frames, t_end = 0, time.monotonic() + stop_after_s
    while time.monotonic() < t_end:
        try:
            frame = reader.read(0.5)
        except RingClosedError:
            break
        if frame is None:
            continue
        enc.encode(frame.array, (frames + 1) * 3000)
        frame.release()
        frames += 1
    conn.send({"frames": frames, "encoder": enc.name, "handle_opens": reader.handle_opens})
    reader.close()


def bench_model(seconds: float) -> dict[str, Any]:
    import multiprocess
    import torch

    from reactor.ipc.cuda_ring import CudaRing
    from reactor.media.gpu import detect, plan_gpu
    from reactor.model import PendingCommand, Session, VideoModel

    plan = plan_gpu("cuda", detect())
    name = f"reactor-bench-gpu-model-{time.monotonic_ns()}"
    ring = CudaRing.create(name, slots=8, shape=(H, W, 3), policy="block", device=plan.index)
    ctx = multiprocess.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_drain, args=(ring, plan.encoder, seconds + 15, child))
    proc.start()
    emit_ns: list[int] = []
    deadline = time.monotonic() + 15 + seconds

    class RingOut:
        """RingIO's output side (a CudaRing write per frame), without a worker."""

        start_ns = time.perf_counter_ns()
        realtime = True
        device_output = True

        def read_input(self, timeout: float) -> None:
            return None

        def input_pts(self) -> None:
            return None

        def write_output(self, frames: Any) -> int:
            for f in frames:
                ring.write(f, timeout=5)
            return time.perf_counter_ns()

        def clock_ns(self) -> int:
            return time.perf_counter_ns()

        def write_audio(self, pcm: Any, pts_ns: int) -> None:
            pass

        def read_audio(self, timeout: float) -> None:
            return None

        def poll_commands(self) -> list[PendingCommand]:
            return []

        def stopping(self) -> bool:
            return time.monotonic() > deadline

        def send(self, message: Any) -> None:
            pass

    class Render(VideoModel):
        """1080p30 on the device: a colour mix and a blur of a moving pattern."""

        def start_session(self, session: Session) -> None:
            dev = torch.device("cuda", plan.index or 0)
            base = torch.rand((3, H, W), device=dev)
            kernel = torch.full((3, 1, 3, 3), 1.0 / 9.0, device=dev)
            period = 1 / 30
            next_at = time.monotonic()
            i = 0
            with torch.inference_mode():
                while not session.should_stop():
                    y = torch.roll(base, shifts=i, dims=2)
                    y = torch.nn.functional.conv2d(y[None], kernel, padding=1, groups=3)[0]
                    t0 = time.perf_counter_ns()
                    session.emit(y)
                    emit_ns.append(time.perf_counter_ns() - t0)
                    i += 1
                    next_at += period
                    time.sleep(max(0.0, next_at - time.monotonic()))

    try:
        # The consumer's CUDA start takes seconds: wait for it before timing.
        time.sleep(10)
        deadline = time.monotonic() + seconds
        t0 = time.monotonic()
        model = Render()
        model.start_session(Session(model, RingOut(), id="bench", width=W, height=H, fps=30))
        elapsed = time.monotonic() - t0
        ring.close()
        got = parent.recv() if parent.poll(30) else {}
        proc.join(10)
    finally:
        if proc.is_alive():
            proc.kill()
        ring.unlink()
    p50, p99 = percentiles_us(emit_ns[30:], 50, 99)
    mean_ms = float(np.mean(emit_ns[30:])) / 1e6 if len(emit_ns) > 30 else None
    return {"model_fps": round(len(emit_ns) / elapsed, 1),
            "consumer_frames": got.get("frames"), "encoder": got.get("encoder"),
            "emit_p50_us": p50, "emit_p99_us": p99,
            "emit_share_percent": None if mean_ms is None else round(mean_ms / (1000 / 30) * 100,
                                                                       3),
            "consumer_handle_opens": got.get("handle_opens")}


def goals(out: dict[str, Any]) -> dict[str, bool | None]:
    """Each goal met (True), missed (False) or not measured here (None)."""
    ring, conv, enc, model = (out.get(k, {}) for k in ("cuda_ring", "convert", "encode",
                                                       "model"))

    def at_most(v: Any, limit: float) -> bool | None:
        return None if v is None else bool(v <= limit)

    nvenc = enc.get("h264_nvenc_fps")
    return {
        "cuda_ring_p99_le_50us": at_most(ring.get("handoff_p99_us"), GOALS["cuda_ring_p99_us"]),
        "zero_handle_opens_steady": (None if ring.get("handle_opens_steady") is None
                                     else ring["handle_opens_steady"] == 0),
        "rgb_to_i420_le_0_5ms": at_most(conv.get("rgb_to_i420_p50_us"),
                                        GOALS["rgb_to_i420_p50_us"]),
        "nvenc_ge_120fps": None if nvenc is None else bool(nvenc >= GOALS["nvenc_fps"]),
        "emit_share_le_1pct": at_most(model.get("emit_share_percent"),
                                      GOALS["emit_share_percent"]),
    }


def run(quick: bool) -> dict[str, Any]:
    reason = cuda_reason()
    if reason:
        return {"available": False, "reason": reason}
    import torch

    n = 30 if quick else 300
    out: dict[str, Any] = {"available": True, "device": torch.cuda.get_device_name(0)}
    for key, part in (("cuda_ring", lambda: bench_cuda_ring(n)),
                      ("convert", lambda: bench_convert(n)),
                      ("encode", lambda: bench_encode(n)),
                      ("model", lambda: bench_model(5.0 if quick else 20.0))):
        try:
            out[key] = part()
        except Exception as exc:  # one part failing must not hide the others' figures
            out[key] = {"error": f"{type(exc).__name__}: {exc}"}
    out["goals"] = goals(out)
    return out
