"""Short-lived signed tokens that every daemon sharing ``server.token_secret`` accepts.

A token is a JWT signed with HS256 (PyJWT) carrying ``iat``, ``exp`` and ``scope``: the
space-separated scopes it grants (RFC 8693 §4.2's form), each one of :data:`SCOPES`:

- ``watch``: WHEP (watch and hear) and the event stream;
- ``send``: WHIP (send video and sound);
- ``command``: the model's commands.

Any valid token, whatever its scope, reads the status, the schema, the OpenAPI document
and ``/metrics``. ``reactor token`` mints one (:func:`mint`); the HTTP worker checks each
request's with :func:`verify`, whose :class:`TokenRefused` says which of expired,
malformed, wrongly signed or out of scope it is, and whether that is a 401 or a 403.
Nothing here reads a file or the environment: the secret comes from the config.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

import jwt

from reactor.errors import TokenRefused

__all__ = ["LEEWAY_S", "SCOPES", "TokenRefused", "looks_like_jwt", "mint", "parse_scopes",
           "parse_ttl", "verify"]

#: Every scope a token may carry.
SCOPES = ("watch", "send", "command")
#: Clock difference between the daemon that checks and the machine that minted, allowed
#: on ``exp`` and ``iat`` (a fleet's clocks agree to well under this with NTP).
LEEWAY_S = 5.0
#: The longest a token may live: it cannot be revoked but by changing the secret.
MAX_TTL_S = 7 * 86400.0
ALGORITHM = "HS256"

_TTL = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_ttl(text: str) -> float:
    """``"90"``, ``"90s"``, ``"10m"``, ``"2h"``, ``"1d"`` as seconds; ``ValueError`` says
    what was expected."""
    m = _TTL.fullmatch(text.strip())
    if not m:
        raise ValueError(f"expected a duration such as 90s, 10m, 2h or 1d, found {text!r}")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if not 0 < seconds <= MAX_TTL_S:
        raise ValueError(f"a token lives more than 0 s and at most {MAX_TTL_S / 86400:g} "
                         f"days (it cannot be revoked but by changing the secret), found "
                         f"{text!r}")
    return seconds


def parse_scopes(text: str | Iterable[str]) -> list[str]:
    """``"watch,send"`` (or a list) as known scopes, in :data:`SCOPES` order; ``ValueError``
    names an unknown one."""
    items = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    unknown = [s for s in items if s not in SCOPES]
    if unknown or not items:
        raise ValueError(f"scopes are {', '.join(SCOPES)} (comma-separated), found "
                         f"{', '.join(unknown) if unknown else 'none'}")
    return [s for s in SCOPES if s in items]


def mint(secret: str, scopes: Iterable[str], ttl_s: float, *, now: float | None = None) -> str:
    """A token granting ``scopes`` for ``ttl_s`` seconds from ``now`` (the clock)."""
    issued = time.time() if now is None else now
    claims = {"iat": int(issued), "exp": int(issued + ttl_s),
              "scope": " ".join(parse_scopes(list(scopes)))}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts: a signed token rather than a static ``server.token``."""
    return token.count(".") == 2


def verify(secret: str, token: str, scope: str | None) -> None:
    """Accept ``token`` for a request that needs ``scope`` (``None``: any scope), or raise
    :class:`TokenRefused` naming why."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], leeway=LEEWAY_S,
                            options={"require": ["exp", "scope"], "verify_iat": False})
    except jwt.ExpiredSignatureError:
        raise TokenRefused(401, "invalid_token", "the token has expired: mint a new one "
                           "(reactor token)") from None
    except jwt.InvalidSignatureError:
        raise TokenRefused(401, "invalid_token", "the token's signature does not match "
                           "server.token_secret (minted with another secret?)") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRefused(401, "invalid_token",
                           f"malformed token: it has no {exc.claim!r} claim") from None
    except jwt.InvalidTokenError as exc:
        raise TokenRefused(401, "invalid_token", f"malformed token: {exc}") from None
    granted = claims["scope"]
    if not isinstance(granted, str):
        raise TokenRefused(401, "invalid_token", "malformed token: its scope is not a "
                           "space-separated string")
    if scope is not None and scope not in granted.split():
        raise TokenRefused(403, "insufficient_scope",
                           f"the token's scope ({granted or 'none'}) does not include "
                           f"{scope!r}, which this request needs")
