"""session.max_duration_s and draining in the session manager: the clients are told why
before the session ends, the end is counted by its reason, and a drain starts nothing."""

from __future__ import annotations

import json

from reactor.daemon.plan import Role
from reactor.daemon.sessions import SessionManager
from reactor.proto import control_pb2 as cpb
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb
from tests.support.fakes import FakeClock
from tests.unit.daemon.test_sessions import Host


def events(host: Host) -> list[wpb.SessionEvent]:
    """The events broadcast to ingress (egress gets the same)."""
    return [m.event for r, m in host.sent if r is Role.FRONT and m.HasField("event")]


def test_max_duration_tells_the_clients_then_ends_the_session_and_counts_it(
        clock: FakeClock) -> None:
    host = Host()
    sessions = SessionManager(host, orphan_timeout_s=30.0, clock=clock, max_duration_s=60.0)
    sessions.on_clients(viewers=1)
    sid = sessions.start()
    clock.advance(59.0)
    sessions.tick(clock())
    snap = tpb.Snapshot()
    sessions.fill(snap)
    assert snap.session.ends_in_s == 1.0
    assert host.session_requests()[-1].action == cpb.SessionRequest.START
    clock.advance(1.0)
    sessions.tick(clock())
    why = "the session reached its time limit of 60 s (session.max_duration_s)"
    ending = events(host)[-1]
    assert (ending.kind, ending.session_id, ending.reason) == (wpb.SessionEvent.ENDING, sid,
                                                               why)
    assert json.loads(ending.json) == {"cause": "max_duration"}
    stop = host.session_requests()[-1]
    assert (stop.action, stop.reason) == (cpb.SessionRequest.STOP, why)
    sessions.tick(clock())  # asked once
    assert len(host.session_requests()) == 2
    # The model says only "stopped": its clients' ended event says why.
    sessions.on_event("inference", wpb.SessionEvent(kind=wpb.SessionEvent.ENDED,
                                                    session_id=sid, reason="stopped"))
    ended = events(host)[-1]
    assert (ended.kind, ended.reason) == (wpb.SessionEvent.ENDED, why)
    snap = tpb.Snapshot()
    sessions.fill(snap)
    assert snap.session_ends["max_duration"] == 1 and not snap.HasField("session")


def test_a_draining_manager_starts_no_session_and_ends_an_orphan_at_once(
        clock: FakeClock) -> None:
    host = Host()
    sessions = SessionManager(host, orphan_timeout_s=30.0, clock=clock)
    sessions.on_clients(viewers=1)
    sid = sessions.start()
    sessions.draining = True
    assert sessions.start() == sid  # the running one goes on
    sessions.on_clients(viewers=0)
    sessions.tick(clock())
    stop = host.session_requests()[-1]
    assert (stop.action, stop.reason) == (cpb.SessionRequest.STOP,
                                          "its clients left while the daemon drains")
    sessions.on_event("inference", wpb.SessionEvent(kind=wpb.SessionEvent.ENDED,
                                                    session_id=sid, reason="stopped"))
    assert sessions.start() is None
    sessions.on_request(cpb.Request(id=7, session=cpb.SessionRequest(
        action=cpb.SessionRequest.START)), ("worker", b"ingress"))
    reply = host.replies[-1][1]
    assert (reply.error.status, reply.error.message) == (
        503, "the daemon is draining: no new session starts here")
