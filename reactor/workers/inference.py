"""The inference worker: loads the model once and runs one session at a time.

Threads: the *model thread* (this process's main thread) runs ``load()``, then sessions,
and applies commands between frames; the *link thread* talks to the supervisor, validates
commands as they arrive (an invalid one is answered at once and never queued) and queues
the valid ones for the model thread; a *watchdog thread* ends a session whose model stops
emitting for ``session.stall_timeout_s`` or whose memory passes ``session.max_rss_mb``, and
exits the process (the supervisor restarts it) when a model ignores the stop for
``session.stop_grace_s``.

What the threads share is explicit: the counters are the model thread's alone to write and
the link thread reads them through :meth:`Counters.snapshot` (under a lock); commands and
session starts cross from the link thread to the model thread through a deque and a
queue; the session being run is one reference (see ``InferenceWorker.__init__``).
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
from dataclasses import dataclass
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
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb
from reactor.runtime.latency import LatencyWindow
from reactor.runtime.logs import set_log_session
from reactor.runtime.stats import ProcessStats
from reactor.workers.base import WorkerContext
from reactor.workers.ring_io import RingIO
from reactor.workers.stats import worker_stats

log = logging.getLogger(__name__)

MIB = 1024 * 1024


def _error_reply(exc: BaseException) -> cpb.Reply:
    if isinstance(exc, CommandError):
        return cpb.Reply(error=cpb.Error(message=str(exc), field=exc.field or "",
                                         status=exc.status))
    return cpb.Reply(error=cpb.Error(message=f"{type(exc).__name__}: {exc}", status=500))


@dataclass(frozen=True)
class CountersSnapshot:
    """The inference worker's counters at one moment, for a heartbeat."""

    frames_in: int = 0
    frames_out: int = 0
    frames_emitted: int = 0
    audio_samples_in: int = 0
    audio_samples_out: int = 0
    #: Audio chunks dropped: stale input skipped, and chunks the sessions refused.
    audio_dropped: int = 0
    #: The model waits in ``read_input``: it is done with every frame counted in
    #: ``frames_in`` (what a file run's end is judged by, see reactor.daemon.completion).
    awaiting_input: bool = False
    latency: tuple[tpb.LatencyStat, ...] = ()


