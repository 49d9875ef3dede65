"""Sessions, as the supervisor sees them: who asked for one, who is connected, when it ends.

The first client (or a control request) starts a session on the inference worker; the
session ends when the model returns or fails, when it is stopped by request,
``session.orphan_timeout_s`` after its last client left, or ``session.max_duration_s``
after it started. Every session event is passed on to ingress (server-sent events) and
egress (viewers' data channels). When the daemon ends a session itself, its clients get an
``ending`` event naming the reason first, and the ``ended`` event repeats it.

While the daemon drains (:attr:`SessionManager.draining`) no session starts, and one whose
clients have all left ends at once: nobody is left to wait for.
"""

from __future__ import annotations

import enum
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from reactor.daemon.metrics import END_CAUSES, MetricsState, session_end_cause
from reactor.daemon.plan import Role
from reactor.daemon.pool import WorkerState
from reactor.daemon.router import Route, error_reply
from reactor.daemon.snapshot import session_state
from reactor.proto import control_pb2 as cpb
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb
from reactor.runtime.logs import set_log_session

log = logging.getLogger(__name__)

RECENT_EVENTS = 32
_LIFECYCLE = (wpb.SessionEvent.STARTED, wpb.SessionEvent.ENDED, wpb.SessionEvent.ERROR,
              wpb.SessionEvent.WORKER, wpb.SessionEvent.DRAINING, wpb.SessionEvent.ENDING)


class SessionHost(Protocol):
    """What the session manager needs of the daemon around it."""

    def model_running(self) -> bool: ...
    def frames_emitted(self) -> int: ...
    def send(self, role: Role, msg: wpb.ToWorker) -> bool: ...
    def reply(self, route: Route, reply: cpb.Reply) -> None: ...
    def add_log(self, process: str, level: str, message: str) -> None: ...


class SessionState(enum.Enum):
    STARTING = "starting"  # asked of the model, not yet started
    LIVE = "live"
    ENDING = "ending"  # asked to stop, not yet ended


@dataclass
class LiveSession:
    id: str
    started_at: float
    state: SessionState = SessionState.STARTING
    frames_at_start: int = 0
    commands: deque[tpb.CommandLog] = field(default_factory=lambda: deque(maxlen=10))
    orphan_since: float | None = None
    had_clients: bool = False
    stop_cause: str = ""  # why the supervisor asked it to stop (reactor_sessions_ended_total)
    stop_reason: str = ""  # the same in words, for its clients' ended event


