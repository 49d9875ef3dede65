"""GPU telemetry: NVML figures and the GPU path in status and /metrics, from passed-in
samples (reactor.daemon.gpu_telemetry), and the output ring the plan asks for."""

from __future__ import annotations

import os
from typing import Any

import pytest

from reactor.config import Config
from reactor.control.status import snapshot_to_dict
from reactor.daemon.gpu_telemetry import (
    NO_DRIVER,
    NO_NVML,
    DeviceSample,
    GpuSample,
    NvmlSampler,
    fill_gpu,
)
from reactor.daemon.metrics import MetricsState
from reactor.daemon.rings import create_rings, remove_rings
from reactor.ipc import CudaRing, ShmRing
from reactor.media.gpu import GpuCaps, GpuDevice, GpuPlan, driver_present, plan_gpu
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb
from tests.support.fakes import FakeClock
from tests.unit.daemon.test_metrics import families, scrape_text, snapshot, value

H200 = GpuDevice(0, "NVIDIA H200", nvenc=False)
PLAN = plan_gpu("cuda", GpuCaps((H200,), torch=True, ffmpeg_nvenc=True))
SAMPLE = GpuSample((
    DeviceSample(0, "NVIDIA H200", 0.42, 3 * 2**30, 141 * 2**30, 0, 0.0),
    DeviceSample(1, "NVIDIA L4", 0.05, 2**30, 24 * 2**30, 2, 0.3),
))


def _gpu_snapshot(plan: GpuPlan, sample: GpuSample,
                  back: wpb.WorkerStats | None = None) -> tpb.Snapshot:
    snap = snapshot()
    fill_gpu(snap.gpu_stat, plan, sample, back)
    return snap


def test_a_file_run_on_the_gpu_path_shows_its_shared_memory_output_ring() -> None:
    snap = snapshot()
    fill_gpu(snap.gpu_stat, PLAN, SAMPLE, ring="shm")  # what the supervisor made
    gpu = snapshot_to_dict(snap)["gpu"]
    assert gpu["ring"] == "shm" and gpu["index"] == 0 and gpu["device"] == "cuda"


def test_status_shows_the_gpu_path_the_encoder_in_use_and_each_device() -> None:
    back = wpb.WorkerStats(encoder="libx264")
    gpu = snapshot_to_dict(_gpu_snapshot(PLAN, SAMPLE, back))["gpu"]
    assert gpu == {
        "available": True, "reason": None, "device": "cuda", "ring": "cuda", "index": 0,
        "device_name": "NVIDIA H200", "encoder_plan": "libx264-gpu-yuv",
        "encoder": "libx264", "encoder_fallback": None, "plan": PLAN.reason,
        "devices": [
            {"index": 0, "name": "NVIDIA H200", "utilization_ratio": 0.42,
             "memory_used_bytes": 3 * 2**30, "memory_total_bytes": 141 * 2**30,
             "encoder_sessions": 0, "encoder_utilization_ratio": 0.0},
            {"index": 1, "name": "NVIDIA L4", "utilization_ratio": 0.05,
             "memory_used_bytes": 2**30, "memory_total_bytes": 24 * 2**30,
             "encoder_sessions": 2, "encoder_utilization_ratio": 0.3},
        ],
    }


def test_without_nvml_status_says_unavailable_and_why_and_keeps_the_plan() -> None:
    back = wpb.WorkerStats(encoder="libx264",
                           encoder_fallback="the NVENC session limit is reached (x)")
    gpu = snapshot_to_dict(_gpu_snapshot(GpuPlan("cpu"), GpuSample(reason=NO_NVML), back))["gpu"]
    assert (gpu["available"], gpu["reason"], gpu["devices"]) == (False, NO_NVML, [])
    assert (gpu["ring"], gpu["index"], gpu["encoder"]) == ("shm", None, "libx264")
    assert gpu["encoder_fallback"] == "the NVENC session limit is reached (x)"
    assert snapshot_to_dict(snapshot())["gpu"] is None  # a snapshot nobody filled


