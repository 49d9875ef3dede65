"""The supervisor: the daemon's main process.

It claims the run directory, creates the rings, binds the sockets, spawns the three
workers (``multiprocess``, spawn context: CUDA forbids fork) and then runs one loop that
polls everything it watches — the control socket, the workers' socket, the workers'
process sentinels and a signal wake-up pipe — with a timeout that drives heartbeats,
restarts and telemetry. Signal handlers only queue; the loop does the work.

Start-up is a READY handshake: each worker says ``ready`` when it can serve, and one that
does not within ``model.load_timeout_s`` fails the start with its last log lines. A worker
that dies is restarted with exponential backoff; one that dies ``supervisor.max_crashes`` times
within ``supervisor.crash_window_s`` is given up on and the daemon's state says why. Every
death and every restart is announced to clients as a ``worker`` session event.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import multiprocess
import zmq

from reactor.config import Config
from reactor.control.rundir import RunDir, tail_lines
from reactor.control.sockets import make_socket
from reactor.daemon.sessions import SessionManager
from reactor.errors import ReactorError
from reactor.ipc import ShmRing
from reactor.proto import control_pb2 as cpb
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb
from reactor.workers.stats import ProcessStats, proc_cpu_seconds

log = logging.getLogger(__name__)

WORKERS = ("ingress", "inference", "egress")
TELEMETRY_S = 0.25
HUNG_S = 10.0
BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
STOP_GRACE_S = 5.0
FORWARD_TIMEOUT_S = 10.0
CPU_WINDOW_S = 1.0


class WorkerState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED = "stopped"
    FAILED = "failed"


class DaemonState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    STOPPING = "stopping"
    FAILED = "failed"


@dataclass
class Worker:
    name: str
    process: Any = None
    state: WorkerState = WorkerState.STOPPED
    restarts: int = 0
    started_at: float = 0.0
    ready_at: float | None = None
    ever_ready: bool = False
    last_beat: float = 0.0
    stats: wpb.WorkerStats = field(default_factory=wpb.WorkerStats)
    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    last_error: str = ""
    ready_text: str = ""
    # (monotonic time, frames_in, frames_out) samples for rates over about a second.
    rate_samples: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=8))

    @property
    def pid(self) -> int:
        return int(self.process.pid) if self.process is not None and self.process.pid else 0

    def rates(self) -> tuple[float, float]:
        if len(self.rate_samples) < 2:
            return 0.0, 0.0
        (t0, i0, o0), (t1, i1, o1) = self.rate_samples[0], self.rate_samples[-1]
        dt = t1 - t0
        return ((i1 - i0) / dt, (o1 - o0) / dt) if dt > 0 else (0.0, 0.0)


@dataclass(frozen=True)
class Plan:
    """Which three workers run (front, inference, back) and how the rings behave.

    The daemon's plan is ingress/inference/egress; ``reactor run --input`` uses a file
    source and a file sink around the same inference worker, and stops once every input
    frame is accounted for.
    """

    workers: tuple[str, str, str] = WORKERS
    input_policy: str = "latest"
    extra: dict[str, Any] = field(default_factory=dict)
    headless: bool = False


@dataclass
class Forward:
    """A request forwarded to a worker, waiting for its reply."""

    route: tuple[str, bytes]  # ("control", client identity) or ("worker", worker name)
    request_id: int
    deadline: float
    command: cpb.CommandRequest | None = None
    worker: str = ""
    whep_offer: bool = False


class Supervisor:
    def __init__(self, config: Config, run_dir: Path, plan: Plan | None = None) -> None:
        self.config = config
        self.plan = plan or Plan()
        self.front, self.middle, self.back = self.plan.workers
        self.rd = RunDir(Path(run_dir))
        self.state = DaemonState.STARTING
        self.error = ""
        self.started = time.monotonic()
        self.workers = {name: Worker(name) for name in self.plan.workers}
        self.final: tpb.Snapshot | None = None
        self.rings: dict[str, ShmRing] = {}
        self.forwards: dict[int, Forward] = {}
        self._next_id = 1
        self.logs: deque[tpb.LogLine] = deque(maxlen=20)
        self.fps_history: deque[float] = deque(maxlen=60)
        self.schema: dict[str, Any] = {}
        self.sessions = SessionManager(self)
        self.proc = ProcessStats()
        self._cpu_prev: dict[int, tuple[float, float, float]] = {}
        self._stop_requested = False
        self._done = False
        self._mp = multiprocess.get_context("spawn")
        self._ctx: zmq.Context[Any] | None = None

    # --- life cycle -------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; return the exit code (0 after a clean stop)."""
        self.rd.claim()
        log.info("start supervisor pid=%d run_dir=%s", os.getpid(), self.rd.path)
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        old_handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno())
        for s in old_handlers:
            signal.signal(s, self._on_signal)
        self._ctx = zmq.Context()
        try:
            self._create_rings()
            self.control = make_socket(self._ctx, zmq.ROUTER, bind=self.rd.endpoint("control"))
            self.wsock = make_socket(self._ctx, zmq.ROUTER, bind=self.rd.endpoint("workers"),
                                     hwm=100_000)
            self.telemetry = make_socket(self._ctx, zmq.PUB, bind=self.rd.endpoint("telemetry"),
                                         hwm=4)
            self.rd.protect_sockets()
            for name in self.plan.workers:
                self._spawn(name)
            self._loop(wake_r)
            self.final = self.snapshot()
            return 1 if self.state == DaemonState.FAILED else 0
        finally:
            self._shutdown()
            signal.set_wakeup_fd(old_wakeup)
            for s, h in old_handlers.items():
                signal.signal(s, h)
            wake_r.close()
            wake_w.close()

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop_requested = True  # only a flag; the wake-up fd interrupts the poll

    def request_stop(self) -> None:
        self._stop_requested = True

    def _create_rings(self) -> None:
        shape = self.config.frame_shape()
        tag = f"reactor-{os.getpid()}"
        specs = {
            "input": (self.config.rings.input_slots, self.plan.input_policy),
            "output": (self.config.rings.output_slots, "block"),
        }
        for ring_name, (slots, policy) in specs.items():
            name = f"{tag}-{ring_name}"
            ShmRing.unlink_name(name)  # a crashed daemon with our pid may have left it
            self.rings[ring_name] = ShmRing.create(
                name, slots=slots, shape=shape, dtype="uint8", policy=policy  # type: ignore[arg-type]
            )
        log.info("rings: %s", ", ".join(f"{k}={r.name}" for k, r in self.rings.items()))

    def _spawn(self, name: str) -> None:
        w = self.workers[name]
        from reactor.workers.base import run_worker

        handles = {k: r.handle for k, r in self.rings.items()}
        proc = self._mp.Process(
            target=run_worker,
            args=(name, self.config, str(self.rd.path), handles, os.getpid(), self.plan.extra),
            name=f"reactor-{name}",
            daemon=False,
        )
        proc.start()
        w.process = proc
        w.state = WorkerState.STARTING
        w.started_at = time.monotonic()
        w.ready_at = None
        w.last_beat = time.monotonic()
        w.restart_at = None
        w.rate_samples.clear()
        log.info("spawn %s pid=%s", name, proc.pid)

    def _shutdown(self) -> None:
        self.state = DaemonState.STOPPING
        log.info("stop: stopping workers")
        for w in self.workers.values():
            if w.process is not None and w.process.is_alive():
                self._send(w.name, wpb.ToWorker(stop="daemon stopping"))
        deadline = time.monotonic() + STOP_GRACE_S
        for w in self.workers.values():
            if w.process is None:
                continue
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                log.warning("stop: %s did not exit in %.0f s; terminating", w.name, STOP_GRACE_S)
                w.process.terminate()
                w.process.join(2.0)
            if w.process.is_alive():
                log.warning("stop: %s ignored SIGTERM; killing", w.name)
                w.process.kill()
                w.process.join(2.0)
            w.state = WorkerState.STOPPED
        for ring in self.rings.values():
            with contextlib.suppress(Exception):
                ring.close()
                ring.unlink()
        if self._ctx is not None:
            self._ctx.destroy(0)
        self.rd.release()
        log.info("stop: done")

    # --- the loop ---------------------------------------------------------------------

    def _loop(self, wake: socket.socket) -> None:
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        poller.register(self.wsock, zmq.POLLIN)
        poller.register(wake.fileno(), zmq.POLLIN)
        sentinels: dict[int, str] = {}
        next_telemetry = 0.0
        while not self._stop_requested:
            for fd in list(sentinels):
                poller.unregister(fd)
            sentinels = {
                w.process.sentinel: w.name
                for w in self.workers.values()
                if w.process is not None and w.state in (WorkerState.STARTING, WorkerState.RUNNING)
            }
            for fd in sentinels:
                poller.register(fd, zmq.POLLIN)
            now = time.monotonic()
            timeout = max(0.0, min(next_telemetry - now, 0.1))
            events = dict(poller.poll(int(timeout * 1000) + 1))
            if wake.fileno() in events:
                with contextlib.suppress(OSError):
                    wake.recv(4096)
            if self.wsock in events:
                self._drain(self.wsock, self._on_worker_frames)
            if self.control in events:
                self._drain(self.control, self._on_control_frames)
            for fd, name in sentinels.items():
                if fd in events:
                    self._on_exit(name)
            now = time.monotonic()
            self._check_workers(now)
            self._expire_forwards(now)
            self.sessions.tick(now)
            if self.plan.headless:
                self._check_headless_done()
            if now >= next_telemetry:
                self._publish()
                next_telemetry = now + TELEMETRY_S

    def _drain(self, sock: zmq.Socket[Any], handle: Any) -> None:
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

    def _send(self, name: str, msg: wpb.ToWorker) -> bool:
        try:
            self.wsock.send_multipart([name.encode(), msg.SerializeToString()], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:  # not connected (yet), or gone
            log.debug("cannot reach %s: %s", name, exc)
            return False

    def _on_worker_frames(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            raise ValueError(f"expected 2 frames, got {len(frames)}")
        name = frames[0].decode("ascii", "replace")
        w = self.workers.get(name)
        if w is None:
            raise ValueError(f"message from unknown worker {name!r}")
        msg = wpb.FromWorker()
        msg.ParseFromString(frames[1])
        if msg.pid and w.pid and msg.pid != w.pid:
            return  # a late message from a previous incarnation
        body = msg.WhichOneof("body")
        now = time.monotonic()
        w.last_beat = now
        if body == "heartbeat":
            w.stats = msg.heartbeat
            w.rate_samples.append((now, msg.heartbeat.frames_in, msg.heartbeat.frames_out))
            if name == self.front:
                self.sessions.on_clients(sender=msg.heartbeat.sender)
            elif name == self.back:
                self.sessions.on_clients(viewers=msg.heartbeat.viewers)
        elif body == "ready":
            self._on_ready(w, msg.ready)
        elif body == "fatal":
            w.last_error = msg.fatal
            log.error("%s: fatal: %s", name, msg.fatal)
            self._add_log(name, "ERROR", msg.fatal)
        elif body == "event":
            self.sessions.on_event(name, msg.event)
        elif body == "reply":
            self._on_forward_reply(msg.reply_to, msg.reply)
        elif body == "request":
            self._handle_request(msg.request, ("worker", name.encode()))
        elif body == "log":
            self.logs.append(msg.log)

    def _on_ready(self, w: Worker, text: str) -> None:
        w.state = WorkerState.RUNNING
        w.ready_at = time.monotonic()
        w.ever_ready = True
        w.ready_text = text
        log.info("ready %s pid=%d (%.2f s)", w.name, w.pid, w.ready_at - w.started_at)
        if w.name == self.front and self.config.server.port == 0 and self.port():
            # Port 0 picked a free port: a restarted ingress listens on the same one, so
            # clients reconnect to the URL they know.
            server = self.config.server.model_copy(update={"port": self.port()})
            self.config = self.config.model_copy(update={"server": server})
        if w.name == self.front:
            # A restarted front door has no memory: give it the recent session and worker
            # events, so clients that reconnect (SSE Last-Event-ID) learn what happened.
            for ev in self.sessions.recent:
                self._send(w.name, wpb.ToWorker(event=ev))
        if w.restarts:
            self.sessions.worker_event(w.name, "running", f"{w.name} restarted (pid {w.pid})",
                                       pid=w.pid, restarts=w.restarts)
        if w.name == "inference":
            with contextlib.suppress(ValueError):
                self.schema = json.loads(text)
            self.sessions.on_inference_ready()
        if all(x.state == WorkerState.RUNNING for x in self.workers.values()):
            if self.state in (DaemonState.STARTING, DaemonState.DEGRADED):
                log.info("ready: all workers running")
            self.state = DaemonState.RUNNING
            self.error = ""
            if self.plan.headless and self.sessions.current is None and not self._done:
                self.sessions.start()

    def _check_headless_done(self) -> None:
        """A file run is done when the source has finished and every frame it wrote was
        processed by the model (or dropped, and counted), and the sink has written every
        frame the model emitted."""
        src, inf, sink = (self.workers[n] for n in self.plan.workers)
        if self._done:
            if self.sessions.current is None:
                self.request_stop()
            return
        if self.state != DaemonState.RUNNING or not src.stats.finished:
            return
        written = src.stats.frames_out
        dropped = self.rings["input"].stats()["dropped"]
        consumed = inf.stats.frames_in + int(dropped) >= written
        generative = inf.stats.frames_in == 0 and inf.stats.frames_out >= written
        drained = sink.stats.frames_in >= inf.stats.frames_out
        if (consumed or generative) and drained and self.rings["output"].stats()["used"] == 0:
            self._done = True
            self.sessions.stop("the input file ended")

    def _on_exit(self, name: str) -> None:
        w = self.workers[name]
        w.process.join(0.1)
        code = w.process.exitcode
        why = w.last_error or f"exit code {code}"
        pid = w.pid
        w.rate_samples.clear()  # a dead worker's fps is 0, not its last rate
        log.warning("%s (pid %d) died: %s", name, pid, why)
        self._add_log(name, "ERROR", f"{name} died: {why}")
        self._cpu_prev.pop(pid, None)
        # Its clients' connections died with it; they count as gone (the orphan timer runs).
        if name == self.front:
            self.sessions.on_clients(sender=False)
        elif name == self.back:
            self.sessions.on_clients(viewers=0)
        for fid, fwd in list(self.forwards.items()):
            if fwd.worker == name:  # it will never answer these
                del self.forwards[fid]
                self.reply(fwd.route, self.error_reply(
                    fwd.request_id, f"the {name} worker died before answering ({why})", 503))
        if name == "inference":
            self.sessions.on_inference_lost(f"the inference worker died ({why})")
        if self.plan.headless and not self._done:
            # A file run cannot resume: the frames a dead worker held are gone, and a new
            # sink would wait for frames the source already wrote. Fail the run instead.
            self._give_up(w, f"{name} died during the run: {why}")
            return
        if not w.ever_ready:
            # It never became ready: a broken model or config, not bad luck. Retrying
            # would only repeat the error, so the daemon fails at once and says why.
            self._give_up(w, f"{name} failed to start: {why}")
            return
        now = time.monotonic()
        limits = self.config.supervisor
        w.crashes.append(now)
        while w.crashes and now - w.crashes[0] > limits.crash_window_s:
            w.crashes.popleft()
        if len(w.crashes) >= limits.max_crashes:
            self._give_up(w, f"{name} crashed {len(w.crashes)} times in "
                          f"{limits.crash_window_s:g} s (supervisor.max_crashes is "
                          f"{limits.max_crashes}); last: {why}")
            return
        delay = BACKOFF_S[min(len(w.crashes) - 1, len(BACKOFF_S) - 1)]
        w.state = WorkerState.RESTARTING
        w.restart_at = now + delay
        if self.state == DaemonState.RUNNING:
            self.state = DaemonState.DEGRADED
        log.info("restart %s in %.1f s", name, delay)
        self.sessions.worker_event(name, "restarting",
                                   f"{name} died ({why}); restarting in {delay:g} s",
                                   pid=pid, delay_s=delay)

    def _give_up(self, w: Worker, why: str) -> None:
        w.state = WorkerState.FAILED
        w.last_error = why
        lines = tail_lines(self.rd.log(w.name), 15)
        self.state = DaemonState.FAILED
        self.error = why + ("\n--- last lines of " + str(self.rd.log(w.name)) + " ---\n"
                            + "\n".join(lines) if lines else "")
        log.error("give up: %s", why)
        self.sessions.worker_event(w.name, "failed", why)
        if self.plan.headless:
            self.request_stop()  # nobody is there to read the failed state

    def _check_workers(self, now: float) -> None:
        timeout = self.config.model.load_timeout_s
        for w in self.workers.values():
            due = w.restart_at is not None and now >= w.restart_at
            if w.state == WorkerState.RESTARTING and due:
                w.restarts += 1
                w.last_error = ""
                self._spawn(w.name)
            elif w.state == WorkerState.STARTING and now - w.started_at > timeout:
                why = (f"{w.name} did not become ready within {timeout:g} s "
                       "(raise model.load_timeout_s if loading takes longer)")
                self._kill(w)
                self._give_up(w, why)
            elif w.state == WorkerState.RUNNING and now - w.last_beat > HUNG_S:
                w.last_error = f"no heartbeat for {now - w.last_beat:.0f} s (hung)"
                log.error("%s: %s; killing it", w.name, w.last_error)
                self._kill(w)  # its sentinel fires next and the restart logic takes over

    def _kill(self, w: Worker) -> None:
        if w.process is not None and w.process.is_alive():
            w.process.kill()
            w.process.join(2.0)

    def restart_worker(self, name: str) -> None:
        w = self.workers[name]
        w.last_error = "restarted by request"
        if w.state == WorkerState.FAILED or w.process is None or not w.process.is_alive():
            w.crashes.clear()
            w.restarts += 1
            self._spawn(name)
            return
        w.crashes.clear()
        self._kill(w)

    def _add_log(self, process: str, level: str, message: str) -> None:
        self.logs.append(tpb.LogLine(ts=time.time(), process=process, level=level,
                                     message=message[:500]))

    # --- requests ---------------------------------------------------------------------

    def _on_control_frames(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            raise ValueError("expected identity, empty delimiter and a request")
        ident, payload = frames[0], frames[-1]
        req = cpb.Request()
        req.ParseFromString(payload)
        if req.WhichOneof("body") is None:
            raise ValueError("request without a body")
        self._handle_request(req, ("control", ident))

    def reply(self, route: tuple[str, bytes], reply: cpb.Reply) -> None:
        kind, ident = route
        if kind == "control":
            with contextlib.suppress(zmq.ZMQError):  # the client went away
                self.control.send_multipart([ident, b"", reply.SerializeToString()],
                                            zmq.NOBLOCK)
        else:
            self._send(ident.decode(), wpb.ToWorker(reply=reply))

    @staticmethod
    def error_reply(req_id: int, message: str, status: int, field: str = "") -> cpb.Reply:
        return cpb.Reply(id=req_id, error=cpb.Error(message=message, status=status, field=field))

    def _handle_request(self, req: cpb.Request, route: tuple[str, bytes]) -> None:
        kind = req.WhichOneof("body")
        if kind == "status":
            self.reply(route, cpb.Reply(id=req.id, status=self.snapshot()))
        elif kind == "schema":
            if not self.schema:
                self.reply(route, self.error_reply(req.id, "the model is not loaded yet", 503))
            else:
                self.reply(route, cpb.Reply(id=req.id, schema=cpb.SchemaReply(
                    schema_json=json.dumps(self.schema))))
        elif kind == "stop":
            log.info("stop requested over the control socket")
            self.reply(route, cpb.Reply(id=req.id, ok=cpb.Ok()))
            self.request_stop()
        elif kind == "restart_worker":
            name = req.restart_worker.worker
            if name not in self.workers:
                self.reply(route, self.error_reply(
                    req.id, f"unknown worker {name!r}; one of {', '.join(self.workers)}", 404,
                    "worker"))
                return
            self.restart_worker(name)
            self.reply(route, cpb.Reply(id=req.id, ok=cpb.Ok()))
        elif kind == "command":
            self.forward("inference", req, route, command=req.command)
        elif kind == "session":
            self.sessions.on_request(req, route)
        elif kind == "whep":
            limit = self.config.server.max_viewers
            if not req.whep.close:
                # Egress counts its viewers once they are answered; offers still being
                # negotiated count here, so a burst of offers cannot pass the limit.
                pending = sum(1 for f in self.forwards.values() if f.whep_offer)
                if self.sessions.viewers + pending >= limit:
                    self.reply(route, self.error_reply(
                        req.id, f"{self.sessions.viewers} viewers already watch and "
                        f"{pending} are joining; the limit is server.max_viewers = {limit}",
                        503))
                    return
            self.forward("egress", req, route)
        else:
            self.reply(route, self.error_reply(req.id, f"unknown request {kind!r}", 400))

    def forward(self, worker: str, req: cpb.Request, route: tuple[str, bytes],
                command: cpb.CommandRequest | None = None) -> None:
        w = self.workers[worker]
        if w.state != WorkerState.RUNNING:
            self.reply(route, self.error_reply(
                req.id, f"the {worker} worker is {w.state.value}; try again shortly", 503))
            return
        fid = self._next_id
        self._next_id += 1
        self.forwards[fid] = Forward(route, req.id, time.monotonic() + FORWARD_TIMEOUT_S,
                                     command, worker=worker,
                                     whep_offer=req.HasField("whep") and not req.whep.close)
        if not self._send(worker, wpb.ToWorker(id=fid, request=req)):
            del self.forwards[fid]
            self.reply(route, self.error_reply(
                req.id, f"the {worker} worker is not connected", 503))

    def _on_forward_reply(self, fid: int, reply: cpb.Reply) -> None:
        fwd = self.forwards.pop(fid, None)
        if fwd is None:
            return  # it timed out already
        reply.id = fwd.request_id
        if fwd.command is not None:
            self.sessions.log_command(fwd.command, reply)
        self.reply(fwd.route, reply)

    def _expire_forwards(self, now: float) -> None:
        for fid, fwd in list(self.forwards.items()):
            if now > fwd.deadline:
                del self.forwards[fid]
                self.reply(fwd.route, self.error_reply(
                    fwd.request_id, f"no answer within {FORWARD_TIMEOUT_S:.0f} s", 504))

    def send_to(self, worker: str, msg: wpb.ToWorker) -> bool:
        return self._send(worker, msg)

    # --- telemetry --------------------------------------------------------------------

    def _cpu_percent(self, pid: int) -> float:
        """CPU % of a worker over the last second or so: /proc counts in 10 ms ticks, so a
        shorter window would flicker between multiples of 4 %."""
        now = time.monotonic()
        prev = self._cpu_prev.get(pid)
        if prev is not None and now - prev[0] < CPU_WINDOW_S:
            return prev[2]  # within the window: no /proc read
        total = proc_cpu_seconds(pid)
        if total is None:
            return 0.0
        t0, c0, last = prev or (now, total, 0.0)
        if pid not in self._cpu_prev:
            self._cpu_prev[pid] = (now, total, 0.0)
        elif now - t0 >= CPU_WINDOW_S:
            last = 100.0 * (total - c0) / (now - t0)
            self._cpu_prev[pid] = (now, total, last)
        return last

    def snapshot(self) -> tpb.Snapshot:
        now = time.monotonic()
        cfg = self.config
        host = cfg.server.host
        snap = tpb.Snapshot(
            state=self.state.value, pid=os.getpid(), uptime_s=now - self.started,
            ts=time.time(), config_path=cfg.source or "(packaged default)",
            model=str(self.schema.get("model", cfg.model.module)),
            url=f"http://{'[' + host + ']' if ':' in host else host}:{self.port()}/",
            run_dir=str(self.rd.path), error=self.error,
        )
        for w in self.workers.values():
            alive = w.process is not None and w.state in (WorkerState.STARTING,
                                                          WorkerState.RUNNING)
            snap.workers.append(tpb.WorkerStat(
                name=w.name, pid=w.pid if alive else 0, state=w.state.value,
                restarts=w.restarts,
                cpu_percent=self._cpu_percent(w.pid) if alive else 0.0,
                rss_bytes=ProcessStats.rss_bytes(w.pid) if alive else 0,
                uptime_s=now - w.started_at if alive else 0.0,
                heartbeat_age_s=now - w.last_beat if alive else 0.0,
                last_error=w.last_error, frames_in=w.stats.frames_in,
                frames_out=w.stats.frames_out,
            ))
        p = snap.pipeline
        p.target_fps = cfg.video.fps
        ing, inf, egr = (self.workers[n] for n in self.plan.workers)
        p.fps_in = ing.rates()[1]
        p.fps_model = inf.rates()[1]
        p.fps_out = egr.rates()[1]
        p.encoders_active = egr.stats.encoders_active
        p.fps_history.extend(self.fps_history)
        for w in (ing, inf, egr):
            if w.state == WorkerState.RUNNING:
                p.latency.extend(w.stats.latency)
        for ring_name, ring in self.rings.items():
            st = ring.stats()
            p.rings.append(tpb.RingStat(
                name=ring_name, slots=int(st["slots"]), used=int(st["used"]),
                dropped=int(st["dropped"]), policy=str(st["policy"]),
                written=int(st.get("written", 0)),
            ))
        self.sessions.fill(snap)
        snap.logs.extend(self.logs)
        return snap

    def port(self) -> int:
        text = self.workers[self.front].ready_text
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return int(json.loads(text)["port"])
        return self.config.server.port

    def _publish(self) -> None:
        self.fps_history.append(self.workers[self.back].rates()[1])
        try:
            self.telemetry.send(self.snapshot().SerializeToString(), zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        except ReactorError:
            log.exception("telemetry failed")
