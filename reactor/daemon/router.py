"""The request router: which worker answers which request, and the replies it owes.

Requests arrive on the control socket (the CLI, tools) or from a worker on behalf of a
client (ingress relays HTTP commands and WHEP offers). One table says who answers each
kind: the supervisor itself (status, schema, stop, restart, sessions: ``local``
handlers), or a worker — request kind -> worker, from the pipeline's
:class:`~reactor.daemon.plan.Plan`. Every forwarded request is answered exactly
once: with the worker's reply, with an error when the worker is not running or dies first,
or with a timeout error ``timeout_s`` after it was sent. A request that no worker of this
pipeline serves (a WHEP offer sent to a headless ``reactor run``) gets a clear error at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from reactor.daemon.pool import WorkerState
from reactor.proto import control_pb2 as cpb
from reactor.proto import worker_pb2 as wpb

log = logging.getLogger(__name__)

FORWARD_TIMEOUT_S = 10.0

# Where a reply goes: ("control", client identity) or ("worker", worker name).
Route = tuple[str, bytes]


class Transport(Protocol):
    """How the router reaches workers and clients (sockets in the daemon, lists in tests)."""

    def send(self, worker: str, msg: wpb.ToWorker) -> bool: ...
    def reply(self, route: Route, reply: cpb.Reply) -> None: ...


def error_reply(req_id: int, message: str, status: int, field: str = "") -> cpb.Reply:
    return cpb.Reply(id=req_id, error=cpb.Error(message=message, status=status, field=field))


@dataclass
class Pending:
    """A forwarded request, waiting for its worker's reply."""

    route: Route
    request_id: int
    deadline: float
    worker: str
    request: cpb.Request

    @property
    def joins_viewer(self) -> bool:
        """A WHEP offer: a viewer that will count once egress answers it."""
        return self.request.HasField("whep") and not self.request.whep.close


# Answers a request in the supervisor itself.
Handler = Callable[[cpb.Request, Route], None]

# Checks a request before it is forwarded: None to let it through, or the error reply.
Admission = Callable[[cpb.Request, list[Pending]], cpb.Reply | None]


def viewer_limit(limit: Callable[[], int], viewers: Callable[[], int]) -> Admission:
    """Refuse a WHEP offer once ``server.max_viewers`` viewers watch or are joining.

    Egress counts its viewers once they are answered; offers still being negotiated count
    here, so a burst of offers cannot pass the limit."""

    def admit(req: cpb.Request, pending: list[Pending]) -> cpb.Reply | None:
        if req.whep.close:
            return None
        joining = sum(1 for p in pending if p.joins_viewer)
        watching, most = viewers(), limit()
        if watching + joining < most:
            return None
        return error_reply(req.id, f"{watching} viewers already watch and {joining} are "
                           f"joining; the limit is server.max_viewers = {most}", 503)

    return admit


class Router:
    def __init__(
        self,
        transport: Transport,
        table: Mapping[str, str],
        *,
        state_of: Callable[[str], WorkerState],
        clock: Callable[[], float],
        timeout_s: float = FORWARD_TIMEOUT_S,
        admission: Mapping[str, Admission] | None = None,
        local: Mapping[str, Handler] | None = None,
    ) -> None:
        self.table = dict(table)
        self.local = dict(local or {})
        self._transport = transport
        self._state_of = state_of
        self._clock = clock
        self._timeout_s = timeout_s
        self._admission = dict(admission or {})
        self._pending: dict[int, Pending] = {}
        self._next_id = 1

    def serves(self, kind: str) -> bool:
        return kind in self.table or kind in self.local

    def handle(self, req: cpb.Request, route: Route) -> None:
        """Answer ``req`` here, or forward it to the worker that answers its kind."""
        local = self.local.get(req.WhichOneof("body") or "")
        if local is not None:
            local(req, route)
        else:
            self.forward(req, route)

    @property
    def pending(self) -> list[Pending]:
        return list(self._pending.values())

    def forward(self, req: cpb.Request, route: Route) -> None:
        """Send ``req`` to the worker that answers its kind; the reply follows later."""
        kind = req.WhichOneof("body") or ""
        worker = self.table.get(kind)
        if worker is None:
            served = ", ".join(sorted(self.table)) or "nothing"
            self._transport.reply(route, error_reply(
                req.id, f"no worker of this pipeline serves {kind!r} requests "
                f"(the workers here answer: {served})", 404))
            return
        state = self._state_of(worker)
        if state is not WorkerState.RUNNING:
            self._transport.reply(route, error_reply(
                req.id, f"the {worker} worker is {state.value}; try again shortly", 503))
            return
        admit = self._admission.get(kind)
        refused = admit(req, self.pending) if admit is not None else None
        if refused is not None:
            self._transport.reply(route, refused)
            return
        fid = self._next_id
        self._next_id += 1
        self._pending[fid] = Pending(route, req.id, self._clock() + self._timeout_s, worker, req)
        if not self._transport.send(worker, wpb.ToWorker(id=fid, request=req)):
            del self._pending[fid]
            self._transport.reply(route, error_reply(
                req.id, f"the {worker} worker is not connected", 503))

    def on_reply(self, fid: int, reply: cpb.Reply) -> Pending | None:
        """A worker answered: pass the reply on; the request it answers (None if it had
        timed out already)."""
        p = self._pending.pop(fid, None)
        if p is None:
            return None
        reply.id = p.request_id
        self._transport.reply(p.route, reply)
        return p

    def expire(self) -> None:
        now = self._clock()
        for fid, p in list(self._pending.items()):
            if now > p.deadline:
                del self._pending[fid]
                self._transport.reply(p.route, error_reply(
                    p.request_id, f"no answer within {self._timeout_s:.0f} s", 504))

    def worker_lost(self, worker: str, why: str) -> None:
        """``worker`` died: it will never answer what it holds."""
        for fid, p in list(self._pending.items()):
            if p.worker == worker:
                del self._pending[fid]
                self._transport.reply(p.route, error_reply(
                    p.request_id, f"the {worker} worker died before answering ({why})", 503))
