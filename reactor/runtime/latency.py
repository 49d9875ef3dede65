"""The latency windows a worker keeps for each stage, and the histogram bounds they share
with the supervisor (which adds up the histograms of a worker's successive processes for
``GET /metrics``)."""

from __future__ import annotations

import bisect
import itertools
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from reactor.proto import telemetry_pb2 as tpb

#: Upper bounds (ms) of the latency histograms every stage keeps: what ``GET /metrics``
#: exports as ``reactor_stage_latency_seconds`` buckets. Fixed, so the supervisor can add
#: the histograms of a worker's successive processes.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 16.0, 25.0, 33.0, 50.0, 75.0, 100.0, 250.0,
    500.0, 1000.0)


#: Percentiles are over the samples of the last this many seconds: a slowdown shows in
#: them within seconds, and a pipeline that stopped (nobody connected) shows none.
WINDOW_S = 10.0


class LatencyWindow:
    """One stage's samples of the last ``window_s`` seconds, in milliseconds (for its
    percentiles; at most ``size`` of them), and a histogram of every sample since the
    process started (for Prometheus). ``clock`` is for tests."""

    def __init__(self, stage: str, size: int = 4096, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stage = stage
        self.window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=size)  # (when, ms)
        self.count = 0
        self.sum_ms = 0.0
        # Per bucket, not cumulative; the last one is past the highest bound (+Inf).
        self._buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)

    def add(self, ms: float) -> None:
        # deque.append is atomic under the GIL: the hot loop needs no lock here. The
        # counters may be read half-updated by the heartbeat thread; the next beat is right.
        self._samples.append((self._clock(), ms))
        self._buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, ms)] += 1
        self.sum_ms += ms
        self.count += 1

    def stat(self) -> tpb.LatencyStat | None:
        """The histogram since the start (None: no sample yet), with p50 and p99 over the
        last ``window_s`` seconds (``window_count`` 0 and no percentiles: none in it)."""
        if not self.count:
            return None
        since = self._clock() - self.window_s
        samples = [ms for at, ms in list(self._samples) if at >= since]
        cumulative = list(itertools.accumulate(self._buckets[:-1]))
        stat = tpb.LatencyStat(stage=self.stage, count=max(self.count, cumulative[-1]),
                               buckets=cumulative, sum_ms=self.sum_ms,
                               window_count=len(samples))
        if samples:
            p50, p99 = np.percentile(np.asarray(samples), [50, 99])
            stat.p50_ms, stat.p99_ms = float(p50), float(p99)
        return stat
