"""Counters and latency windows a worker's hot loop updates and its heartbeat reads."""

from __future__ import annotations

import bisect
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Iterable

import numpy as np

from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb

_PAGE = os.sysconf("SC_PAGE_SIZE")

#: Upper bounds (ms) of the latency histograms every stage keeps: what ``GET /metrics``
#: exports as ``reactor_stage_latency_seconds`` buckets. Fixed, so the supervisor can add
#: the histograms of a worker's successive processes.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 16.0, 25.0, 33.0, 50.0, 75.0, 100.0, 250.0,
    500.0, 1000.0)
_TICKS = os.sysconf("SC_CLK_TCK")


class LatencyWindow:
    """The last ``size`` samples of one stage, in milliseconds (for percentiles), and a
    histogram of every sample since the process started (for Prometheus)."""

    def __init__(self, stage: str, size: int = 512) -> None:
        self.stage = stage
        self._samples: deque[float] = deque(maxlen=size)
        self.count = 0
        self.sum_ms = 0.0
        # Per bucket, not cumulative; the last one is past the highest bound (+Inf).
        self._buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)

    def add(self, ms: float) -> None:
        # deque.append is atomic under the GIL: the hot loop needs no lock here. The
        # counters may be read half-updated by the heartbeat thread; the next beat is right.
        self._samples.append(ms)
        self._buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, ms)] += 1
        self.sum_ms += ms
        self.count += 1

    def stat(self) -> tpb.LatencyStat | None:
        samples = list(self._samples)
        if not samples:
            return None
        p50, p99 = np.percentile(np.asarray(samples), [50, 99])
        cumulative = list(itertools.accumulate(self._buckets[:-1]))
        return tpb.LatencyStat(stage=self.stage, p50_ms=float(p50), p99_ms=float(p99),
                               count=max(self.count, cumulative[-1]), buckets=cumulative,
                               sum_ms=self.sum_ms)


class ProcessStats:
    """CPU % since the previous call, and resident memory, of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = (time.monotonic(), self._cpu_s())

    @staticmethod
    def _cpu_s() -> float:
        t = os.times()
        return t.user + t.system

    def cpu_percent(self) -> float:
        with self._lock:
            now, cpu = time.monotonic(), self._cpu_s()
            t0, c0 = self._last
            self._last = (now, cpu)
        return 100.0 * (cpu - c0) / (now - t0) if now > t0 else 0.0

    @staticmethod
    def rss_bytes(pid: int | None = None) -> int:
        try:
            with open(f"/proc/{pid or 'self'}/statm") as f:
                return int(f.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            return 0


def worker_stats(
    proc: ProcessStats,
    frames_in: int,
    frames_out: int,
    windows: tuple[LatencyWindow, ...],
    *,
    viewers: int = 0,
    encoders_active: int = 0,
    sender: bool = False,
    frames_emitted: int = 0,
    finished: bool = False,
    audio_samples_in: int = 0,
    audio_samples_out: int = 0,
    audio_dropped: int = 0,
    av_offset_ms: float | None = None,
    awaiting_input: bool = False,
    http_requests: Iterable[wpb.HttpCount] = (),
    frames_dropped_viewers: int = 0,
) -> wpb.WorkerStats:
    """A heartbeat's stats: counters, this process's CPU and RSS, and each stage's
    latency that has samples; the keyword arguments are the worker-specific fields (each
    worker sets its own; the others stay at their proto3 defaults, which is unset)."""
    stats = wpb.WorkerStats(frames_in=frames_in, frames_out=frames_out,
                            cpu_percent=proc.cpu_percent(), rss_bytes=proc.rss_bytes(),
                            viewers=viewers, encoders_active=encoders_active, sender=sender,
                            frames_emitted=frames_emitted, finished=finished,
                            audio_samples_in=audio_samples_in,
                            audio_samples_out=audio_samples_out, audio_dropped=audio_dropped,
                            av_offset_ms=av_offset_ms or 0.0,
                            av_offset_known=av_offset_ms is not None,
                            awaiting_input=awaiting_input,
                            frames_dropped_viewers=frames_dropped_viewers)
    stats.latency.extend(st for st in (w.stat() for w in windows) if st is not None)
    stats.http_requests.extend(http_requests)
    return stats


def proc_cpu_seconds(pid: int) -> float | None:
    """Total CPU seconds of another process, from /proc (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, ValueError, IndexError):
        return None