class SessionManager:
    def __init__(self, host: SessionHost, *, orphan_timeout_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 metrics: MetricsState | None = None,
                 max_duration_s: float | None = None) -> None:
        self.host = host
        self.metrics = metrics or MetricsState()
        self.orphan_timeout_s = orphan_timeout_s
        self.max_duration_s = max_duration_s
        #: The daemon drains: no session starts, an orphaned one ends at once.
        self.draining = False
        self._clock = clock
        self.current: LiveSession | None = None
        self.viewers = 0
        self.sender = False
        # Recent session and worker events, replayed to a restarted ingress.
        self.recent: deque[wpb.SessionEvent] = deque(maxlen=RECENT_EVENTS)

    @property
    def has_clients(self) -> bool:
        return self.viewers > 0 or self.sender

    # --- requests and events ----------------------------------------------------------

    def on_request(self, req: cpb.Request, route: tuple[str, bytes]) -> None:
        if req.session.action == cpb.SessionRequest.START:
            sid = self.start()
            if sid is None and self.draining:
                self.host.reply(route, error_reply(
                    req.id, "the daemon is draining: no new session starts here", 503))
            elif sid is None:
                self.host.reply(route, error_reply(
                    req.id, "the inference worker is not running; try again shortly", 503))
            else:
                self.host.reply(route, cpb.Reply(id=req.id,
                                                 session=cpb.SessionReply(session_id=sid)))
        else:
            if self.current is None:
                self.host.reply(route, error_reply(req.id, "no session is running", 409))
                return
            self.stop(req.session.reason or "stopped by request", cause="stopped")
            self.host.reply(route, cpb.Reply(id=req.id, ok=cpb.Ok()))

    def start(self) -> str | None:
        """Start a session (or return the live one's id); ``None`` if inference is down or
        the daemon drains."""
        if self.current is not None:
            return self.current.id
        if self.draining or not self.host.model_running():
            return None
        sess = LiveSession(id=uuid.uuid4().hex[:12], started_at=self._clock(),
                           frames_at_start=self.host.frames_emitted())
        sess.had_clients = self.has_clients
        req = cpb.Request(session=cpb.SessionRequest(action=cpb.SessionRequest.START,
                                                     session_id=sess.id))
        if not self.host.send(Role.MODEL, wpb.ToWorker(request=req)):
            return None
        self.current = sess
        self.metrics.on_session_started()
        set_log_session(sess.id)
        log.info("session start %s", sess.id)
        return sess.id

    def stop(self, reason: str, cause: str = "stopped", *, announce: bool = False) -> None:
        """Ask the model to end the session; ``cause`` is one of
        :data:`reactor.daemon.metrics.END_CAUSES` (it labels the session's end).
        ``announce``: first tell its clients why, with an ``ending`` event (the daemon
        ends it on its own: a limit, a drain)."""
        if self.current is None:
            return
        if not self.current.stop_cause:
            self.current.stop_cause, self.current.stop_reason = cause, reason
            if announce:
                self.broadcast(wpb.SessionEvent(
                    kind=wpb.SessionEvent.ENDING, session_id=self.current.id, reason=reason,
                    json=json.dumps({"cause": cause})))
        log.info("session stop %s: %s", self.current.id, reason)
        self.current.state = SessionState.ENDING
        req = cpb.Request(session=cpb.SessionRequest(
            action=cpb.SessionRequest.STOP, reason=reason, session_id=self.current.id))
        self.host.send(Role.MODEL, wpb.ToWorker(request=req))

    def on_event(self, worker: str, ev: wpb.SessionEvent) -> None:
        current = self.current
        if ev.kind == wpb.SessionEvent.VIEWER and not ev.session_id and current:
            ev.session_id = current.id  # egress knows its viewers, not the session
        if ev.kind == wpb.SessionEvent.STARTED and current and ev.session_id == current.id:
            current.state = SessionState.LIVE
        elif ev.kind in (wpb.SessionEvent.ENDED, wpb.SessionEvent.ERROR):
            if self.current is not None and ev.session_id == self.current.id:
                if ev.kind == wpb.SessionEvent.ENDED and self.current.stop_reason \
                        and ev.reason == "stopped":
                    # The model only knows it was stopped; its clients are told why.
                    ev.reason = self.current.stop_reason
                    ev.json = ev.json or json.dumps({"cause": self.current.stop_cause})
                log.info("session end %s: %s", ev.session_id, ev.reason)
                self.metrics.on_session_ended(session_end_cause(ev.kind,
                                                                self.current.stop_cause))
                self.current = None
                set_log_session(None)
            if ev.kind == wpb.SessionEvent.ERROR:
                self.host.add_log(worker, "ERROR", ev.reason)
        self.broadcast(ev)

    def broadcast(self, ev: wpb.SessionEvent) -> None:
        if not ev.ts:
            ev.ts = time.time()
        if ev.kind in _LIFECYCLE:
            self.recent.append(ev)
        for role in (Role.FRONT, Role.BACK):
            self.host.send(role, wpb.ToWorker(event=ev))

    def worker_event(self, worker: str, state: WorkerState, reason: str,
                     **data: object) -> None:
        """Tell clients a worker died, restarted or was given up on (a ``worker`` event:
        ``data`` holds ``worker``, ``state`` (its value: ``"restarting"``…) and details;
        ``reason`` says it in words)."""
        sid = self.current.id if self.current is not None else ""
        self.broadcast(wpb.SessionEvent(
            kind=wpb.SessionEvent.WORKER, session_id=sid, reason=reason,
            json=json.dumps({"worker": worker, "state": state.value, **data})))

    def on_count(self, count: wpb.ClientCount) -> None:
        """A worker's ``ClientCount``: egress knows the viewers, ingress the sender."""
        self.on_clients(viewers=count.viewers if count.HasField("viewers") else None,
                        sender=count.sender if count.HasField("sender") else None)

    def on_clients(self, *, viewers: int | None = None, sender: bool | None = None) -> None:
        """Egress knows the viewers, ingress the sender; each reports its own part."""
        if viewers is not None:
            self.viewers = int(viewers)
        if sender is not None:
            self.sender = bool(sender)
        sess = self.current
        if sess is None:
            return
        if self.has_clients:
            sess.had_clients = True
            sess.orphan_since = None
        elif sess.had_clients and sess.orphan_since is None:
            sess.orphan_since = self._clock()

    def on_inference_ready(self) -> None:
        # After a restart, clients still connected get a new session without asking.
        if self.current is None and self.has_clients:
            self.start()

    def on_inference_lost(self, reason: str) -> None:
        if self.current is None:
            return
        sid, self.current = self.current.id, None
        self.metrics.on_session_ended("worker_died")
        self.broadcast(wpb.SessionEvent(kind=wpb.SessionEvent.ERROR, session_id=sid,
                                        reason=reason))

    def tick(self, now: float) -> None:
        sess = self.current
        if sess is None or sess.state == SessionState.ENDING:
            return
        limit = self.max_duration_s
        if limit is not None and now - sess.started_at >= limit:
            self.stop(f"the session reached its time limit of {limit:g} s "
                      "(session.max_duration_s)", cause="max_duration", announce=True)
            return
        if sess.orphan_since is None:
            return
        if self.draining:
            self.stop("its clients left while the daemon drains", cause="orphaned")
            return
        timeout = self.orphan_timeout_s
        if now - sess.orphan_since >= timeout:
            self.stop(f"no clients for {timeout:g} s (session.orphan_timeout_s)",
                      cause="orphaned")

    def log_command(self, cmd: cpb.CommandRequest, reply: cpb.Reply) -> None:
        if self.current is None:
            return
        ok = not reply.HasField("error")
        self.current.commands.append(tpb.CommandLog(
            ts=time.time(), name=cmd.name, args_json=cmd.args_json, ok=ok,
            result=reply.command.result_json if ok else reply.error.message,
        ))

    def fill(self, snap: tpb.Snapshot) -> None:
        for cause in END_CAUSES:
            snap.session_ends[cause] = self.metrics.sessions_ended[cause]
        sess = self.current
        if sess is None:
            return
        emitted = self.host.frames_emitted()
        duration = self._clock() - sess.started_at
        snap.session.CopyFrom(tpb.SessionInfo(
            id=sess.id, state=session_state(sess.state), duration_s=duration,
            viewers=self.viewers, sender=self.sender, commands=list(sess.commands),
            frames_emitted=max(0, emitted - sess.frames_at_start),
        ))
        if self.max_duration_s is not None:
            snap.session.ends_in_s = max(0.0, self.max_duration_s - duration)
