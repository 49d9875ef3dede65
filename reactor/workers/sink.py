"""The file sink of ``reactor run --output``: writes the output ring to an MP4 file.

It stands where egress stands in the daemon; without ``--output`` it only counts frames.
"""

from __future__ import annotations

import logging
import time

from reactor.ipc import ShmRing
from reactor.media.recorder import Recorder
from reactor.proto import worker_pb2 as wpb
from reactor.workers.base import WorkerContext
from reactor.workers.stats import LatencyWindow, ProcessStats, worker_stats

log = logging.getLogger(__name__)


class FileSink:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.output = ShmRing.attach(ctx.rings["output"])
        self.reader = self.output.reader()
        path = ctx.extra.get("output")
        self.recorder = Recorder.open(ctx.config, path) if path else None
        self.frames_in = 0
        self.lat_ring = LatencyWindow("output_ring")
        self.lat_encode = LatencyWindow("encode")
        self.proc = ProcessStats()

    def stats(self) -> wpb.WorkerStats:
        return worker_stats(self.proc, self.frames_in, self.frames_in,
                            (self.lat_ring, self.lat_encode))

    def on_message(self, msg: wpb.ToWorker) -> None:
        if msg.WhichOneof("body") == "stop":
            self.ctx.stop.set()

    def run(self) -> None:
        try:
            while not self.ctx.stop.is_set():
                frame = self.reader.read(0.1)
                if frame is None:
                    continue
                t0 = time.perf_counter_ns()
                self.lat_ring.add((t0 - frame.enqueue_ts) / 1e6)
                if self.recorder is not None:
                    self.recorder.write(frame.array)
                    self.lat_encode.add((time.perf_counter_ns() - t0) / 1e6)
                frame.release()
                self.frames_in += 1
        finally:
            if self.recorder is not None:
                self.recorder.close()
            self.reader.close()


def main(ctx: WorkerContext) -> None:
    sink = FileSink(ctx)
    ctx.attach(sink).ready(wpb.Ready(sink=wpb.SinkReady(recording=sink.recorder is not None)))
    sink.run()
