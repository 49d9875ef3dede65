"""Choosing the GPU path (reactor.media.gpu): the machine's capabilities are passed in."""

from __future__ import annotations

import pytest

from reactor.errors import ConfigError, EncoderError
from reactor.media.encoder import Encoder
from reactor.media.gpu import (
    GpuCaps,
    GpuDevice,
    GpuPlan,
    driver_present,
    has_nvenc_engine,
    nvenc_failure,
    open_h264,
    plan_gpu,
)

RTX = GpuDevice(0, "NVIDIA GeForce RTX 4090", nvenc=True)
H200 = GpuDevice(1, "NVIDIA H200", nvenc=False)
TWO = GpuCaps((RTX, H200), torch=True, ffmpeg_nvenc=True)
NONE = GpuCaps((), torch=True, ffmpeg_nvenc=True, why_none="no NVIDIA driver")


def test_cpu_keeps_shared_memory_and_libx264_even_with_a_gpu() -> None:
    plan = plan_gpu("cpu", TWO)
    assert (plan.ring, plan.index, plan.encoder, plan.on_gpu) == ("shm", None, "libx264", False)


def test_auto_with_a_gpu_puts_the_output_ring_on_device_0_with_nvenc() -> None:
    plan = plan_gpu("auto", TWO)
    assert (plan.ring, plan.index, plan.encoder) == ("cuda", 0, "h264_nvenc")
    assert plan.device_name == "NVIDIA GeForce RTX 4090"
    assert "cuda:0" in plan.reason and "NVENC" in plan.reason


def test_auto_without_a_gpu_or_without_torch_is_the_cpu_path_and_says_why() -> None:
    plan = plan_gpu("auto", NONE)
    assert (plan.ring, plan.encoder) == ("shm", "libx264")
    assert plan.reason == "device: auto and no CUDA device (no NVIDIA driver): the CPU path"
    no_torch = plan_gpu("auto", GpuCaps((RTX,), torch=False))
    assert no_torch.ring == "shm" and "torch is not installed" in no_torch.reason


def test_cuda_n_pins_device_n_and_a_gpu_without_nvenc_encodes_with_libx264() -> None:
    plan = plan_gpu("cuda:1", TWO)
    assert (plan.ring, plan.index, plan.encoder) == ("cuda", 1, "libx264-gpu-yuv")
    assert "the NVIDIA H200 has no NVENC" in plan.reason


def test_an_ffmpeg_without_nvenc_encodes_with_libx264_from_gpu_planes() -> None:
    plan = plan_gpu("cuda", GpuCaps((RTX,), torch=True, ffmpeg_nvenc=False))
    assert (plan.index, plan.encoder) == (0, "libx264-gpu-yuv")
    assert "this FFmpeg has no h264_nvenc" in plan.reason


def test_cuda_n_past_the_last_device_names_device_and_what_exists() -> None:
    with pytest.raises(ConfigError) as err:
        plan_gpu("cuda:2", TWO)
    text = str(err.value)
    assert text.startswith("device: cuda:2 asks for CUDA device 2, and this machine has 2:")
    assert "cuda:0 NVIDIA GeForce RTX 4090, cuda:1 NVIDIA H200" in text


def test_cuda_without_a_gpu_or_torch_is_a_config_error_not_a_cpu_fallback() -> None:
    with pytest.raises(ConfigError, match=r"device: cuda asks for a GPU, and this machine "
                       r"has no CUDA device \(no NVIDIA driver\)"):
        plan_gpu("cuda", NONE)
    with pytest.raises(ConfigError, match=r"device: cuda:0 needs torch with CUDA"):
        plan_gpu("cuda:0", GpuCaps((RTX,), torch=False))


def test_gpu_names_without_an_nvenc_engine() -> None:
    for name in ("NVIDIA H100 80GB HBM3", "NVIDIA H200", "NVIDIA A100-SXM4-40GB", "NVIDIA A30"):
        assert not has_nvenc_engine(name), name
    for name in ("NVIDIA GeForce RTX 4090", "NVIDIA L4", "Tesla T4", "NVIDIA L40S"):
        assert has_nvenc_engine(name), name


def test_nvenc_failures_are_told_apart() -> None:
    assert nvenc_failure("OpenEncodeSessionEx failed: out of memory (10)").startswith(
        "the NVENC session limit is reached")
    assert nvenc_failure("OpenEncodeSessionEx failed: incompatible client key (21)").startswith(
        "the NVENC session limit is reached")
    assert nvenc_failure("Cannot load libcuda.so.1").startswith("NVENC did not open")


def test_open_h264_falls_back_to_libx264_when_the_session_limit_is_reached() -> None:
    tried: list[str] = []

    def open_encoder(name: str) -> str:
        tried.append(name)
        if name == "h264_nvenc":
            raise EncoderError("OpenEncodeSessionEx failed: out of memory (10)")
        return f"context {name}"

    assert open_h264("h264_nvenc", open_encoder) == (
        "context libx264", "libx264",
        "the NVENC session limit is reached (OpenEncodeSessionEx failed: out of memory (10))")
    assert tried == ["h264_nvenc", "libx264"]
    tried.clear()
    assert open_h264("libx264-gpu-yuv", open_encoder) == ("context libx264", "libx264", "")
    assert tried == ["libx264"]


def test_open_h264_names_both_failures_when_libx264_does_not_open_either() -> None:
    def open_encoder(name: str) -> str:
        raise ValueError(f"{name} is broken")

    with pytest.raises(EncoderError, match=r"libx264: libx264 is broken; NVENC did not open "
                       r"\(h264_nvenc is broken\)"):
        open_h264("h264_nvenc", open_encoder)


def test_an_encoder_asked_for_nvenc_on_a_machine_without_one_runs_libx264_and_says_why(
) -> None:
    # Real FFmpeg: its NVENC fails to open without an NVIDIA driver; libx264 takes over.
    if driver_present():
        pytest.skip("this machine has an NVIDIA driver")
    enc = Encoder("h264", 320, 240, hardware=True)
    assert enc.name == "libx264"
    assert enc.fallback.startswith("NVENC did not open (")
    assert Encoder("h264", 320, 240).fallback == ""


def test_the_plan_is_picklable_for_the_workers() -> None:
    import pickle

    plan = plan_gpu("cuda:1", TWO)
    assert pickle.loads(pickle.dumps(plan)) == plan
    assert GpuPlan("cpu").on_gpu is False
