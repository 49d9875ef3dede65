"""Reporting a repeating failure without flooding the log: the first time, then at most
once a period, with how many went unreported in between (the supervisor's telemetry
publisher, which runs 4 times a second)."""

from __future__ import annotations

__all__ = ["Throttle"]


class Throttle:
    """Says whether to report a repeating failure now: the first time, then at most once
    every ``every_s``, with how many went unreported in between. Reads no clock: each
    failure comes with its time."""

    def __init__(self, every_s: float) -> None:
        self._every_s = every_s
        self._last: float | None = None
        self._unreported = 0

    def hit(self, now: float) -> int | None:
        """A failure at ``now``: the count unreported before it if it is to be reported,
        else None."""
        if self._last is not None and now - self._last < self._every_s:
            self._unreported += 1
            return None
        count, self._last, self._unreported = self._unreported, now, 0
        return count
