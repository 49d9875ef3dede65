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


class _ProcFiles:
    """Reads ``/proc/<pid>/<name>`` through a descriptor kept open per pid.

    Opening a /proc file costs a path walk each time; ``pread`` on an open one returns
    the kernel's figures as of now, at a fraction of the cost (``status`` reads every
    worker's memory on every request). A descriptor of a process that has gone fails
    with ESRCH: it is closed and dropped then, and the others are checked whenever a new
    one is opened, so the dead never pile up. Keyed by the real pid (never ``self``), so
    a forked child does not read its parent's files.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def read(self, pid: int) -> bytes | None:
        # Under the lock throughout: another thread may close a descriptor (its process
        # died), and the number could be reused before an unlocked read of it.
        with self._lock:
            fd = self._fds.get(pid)
            if fd is not None:
                try:
                    return os.pread(fd, 1024, 0)
                except OSError:
                    self._close(pid)  # the process has gone (or its pid is another's now)
            try:
                fd = os.open(f"/proc/{pid}/{self.name}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            for other in list(self._fds):
                try:
                    os.pread(self._fds[other], 1, 0)
                except OSError:
                    self._close(other)
            self._fds[pid] = fd
            try:
                return os.pread(fd, 1024, 0)
            except OSError:
                return None

    def _close(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None:
            os.close(fd)


_STATM = _ProcFiles("statm")
_STAT = _ProcFiles("stat")


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
        """Resident memory of ``pid`` (this process by default) now; 0 if it is gone."""
        data = _STATM.read(pid or os.getpid())
        try:
            return int(data.split()[1]) * _PAGE if data else 0
        except (ValueError, IndexError):
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
    data = _STAT.read(pid)
    if not data:
        return None
    try:
        fields = data.rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (ValueError, IndexError):
        return None
