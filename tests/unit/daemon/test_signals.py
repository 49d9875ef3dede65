"""The supervisor's stop signals: a flag and a readable fd, handlers restored afterwards."""

from __future__ import annotations

import os
import select
import signal

from reactor.daemon.signals import StopSignals


def test_sigterm_sets_the_flag_wakes_the_poll_and_the_old_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        assert not stop.received
        os.kill(os.getpid(), signal.SIGTERM)
        readable, _, _ = select.select([stop.fileno()], [], [], 5.0)
        assert readable == [stop.fileno()]
        assert stop.received
        stop.drain()
        assert select.select([stop.fileno()], [], [], 0)[0] == []
    assert signal.getsignal(signal.SIGTERM) is before


def test_with_drain_on_sigterm_sigterm_asks_for_a_drain_and_sigint_still_stops() -> None:
    with StopSignals(drain_on_sigterm=True) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert select.select([stop.fileno()], [], [], 5.0)[0] == [stop.fileno()]
        assert (stop.drain_requested, stop.received) == (True, False)
        stop.drain()
        os.kill(os.getpid(), signal.SIGINT)
        assert select.select([stop.fileno()], [], [], 5.0)[0] == [stop.fileno()]
        assert stop.received
