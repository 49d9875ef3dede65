"""The session manager against a fake host: starts, client counts, the orphan timeout."""

from __future__ import annotations

from reactor.daemon.plan import Role
from reactor.daemon.router import Route
from reactor.daemon.sessions import SessionManager
from reactor.proto import control_pb2 as cpb
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb
from tests.support.fakes import FakeClock


class Host:
    """A SessionHost: what the manager sends, by role, and what it replies."""

    def __init__(self) -> None:
        self.running = True
        self.emitted = 0
        self.sent: list[tuple[Role, wpb.ToWorker]] = []
        self.replies: list[tuple[Route, cpb.Reply]] = []
        self.logs: list[tuple[str, str, str]] = []

    def model_running(self) -> bool:
        return self.running

    def frames_emitted(self) -> int:
        return self.emitted

    def send(self, role: Role, msg: wpb.ToWorker) -> bool:
        self.sent.append((role, msg))
        return True

    def reply(self, route: Route, reply: cpb.Reply) -> None:
        self.replies.append((route, reply))

    def add_log(self, process: str, level: str, message: str) -> None:
        self.logs.append((process, level, message))

    def session_requests(self) -> list[cpb.SessionRequest]:
        return [m.request.session for r, m in self.sent
                if r is Role.MODEL and m.request.HasField("session")]


def make(clock: FakeClock, host: Host, orphan_s: float = 30.0) -> SessionManager:
    return SessionManager(host, orphan_timeout_s=orphan_s, clock=clock)


def count(**kw: object) -> wpb.ClientCount:
    return wpb.ClientCount(**kw)  # type: ignore[arg-type]


def test_a_session_ends_the_orphan_timeout_after_its_last_client_left(clock: FakeClock) -> None:
    host = Host()
    sessions = make(clock, host, orphan_s=30.0)
    sessions.on_count(count(viewers=1))
    sid = sessions.start()
    assert sid is not None
    sessions.on_count(count(sender=True))
    sessions.on_count(count(viewers=0))  # the viewer left; the sender still counts
    clock.advance(100.0)
    sessions.tick(clock())
    assert [r.action for r in host.session_requests()] == [cpb.SessionRequest.START]
    sessions.on_count(count(sender=False))  # now nobody is left
    clock.advance(29.9)
    sessions.tick(clock())
    assert len(host.session_requests()) == 1
    clock.advance(0.2)
    sessions.tick(clock())
    stop = host.session_requests()[-1]
    assert (stop.action, stop.session_id) == (cpb.SessionRequest.STOP, sid)
    assert stop.reason == "no clients for 30 s (session.orphan_timeout_s)"


def test_a_client_coming_back_cancels_the_orphan_timer(clock: FakeClock) -> None:
    host = Host()
    sessions = make(clock, host, orphan_s=5.0)
    sessions.on_count(count(viewers=1))
    sessions.start()
    sessions.on_count(count(viewers=0))
    clock.advance(4.0)
    sessions.on_count(count(viewers=2))
    clock.advance(10.0)
    sessions.tick(clock())
    assert [r.action for r in host.session_requests()] == [cpb.SessionRequest.START]


def test_counts_from_one_worker_leave_the_other_part_alone() -> None:
    sessions = make(FakeClock(), Host())
    sessions.on_count(count(viewers=3))
    sessions.on_count(count(sender=True))
    assert (sessions.viewers, sessions.sender) == (3, True)
    sessions.on_count(count(viewers=0))
    assert (sessions.viewers, sessions.sender) == (0, True)


def test_no_session_starts_while_the_model_is_down(clock: FakeClock) -> None:
    host = Host()
    host.running = False
    sessions = make(clock, host)
    sessions.on_request(cpb.Request(id=4, session=cpb.SessionRequest()), ("control", b"c"))
    (_, reply), = host.replies
    assert (reply.id, reply.error.status) == (4, 503)
    assert reply.error.message == "the inference worker is not running; try again shortly"
    assert sessions.current is None and host.sent == []


def test_events_go_to_the_front_and_the_back_and_an_error_ends_the_session(
        clock: FakeClock) -> None:
    host = Host()
    host.emitted = 100
    sessions = make(clock, host)
    sid = sessions.start()
    assert sid is not None
    sessions.on_event("inference", wpb.SessionEvent(kind=wpb.SessionEvent.STARTED,
                                                    session_id=sid))
    host.emitted = 130
    clock.advance(2.0)
    snap = tpb.Snapshot()
    sessions.fill(snap)
    assert (snap.session.state, snap.session.frames_emitted, snap.session.duration_s) == (
        tpb.SESSION_STATE_LIVE, 30, 2.0)
    sessions.on_event("inference", wpb.SessionEvent(kind=wpb.SessionEvent.ERROR,
                                                    session_id=sid, reason="ValueError: x"))
    assert sessions.current is None
    assert host.logs == [("inference", "ERROR", "ValueError: x")]
    events = [(r, m.event.kind) for r, m in host.sent if m.HasField("event")]
    assert events == [(Role.FRONT, wpb.SessionEvent.STARTED), (Role.BACK, wpb.SessionEvent.STARTED),
                      (Role.FRONT, wpb.SessionEvent.ERROR), (Role.BACK, wpb.SessionEvent.ERROR)]
    assert [e.kind for e in sessions.recent] == [wpb.SessionEvent.STARTED,
                                                 wpb.SessionEvent.ERROR]
