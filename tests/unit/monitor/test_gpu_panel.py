"""The monitor's GPU panel, rendered into a fixed-width, colourless console."""

from __future__ import annotations

import io

from rich.console import Console, RenderableType

from reactor.daemon.gpu_telemetry import NO_NVML, DeviceSample, GpuSample, fill_gpu
from reactor.media.gpu import GpuCaps, GpuDevice, GpuPlan, plan_gpu
from reactor.monitor.gpu_panel import gpu_panels
from reactor.monitor.render import plain_text
from reactor.proto import worker_pb2 as wpb
from reactor.proto.telemetry_pb2 import Snapshot
from tests.unit.monitor.conftest import build_snapshot

PLAN = plan_gpu("cuda", GpuCaps((GpuDevice(0, "NVIDIA H200", nvenc=False),), torch=True,
                                ffmpeg_nvenc=True))


def text_of(renderables: list[RenderableType], width: int = 80) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    with console.capture() as capture:
        for r in renderables:
            console.print(r)
    return "\n".join(line.rstrip() for line in capture.get().splitlines())


def _snap(plan: GpuPlan, sample: GpuSample, encoder: str = "", fallback: str = "") -> Snapshot:
    snap = build_snapshot()
    fill_gpu(snap.gpu_stat, plan, sample,
             wpb.WorkerStats(encoder=encoder, encoder_fallback=fallback))
    return snap


def test_gpu_panel_shows_the_path_the_encoder_and_each_device() -> None:
    sample = GpuSample((DeviceSample(0, "NVIDIA H200", 0.42, 3 * 1024**3, 141 * 1024**3, 0,
                                     0.0),))
    text = text_of(gpu_panels(_snap(PLAN, sample, "libx264")))
    assert text == (
        "cuda:0 NVIDIA H200  frames on the GPU  H.264 libx264 (planned libx264-gpu-yuv)\n"
        "gpu0 util ████······  42%  mem ·········· 3.0/141 GiB  nvenc 0  NVIDIA H200"
    )


def test_gpu_panel_says_why_there_is_no_telemetry_and_why_nvenc_fell_back() -> None:
    plan = plan_gpu("cuda", GpuCaps((GpuDevice(0, "NVIDIA L4", nvenc=True),), torch=True,
                                    ffmpeg_nvenc=True))
    text = text_of(gpu_panels(_snap(plan, GpuSample(reason=NO_NVML), "libx264",
                                    "the NVENC session limit is reached")), width=100)
    assert text.splitlines() == [
        "cuda:0 NVIDIA L4  frames on the GPU  H.264 libx264 (planned h264_nvenc)",
        "fallback: the NVENC session limit is reached",
        f"no telemetry: {NO_NVML}",
    ]


def test_a_cpu_daemon_without_gpus_has_no_gpu_panel_in_the_dashboard() -> None:
    snap = _snap(GpuPlan("auto"), GpuSample(reason=NO_NVML))
    assert gpu_panels(snap) == [] and gpu_panels(build_snapshot()) == []
    assert "frames on the GPU" not in plain_text(snap)
    assert "cuda:0 NVIDIA H200  frames on the GPU" in plain_text(_snap(PLAN, GpuSample(
        reason=NO_NVML)))
