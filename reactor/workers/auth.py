"""Who may make a request: the static ``server.token`` and signed tokens.

A request carries a bearer token (``Authorization: Bearer <token>``; the event stream, which
a browser's ``EventSource`` opens without headers, also takes ``?token=``). The static
``server.token`` opens everything, compared in constant time. With ``server.token_secret``
a signed token (:mod:`reactor.control.tokens`) opens what its scope covers
(:func:`scope_for`): so one token minted for a user works on every daemon of a fleet that
shares the secret, and only for what it was minted for.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from reactor.control.tokens import TokenRefused, looks_like_jwt, verify

__all__ = ["Guard", "scope_for"]


def scope_for(path: str) -> str | None:
    """The scope a signed token needs for ``path``; ``None``: any valid token (status,
    schema, OpenAPI, metrics)."""
    if path == "/whip" or path.startswith("/whip/"):
        return "send"
    if path == "/whep" or path.startswith("/whep/") or path == "/api/events":
        return "watch"
    if path.startswith("/api/commands/"):
        return "command"
    return None


class Guard:
    """Checks a request's bearer token against ``token`` (``server.token``) and ``secret``
    (``server.token_secret``); with neither, lets everything through."""

    def __init__(self, token: str | None, secret: str | None) -> None:
        self.token = token
        self.secret = secret

    @property
    def enabled(self) -> bool:
        return bool(self.token or self.secret)

    def refusal(self, request: web.Request) -> TokenRefused | None:
        """Why ``request`` may not go on, or ``None`` when it may."""
        given = request.headers.get("Authorization", "")
        if not given and request.path == "/api/events":
            given = "Bearer " + request.query.get("token", "")
        scheme, _, value = given.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            return TokenRefused(401, "invalid_request",
                                "missing bearer token (send 'Authorization: Bearer <token>')")
        if self.token and hmac.compare_digest(value.encode(), self.token.encode()):
            return None
        if self.secret and looks_like_jwt(value):
            try:
                verify(self.secret, value, scope_for(request.path))
            except TokenRefused as refused:
                return refused
            return None
        return TokenRefused(401, "invalid_token",
                            "wrong bearer token (send 'Authorization: Bearer <token>')")