def test_metrics_have_per_device_gpu_series_and_the_path() -> None:
    text = scrape_text(MetricsState(), _gpu_snapshot(PLAN, SAMPLE, wpb.WorkerStats(
        encoder="libx264")))
    fams = families(text)
    for name in ("reactor_gpu_utilization_ratio", "reactor_gpu_memory_used_bytes",
                 "reactor_gpu_memory_total_bytes", "reactor_gpu_encoder_sessions",
                 "reactor_gpu_encoder_utilization_ratio"):
        assert fams[name].type == "gauge", name
        assert {s.labels["gpu"] for s in fams[name].samples} == {"0", "1"}, name
    assert value(text, "reactor_gpu_utilization_ratio", gpu="0", gpu_name="NVIDIA H200") == 0.42
    assert value(text, "reactor_gpu_memory_used_bytes", gpu="1") == 2**30
    assert value(text, "reactor_gpu_encoder_sessions", gpu="1") == 2
    assert value(text, "reactor_gpu_telemetry_up") == 1
    assert value(text, "reactor_gpu_path_info", ring="cuda", index="0",
                 encoder_plan="libx264-gpu-yuv", encoder="libx264") == 1


def test_metrics_without_nvml_have_the_path_and_no_device_series() -> None:
    text = scrape_text(MetricsState(), _gpu_snapshot(GpuPlan("cpu"), GpuSample(reason=NO_NVML)))
    fams = families(text)
    assert value(text, "reactor_gpu_telemetry_up") == 0
    assert value(text, "reactor_gpu_path_info", ring="shm", index="") == 1
    assert "reactor_gpu_utilization_ratio" not in fams


class _NvmlError(Exception):
    pass


class _Nvml:
    """NVML's API as pynvml spells it, answering for one device."""

    NVMLError = _NvmlError

    def __init__(self, fail_init: bool = False) -> None:
        self.fail_init = fail_init
        self.reads = 0
        self.shutdown = False

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise _NvmlError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.shutdown = True

    def nvmlDeviceGetCount(self) -> int:
        self.reads += 1
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return f"handle{i}"

    def nvmlDeviceGetName(self, h: str) -> bytes:
        return b"NVIDIA H200"

    def nvmlDeviceGetMemoryInfo(self, h: str) -> Any:
        return type("Mem", (), {"used": 5, "total": 10})()

    def nvmlDeviceGetUtilizationRates(self, h: str) -> Any:
        return type("Util", (), {"gpu": 75})()

    def nvmlDeviceGetEncoderSessions(self, h: str) -> list[Any]:
        raise _NvmlError("Not Supported")  # a GPU without NVENC

    def nvmlDeviceGetEncoderUtilization(self, h: str) -> list[int]:
        raise _NvmlError("Not Supported")


def test_sampler_reads_nvml_at_most_once_a_second_and_unsupported_figures_read_0() -> None:
    nvml, clock = _Nvml(), FakeClock()
    sampler = NvmlSampler(nvml, interval_s=1.0, clock=clock)
    first = sampler.sample()
    assert first == GpuSample((DeviceSample(0, "NVIDIA H200", 0.75, 5, 10, 0, 0.0),))
    clock.advance(0.5)
    assert sampler.sample() is first and nvml.reads == 1
    clock.advance(0.6)
    sampler.sample()
    assert nvml.reads == 2
    sampler.close()
    assert nvml.shutdown


def test_sampler_says_why_when_nvml_does_not_start() -> None:
    sample = NvmlSampler(_Nvml(fail_init=True), clock=FakeClock()).sample()
    assert (sample.available, sample.reason) == (False, "NVML did not start: Driver Not Loaded")


def test_the_output_ring_is_a_cuda_ring_when_the_plan_says_so_without_touching_cuda(
) -> None:
    config = Config()
    rings = create_rings(config, "latest", PLAN)
    try:
        assert isinstance(rings["output"], CudaRing) and isinstance(rings["input"], ShmRing)
        assert rings["output"].handle.device == 0
        assert rings["output"].shape == config.frame_shape()
        assert rings["output"].name == f"reactor-{os.getpid()}-output"
    finally:
        remove_rings(rings)
    rings = create_rings(config, "latest", GpuPlan("cpu"))
    try:
        assert isinstance(rings["output"], ShmRing)
    finally:
        remove_rings(rings)
    assert not ShmRing.unlink_name(f"reactor-{os.getpid()}-output")


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_detected_caps_never_make_cpu_or_auto_fail(device: str) -> None:
    from reactor.media.gpu import detect

    plan = plan_gpu(device, detect())
    assert plan.device == device and plan.reason


@pytest.mark.skipif(driver_present(), reason="this machine has an NVIDIA driver")
def test_a_machine_without_a_driver_says_so_rather_than_asking_for_nvml() -> None:
    sample = NvmlSampler().sample()
    assert not sample.available
    assert sample.reason == NO_DRIVER
