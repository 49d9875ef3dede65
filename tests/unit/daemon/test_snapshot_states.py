"""The supervisor's states on the wire: telemetry enums, shown by status as before."""

from __future__ import annotations

import enum

import pytest

from reactor.control.status import (
    daemon_state_name,
    session_state_name,
    snapshot_to_dict,
    worker_state_name,
)
from reactor.daemon.lifecycle import DaemonState
from reactor.daemon.pool import WorkerState
from reactor.daemon.sessions import SessionState
from reactor.daemon.snapshot import daemon_state, session_state, worker_state
from reactor.proto import telemetry_pb2 as tpb


@pytest.mark.parametrize("state", list(DaemonState))
def test_every_daemon_state_has_an_enum_that_status_names_as_before(state: DaemonState,
                                                                     ) -> None:
    code = daemon_state(state)
    assert code != tpb.DAEMON_STATE_UNSPECIFIED
    assert daemon_state_name(code) == state.value


@pytest.mark.parametrize("state", list(WorkerState))
def test_every_worker_state_has_an_enum_that_status_names_as_before(state: WorkerState,
                                                                     ) -> None:
    code = worker_state(state)
    assert code != tpb.WORKER_STATE_UNSPECIFIED
    assert worker_state_name(code) == state.value


@pytest.mark.parametrize("state", list(SessionState))
def test_every_session_state_has_an_enum_that_status_names_as_before(state: SessionState,
                                                                       ) -> None:
    code = session_state(state)
    assert code != tpb.SESSION_STATE_UNSPECIFIED
    assert session_state_name(code) == state.value


def test_a_state_the_proto_lacks_fails_naming_it() -> None:
    class Later(enum.Enum):
        PAUSED = "paused"

    with pytest.raises(ValueError, match="DAEMON_STATE_PAUSED"):
        daemon_state(Later.PAUSED)  # type: ignore[arg-type]


def test_a_snapshot_from_a_daemon_with_string_states_still_parses() -> None:
    # Before the enums, Snapshot.state was field 1, WorkerStat.state field 3 and
    # SessionInfo.state field 2, all strings: the numbers are reserved, so such a message
    # parses with its states unknown (UNSPECIFIED, shown as "") and every other field kept.
    def text(field: int, value: bytes) -> bytes:
        return bytes([field << 3 | 2, len(value)]) + value

    worker = text(3, b"running") + tpb.WorkerStat(name="ingress", pid=7).SerializeToString()
    session = text(2, b"live") + tpb.SessionInfo(id="abc").SerializeToString()
    old = (text(1, b"running") + tpb.Snapshot(pid=42, url="http://x").SerializeToString()
           + text(9, worker) + text(11, session))
    snap = tpb.Snapshot.FromString(old)
    assert (snap.state, snap.pid, snap.url) == (tpb.DAEMON_STATE_UNSPECIFIED, 42, "http://x")
    assert (snap.workers[0].name, snap.workers[0].pid, snap.workers[0].state) == (
        "ingress", 7, tpb.WORKER_STATE_UNSPECIFIED)
    status = snapshot_to_dict(snap)
    assert (status["state"], status["workers"][0]["state"], status["session"]["state"]) == (
        "", "", "")


def test_a_state_from_a_newer_daemon_is_shown_as_unknown() -> None:
    assert worker_state_name(99) == "unknown (99)"  # type: ignore[arg-type]
