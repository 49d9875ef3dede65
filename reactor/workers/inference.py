"""The inference worker: loads the model once and runs one session at a time.

Threads: the *model thread* (this process's main thread) runs ``load()``, then sessions,
and applies commands between frames; the *link thread* talks to the supervisor, validates
commands as they arrive (an invalid one is answered at once and never queued) and queues
the valid ones for the model thread; a *watchdog thread* ends a session whose model stops
emitting for ``session.stall_timeout_s`` or whose memory passes ``session.max_rss_mb``, and
exits the process (the supervisor restarts it) when a model ignores the stop for
``session.stop_grace_s``.
"""

from __future__ import annotations

import gc
import json
import logging
import queue
import sys
import threading
import time
from collections import deque
from typing import Any

from reactor.errors import (
    CommandError,
    ModelLoadError,
    ReactorError,
    SessionStopped,
    WorkerDiedError,
)
from reactor.ipc import ShmRing
from reactor.ipc.cuda_ring import attach_ring
from reactor.media.gpu import gpu_plan
from reactor.model import PendingCommand, Session, VideoModel
from reactor.model.session import apply_command
from reactor.proto import control_pb2 as cpb
from reactor.proto import worker_pb2 as wpb
from reactor.workers.base import WorkerContext, set_log_session
from reactor.workers.ring_io import RingIO
from reactor.workers.stats import LatencyWindow, ProcessStats, worker_stats

log = logging.getLogger(__name__)

MIB = 1024 * 1024


def _error_reply(exc: BaseException) -> cpb.Reply:
    if isinstance(exc, CommandError):
        return cpb.Reply(error=cpb.Error(message=str(exc), field=exc.field or "",
                                         status=exc.status))
    return cpb.Reply(error=cpb.Error(message=f"{type(exc).__name__}: {exc}", status=500))


