"""``tools/bench.py gpu``: CudaRing handoff, GPU colour conversion, NVENC vs libx264.

Runs only where CUDA is present (torch with a CUDA device); elsewhere it returns
``{"available": false, "reason": ...}`` and the table says it was skipped.
"""

from __future__ import annotations

import time
from typing import Any

from bench_common import percentiles_us, ratio


def _cuda() -> tuple[Any, str]:
    try:
        import torch
    except ImportError:
        return None, "torch is not installed (pip install 'reactor[torch]')"
    if not torch.cuda.is_available():
        return None, "no CUDA device (torch.cuda.is_available() is False)"
    return torch, ""


def _encode_ms(hardware: bool, n: int) -> tuple[str, float | None]:
    import numpy as np

    from reactor.media.encoder import Encoder

    enc = Encoder("h264", 1920, 1080, hardware=hardware)
    rgb = np.random.default_rng(3).integers(0, 256, (1080, 1920, 3), np.uint8)
    samples = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        enc.encode(rgb, i * 3000)
        samples.append(time.perf_counter_ns() - t0)
    enc.close()
    p50 = percentiles_us(samples[n // 5:], 50)[0]
    return enc.name, None if p50 is None else round(p50 / 1000, 2)


def run(quick: bool) -> dict[str, Any]:
    torch, reason = _cuda()
    if torch is None:
        return {"available": False, "reason": reason}
    n = 20 if quick else 200
    out: dict[str, Any] = {"available": True, "device": torch.cuda.get_device_name(0)}
    # Colour conversion on the device: RGB uint8 HWC -> planar YUV (BT.601), as egress would.
    rgb = torch.randint(0, 256, (1080, 1920, 3), dtype=torch.uint8, device="cuda")
    m = torch.tensor([[0.257, 0.504, 0.098], [-0.148, -0.291, 0.439], [0.439, -0.368, -0.071]],
                     device="cuda")
    samples = []
    for _ in range(n):
        torch.cuda.synchronize()
        t0 = time.perf_counter_ns()
        yuv = (rgb.float() @ m.T + torch.tensor([16.0, 128.0, 128.0], device="cuda"))
        yuv.clamp_(0, 255).to(torch.uint8)
        torch.cuda.synchronize()
        samples.append(time.perf_counter_ns() - t0)
    out["gpu_rgb_to_yuv_1080p_us"] = percentiles_us(samples[n // 5:], 50)[0]
    # CudaRing handoff in one process (write, read, release): the CUDA IPC path's CPU cost.
    from reactor.ipc.cuda_ring import CudaRing

    name = f"reactor-bench-gpu-{time.monotonic_ns()}"
    with CudaRing.create(name, slots=4, shape=(1080, 1920, 3), policy="latest") as ring:
        reader = ring.reader()
        samples = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            ring.write(rgb)
            frame = reader.read(timeout=5)
            assert frame is not None
            frame.release()
            samples.append(time.perf_counter_ns() - t0)
        reader.close()
    out["cuda_ring_handoff_1080p_us"] = percentiles_us(samples[n // 5:], 50)[0]
    nv_name, nv_ms = _encode_ms(True, n)
    x_name, x_ms = _encode_ms(False, n)
    out["encode_1080p_ms"] = {nv_name: nv_ms, x_name: x_ms}
    out["nvenc_vs_x264"] = ratio(nv_ms, x_ms) if nv_name == "h264_nvenc" else None
    return out
