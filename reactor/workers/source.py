"""The file source of ``reactor run --input``: decodes a video file into the input ring.

It stands where ingress stands in the daemon. Frames get ids 0, 1, 2… in file order (the
ids timed commands refer to). Without ``--lossless`` it plays the file in real time, at
``video.fps``, into the latest-frame ring, so a slow model drops frames as it would live;
with ``--lossless`` the ring blocks and the model sets the pace.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import av

from reactor.errors import ReactorError
from reactor.ipc import RingTimeout, ShmRing
from reactor.media.convert import frame_to_rgb
from reactor.proto import worker_pb2 as wpb
from reactor.workers.base import WorkerContext
from reactor.workers.stats import LatencyWindow, ProcessStats, worker_stats

log = logging.getLogger(__name__)


class FileSource:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.path = Path(ctx.extra["input"])
        self.lossless = bool(ctx.extra.get("lossless"))
        self.input = ShmRing.attach(ctx.rings["input"])
        self.live = threading.Event()
        self.frames_in = 0
        self.frames_out = 0
        self.finished = False
        self.lat_decode = LatencyWindow("decode")
        self.proc = ProcessStats()
        try:
            self.container = av.open(str(self.path))
            self.stream = self.container.streams.video[0]
        except (OSError, av.FFmpegError, IndexError) as exc:
            raise ReactorError(f"cannot read input video {self.path}: {exc}") from None

    def stats(self) -> wpb.WorkerStats:
        return worker_stats(self.proc, self.frames_in, self.frames_out, (self.lat_decode,),
                            finished=self.finished)

    def on_message(self, msg: wpb.ToWorker) -> None:
        body = msg.WhichOneof("body")
        if body == "stop":
            self.ctx.stop.set()
        elif body == "event" and msg.event.kind == wpb.SessionEvent.STARTED:
            self.live.set()

    def run(self) -> None:
        v = self.ctx.config.video
        while not self.live.wait(0.1):  # a block reader only sees frames after it joined
            if self.ctx.stop.is_set():
                return
        t0 = time.monotonic()
        try:
            for frame in self.container.decode(self.stream):
                if self.ctx.stop.is_set():
                    return
                start = time.perf_counter_ns()
                self.frames_in += 1
                rgb = frame_to_rgb(frame, v.width, v.height)
                if not self.lossless:
                    due = t0 + self.frames_out / v.fps
                    time.sleep(max(0.0, due - time.monotonic()))
                while not self._write(rgb, start):
                    if self.ctx.stop.is_set():
                        return
                self.lat_decode.add((time.perf_counter_ns() - start) / 1e6)
        except av.FFmpegError as exc:
            log.warning("input %s ended early after %d frames: %s", self.path,
                        self.frames_out, exc)
        finally:
            self.container.close()
        self.finished = True
        log.info("input %s: %d frames written", self.path, self.frames_out)

    def _write(self, rgb: object, start: int) -> bool:
        try:
            self.input.write(rgb, frame_id=self.frames_out, capture_ts=start, timeout=0.25)
        except RingTimeout:
            return False
        self.frames_out += 1
        return True


def main(ctx: WorkerContext) -> None:
    source = FileSource(ctx)
    ctx.attach(source).ready(wpb.Ready(source=wpb.SourceReady(path=str(source.path))))
    source.run()
    while not ctx.stop.wait(0.1):
        pass