class Counters:
    """The inference worker's counters and latency windows.

    One writer: the model thread (the worker's sessions and their ``RingIO``) calls every
    method but :meth:`snapshot`, which the link thread calls for each heartbeat. The lock
    makes a snapshot one moment's figures: a file run ends when ``awaiting_input`` is seen
    with a ``frames_in`` that counts every frame read, so a frame taken off the ring is
    counted in the same step that clears the flag (:meth:`input_read`), and the two are
    never read apart. The writer's own reads (``frames_out`` for a frame id) need no lock.
    A snapshot takes the two latency windows' percentiles under the lock (512 samples at
    most, tens of microseconds, twice a second): the model thread waits that long at most
    once a heartbeat.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frames_in = 0
        self._frames_out = 0
        self._audio_samples_in = 0
        self._audio_samples_out = 0
        self._audio_dropped = 0  # stale input chunks, and the refused chunks of past sessions
        self._session_refused = 0  # the running session's own count (Session.audio_dropped)
        self._awaiting_input = False
        self._lat_input = LatencyWindow("input_ring")
        self._lat_model = LatencyWindow("model")

    @property
    def frames_out(self) -> int:
        """Frames written so far (the next frame's id); for the writer."""
        return self._frames_out

    def waiting_for_input(self) -> None:
        with self._lock:
            self._awaiting_input = True

    def input_read(self, latency_ms: float | None) -> None:
        """The wait in ``read_input`` ended, with a frame that spent ``latency_ms`` in the
        input ring or (None) with none."""
        with self._lock:
            self._awaiting_input = False
            if latency_ms is not None:
                self._frames_in += 1
                self._lat_input.add(latency_ms)

    def frame_written(self, model_ms: float | None) -> None:
        """A frame went into the output ring, ``model_ms`` after its input was read (None
        for a generative model's frame)."""
        with self._lock:
            self._frames_out += 1
            if model_ms is not None:
                self._lat_model.add(model_ms)

    def audio_read(self, samples: int, stale_dropped: int) -> None:
        with self._lock:
            self._audio_samples_in += samples
            self._audio_dropped += stale_dropped

    def audio_written(self, samples: int) -> None:
        with self._lock:
            self._audio_samples_out += samples

    def session_refused(self, chunks: int) -> None:
        """The running session's count of refused audio chunks, as it is now."""
        with self._lock:
            self._session_refused = chunks

    def session_ended(self) -> None:
        """The session's refused chunks stay counted; the next session counts from 0."""
        with self._lock:
            self._audio_dropped += self._session_refused
            self._session_refused = 0

    def snapshot(self) -> CountersSnapshot:
        with self._lock:
            return CountersSnapshot(
                frames_in=self._frames_in, frames_out=self._frames_out,
                frames_emitted=self._frames_out, audio_samples_in=self._audio_samples_in,
                audio_samples_out=self._audio_samples_out,
                audio_dropped=self._audio_dropped + self._session_refused,
                awaiting_input=self._awaiting_input,
                latency=tuple(st for st in (self._lat_input.stat(), self._lat_model.stat())
                              if st is not None))


class InferenceWorker:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        cfg = ctx.config
        self.config = cfg
        self.headless = ctx.options.headless
        self.fps = cfg.video.fps
        self.model_cls: type[VideoModel] = cfg.model_class()
        self._model: VideoModel | None = None
        # Commands from the link thread to the model thread: a deque, whose append and
        # popleft are atomic (each side uses one end), so the link thread never blocks.
        self._commands: deque[PendingCommand] = deque()
        # Session starts, from the link thread to the model thread, which waits on it.
        self._sessions: queue.Queue[tuple[str, int]] = queue.Queue()
        # The session being run: set and cleared by the model thread only; the link and
        # watchdog threads read it once into a local and act on that session (its stop
        # Event, its stop_reason). A reference read is atomic, and a stale one stops or
        # checks a session that just ended, which is harmless.
        self._current: RingIO | None = None
        self._session_count = 0  # the link thread's, numbering the sessions it queues
        #: The counters: the model thread writes them, the heartbeat reads a snapshot().
        self.counters = Counters()
        self._proc = ProcessStats()
        self._input = ShmRing.attach(ctx.rings.input)
        # The GPU path (reactor.media.gpu): emitted device tensors stay on the device.
        self.output = attach_ring(ctx.rings.output)
        self.gpu = gpu_plan(ctx.options.gpu, cfg.device)
        if self.gpu.on_gpu and self.gpu.index is not None:
            # The model's thread's current device: a model's torch.device("cuda"), and every
            # CUDA context this process makes, is on the plan's device (cuda:N).
            import torch

            torch.cuda.set_device(self.gpu.index)
        #: ``device: cuda``/``cuda:N`` asked for the GPU by name: ``inputs()`` yields CUDA
        #: tensors (``auto`` keeps numpy frames, so a model written for any machine works).
        self.input_device: int | None = (self.gpu.index if self.gpu.on_gpu
                                         and cfg.device.startswith("cuda") else None)
        self.input_reader = self._input.reader()
        rings = ctx.rings
        self.audio_out = ShmRing.attach(rings.audio_out) if rings.audio_out else None
        self._audio_in = ShmRing.attach(rings.audio_in) if rings.audio_in else None
        self.audio_in_reader = self._audio_in.reader() if self._audio_in is not None else None
        self._session: Session | None = None  # the model thread's, with current
        # Timed commands of `reactor run --commands`: (frame, name, args), by frame.
        self._timed: deque[tuple[int, str, dict[str, Any]]] = deque(sorted(
            ((c.at_frame, c.command, c.args) for c in ctx.options.commands),
            key=lambda c: c[0]))

    # --- link thread ------------------------------------------------------------------

    def stats(self) -> wpb.WorkerStats:
        c = self.counters.snapshot()
        stats = worker_stats(self._proc, c.frames_in, c.frames_out, (),
                             frames_emitted=c.frames_emitted,
                             audio_samples_in=c.audio_samples_in,
                             audio_samples_out=c.audio_samples_out,
                             audio_dropped=c.audio_dropped, awaiting_input=c.awaiting_input)
        stats.latency.extend(c.latency)
        return stats

    def on_message(self, msg: wpb.ToWorker) -> None:
        body = msg.WhichOneof("body")
        if body == "stop":
            self.ctx.stop.set()
            if self._current is not None:
                self._current.stop.set()
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

            self._commands.append(PendingCommand(req.command.name, valid, done))
        elif kind == "session":
            if req.session.action == cpb.SessionRequest.START:
                self._session_count += 1
                self._sessions.put((req.session.session_id, self._session_count))
            elif self._current is not None and (
                not req.session.session_id or req.session.session_id == self._current.session_id
            ):
                self._current.stop.set()
            link.reply(msg_id, cpb.Reply(ok=cpb.Ok()))
        else:
            link.reply(msg_id, cpb.Reply(error=cpb.Error(
                message=f"inference does not handle {kind!r} requests", status=400)))

    # --- model thread -----------------------------------------------------------------

    def schedule(self, frame: int) -> None:
        """Queue the timed commands due at ``frame`` (an input frame's id, or the count of
        frames a generative model emitted), so the model sees them before that frame."""
        while self._timed and self._timed[0][0] <= frame:
            at, name, args = self._timed.popleft()
            valid = self.model_cls.validate_command(name, args)

            def done(result: Any, error: BaseException | None, name: str = name,
                     at: int = at) -> None:
                if error is not None:
                    log.error("timed command %s at frame %d failed: %s", name, at, error)
                else:
                    log.info("timed command %s applied at frame %d", name, at)

            self._commands.append(PendingCommand(name, valid, done))

    def drain_commands(self) -> list[PendingCommand]:
        """The queued commands, oldest first. The session asks after every emit and read
        (``Session.apply_commands``), so this is also where its own count of refused audio
        reaches the counters: a heartbeat's figure is at most one call behind."""
        session = self._session
        if session is not None:
            self.counters.session_refused(session.audio_dropped)
        out = []
        while self._commands:
            out.append(self._commands.popleft())
        return out

    def event(self, kind: wpb.SessionEvent.Kind, session_id: str, reason: str = "",
              json_body: str = "") -> None:
        ev = wpb.SessionEvent(kind=kind, session_id=session_id, reason=reason, json=json_body)
        self.ctx.link.event(ev)

    def load(self) -> None:
        try:
            self._model = self.model_cls()
            self._model.load(dict(self.ctx.config.model.args))
        except ReactorError:
            raise
        except Exception as exc:
            raise ModelLoadError(
                f"{self.model_cls.__name__}.load() raised {type(exc).__name__}: {exc}"
            ) from exc

    def run(self) -> None:
        assert self._model is not None
        while not self.ctx.stop.is_set():
            try:
                session_id, number = self._sessions.get(timeout=0.05)
            except queue.Empty:
                for cmd in self.drain_commands():  # between sessions, commands apply at once
                    apply_command(self._model, cmd)
                continue
            self.run_session(session_id, number)

    def run_session(self, session_id: str, number: int) -> None:
        assert self._model is not None
        cfg = self.ctx.config
        io = RingIO(self, session_id, number)
        session = Session(self._model, io, id=session_id, width=cfg.video.width,
                          height=cfg.video.height, fps=cfg.video.fps, audio=cfg.audio)
        self._current, self._session = io, session
        if self._input.policy == "latest":
            self.input_reader.read(0)  # skip whatever the previous session left in the ring
        self.schedule(0)
        set_log_session(session_id)
        log.info("session start %s", session_id)
        self.event(wpb.SessionEvent.STARTED, session_id)
        reason, kind = "ended", wpb.SessionEvent.ENDED
        try:
            self._model.start_session(session)
            reason = "the model returned from start_session"
        except SessionStopped:
            reason = "stopped"
        except Exception as exc:
            log.exception("session %s: start_session raised", session_id)
            reason = (f"{type(self._model).__name__}.start_session raised "
                      f"{type(exc).__name__}: {exc}")
            kind = wpb.SessionEvent.ERROR
        finally:
            try:
                self._model.end_session()
            except Exception as exc:
                log.exception("session %s: end_session raised", session_id)
                if kind != wpb.SessionEvent.ERROR:
                    kind, reason = wpb.SessionEvent.ERROR, f"end_session raised {exc!r}"
            self._current, self._session = None, None
            self.counters.session_refused(session.audio_dropped)
            self.counters.session_ended()
        if io.stop_reason:
            reason, kind = io.stop_reason, wpb.SessionEvent.ERROR
        log.info("session end %s: %s", session_id, reason)
        set_log_session(None)
        self.event(kind, session_id, reason=reason)
        for cmd in self.drain_commands():
            apply_command(self._model, cmd)
        self._check_memory_released()

    def _check_memory_released(self) -> None:
        """After a session that passed ``session.max_rss_mb``: if the model kept the memory
        (in its own attributes, say), only a fresh process gets it back."""
        limit = self.ctx.config.session.max_rss_mb
        if limit is None or self._proc.rss_bytes() <= limit * MIB:
            return
        gc.collect()
        rss = self._proc.rss_bytes()
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
            io = self._current
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
                rss = self._proc.rss_bytes()
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
