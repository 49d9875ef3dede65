"""GPU telemetry: each device's load from NVML, and the GPU path, for status and metrics.

NVML comes from ``nvidia-ml-py`` (module ``pynvml``, NVIDIA's maintained binding; the
``gpu`` extra installs it). Without it, or without a driver, ``status`` says why under
``gpu.reason`` and the metrics have no per-device series; nothing else changes.

:class:`NvmlSampler` asks NVML at most once a second (``status`` and the telemetry feed
ask several times a second). :func:`fill_gpu` writes a :class:`GpuSample`, the
supervisor's :class:`~reactor.media.gpu.GpuPlan` and the encoder egress reports into the
snapshot's ``gpu_stat``; :func:`gpu_families` turns that into metric families. Both are
pure: the tests pass samples in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from reactor.media.gpu import GpuPlan, driver_present
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb

if TYPE_CHECKING:
    from reactor.daemon.metrics import Scrape

log = logging.getLogger(__name__)

NO_NVML = "nvidia-ml-py is not installed (pip install 'reactor-live[gpu]')"
NO_DRIVER = "no NVIDIA driver on this machine"


@dataclass(frozen=True)
class DeviceSample:
    """One device's figures from NVML."""

    index: int
    name: str
    utilization_ratio: float
    memory_used_bytes: int
    memory_total_bytes: int
    encoder_sessions: int
    encoder_utilization_ratio: float


@dataclass(frozen=True)
class GpuSample:
    """Every device's figures, or why there are none (``reason``)."""

    devices: tuple[DeviceSample, ...] = ()
    reason: str = ""

    @property
    def available(self) -> bool:
        return not self.reason


def read_nvml(nvml: Any) -> tuple[DeviceSample, ...]:
    """Read every device through an initialised ``pynvml`` module (or the same API).

    A figure a device does not support (NVENC's on a GPU without NVENC) reads 0.
    """
    def opt(call: Callable[[Any], Any], handle: Any) -> Any:
        try:
            return call(handle)
        except nvml.NVMLError:
            return 0

    out = []
    for i in range(int(nvml.nvmlDeviceGetCount())):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        name = nvml.nvmlDeviceGetName(h)
        mem = nvml.nvmlDeviceGetMemoryInfo(h)
        util = opt(lambda d: nvml.nvmlDeviceGetUtilizationRates(d).gpu, h)
        sessions = opt(lambda d: len(nvml.nvmlDeviceGetEncoderSessions(d)), h)
        enc = opt(lambda d: nvml.nvmlDeviceGetEncoderUtilization(d)[0], h)
        out.append(DeviceSample(
            index=i, name=name.decode() if isinstance(name, bytes) else str(name),
            utilization_ratio=float(util) / 100.0, memory_used_bytes=int(mem.used),
            memory_total_bytes=int(mem.total), encoder_sessions=int(sessions),
            encoder_utilization_ratio=float(enc) / 100.0))
    return tuple(out)


class NvmlSampler:
    """NVML, initialised on first use and asked at most every ``interval_s`` seconds.

    ``nvml`` is the ``pynvml`` module (imported on first use when not given). If it cannot
    be imported or initialised, every sample says why, and NVML is not asked again.
    """

    def __init__(self, nvml: Any = None, interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._nvml = nvml
        self._interval = interval_s
        self._clock = clock
        self._ready = False
        self._failed = ""
        self._last: GpuSample | None = None
        self._at = 0.0

    def _init(self) -> None:
        if self._nvml is None and not driver_present():
            self._failed = NO_DRIVER  # what matters on a machine without a GPU
            return
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                self._failed = NO_NVML
                return
            self._nvml = pynvml
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as exc:  # no driver, no library: say which
            self._failed = f"NVML did not start: {exc}"
            return
        self._ready = True

    def sample(self) -> GpuSample:
        now = self._clock()
        if self._last is not None and now - self._at < self._interval:
            return self._last
        if not self._ready and not self._failed:
            self._init()
        if self._failed:
            sample = GpuSample(reason=self._failed)
        else:
            try:
                sample = GpuSample(read_nvml(self._nvml))
            except self._nvml.NVMLError as exc:  # a device fell off the bus, a reload
                log.warning("NVML failed: %s", exc)
                sample = GpuSample(reason=f"NVML failed: {exc}")
        self._last, self._at = sample, now
        return sample

    def close(self) -> None:
        if self._ready:
            self._ready = False
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError as exc:
                log.debug("nvmlShutdown: %s", exc)


def fill_gpu(stat: tpb.GpuStat, plan: GpuPlan, sample: GpuSample,
             back: wpb.WorkerStats | None = None, *, ring: str | None = None) -> None:
    """Write the plan, the encoder egress runs (``back``: its last stats) and ``sample``
    into ``stat``; ``ring``: the kind of output ring the daemon made, when it is not the
    plan's (a file run keeps it in shared memory for its sink)."""
    stat.device, stat.ring, stat.reason = plan.device, ring or plan.ring, plan.reason
    stat.index = -1 if plan.index is None else plan.index
    stat.device_name, stat.encoder_plan = plan.device_name, plan.encoder
    if back is not None:
        stat.encoder, stat.encoder_fallback = back.encoder, back.encoder_fallback
    stat.telemetry, stat.telemetry_reason = sample.available, sample.reason
    for d in sample.devices:
        stat.devices.append(tpb.GpuDeviceStat(
            index=d.index, name=d.name, utilization_ratio=d.utilization_ratio,
            memory_used_bytes=d.memory_used_bytes, memory_total_bytes=d.memory_total_bytes,
            encoder_sessions=d.encoder_sessions,
            encoder_utilization_ratio=d.encoder_utilization_ratio))


def gpu_families(s: Scrape) -> Iterator[Metric]:
    """``reactor_gpu_*``: the GPU path (always) and each device's load (with NVML)."""
    g = s.snapshot.gpu_stat
    info = InfoMetricFamily("reactor_gpu_path", "Where frames live and which H.264 encoder "
                            "runs: ring shm|cuda, the device, the planned and running encoder")
    info.add_metric([], {"device": g.device, "ring": g.ring or "shm",
                         "index": "" if g.index < 0 else str(g.index),
                         "encoder_plan": g.encoder_plan, "encoder": g.encoder})
    yield info
    up = GaugeMetricFamily("reactor_gpu_telemetry_up", "1 when NVML answers")
    up.add_metric([], 1.0 if g.telemetry else 0.0)
    yield up
    if not g.telemetry:
        return
    labels = ["gpu", "gpu_name"]
    util = GaugeMetricFamily("reactor_gpu_utilization_ratio",
                             "Share of time the GPU's kernels ran (NVML)", labels=labels)
    used = GaugeMetricFamily("reactor_gpu_memory_used_bytes", "Device memory in use",
                             labels=labels)
    total = GaugeMetricFamily("reactor_gpu_memory_total_bytes", "Device memory",
                              labels=labels)
    sessions = GaugeMetricFamily("reactor_gpu_encoder_sessions",
                                 "NVENC sessions open on the device (any process)",
                                 labels=labels)
    enc = GaugeMetricFamily("reactor_gpu_encoder_utilization_ratio",
                            "Share of time the device's NVENC engines ran", labels=labels)
    for d in g.devices:
        key = [str(d.index), d.name]
        util.add_metric(key, d.utilization_ratio)
        used.add_metric(key, float(d.memory_used_bytes))
        total.add_metric(key, float(d.memory_total_bytes))
        sessions.add_metric(key, float(d.encoder_sessions))
        enc.add_metric(key, d.encoder_utilization_ratio)
    yield from (util, used, total, sessions, enc)
