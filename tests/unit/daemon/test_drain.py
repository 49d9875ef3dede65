"""A drain's rule: the running session goes on until it ends or the timeout passes, then
the daemon stops."""

from __future__ import annotations

from reactor.daemon.drain import DRAIN_LINGER_S, Drain, EndSession, Stop


def test_a_drain_without_a_session_stops_after_the_linger() -> None:
    d = Drain(timeout_s=None, why="SIGTERM", now=100.0, end_grace_s=10.0)
    assert d.step(100.0, session=False) is None
    assert d.step(100.0 + DRAIN_LINGER_S, session=False) == Stop(
        "drained (SIGTERM): no session runs")
    assert d.step(200.0, session=False) is None  # once


def test_the_session_goes_on_until_it_ends_when_there_is_no_timeout() -> None:
    d = Drain(timeout_s=None, why="reactor daemon drain", now=0.0, end_grace_s=10.0)
    for t in (1.0, 100.0, 10_000.0):
        assert d.step(t, session=True) is None
    assert d.left_s(50.0) is None
    assert d.step(10_001.0, session=False) is None
    assert isinstance(d.step(10_001.0 + DRAIN_LINGER_S, session=False), Stop)


def test_the_timeout_ends_the_session_once_then_stops_when_it_ended() -> None:
    d = Drain(timeout_s=30.0, why="SIGTERM", now=0.0, end_grace_s=10.0)
    assert d.step(29.9, session=True) is None
    assert d.left_s(20.0) == 10.0
    end = d.step(30.0, session=True)
    assert end == EndSession("the daemon is draining (SIGTERM) and gave the session 30 s "
                             "to end")
    assert d.step(31.0, session=True) is None  # asked once; its end is on its way
    assert d.step(32.0, session=False) is None
    assert isinstance(d.step(32.0 + DRAIN_LINGER_S, session=False), Stop)


def test_a_session_that_does_not_end_after_the_timeout_is_given_up_on() -> None:
    d = Drain(timeout_s=5.0, why="SIGTERM", now=0.0, end_grace_s=10.0)
    assert isinstance(d.step(5.0, session=True), EndSession)
    assert d.step(14.9, session=True) is None
    stop = d.step(15.0, session=True)
    assert isinstance(stop, Stop) and "did not end within 10 s" in stop.why


def test_stat_shows_since_timeout_and_left() -> None:
    d = Drain(timeout_s=60.0, why="SIGTERM", now=10.0, end_grace_s=5.0)
    st = d.stat(25.0)
    assert (st.since_s, st.timeout_s, st.left_s, st.why) == (15.0, 60.0, 45.0, "SIGTERM")
    open_ended = Drain(timeout_s=None, why="x", now=0.0, end_grace_s=5.0).stat(3.0)
    assert not open_ended.HasField("timeout_s") and not open_ended.HasField("left_s")
