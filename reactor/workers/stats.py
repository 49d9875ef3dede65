"""A worker's heartbeat stats: its counters, its process's CPU and memory, and its stages'
latencies (:mod:`reactor.runtime.latency`)."""

from __future__ import annotations

from collections.abc import Iterable

from reactor.proto import worker_pb2 as wpb
from reactor.runtime.latency import LatencyWindow
from reactor.runtime.stats import ProcessStats


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
