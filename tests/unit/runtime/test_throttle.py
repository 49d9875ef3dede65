"""Throttle: a repeating failure is reported the first time, then once a period with the
count of those left unreported."""

from __future__ import annotations

from reactor.runtime.throttle import Throttle
from tests.support.fakes import FakeClock


def test_a_repeating_failure_is_reported_once_a_period_with_the_count() -> None:
    clock = FakeClock()
    throttle = Throttle(60.0)
    assert throttle.hit(clock()) == 0
    for _ in range(3):
        clock.advance(1.0)
        assert throttle.hit(clock()) is None
    clock.advance(60.0)
    assert throttle.hit(clock()) == 3
    clock.advance(1.0)
    assert throttle.hit(clock()) is None
