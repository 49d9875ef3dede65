"""The file sink of ``reactor run --output``: writes the output rings to an MP4 file.

It stands where egress stands in the daemon; without ``--output`` it only counts frames.
With ``audio.output`` on it also reads the model's sound (the ``audio_out`` ring) and the
file gets an audio track, placed by presentation time against the frames
(:class:`~reactor.media.recorder.Recorder`).

With ``--duration S`` the file holds the first ``S * fps`` frames and ``S`` seconds of
sound. Without ``--input`` (a generative model rendering on its own clock) the sink also
ends the session once the model has gone past that: the model is not paced in a file
run, so nothing else would stop it.
"""

from __future__ import annotations

import logging
import time

from reactor.errors import ReactorError
from reactor.ipc import Reader, ShmRing
from reactor.proto import control_pb2 as cpb
from reactor.proto import worker_pb2 as wpb
from reactor.runtime.latency import LatencyWindow
from reactor.runtime.stats import ProcessStats
from reactor.workers.base import WorkerContext
from reactor.workers.recording import open_recorder
from reactor.workers.stats import worker_stats

log = logging.getLogger(__name__)


class FileSink:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.output = ShmRing.attach(ctx.rings.shm_output())
        self.reader = self.output.reader()
        self.audio: Reader | None = None
        if ctx.rings.audio_out is not None:
            self.audio = ShmRing.attach(ctx.rings.audio_out).reader()
        path = ctx.options.output
        self.duration_s = ctx.options.duration_s
        self.max_frames = (None if self.duration_s is None
                           else round(self.duration_s * ctx.config.video.fps))
        self.generative = not ctx.options.input  # no input: the model renders alone
        self.recorder = (open_recorder(ctx.config, path, duration_s=self.duration_s)
                         if path else None)
        self.frames_in = 0
        self.frames_kept = 0
        self.started_at: float | None = None
        self.stop_asked = False
        self.ended: tuple[int, str] | None = None  # the session's end event: kind, reason
        self.lat_ring = LatencyWindow("output_ring")
        self.lat_encode = LatencyWindow("encode")
        self.proc = ProcessStats()

    def stats(self) -> wpb.WorkerStats:
        return worker_stats(self.proc, self.frames_in, self.frames_kept,
                            (self.lat_ring, self.lat_encode))

    def on_message(self, msg: wpb.ToWorker) -> None:
        body = msg.WhichOneof("body")
        if body == "stop":
            self.ctx.stop.set()
        elif body == "event" and msg.event.kind == wpb.SessionEvent.STARTED:
            self.started_at = time.monotonic()
        elif body == "event" and msg.event.kind in (wpb.SessionEvent.ENDED,
                                                    wpb.SessionEvent.ERROR):
            self.ended = (msg.event.kind, msg.event.reason)

    def run(self) -> None:
        try:
            while not self.ctx.stop.is_set():
                got = self._frame(0.02)
                self._sound()
                if not got:
                    self._check_session()
            # The run is over: every frame is accounted for, but the sound the model
            # emitted with the last ones may still be in the ring.
            while self._frame(0):
                pass
            self._sound()
        finally:
            if self.recorder is not None:
                self.recorder.close()
            self.reader.close()
            if self.audio is not None:
                self.audio.close()
        log.info("sink: %d frames read, %d kept", self.frames_in, self.frames_kept)

    def _frame(self, timeout: float) -> bool:
        frame = self.reader.read(timeout)
        if frame is None:
            return False
        t0 = time.perf_counter_ns()
        self.lat_ring.add((t0 - frame.enqueue_ts) / 1e6)
        full = self.max_frames is not None and self.frames_kept >= self.max_frames
        if not full:
            kept = True
            if self.recorder is not None:
                kept = self.recorder.write(frame.array, frame.pts)
                self.lat_encode.add((time.perf_counter_ns() - t0) / 1e6)
            self.frames_kept += kept
        frame.release()
        self.frames_in += 1
        if full and self.generative and not self.stop_asked:
            # A frame past the end: the model wrote the sound of every frame before it
            # (emit() writes a frame's sound right after the frame), so none is cut short.
            self.stop_asked = True
            log.info("sink: %d frames (--duration %g s) rendered; ending the session",
                     self.frames_kept, self.duration_s)
            self.ctx.link.request(cpb.Request(session=cpb.SessionRequest(
                action=cpb.SessionRequest.STOP, reason="--duration reached")))
        return True

    def _sound(self) -> None:
        if self.audio is None:
            return
        while (chunk := self.audio.read(0)) is not None:
            if self.recorder is not None:
                self.recorder.write_audio(chunk.array[:chunk.length or None], chunk.pts)
            chunk.release()

    def _check_session(self) -> None:
        """Fail the run, with the reason, where nothing else would end it: a session that
        failed, a generative model that stopped short of ``--duration``, or one that waits
        for input frames when there are none (in the ring: nothing left to write)."""
        ended = self.ended
        if ended is not None:
            kind, reason = ended
            short = self.generative and not self.stop_asked
            if kind == wpb.SessionEvent.ERROR or short:
                done = (f" after {self.frames_kept} of {self.max_frames} frames (--duration)"
                        if short else "")
                raise ReactorError(f"the model's session ended{done}: {reason}")
        if not self.generative or self.frames_in or self.started_at is None:
            return
        limit = self.ctx.config.session.stall_timeout_s
        if time.monotonic() - self.started_at > limit:
            raise ReactorError(
                f"the model emitted no frame in {limit:g} s (session.stall_timeout_s); "
                "reactor run without --input renders models that generate frames on their "
                "own: a model that reads input frames needs --input")


def main(ctx: WorkerContext) -> None:
    sink = FileSink(ctx)
    ctx.attach(sink).ready(wpb.Ready(sink=wpb.SinkReady(recording=sink.recorder is not None)))
    sink.run()
