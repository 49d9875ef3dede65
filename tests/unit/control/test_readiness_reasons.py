"""``readiness``: why ``/readyz`` answers 503, one reason per state a daemon can be in."""

from __future__ import annotations

import pytest

from reactor.control.status import readiness
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto.telemetry_pb2 import Snapshot


def snap(state: str = "running", inference: str = "running", restarts: int = 0,
         session: str = "", error: str = "") -> Snapshot:
    """A snapshot in the states status names (``running``, ...)."""
    s = Snapshot(state=f"DAEMON_STATE_{state.upper()}", error=error)
    running = tpb.WORKER_STATE_RUNNING
    s.workers.add(name="ingress", state=running)
    s.workers.add(name="inference", restarts=restarts,
                  state=f"WORKER_STATE_{inference.upper()}")
    s.workers.add(name="egress", state=running)
    if session:
        s.session.id = session
    return s


def test_a_running_daemon_is_ready_with_or_without_a_shared_session() -> None:
    assert readiness(snap(), exclusive=False) is None
    assert readiness(snap(), exclusive=True) is None
    assert readiness(snap(session="abc"), exclusive=False) is None


@pytest.mark.parametrize(("s", "reason"), [
    (snap(state="starting", inference="starting"), "loading: the model is loading"),
    (snap(state="degraded", inference="restarting", restarts=1),
     "restarting: inference (restarting)"),
    (snap(state="degraded", inference="starting", restarts=1),
     "restarting: inference (starting)"),
    (snap(state="failed", inference="failed", error="inference gave up: load() raised"),
     "failed: inference gave up: load() raised"),
    (snap(state="stopping"), "stopping: the daemon is shutting down"),
    (snap(session="abc"),
     "busy: session abc belongs to the client that started it (session.exclusive)"),
])
def test_each_reason_not_to_send_a_new_user(s: Snapshot, reason: str) -> None:
    assert readiness(s, exclusive=True) == reason


def test_a_draining_daemon_is_not_ready_and_says_until_when() -> None:
    s = snap(session="abc")
    s.drain.why = "SIGTERM"
    assert readiness(s, exclusive=False) == (
        "draining: the daemon takes no new session (SIGTERM); it stops when the session ends")
    s.drain.timeout_s, s.drain.left_s = 60.0, 42.4
    assert readiness(s, exclusive=False) == (
        "draining: the daemon takes no new session (SIGTERM); it stops when the session "
        "ends, in 42 s at most")


def test_a_daemon_full_of_viewers_is_busy() -> None:
    s = snap(session="abc")
    s.session.viewers = 3
    assert readiness(s, exclusive=False, max_viewers=4) is None
    assert readiness(s, exclusive=False, max_viewers=3) == (
        "busy: 3 viewers watch; the limit is server.max_viewers = 3")