class InferenceWorker:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        cfg = ctx.config
        self.config = cfg
        self.headless = bool(ctx.extra.get("headless"))
        self.fps = cfg.video.fps
        self.model_cls: type[VideoModel] = cfg.model_class()
        self.model: VideoModel | None = None
        self.commands: deque[PendingCommand] = deque()
        self.sessions: queue.Queue[tuple[str, int]] = queue.Queue()
        self.current: RingIO | None = None
        self.session_count = 0
        self.frames_in = 0
        self.frames_out = 0
        self.frames_emitted = 0
        self.lat_input = LatencyWindow("input_ring")
        self.lat_model = LatencyWindow("model")
        self.proc = ProcessStats()
        self.input = ShmRing.attach(ctx.rings["input"])
        # The GPU path (reactor.media.gpu): emitted device tensors stay on the device.
        self.output = attach_ring(ctx.rings["output"])
        self.gpu = gpu_plan(ctx.extra, cfg.device)
        if self.gpu.on_gpu and self.gpu.index is not None:
            # The model's thread's current device: a model's torch.device("cuda"), and every
            # CUDA context this process makes, is on the plan's device (cuda:N).
            import torch

            torch.cuda.set_device(self.gpu.index)
        #: ``device: cuda``/``cuda:N`` asked for the GPU by name: ``inputs()`` yields CUDA
        #: tensors (``auto`` keeps numpy frames, so a model written for any machine works).
        self.input_device: int | None = (self.gpu.index if self.gpu.on_gpu
                                         and cfg.device.startswith("cuda") else None)
        self.input_reader = self.input.reader()
        rings = ctx.rings
        self.audio_out = ShmRing.attach(rings["audio_out"]) if "audio_out" in rings else None
        self.audio_in = ShmRing.attach(rings["audio_in"]) if "audio_in" in rings else None
        self.audio_in_reader = self.audio_in.reader() if self.audio_in is not None else None
        self.audio_samples_in = 0
        self.audio_samples_out = 0
        self.audio_dropped = 0  # chunks the model's sessions refused (wrong format)
        self.session: Session | None = None
        # True while the model waits in read_input: it is done with every frame it read
        # (what a file run's end is judged by, see reactor.daemon.completion).
        self.awaiting_input = False
        # Timed commands of `reactor run --commands`: (frame, name, args), by frame.
        self.timed: deque[tuple[int, str, dict[str, Any]]] = deque(sorted(
            ((int(c["at_frame"]), c["command"], c.get("args") or {})
             for c in ctx.extra.get("commands", [])), key=lambda c: c[0]))

    # --- link thread ------------------------------------------------------------------

    def stats(self) -> wpb.WorkerStats:
        session = self.session
        dropped = self.audio_dropped + (session.audio_dropped if session is not None else 0)
        # The count first, then the flag: a flag set after the count was read means the
        # model finished every frame counted (it waits for the next one).
        frames_in = self.frames_in
        awaiting = self.awaiting_input
        return worker_stats(self.proc, frames_in, self.frames_out,
                            (self.lat_input, self.lat_model),
                            frames_emitted=self.frames_emitted,
                            audio_samples_in=self.audio_samples_in,
                            audio_samples_out=self.audio_samples_out, audio_dropped=dropped,
                            awaiting_input=awaiting)

    def on_message(self, msg: wpb.ToWorker) -> None:
        body = msg.WhichOneof("body")
        if body == "stop":
            self.ctx.stop.set()
            if self.current is not None:
                self.current.stop.set()
        elif body == "request":
            self._on_request(msg.id, msg.request)

    def _on_request(self, msg_id: int, req: cpb.Request) -> None:
        link = self.ctx.link
        kind = req.WhichOneof("body")
        if kind == "command":
            try:
                args = json.loads(req.command.args_json or "{}")
                valid = self.model_cls.validate_command(req.command.name, args)
            except json.JSONDecodeError as exc:
                link.reply(msg_id, _error_reply(CommandError(f"arguments are not JSON: {exc}",
                                                             status=400)))
                return
            except CommandError as exc:
                link.reply(msg_id, _error_reply(exc))
                return

            def done(result: Any, error: BaseException | None) -> None:
                if error is not None:
                    link.reply(msg_id, _error_reply(error))
                    return
                try:
                    text = json.dumps(result)
                except (TypeError, ValueError):
                    text = json.dumps(repr(result))
                link.reply(msg_id, cpb.Reply(command=cpb.CommandReply(result_json=text)))

            self.commands.append(PendingCommand(req.command.name, valid, done))
        elif kind == "session":
            if req.session.action == cpb.SessionRequest.START:
                self.session_count += 1
                self.sessions.put((req.session.session_id, self.session_count))
            elif self.current is not None and (
                not req.session.session_id or req.session.session_id == self.current.session_id
            ):
                self.current.stop.set()
            link.reply(msg_id, cpb.Reply(ok=cpb.Ok()))
        else:
            link.reply(msg_id, cpb.Reply(error=cpb.Error(
                message=f"inference does not handle {kind!r} requests", status=400)))

    # --- model thread -----------------------------------------------------------------

    def schedule(self, frame: int) -> None:
        """Queue the timed commands due at ``frame`` (an input frame's id, or the count of
        frames a generative model emitted), so the model sees them before that frame."""
        while self.timed and self.timed[0][0] <= frame:
            at, name, args = self.timed.popleft()
            valid = self.model_cls.validate_command(name, args)

            def done(result: Any, error: BaseException | None, name: str = name,
                     at: int = at) -> None:
                if error is not None:
                    log.error("timed command %s at frame %d failed: %s", name, at, error)
                else:
                    log.info("timed command %s applied at frame %d", name, at)

            self.commands.append(PendingCommand(name, valid, done))

    def drain_commands(self) -> list[PendingCommand]:
        out = []
        while self.commands:
            out.append(self.commands.popleft())
        return out

    def event(self, kind: wpb.SessionEvent.Kind, session_id: str, reason: str = "",
              json_body: str = "") -> None:
        ev = wpb.SessionEvent(kind=kind, session_id=session_id, reason=reason, json=json_body)
        self.ctx.link.event(ev)

    def load(self) -> None:
        try:
            self.model = self.model_cls()
            self.model.load(dict(self.ctx.config.model.args))
        except ReactorError:
            raise
        except Exception as exc:
            raise ModelLoadError(
                f"{self.model_cls.__name__}.load() raised {type(exc).__name__}: {exc}"
            ) from exc

    def run(self) -> None:
        assert self.model is not None
        while not self.ctx.stop.is_set():
            try:
                session_id, number = self.sessions.get(timeout=0.05)
            except queue.Empty:
                for cmd in self.drain_commands():  # between sessions, commands apply at once
                    apply_command(self.model, cmd)
                continue
            self.run_session(session_id, number)

    def run_session(self, session_id: str, number: int) -> None:
        assert self.model is not None
        cfg = self.ctx.config
        io = RingIO(self, session_id, number)
        session = Session(self.model, io, id=session_id, width=cfg.video.width,
                          height=cfg.video.height, fps=cfg.video.fps, audio=cfg.audio)
        self.current, self.session = io, session
        if self.input.policy == "latest":
            self.input_reader.read(0)  # skip whatever the previous session left in the ring
        self.schedule(0)
        set_log_session(session_id)
        log.info("session start %s", session_id)
        self.event(wpb.SessionEvent.STARTED, session_id)
        reason, kind = "ended", wpb.SessionEvent.ENDED
        try:
            self.model.start_session(session)
            reason = "the model returned from start_session"
        except SessionStopped:
            reason = "stopped"
        except Exception as exc:
            log.exception("session %s: start_session raised", session_id)
            reason = f"{type(self.model).__name__}.start_session raised {type(exc).__name__}: {exc}"
            kind = wpb.SessionEvent.ERROR
        finally:
            try:
                self.model.end_session()
            except Exception as exc:
                log.exception("session %s: end_session raised", session_id)
                if kind != wpb.SessionEvent.ERROR:
                    kind, reason = wpb.SessionEvent.ERROR, f"end_session raised {exc!r}"
            self.current, self.session = None, None
            self.audio_dropped += session.audio_dropped
        if io.stop_reason:
            reason, kind = io.stop_reason, wpb.SessionEvent.ERROR
        log.info("session end %s: %s", session_id, reason)
        set_log_session(None)
        self.event(kind, session_id, reason=reason)
        for cmd in self.drain_commands():
            apply_command(self.model, cmd)
        self._check_memory_released()

    def _check_memory_released(self) -> None:
        """After a session that passed ``session.max_rss_mb``: if the model kept the memory
        (in its own attributes, say), only a fresh process gets it back."""
        limit = self.ctx.config.session.max_rss_mb
        if limit is None or self.proc.rss_bytes() <= limit * MIB:
            return
        gc.collect()
        rss = self.proc.rss_bytes()
        if rss > limit * MIB:
            raise WorkerDiedError(
                f"the inference worker still uses {rss / MIB:.0f} MiB after the session "
                f"ended (session.max_rss_mb is {limit}); restarting it to release the memory")

    def watchdog(self) -> None:
        """End a session whose model emits nothing for ``session.stall_timeout_s`` or whose
        process passes ``session.max_rss_mb``; exit the process (the supervisor restarts
        it) if the model is still in its own code ``session.stop_grace_s`` after a stop."""
        cfg = self.ctx.config.session
        limit, grace = cfg.stall_timeout_s, cfg.stop_grace_s
        max_rss = cfg.max_rss_mb * MIB if cfg.max_rss_mb is not None else None
        while not self.ctx.stop.wait(0.1):
            io = self.current
            if io is None:
                continue
            now = time.monotonic()
            if io.stop.is_set() or self.ctx.stop.is_set():
                io.stop_seen = io.stop_seen or now
                since = io.in_model_since
                if since is not None and now - max(since, io.stop_seen) > grace:
                    why = (f"the model ignored the stop for {grace:g} s "
                           f"(session.stop_grace_s), stuck in its own code")
                    reason = f"{io.stop_reason or 'the session was stopped'}; {why}"
                    log.error("session %s: %s; restarting the worker", io.session_id, reason)
                    self.event(wpb.SessionEvent.ERROR, io.session_id, reason=reason)
                    self.ctx.link.fatal(why)
                    raise SystemExit(3)
                continue
            if max_rss is not None:
                rss = self.proc.rss_bytes()
                if rss > max_rss:
                    io.stop_reason = (
                        f"the inference worker's memory reached {rss / MIB:.0f} MiB, over "
                        f"session.max_rss_mb = {cfg.max_rss_mb}"
                    )
                    log.error("session %s: %s", io.session_id, io.stop_reason)
                    io.stop.set()
                    continue
            since = io.in_model_since
            if since is not None and now - since > limit:
                io.stop_reason = (
                    f"the model emitted nothing for {now - since:.1f} s "
                    f"(session.stall_timeout_s is {limit:g})"
                )
                log.error("session %s: %s", io.session_id, io.stop_reason)
                io.stop.set()


def main(ctx: WorkerContext) -> None:
    # A model busy in Python would otherwise hold the GIL for 5 ms slices, delaying the
    # link thread's replies and heartbeats by as much.
    sys.setswitchinterval(0.001)
    worker = InferenceWorker(ctx)
    link = ctx.attach(worker)
    worker.load()
    wd = threading.Thread(target=_watch, args=(worker,), name="watchdog", daemon=True)
    wd.start()
    schema = worker.model_cls.schema(ctx.config.video.width, ctx.config.video.height,
                                     ctx.config.video.fps)
    link.ready(wpb.Ready(inference=wpb.InferenceReady(schema_json=json.dumps(schema))))
    log.info("ready: model %s", worker.model_cls.name)
    worker.run()


def _watch(worker: InferenceWorker) -> None:
    import os

    try:
        worker.watchdog()
    except SystemExit:
        time.sleep(0.3)  # let the link deliver the error event
        os._exit(3)
