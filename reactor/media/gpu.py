"""Choosing the GPU path: what the machine has, and what the daemon does with it.

:func:`detect` looks once at the machine (:class:`GpuCaps`: the CUDA devices torch sees,
their names, whether FFmpeg has NVENC and whether each device has the hardware for it,
whether torch and CuPy are installed). :func:`plan_gpu` turns the config's ``device`` and
those capabilities into a :class:`GpuPlan`: where the output ring lives (``shm`` or
``cuda``), on which device, which H.264 encoder egress opens first, and one sentence
saying why, which the supervisor logs once and ``status``, the monitor and the metrics
show. Both are pure but for :func:`detect`; the tests pass capabilities in.

The rules (see docs/operations.md, "One daemon per GPU"):

* ``cpu``: shared memory and libx264, whatever the machine has.
* ``auto``: the GPU path on device 0 when torch sees a CUDA device, else the CPU path.
* ``cuda`` / ``cuda:N``: the GPU path on device 0 / N. Asked for explicitly, a missing GPU
  (or an N past the last device, or no torch) is a :class:`ConfigError` naming
  ``device`` and what the machine has -- not a quiet fall back to the CPU: whoever wrote
  ``cuda:1`` sized the machine for it, and a daemon that silently runs a GPU model's
  frames through the host would look like it works while missing every latency goal.
* The encoder: ``h264_nvenc`` when FFmpeg has it and the device has an NVENC engine;
  otherwise libx264, fed I420 planes converted on the GPU (half the bytes of RGB cross to
  the host). Hopper data-centre GPUs (H100, H200) and the A100/A30 have no NVENC: for them
  libx264 is the normal path, not a failure. A device whose NVENC session limit is reached
  fails to open the encoder; :func:`open_h264` then falls back to libx264 the same way.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import av

from reactor.errors import ConfigError, EncoderError

log = logging.getLogger(__name__)

RingKind = Literal["shm", "cuda"]
#: ``h264_nvenc``: NVENC from the GPU's planes; ``libx264-gpu-yuv``: libx264 fed planes
#: converted on the GPU; ``libx264``: the CPU path (RGB from shared memory).
EncoderPlan = Literal["h264_nvenc", "libx264-gpu-yuv", "libx264"]

#: GPUs with no NVENC engine, by a word in their name (``torch.cuda.get_device_name``).
NO_NVENC = ("H100", "H200", "H800", "GH200", "A100", "A800", "A30")


@dataclass(frozen=True)
class GpuDevice:
    """One CUDA device as torch numbers it (after ``CUDA_VISIBLE_DEVICES``)."""

    index: int
    name: str
    nvenc: bool  # the device has an NVENC engine (by its name: see NO_NVENC)


@dataclass(frozen=True)
class GpuCaps:
    """What the machine has for the GPU path."""

    devices: tuple[GpuDevice, ...] = ()
    torch: bool = False  # torch is importable
    cupy: bool = False  # CuPy is importable
    ffmpeg_nvenc: bool = False  # PyAV's FFmpeg has the h264_nvenc encoder
    why_none: str = ""  # why no device was found, when none was

    def describe(self) -> str:
        if not self.devices:
            return f"no CUDA device ({self.why_none or 'none visible'})"
        return ", ".join(f"cuda:{d.index} {d.name}" for d in self.devices)


@dataclass(frozen=True)
class GpuPlan:
    """What the daemon does with the GPU: picklable, passed to every worker."""

    device: str  # the config's value
    ring: RingKind = "shm"
    index: int | None = None  # the CUDA device, when ring is "cuda"
    encoder: EncoderPlan = "libx264"
    reason: str = "device: cpu"
    device_name: str = ""
    caps: GpuCaps = field(default_factory=GpuCaps)

    @property
    def on_gpu(self) -> bool:
        return self.ring == "cuda"


def gpu_plan(plan: GpuPlan | None, device: str) -> GpuPlan:
    """The plan the supervisor passed a worker (``RunOptions.gpu``), or the CPU path's for
    ``device`` when there is none (a worker started by a test or a tool)."""
    return plan if plan is not None else GpuPlan(device)


def has_nvenc_engine(name: str) -> bool:
    """Whether a GPU of this name has an NVENC engine (see :data:`NO_NVENC`)."""
    words = name.upper().replace("-", " ").split()
    return not any(word in NO_NVENC for word in words)


def plan_gpu(device: str, caps: GpuCaps) -> GpuPlan:
    """Decide the GPU path for the config's ``device`` on a machine with ``caps``.

    Raises :class:`ConfigError` naming ``device`` when it asks for a GPU the machine does
    not have (see the module docstring for why that is not a fall back).
    """
    if device == "cpu":
        return GpuPlan(device, reason="device: cpu", caps=caps)
    if device == "auto":
        if not caps.devices or not caps.torch:
            why = caps.describe() if caps.torch else "torch is not installed"
            return GpuPlan(device, reason=f"device: auto and {why}: the CPU path", caps=caps)
        index = 0
    else:
        prefix, _, number = device.partition(":")
        if prefix != "cuda" or (number and not number.isdigit()):
            raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, found {device!r}")
        index = int(number) if number else 0
        if not caps.torch:
            raise ConfigError(
                f"device: {device} needs torch with CUDA (pip install 'reactor-live[torch]'), "
                "and torch is not installed; use device: cpu or auto")
        if not caps.devices:
            raise ConfigError(
                f"device: {device} asks for a GPU, and this machine has {caps.describe()}; "
                "use device: cpu or auto")
        if index >= len(caps.devices):
            raise ConfigError(
                f"device: {device} asks for CUDA device {index}, and this machine has "
                f"{len(caps.devices)}: {caps.describe()} (CUDA_VISIBLE_DEVICES renumbers them)")
    gpu = caps.devices[index]
    if caps.ffmpeg_nvenc and gpu.nvenc:
        encoder: EncoderPlan = "h264_nvenc"
        why = "NVENC, libx264 if it does not open"
    elif not gpu.nvenc:
        encoder, why = "libx264-gpu-yuv", f"libx264 (the {gpu.name} has no NVENC)"
    else:
        encoder, why = "libx264-gpu-yuv", "libx264 (this FFmpeg has no h264_nvenc)"
    reason = (f"device: {device}: frames stay on cuda:{index} ({gpu.name}); colour on the "
              f"GPU; H.264 by {why}")
    return GpuPlan(device, ring="cuda", index=index, encoder=encoder, reason=reason,
                   device_name=gpu.name, caps=caps)


def driver_present() -> bool:
    """Whether the NVIDIA driver's files exist: without them no CUDA device can exist, and
    neither torch (seconds to import) nor NVML need be asked."""
    return Path("/proc/driver/nvidia/gpus").is_dir() or Path("/dev/nvidiactl").exists()


def detect() -> GpuCaps:
    """Look at this machine once: torch's CUDA devices, CuPy, FFmpeg's NVENC."""
    has_torch = importlib.util.find_spec("torch") is not None
    has_cupy = importlib.util.find_spec("cupy") is not None
    nvenc = "h264_nvenc" in av.codecs_available
    devices: list[GpuDevice] = []
    why = ""
    if not has_torch:
        why = "torch is not installed"
    elif not driver_present():
        why = "no NVIDIA driver"
    else:
        try:
            import torch

            if not torch.cuda.is_available():
                why = "torch sees no CUDA device"
            else:
                for i in range(torch.cuda.device_count()):
                    name = str(torch.cuda.get_device_name(i))
                    devices.append(GpuDevice(i, name, has_nvenc_engine(name)))
        except Exception as exc:  # a broken driver install: say so, run on the CPU
            why = f"torch.cuda failed: {type(exc).__name__}: {exc}"
    return GpuCaps(tuple(devices), torch=has_torch, cupy=has_cupy, ffmpeg_nvenc=nvenc,
                   why_none=why)


#: Words in FFmpeg's NVENC errors when the device runs out of encode sessions (consumer
#: GPUs allow a few at once): NV_ENC_ERR_OUT_OF_MEMORY (10), or "incompatible client key"
#: (21) from older drivers.
_SESSION_LIMIT = ("out of memory", "incompatible client key", "(10)", "(21)")

T = TypeVar("T")


def nvenc_failure(message: str) -> str:
    """Why NVENC did not open, in words, from FFmpeg's error ``message``."""
    low = message.lower()
    if any(word in low for word in _SESSION_LIMIT):
        return f"the NVENC session limit is reached ({message})"
    return f"NVENC did not open ({message})"


def open_h264(first: EncoderPlan | str, open_encoder: Callable[[str], T]) -> tuple[T, str, str]:
    """Open H.264 with ``first`` (``h264_nvenc`` tries NVENC, anything else is libx264),
    falling back to libx264 when NVENC does not open.

    ``open_encoder(name)`` opens FFmpeg encoder ``name`` (``h264_nvenc`` or ``libx264``)
    and raises on failure. Returns ``(encoder, name, why)``: ``why`` is empty when the
    first choice opened, else the reason it fell back (logged once here). A libx264 that
    does not open raises :class:`EncoderError` naming both failures.
    """
    why = ""
    if first == "h264_nvenc":
        try:
            return open_encoder("h264_nvenc"), "h264_nvenc", ""
        except (av.FFmpegError, EncoderError, ValueError) as exc:
            why = nvenc_failure(str(exc))
        log.warning("encoder: %s; using libx264", why)
    try:
        return open_encoder("libx264"), "libx264", why
    except (av.FFmpegError, ValueError) as exc:
        raise EncoderError(f"no h264 encoder could be opened: libx264: {exc}"
                           + (f"; {why}" if why else "")) from exc
