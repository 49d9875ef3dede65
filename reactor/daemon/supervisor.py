"""The supervisor: the daemon's main process.

It claims the run directory, creates the rings, binds the sockets, starts the workers of
its :class:`~reactor.daemon.plan.Plan` and then runs one loop that polls everything it
watches — the control socket, the workers' socket, the workers' process sentinels and a
signal wake-up pipe — with a timeout that drives heartbeats, restarts and telemetry.
Signal handlers only queue; the loop does the work. The parts it ties together stand
alone: the daemon's state (``lifecycle.py``: the supervisor feeds it events and carries
out the actions it answers), the worker pool and its restart policy (``pool.py``), the
request router (``router.py``), sessions (``sessions.py``), telemetry snapshots
(``snapshot.py``), the rings (``rings.py``) and the stop signals (``signals.py``).

Start-up is a READY handshake: each worker sends a typed ``Ready`` when it can serve, and
one that does not within ``model.load_timeout_s`` fails the start with its last log
lines. Every death and every restart is announced to clients as a ``worker`` session event.

Long module: about 550 lines, because it is the one loop and the handlers of what that loop
sees (workers, requests, signals, a drain); every rule they apply already lives in its own
module (lifecycle, pool, router, sessions, drain), and what remains here is their wiring.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import multiprocess
import zmq

from reactor.config import Config
from reactor.control.rundir import RunDir, tail_lines
from reactor.control.sockets import make_socket
from reactor.daemon import lifecycle as lc
from reactor.daemon.completion import run_complete
from reactor.daemon.drain import Drain, EndSession, Stop
from reactor.daemon.gpu_telemetry import NvmlSampler, fill_gpu
from reactor.daemon.health import PipelineHealth
from reactor.daemon.metrics import CONTENT_TYPE, MetricsState, Scrape, build_info, make_registry
from reactor.daemon.metrics import render as render_metrics
from reactor.daemon.plan import Plan, Role
from reactor.daemon.pool import Outcome, Process, Verdict, WorkerPool, WorkerState
from reactor.daemon.rings import Ring, create_rings, remove_rings
from reactor.daemon.router import Route, Router, error_reply, viewer_limit
from reactor.daemon.schema import ModelSchema
from reactor.daemon.sessions import SessionManager
from reactor.daemon.signals import StopSignals
from reactor.daemon.snapshot import TELEMETRY_S, Telemetry, build_snapshot
from reactor.errors import ConfigError
from reactor.ipc import CudaRing, RingHandles
from reactor.media.gpu import GpuCaps, GpuPlan, detect, plan_gpu
from reactor.proto import control_pb2 as cpb
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb
from reactor.runtime.gc import freeze_gc, tune_gc
from reactor.runtime.throttle import Throttle

log = logging.getLogger(__name__)

STOP_GRACE_S = 5.0

__all__ = ["Supervisor"]


class Supervisor:
    def __init__(self, config: Config, run_dir: Path, plan: Plan | None = None) -> None:
        self.config = config
        self.plan = plan or Plan()
        self.rd = RunDir(Path(run_dir))
        self.lifecycle = lc.Lifecycle(headless=self.plan.headless, now=time.monotonic())
        #: The port ingress bound (the one it picked when ``server.port`` is 0), once it
        #: said so: the URL clients are given, and where a restarted ingress listens again.
        #: ``self.config`` stays as it was started.
        self.bound_port: int | None = None
        self.final: tpb.Snapshot | None = None
        self.rings: dict[str, Ring] = {}
        self.gpu = GpuPlan(config.device)  # decided in run(): detect() looks at the machine
        self.nvml = NvmlSampler()
        self.schema = ModelSchema()
        self._publish_failures = Throttle(PUBLISH_LOG_EVERY_S)
        self.telemetry = Telemetry()
        self.health = PipelineHealth()
        self.pool = WorkerPool(self.plan.workers, self._spawn, config.supervisor,
                               load_timeout_s=config.model.load_timeout_s, clock=time.monotonic)
        self.metrics = MetricsState()
        self._metrics_registry = make_registry(self._scrape)
        self._build_info: dict[str, str] | None = None
        self.sessions = SessionManager(self, orphan_timeout_s=config.session.orphan_timeout_s,
                                       metrics=self.metrics,
                                       max_duration_s=config.session.max_duration_s)
        #: Set once the daemon drains (reactor.daemon.drain).
        self.drain: Drain | None = None
        self.router = Router(
            self, self.plan.route_table(), state_of=lambda name: self.pool[name].state,
            clock=time.monotonic,
            admission={"whep": viewer_limit(lambda: self.config.server.max_viewers,
                                            lambda: self.sessions.viewers)},
            local={"status": self._on_status, "schema": self._on_schema, "stop": self._on_stop,
                   "restart_worker": self._on_restart, "session": self.sessions.on_request,
                   "metrics": self._on_metrics, "drain": self._on_drain})
        # A file run has no clients to drain for: SIGTERM stops it.
        self._signals = StopSignals(drain_on_sigterm=config.session.drain_timeout_s is not None
                                    and not self.plan.headless)
        self._mp = multiprocess.get_context("spawn")
        self._ctx: zmq.Context[Any] | None = None

    @property
    def state(self) -> lc.DaemonState:
        return self.lifecycle.state

    @property
    def error(self) -> str:
        return self.lifecycle.error

    # --- life cycle -------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; return the exit code (0 after a clean stop)."""
        self.rd.claim()
        log.info("start supervisor pid=%d run_dir=%s", os.getpid(), self.rd.path)
        tune_gc()
        self._ctx = zmq.Context()
        with self._signals:
            try:
                try:
                    # device: cpu needs no look at the machine (which imports torch and
                    # starts CUDA where a driver is present).
                    caps = GpuCaps() if self.config.device == "cpu" else detect()
                    self.gpu = plan_gpu(self.config.device, caps)
                except ConfigError as exc:  # the CLI shows the log's last lines: say it there
                    log.error("start failed: %s", exc)
                    raise
                log.info("gpu: %s", self.gpu.reason)
                # A file run's sink reads host frames: its output ring stays in shared memory.
                self.rings = create_rings(self.config, self.plan.input_policy,
                                          None if self.plan.headless else self.gpu)
                self.control = make_socket(self._ctx, zmq.ROUTER,
                                           bind=self.rd.endpoint("control"))
                self.wsock = make_socket(self._ctx, zmq.ROUTER,
                                         bind=self.rd.endpoint("workers"), hwm=100_000)
                self.pub = make_socket(self._ctx, zmq.PUB, bind=self.rd.endpoint("telemetry"),
                                       hwm=4)
                self.rd.protect_sockets()
                self.pool.start_all()
                self._loop()
                self.final = self.snapshot()
                return 1 if self.state == lc.DaemonState.FAILED else 0
            finally:
                self._shutdown()

    def request_stop(self, why: str = "requested") -> None:
        self._apply(lc.StopRequested(why))

    def _apply(self, event: lc.Event) -> None:
        """Feed ``event`` to the life cycle and carry out what it answers."""
        t = self.lifecycle.on(event)
        if t.ignored:
            log.debug("life cycle: %s ignored: %s", type(event).__name__, t.ignored)
        for action in t.actions:
            self._perform(action)

    def _perform(self, action: lc.Action) -> None:
        match action:
            case lc.Announce():
                self.sessions.worker_event(action.worker, action.state, action.reason,
                                           **dict(action.data))
            case lc.FreezeGc():
                freeze_gc()  # as each worker does once it is ready (see freeze_gc)
            case lc.LogReady():
                log.info("ready: all workers running%s", "" if self.plan.headless else
                         f"; open {self.url()}")
            case lc.StartSession():
                self.sessions.start()
            case lc.EndSession():
                self.sessions.stop(action.reason, cause=action.cause)
            case lc.Stop():
                log.info("stop: %s", action.why)

    def _worker_config(self) -> Config:
        """The config a worker is started with: the one the daemon started with, with the
        port ingress bound in place of a 0, so a restarted ingress listens on the same
        port and clients reconnect to the URL they know."""
        if self.bound_port is None or self.config.server.port == self.bound_port:
            return self.config
        server = self.config.server.model_copy(update={"port": self.bound_port})
        return self.config.model_copy(update={"server": server})

    def _spawn(self, name: str) -> Process:
        from reactor.workers.entry import run_worker

        proc = self._mp.Process(
            target=run_worker, name=f"reactor-{name}", daemon=False,
            args=(name, self._worker_config(), str(self.rd.path), RingHandles.of(self.rings),
                  os.getpid(), dataclasses.replace(self.plan.options, gpu=self.gpu)))
        proc.start()
        started: Process = proc  # multiprocess has no types: typed here, where it is made
        return started

    def _shutdown(self) -> None:
        self._apply(lc.ShuttingDown())
        log.info("stop: stopping workers")
        self.pool.stop_all(lambda name: self.send_to(name, wpb.ToWorker(stop="daemon stopping")),
                           STOP_GRACE_S)
        remove_rings(self.rings)
        self.nvml.close()
        if self._ctx is not None:
            self._ctx.destroy(0)
        self.rd.release()
        log.info("stop: done")

    # --- the loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        poller = zmq.Poller()
        wake = self._signals.fileno()
        for sock in (self.control, self.wsock, wake):
            poller.register(sock, zmq.POLLIN)
        sentinels: dict[int, str] = {}
        next_telemetry = 0.0
        while not (self.lifecycle.stop_requested or self._signals.received):
            current = self.pool.sentinels()
            if current != sentinels:  # a worker started or died: only then re-register
                for fd in sentinels:
                    poller.unregister(fd)
                sentinels = current
                for fd in sentinels:
                    poller.register(fd, zmq.POLLIN)
            timeout = max(0.0, min(next_telemetry - time.monotonic(), 0.1))
            events = dict(poller.poll(int(timeout * 1000) + 1))
            if wake in events:
                self._signals.drain()
            if self._signals.drain_requested:
                self._signals.drain_requested = False
                self.start_drain(self.config.session.drain_timeout_s, "SIGTERM")
            if self.wsock in events:
                self._drain(self.wsock, self._on_worker_frames)
            if self.control in events:
                self._drain(self.control, self._on_control_frames)
            for fd, name in sentinels.items():
                if fd in events:
                    self._on_verdict(self.pool.on_exit(
                        name, restartable=self.lifecycle.restartable))
            for verdict in self.pool.tick():
                self._on_verdict(verdict)
            now = time.monotonic()
            self.router.expire()
            self.sessions.tick(now)
            if self.drain is not None:
                self._drain_step(now)
            if self.plan.headless:
                self._check_headless_done()
            if now >= next_telemetry:
                self._publish()
                next_telemetry = now + TELEMETRY_S

    def _drain(self, sock: zmq.Socket[Any], handle: Callable[[list[bytes]], None]) -> None:
        for _ in range(1000):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                handle(frames)
            except Exception:  # a malformed message is logged and dropped, never fatal
                log.warning("dropped a malformed message (%d frames)", len(frames),
                            exc_info=True)

    # --- workers ----------------------------------------------------------------------

    def send_to(self, worker: str, msg: wpb.ToWorker) -> bool:
        try:
            self.wsock.send_multipart([worker.encode(), msg.SerializeToString()], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:  # not connected (yet), or gone
            log.debug("cannot reach %s: %s", worker, exc)
            return False

    def _on_worker_frames(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            raise ValueError(f"expected 2 frames, got {len(frames)}")
        name = frames[0].decode("ascii", "replace")
        if name not in self.pool.workers:
            raise ValueError(f"message from unknown worker {name!r}")
        w = self.pool[name]
        msg = wpb.FromWorker()
        msg.ParseFromString(frames[1])
        if msg.pid and w.pid and msg.pid != w.pid:
            return  # a late message from a previous incarnation
        body = msg.WhichOneof("body")
        now = time.monotonic()
        w.last_beat = now
        if body == "heartbeat":
            w.beat(msg.heartbeat, now)
            self.metrics.on_heartbeat(name, msg.pid or w.pid, msg.heartbeat)
            # Heartbeats repeat the client counts, so a count is never stale for long.
            role = self.plan.role(name)
            if role is Role.FRONT:
                self.sessions.on_clients(sender=msg.heartbeat.sender)
            elif role is Role.BACK:
                self.sessions.on_clients(viewers=msg.heartbeat.viewers)
        elif body == "ready":
            self._on_ready(name, msg.ready)
        elif body == "clients":
            self.sessions.on_count(msg.clients)
        elif body == "fatal":
            w.last_error = msg.fatal
            log.error("%s: fatal: %s", name, msg.fatal)
            self.add_log(name, "ERROR", msg.fatal)
        elif body == "event":
            self.sessions.on_event(name, msg.event)
        elif body == "reply":
            done = self.router.on_reply(msg.reply_to, msg.reply)
            if done is not None and done.request.HasField("command"):
                self.sessions.log_command(done.request.command, msg.reply)
                if not msg.reply.HasField("error"):
                    self._applied(done.request.command)
                self.metrics.on_command(done.request.command.name, msg.reply,
                                        self.schema.command_names())
        elif body == "request":
            self.router.handle(msg.request, ("worker", name.encode()))
        elif body == "log":
            self.telemetry.logs.append(msg.log)

    def _applied(self, cmd: cpb.CommandRequest) -> None:
        """Command ``cmd`` was applied: the schema keeps its arguments (status, its
        ``current``), and clients get a ``command`` event (every page's controls follow)."""
        args = self.schema.applied_now(cmd.name, cmd.args_json)
        sid = self.sessions.current.id if self.sessions.current is not None else ""
        self.sessions.broadcast(wpb.SessionEvent(
            kind=wpb.SessionEvent.COMMAND, session_id=sid, reason=cmd.name,
            json=json.dumps({"name": cmd.name, "args": args})))

    def _on_ready(self, name: str, ready: wpb.Ready) -> None:
        w = self.pool.mark_ready(name, ready)
        role = self.plan.role(name)
        if ready.ingress.port and self.bound_port is None:
            # The first ingress says where it listens (the free port it picked when
            # server.port is 0); a restarted one is started on the same (_worker_config).
            self.bound_port = ready.ingress.port
        if role is Role.FRONT:
            # A restarted front door has no memory: give it the recent session and worker
            # events, so clients that reconnect (SSE Last-Event-ID) learn what happened.
            for ev in self.sessions.recent:
                self.send_to(name, wpb.ToWorker(event=ev))
        self._apply(lc.WorkerReady(name, w.pid, w.restarts))
        if role is Role.MODEL:
            try:
                self.schema.read(ready.inference.schema_json)
            except ValueError as exc:  # schema requests answer with it too
                log.error("the model's schema could not be read: %s", exc)
                self.add_log(name, "ERROR", f"the model's schema could not be read: {exc}")
            self.sessions.on_inference_ready()
        if self.pool.all_running():
            self._apply(lc.AllReady(session_open=self.sessions.current is not None))

    def _check_headless_done(self) -> None:
        if self.lifecycle.done:
            if self.sessions.current is None:
                self._apply(lc.SessionClosed())
            return
        if not self.lifecycle.awaiting_completion:
            return
        src, model, sink = (self.pool[n].stats for n in self.plan.workers)
        if run_complete(src, model, sink, input_dropped=self.rings["input"].stats().dropped,
                        output_used=self.rings["output"].stats().used):
            self._apply(lc.RunComplete())

    def _on_verdict(self, v: Verdict) -> None:
        name, pid = v.worker.name, v.worker.pid
        role = self.plan.role(name)
        if v.cause:  # the process died (a start timeout is no death)
            self.add_log(name, "ERROR", f"{name} died: {v.cause}")
            # Its clients' connections died with it; they count as gone (the orphan timer).
            if role is Role.FRONT:
                self.sessions.on_clients(sender=False)
            elif role is Role.BACK:
                self.sessions.on_clients(viewers=0)
            self.router.worker_lost(name, v.cause)
            if role is Role.MODEL:
                self.sessions.on_inference_lost(f"the inference worker died ({v.cause})")
        if v.outcome is Outcome.RESTART:
            self._apply(lc.WorkerRestarting(name, pid, v.cause, v.delay_s))
        else:
            self._apply(lc.WorkerGaveUp(name, v.why, str(self.rd.log(name)),
                                        tuple(tail_lines(self.rd.log(name), 15))))

    # --- requests ---------------------------------------------------------------------

    def _on_control_frames(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            raise ValueError("expected identity, empty delimiter and a request")
        req = cpb.Request()
        req.ParseFromString(frames[-1])
        if req.WhichOneof("body") is None:
            raise ValueError("request without a body")
        self.router.handle(req, ("control", frames[0]))

    def reply(self, route: Route, reply: cpb.Reply) -> None:
        kind, ident = route
        if kind == "control":
            with contextlib.suppress(zmq.ZMQError):  # the client went away
                self.control.send_multipart([ident, b"", reply.SerializeToString()],
                                            zmq.NOBLOCK)
        else:
            self.send_to(ident.decode(), wpb.ToWorker(reply=reply))

    def _on_status(self, req: cpb.Request, route: Route) -> None:
        self.reply(route, cpb.Reply(id=req.id, status=self.snapshot()))

    def _on_metrics(self, req: cpb.Request, route: Route) -> None:
        try:
            text = render_metrics(self._metrics_registry)
        except Exception as exc:  # a collector bug: answer now, rather than a 504 later
            log.exception("rendering /metrics failed")
            self.reply(route, error_reply(req.id, f"rendering the metrics failed: {exc!r}; "
                                          "see `reactor daemon logs supervisor`", 500))
            return
        self.reply(route, cpb.Reply(id=req.id, metrics=cpb.MetricsReply(
            text=text, content_type=CONTENT_TYPE)))

    def _scrape(self) -> Scrape:
        if self._build_info is None:  # the codec libraries' versions: read once
            self._build_info = build_info(self.config.device)
        back = self.pool[self.plan.worker(Role.BACK)].ready
        return Scrape(snapshot=self.snapshot(), state=self.metrics, build=self._build_info,
                      codec=back.egress.codec if back.HasField("egress") else "",
                      commands=self.schema.command_names(),
                      roles=tuple((self.plan.worker(r), r.value)
                                  for r in (Role.FRONT, Role.MODEL, Role.BACK)))

    def _on_schema(self, req: cpb.Request, route: Route) -> None:
        self.reply(route, self.schema.reply(req.id))

    def _on_stop(self, req: cpb.Request, route: Route) -> None:
        self.reply(route, cpb.Reply(id=req.id, ok=cpb.Ok()))
        self.request_stop("requested over the control socket")

    def _on_drain(self, req: cpb.Request, route: Route) -> None:
        timeout = (req.drain.timeout_s if req.drain.HasField("timeout_s")
                   else self.config.session.drain_timeout_s)
        if timeout is not None and timeout < 0:
            self.reply(route, error_reply(req.id, f"drain: timeout must be 0 or more seconds, "
                                          f"found {timeout:g}", 400, "timeout_s"))
            return
        self.start_drain(timeout, "reactor daemon drain")
        self.reply(route, cpb.Reply(id=req.id, status=self.snapshot()))

    # --- draining ---------------------------------------------------------------------

    def start_drain(self, timeout_s: float | None, why: str) -> None:
        """Take no new session; stop once the running one ends, or ``timeout_s`` has passed
        (``None``: however long it runs). A second drain changes nothing."""
        if self.drain is not None:
            log.info("drain: already draining (since %s); %s changes nothing",
                     self.drain.why, why)
            return
        now = time.monotonic()
        self.drain = Drain(timeout_s=timeout_s, why=why, now=now,
                           end_grace_s=self.config.session.stop_grace_s + 5.0)
        self.sessions.draining = True
        current = self.sessions.current
        until = "" if timeout_s is None else f", for at most {timeout_s:g} s"
        reason = (f"the daemon is draining ({why}): it takes no new session; "
                  + (f"session {current.id} goes on until it ends{until}" if current
                     else "no session runs, so it stops now"))
        log.info("drain: %s", reason)
        self.sessions.broadcast(wpb.SessionEvent(
            kind=wpb.SessionEvent.DRAINING, session_id=current.id if current else "",
            reason=reason, json=json.dumps({"timeout_s": timeout_s, "why": why})))

    def _drain_step(self, now: float) -> None:
        assert self.drain is not None
        match self.drain.step(now, session=self.sessions.current is not None):
            case EndSession(reason=reason):
                self.sessions.stop(reason, cause="drained", announce=True)
            case Stop(why=why):
                self.request_stop(why)
            case None:
                pass

    def _on_restart(self, req: cpb.Request, route: Route) -> None:
        name = req.restart_worker.worker
        if name not in self.pool.workers:
            self.reply(route, error_reply(
                req.id, f"unknown worker {name!r}; one of {', '.join(self.pool.workers)}",
                404, "worker"))
            return
        self.pool.restart(name)
        self.reply(route, cpb.Reply(id=req.id, ok=cpb.Ok()))

    # --- what the router and the session manager need (Transport, SessionHost) ----------

    def send(self, target: str | Role, msg: wpb.ToWorker) -> bool:
        return self.send_to(self.plan.worker(target) if isinstance(target, Role) else target,
                            msg)

    def model_running(self) -> bool:
        return self.pool[self.plan.worker(Role.MODEL)].state == WorkerState.RUNNING

    def frames_emitted(self) -> int:
        return self.pool[self.plan.worker(Role.MODEL)].stats.frames_emitted

    def add_log(self, process: str, level: str, message: str) -> None:
        self.telemetry.add_log(process, level, message)

    # --- telemetry --------------------------------------------------------------------

    def url(self) -> str:
        """The daemon's URL: on the port ingress bound, once it said (server.port may be 0)."""
        return self.config.server.url(self.bound_port)

    def snapshot(self) -> tpb.Snapshot:
        now = time.monotonic()
        snap = build_snapshot(
            state=self.state, error=self.error, uptime_s=self.lifecycle.uptime(now),
            config=self.config, model=self.schema.model(self.config.model.module),
            url=self.url(),
            run_dir=self.rd.path, workers=[self.pool[n] for n in self.plan.workers],
            rings=self.rings, sessions=self.sessions, telemetry=self.telemetry, now=now)
        fill_gpu(snap.gpu_stat, self.gpu, self.nvml.sample(),
                 self.pool[self.plan.worker(Role.BACK)].stats,
                 ring="cuda" if isinstance(self.rings.get("output"), CudaRing) else "shm")
        snap.pipeline.warnings.extend(self.health.warnings)
        if self.drain is not None:
            snap.drain.CopyFrom(self.drain.stat(now))
        snap.applied.extend(tpb.CommandLog(name=name, args_json=json.dumps(args))
                            for name, args in self.schema.applied.items())
        return snap

    def _publish(self) -> None:
        self.telemetry.fps_history.append(self.pool[self.plan.worker(Role.BACK)].rates()[1])
        try:
            snap = self.snapshot()
            self.health.tell(snap, self.sessions, self.telemetry)
            data = snap.SerializeToString()
        except Exception as exc:
            # A bug in building the snapshot must not stop the daemon (the workers and
            # their clients are fine), nor go unseen: logged with its traceback, at most
            # once per PUBLISH_LOG_EVERY_S however often it repeats (4 times a second).
            suppressed = self._publish_failures.hit(time.monotonic())
            if suppressed is not None:
                log.error("telemetry: building the status snapshot failed (%s); the daemon "
                          "goes on, `reactor daemon status` and the monitor may be stale%s",
                          f"{type(exc).__name__}: {exc}",
                          f" ({suppressed} more failures since the last report)"
                          if suppressed else "", exc_info=True)
            return
        with contextlib.suppress(zmq.ZMQError):  # no subscriber keeps up: it misses one
            self.pub.send(data, zmq.NOBLOCK)


PUBLISH_LOG_EVERY_S = 60.0
