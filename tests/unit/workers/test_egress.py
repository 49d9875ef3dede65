"""Egress's ``viewer`` event, as clients see it once the supervisor passed it on."""

from __future__ import annotations

from reactor.control.events import event_to_dict
from reactor.daemon.plan import Role
from reactor.daemon.sessions import SessionManager
from reactor.media.bwe import RateChange
from reactor.proto import worker_pb2 as wpb
from reactor.workers.egress import rate_event
from tests.support.fakes import FakeClock
from tests.unit.daemon.test_sessions import Host


def test_a_rate_step_reaches_clients_as_a_viewer_event_of_the_session() -> None:
    host = Host()
    sessions = SessionManager(host, orphan_timeout_s=30.0, clock=FakeClock())
    sid = sessions.start()
    sessions.on_event("egress", rate_event(RateChange("h264", 2500, 600, ("a1", "b2"), "a1")))
    sent = [m.event for r, m in host.sent if r is Role.FRONT and m.HasField("event")]
    assert len(sent) == 1
    ev = event_to_dict(sent[0])
    assert ev["ts"] > 0
    del ev["ts"]
    assert ev == {
        "type": "viewer", "session_id": sid,
        "reason": "h264 viewers switched down from 2500 to 600 kbps (the lowest estimate)",
        "data": {"state": "down", "why": "estimate", "codec": "h264", "from_kbps": 2500,
                 "to_kbps": 600, "viewers": ["a1", "b2"], "lowest": "a1"},
    }
    assert not sessions.recent  # not a lifecycle event: a late client is not replayed it


def test_a_step_up_says_up() -> None:
    ev = rate_event(RateChange("vp8", 300, 2500, ("b2",), "b2"))
    assert (ev.kind, ev.session_id) == (wpb.SessionEvent.VIEWER, "")
    assert ev.reason == "vp8 viewers switched up from 300 to 2500 kbps (the lowest estimate)"
