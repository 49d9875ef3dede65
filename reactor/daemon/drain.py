"""Draining a daemon: no new session; the running one goes on until it ends or the drain's
timeout passes; then the daemon stops.

``reactor daemon drain`` starts one over the control socket, and so does SIGTERM when
``session.drain_timeout_s`` is set (a rolling update, a Kubernetes pod's termination):
the balancer in front sees ``/readyz`` answer 503 ``draining`` and sends new users
elsewhere, while the user on this daemon keeps playing.

:class:`Drain` is the rule, with no clock and no socket of its own: the supervisor calls
:meth:`Drain.step` from its loop and carries out what it answers (end the session, stop).
"""

from __future__ import annotations

from dataclasses import dataclass

from reactor.proto import telemetry_pb2 as tpb

__all__ = ["DRAIN_LINGER_S", "Drain", "EndSession", "Stop"]

#: How long the daemon stays up once no session runs: the session's ``ended`` event, on
#: its way to the clients through ingress and egress, leaves before the workers stop.
DRAIN_LINGER_S = 0.5


@dataclass(frozen=True)
class EndSession:
    """The drain's timeout passed: end the session (its clients are told ``reason``)."""

    reason: str


@dataclass(frozen=True)
class Stop:
    """The drain is over: stop the daemon."""

    why: str


class Drain:
    """One drain, started at ``now`` by ``why`` (``reactor daemon drain``, ``SIGTERM``).

    ``timeout_s``: the most the running session is given (``None``: until it ends on its
    own). ``end_grace_s``: once the timeout has ended the session, how long its end may
    take before the daemon stops anyway (a model that ignores stop is restarted by the
    inference worker's own watchdog within ``session.stop_grace_s``).
    """

    def __init__(self, *, timeout_s: float | None, why: str, now: float,
                 end_grace_s: float) -> None:
        self.timeout_s = timeout_s
        self.why = why
        self.started_at = now
        self.end_grace_s = end_grace_s
        self._ending = False
        self._idle_since: float | None = None
        self._stopped = False

    def left_s(self, now: float) -> float | None:
        """Seconds until the timeout ends the session (``None``: no timeout)."""
        if self.timeout_s is None:
            return None
        return max(0.0, self.started_at + self.timeout_s - now)

    def step(self, now: float, *, session: bool) -> EndSession | Stop | None:
        """What to do now, ``session`` telling whether a session still runs (or starts)."""
        if self._stopped:
            return None
        if not session:
            if self._idle_since is None:
                self._idle_since = now
            if now - self._idle_since < DRAIN_LINGER_S:
                return None
            self._stopped = True
            return Stop(f"drained ({self.why}): no session runs")
        self._idle_since = None
        left = self.left_s(now)
        if left is None or left > 0:
            return None
        if not self._ending:
            self._ending = True
            return EndSession(f"the daemon is draining ({self.why}) and gave the session "
                              f"{self.timeout_s:g} s to end")
        if now >= self.started_at + (self.timeout_s or 0.0) + self.end_grace_s:
            self._stopped = True
            return Stop(f"drained ({self.why}): the session did not end within "
                        f"{self.end_grace_s:g} s of the drain's timeout")
        return None

    def stat(self, now: float) -> tpb.DrainStat:
        """The drain as status shows it."""
        d = tpb.DrainStat(since_s=now - self.started_at, why=self.why)
        left = self.left_s(now)
        if self.timeout_s is not None and left is not None:
            d.timeout_s, d.left_s = self.timeout_s, left
        return d
