"""Sessions, as the supervisor sees them: who asked for one, who is connected, when it ends.

The first client (or a control request) starts a session on the inference worker; the
session ends when the model returns or fails, when it is stopped by request, or
``session.orphan_timeout_s`` after its last client left. Every session event is passed on
to ingress (server-sent events) and egress (viewers' data channels).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reactor.proto import control_pb2 as cpb
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb

if TYPE_CHECKING:
    from reactor.daemon.supervisor import Supervisor

log = logging.getLogger(__name__)

RECENT_EVENTS = 32
_LIFECYCLE = (wpb.SessionEvent.STARTED, wpb.SessionEvent.ENDED, wpb.SessionEvent.ERROR,
              wpb.SessionEvent.WORKER)


@dataclass
class LiveSession:
    id: str
    state: str = "starting"
    started_at: float = field(default_factory=time.monotonic)
    frames_at_start: int = 0
    commands: deque[tpb.CommandLog] = field(default_factory=lambda: deque(maxlen=10))
    orphan_since: float | None = None
    had_clients: bool = False


class SessionManager:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
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
            if sid is None:
                self.sup.reply(route, self.sup.error_reply(
                    req.id, "the inference worker is not running; try again shortly", 503))
            else:
                self.sup.reply(route, cpb.Reply(id=req.id,
                                                session=cpb.SessionReply(session_id=sid)))
        else:
            if self.current is None:
                self.sup.reply(route, self.sup.error_reply(req.id, "no session is running", 409))
                return
            self.stop(req.session.reason or "stopped by request")
            self.sup.reply(route, cpb.Reply(id=req.id, ok=cpb.Ok()))

    def start(self) -> str | None:
        """Start a session (or return the live one's id); ``None`` if inference is down."""
        if self.current is not None:
            return self.current.id
        inference = self.sup.workers[self.sup.middle]
        if inference.state.value != "running":
            return None
        sess = LiveSession(id=uuid.uuid4().hex[:12],
                           frames_at_start=inference.stats.frames_emitted)
        sess.had_clients = self.has_clients
        req = cpb.Request(session=cpb.SessionRequest(action=cpb.SessionRequest.START,
                                                     session_id=sess.id))
        if not self.sup.send_to(self.sup.middle, wpb.ToWorker(request=req)):
            return None
        self.current = sess
        log.info("session start %s", sess.id)
        return sess.id

    def stop(self, reason: str) -> None:
        if self.current is None:
            return
        log.info("session stop %s: %s", self.current.id, reason)
        self.current.state = "ending"
        req = cpb.Request(session=cpb.SessionRequest(
            action=cpb.SessionRequest.STOP, reason=reason, session_id=self.current.id))
        self.sup.send_to(self.sup.middle, wpb.ToWorker(request=req))

    def on_event(self, worker: str, ev: wpb.SessionEvent) -> None:
        if ev.kind == wpb.SessionEvent.CLIENT:
            counts = json.loads(ev.json or "{}")
            self.on_clients(viewers=counts.get("viewers"), sender=counts.get("sender"))
            return
        current = self.current
        if ev.kind == wpb.SessionEvent.STARTED and current and ev.session_id == current.id:
            current.state = "live"
        elif ev.kind in (wpb.SessionEvent.ENDED, wpb.SessionEvent.ERROR):
            if self.current is not None and ev.session_id == self.current.id:
                log.info("session end %s: %s", ev.session_id, ev.reason)
                self.current = None
            if ev.kind == wpb.SessionEvent.ERROR:
                self.sup.logs.append(tpb.LogLine(ts=time.time(), process=worker,
                                                 level="ERROR", message=ev.reason[:500]))
        self.broadcast(ev)

    def broadcast(self, ev: wpb.SessionEvent) -> None:
        if not ev.ts:
            ev.ts = time.time()
        if ev.kind in _LIFECYCLE:
            self.recent.append(ev)
        for name in (self.sup.front, self.sup.back):
            self.sup.send_to(name, wpb.ToWorker(event=ev))

    def worker_event(self, worker: str, state: str, reason: str, **data: object) -> None:
        """Tell clients a worker died, restarted or was given up on (a ``worker`` event:
        ``data`` holds ``worker``, ``state`` and details; ``reason`` says it in words)."""
        sid = self.current.id if self.current is not None else ""
        self.broadcast(wpb.SessionEvent(
            kind=wpb.SessionEvent.WORKER, session_id=sid, reason=reason,
            json=json.dumps({"worker": worker, "state": state, **data})))

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
            sess.orphan_since = time.monotonic()

    def on_inference_ready(self) -> None:
        # After a restart, clients still connected get a new session without asking.
        if self.current is None and self.has_clients:
            self.start()

    def on_inference_lost(self, reason: str) -> None:
        if self.current is None:
            return
        sid, self.current = self.current.id, None
        self.broadcast(wpb.SessionEvent(kind=wpb.SessionEvent.ERROR, session_id=sid,
                                        reason=reason))

    def tick(self, now: float) -> None:
        sess = self.current
        if sess is None or sess.orphan_since is None or sess.state == "ending":
            return
        timeout = self.sup.config.session.orphan_timeout_s
        if now - sess.orphan_since >= timeout:
            self.stop(f"no clients for {timeout:g} s (session.orphan_timeout_s)")

    def log_command(self, cmd: cpb.CommandRequest, reply: cpb.Reply) -> None:
        if self.current is None:
            return
        ok = not reply.HasField("error")
        self.current.commands.append(tpb.CommandLog(
            ts=time.time(), name=cmd.name, args_json=cmd.args_json, ok=ok,
            result=reply.command.result_json if ok else reply.error.message,
        ))

    def fill(self, snap: tpb.Snapshot) -> None:
        sess = self.current
        if sess is None:
            return
        emitted = self.sup.workers[self.sup.middle].stats.frames_emitted
        snap.session.CopyFrom(tpb.SessionInfo(
            id=sess.id, state=sess.state, duration_s=time.monotonic() - sess.started_at,
            viewers=self.viewers, sender=self.sender, commands=list(sess.commands),
            frames_emitted=max(0, emitted - sess.frames_at_start),
        ))
