"""The latency windows a worker keeps for each stage, and the histogram bounds they share
with the supervisor (which adds up the histograms of a worker's successive processes for
``GET /metrics``)."""

from __future__ import annotations

import bisect
import itertools
from collections import deque

import numpy as np

from reactor.proto import telemetry_pb2 as tpb

#: Upper bounds (ms) of the latency histograms every stage keeps: what ``GET /metrics``
#: exports as ``reactor_stage_latency_seconds`` buckets. Fixed, so the supervisor can add
#: the histograms of a worker's successive processes.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 16.0, 25.0, 33.0, 50.0, 75.0, 100.0, 250.0,
    500.0, 1000.0)


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
