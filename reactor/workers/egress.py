"""The egress worker: reads the output ring, encodes each frame once, fans it out.

Threads: the asyncio event loop (this process's main thread) owns the WHEP viewers' peer
connections; the *reader thread* takes frames from the output ring and pushes them
through the :class:`~reactor.media.tracks.Broadcaster`, which encodes each frame once per
codec in use (PyAV releases the GIL while it encodes) and hands the same packets to every
viewer on the loop; the link thread relays WHEP offers and session events to the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from reactor.errors import ReactorError
from reactor.ipc import ProducerGoneError, RingClosedError, ShmRing
from reactor.media.peer import install_patches
from reactor.media.recorder import Recorder
from reactor.media.tracks import Broadcaster
from reactor.proto import control_pb2 as cpb
from reactor.proto import worker_pb2 as wpb
from reactor.workers.base import WorkerContext
from reactor.workers.stats import LatencyWindow, ProcessStats, worker_stats
from reactor.workers.viewers import ViewerHub

log = logging.getLogger(__name__)

RTP_CLOCK = 90_000


class EgressWorker:
    def __init__(self, ctx: WorkerContext, loop: asyncio.AbstractEventLoop) -> None:
        self.ctx = ctx
        self.loop = loop
        cfg = ctx.config
        self.output = ShmRing.attach(ctx.rings["output"])
        self.reader = self.output.reader()
        self.broadcaster = Broadcaster(
            cfg.video.width, cfg.video.height, fps=cfg.video.fps,
            bitrate_kbps=cfg.egress.bitrate_kbps, hardware=cfg.device.startswith("cuda"),
        )
        self.hub = ViewerHub(self.broadcaster, cfg,
                             on_count=lambda n: ctx.link.clients(viewers=n))
        self.recorder = Recorder.open(cfg) if cfg.egress.record else None
        self.frames_in = 0
        self.frames_out = 0
        self.lat_ring = LatencyWindow("output_ring")
        self.lat_encode = LatencyWindow("encode")
        self.proc = ProcessStats()
        self.failure = ""

    def stats(self) -> wpb.WorkerStats:
        return worker_stats(self.proc, self.frames_in, self.frames_out,
                            (self.lat_ring, self.lat_encode),
                            viewers=self.hub.count,
                            encoders_active=self.broadcaster.encoders_active)

    def on_message(self, msg: wpb.ToWorker) -> None:
        """On the link thread: hand everything to the event loop."""
        body = msg.WhichOneof("body")
        if body == "stop":
            self.loop.call_soon_threadsafe(self.ctx.stop.set)
        elif body == "event":
            self.loop.call_soon_threadsafe(self.hub.on_session_event, msg.event)
        elif body == "request" and msg.request.WhichOneof("body") == "whep":
            asyncio.run_coroutine_threadsafe(self._whep(msg.id, msg.request.whep), self.loop)
        elif body == "request":
            self.ctx.link.reply(msg.id, cpb.Reply(error=cpb.Error(
                message="egress handles only WHEP requests", status=400)))

    async def _whep(self, msg_id: int, req: cpb.WhepRequest) -> None:
        try:
            reply = await self.hub.handle(req)
        except Exception as exc:
            log.exception("WHEP request failed")
            reply = cpb.Reply(error=cpb.Error(message=f"WHEP failed: {exc}", status=500))
        self.ctx.link.reply(msg_id, reply)

    def read_loop(self) -> None:
        """The reader thread: one frame in, encoded once, out to every viewer."""
        period = RTP_CLOCK / self.ctx.config.video.fps
        try:
            while not self.ctx.stop.is_set():
                try:
                    frame = self.reader.read(0.1)
                except ProducerGoneError:
                    # Inference died; the supervisor restarts it and the new one takes the
                    # ring over. Viewers stay connected and see frames again after that.
                    time.sleep(0.05)
                    continue
                if frame is None:
                    continue
                t0 = time.perf_counter_ns()
                self.frames_in += 1
                self.lat_ring.add((t0 - frame.enqueue_ts) / 1e6)
                pts = int(self.frames_out * period)
                if self.broadcaster.encoders_active or self.recorder is not None:
                    self.broadcaster.push(frame.array, pts)
                    if self.recorder is not None:
                        self.recorder.write(frame.array)
                    self.lat_encode.add((time.perf_counter_ns() - t0) / 1e6)
                frame.release()
                self.frames_out += 1
        except RingClosedError as exc:
            self.failure = f"output ring closed: {exc}"
            log.error("%s", self.failure)
            self.loop.call_soon_threadsafe(self.ctx.stop.set)
        except Exception as exc:
            self.failure = f"reader thread failed: {type(exc).__name__}: {exc}"
            log.exception("reader thread failed")
            self.loop.call_soon_threadsafe(self.ctx.stop.set)

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
        self.reader.close()
        self.output.close()


async def _amain(ctx: WorkerContext) -> None:
    install_patches(ctx.config.server)
    loop = asyncio.get_running_loop()
    worker = EgressWorker(ctx, loop)
    link = ctx.attach(worker)
    reader = threading.Thread(target=worker.read_loop, name="egress-reader", daemon=True)
    reader.start()
    link.ready(wpb.Ready(egress=wpb.EgressReady(codec=ctx.config.egress.codec)))
    log.info("ready")
    try:
        while not ctx.stop.is_set():
            await asyncio.sleep(0.1)
    finally:
        await worker.hub.close()
        worker.broadcaster.close()
        reader.join(timeout=2.0)
        worker.close()
    if worker.failure:  # exit non-zero, with the reason, so the supervisor restarts us
        raise ReactorError(worker.failure)


def main(ctx: WorkerContext) -> None:
    asyncio.run(_amain(ctx))
