"""Who may start or join a session on this daemon, settled in ingress on its one event loop.

Every WHIP and WHEP offer passes :meth:`Admission.admit` before its handler awaits
anything, so offers that arrive together are settled in the order the loop runs them: the
first claims the exclusive session (``session.exclusive``) or the WHIP slot, and the
others find it claimed. No lock is needed: the check and the claim are one synchronous
step on the only thread that touches this state.

A daemon that cannot serve a new client answers ``503`` with ``Retry-After`` (RFC 9725
§4.8): another client's exclusive session runs or is starting, the WHIP slot is held by
another client, or the daemon is draining. A balancer retries such an offer on another
daemon. ``/readyz`` reads :meth:`Admission.busy` too, so it is 503 at the same moments.

A client that belongs to the session (it holds the session's key) is let in whatever
the load, draining included: its session is here. The ``409`` remains for the one case
where trying another daemon cannot help: such a client asks for the WHIP slot while
another of the session's own clients holds it.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from reactor.errors import HttpError

__all__ = ["BUSY_RETRY_AFTER_S", "Admission", "Held"]

#: ``Retry-After`` of a 503 from a busy or draining daemon: a session lasts minutes, so an
#: immediate retry of the same daemon is pointless; a balancer tries another at once.
BUSY_RETRY_AFTER_S = 5.0


@dataclass(frozen=True)
class Held:
    """The WHIP slot is taken: why (said to the client), and when to try again."""

    why: str
    retry_after_s: float = BUSY_RETRY_AFTER_S


class Admission:
    """The state offers are admitted against; used on ingress's event loop only.

    ``exclusive``: ``session.exclusive``. :attr:`owner` is the key of the client the
    exclusive session belongs to (set by the first offer, before the session exists);
    :attr:`session_id` the live session, from the session events; :attr:`draining` why the
    daemon drains, from its ``draining`` event (``None``: it does not).
    """

    def __init__(self, *, exclusive: bool) -> None:
        self.exclusive = exclusive
        self.owner: str | None = None
        self.session_id: str | None = None
        self.draining: str | None = None

    def belongs(self, key: str | None) -> bool:
        """Whether ``key`` is the exclusive session's (compared in constant time)."""
        return (self.owner is not None and key is not None
                and hmac.compare_digest(key.encode(), self.owner.encode()))

    def busy(self) -> str | None:
        """Why a new client cannot be served now (``/readyz``'s reason, starting with
        ``draining`` or ``busy``), or ``None``."""
        if self.draining is not None:
            return f"draining: {self.draining}"
        if self.exclusive and self.owner is not None:
            what = (f"session {self.session_id}" if self.session_id
                    else "the session starting now")
            return f"busy: {what} belongs to the client that started it (session.exclusive)"
        return None

    def admit(self, key: str | None, *, whip_held: Held | None = None) -> str | None:
        """Let an offer in, or raise :class:`~reactor.errors.HttpError` (503 with
        ``retry_after_s``, or 409). ``key``: the session key the client sent (``None``: a
        new client); ``whip_held``: set for a WHIP offer while the WHIP slot is taken.
        Returns the key the client holds the exclusive session with (``None`` without
        ``session.exclusive``); :meth:`release` it if the offer then fails."""
        belongs = self.exclusive and self.belongs(key)
        if not belongs:
            reason = self.busy()
            if reason is not None:
                raise HttpError(503, f"{reason}; another daemon may take a new session "
                                "(GET /readyz answers 200 when this one can)",
                                retry_after_s=BUSY_RETRY_AFTER_S)
        if whip_held is not None:
            if belongs:
                raise HttpError(409, f"{whip_held.why}. That client belongs to your own "
                                "session, which runs on this daemon only: retrying on "
                                "another daemon would not reach it")
            raise HttpError(503, whip_held.why, retry_after_s=whip_held.retry_after_s)
        if not self.exclusive:
            return None
        if self.owner is None:
            self.owner = key or secrets.token_urlsafe(18)
        return self.owner

    def release(self, key: str | None) -> None:
        """An admitted offer failed: forget its claim if no session started for it."""
        if key is not None and key == self.owner and self.session_id is None:
            self.owner = None

    def session_started(self, session_id: str) -> None:
        self.session_id = session_id

    def session_ended(self, session_id: str) -> None:
        """The session ended: the next client owns the next one."""
        if session_id == self.session_id or self.session_id is None:
            self.session_id, self.owner = None, None
