"""Signed tokens: minting, and every reason a daemon refuses one."""

from __future__ import annotations

import time

import jwt
import pytest

from reactor.control.tokens import (
    SCOPES,
    TokenRefused,
    looks_like_jwt,
    mint,
    parse_scopes,
    parse_ttl,
    verify,
)

SECRET = "s" * 40


def refusal(token: str, scope: str | None, secret: str = SECRET) -> TokenRefused:
    with pytest.raises(TokenRefused) as info:
        verify(secret, token, scope)
    return info.value


def test_a_minted_token_opens_its_scopes_and_any_scope_routes() -> None:
    token = mint(SECRET, ["watch", "send"], 600)
    assert looks_like_jwt(token)
    for scope in ("watch", "send", None):
        verify(SECRET, token, scope)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["scope"] == "watch send"
    assert claims["exp"] - claims["iat"] == 600


def test_out_of_scope_is_403_naming_the_scope() -> None:
    r = refusal(mint(SECRET, ["watch"], 600), "command")
    assert (r.status, r.error) == (403, "insufficient_scope")
    assert "'command'" in r.message and "(watch)" in r.message


def test_expired_is_401_saying_expired() -> None:
    r = refusal(mint(SECRET, ["watch"], 10, now=time.time() - 60), "watch")
    assert (r.status, r.error) == (401, "invalid_token")
    assert "expired" in r.message


def test_another_secret_is_401_naming_the_signature() -> None:
    r = refusal(mint("o" * 40, ["watch"], 600), "watch")
    assert r.status == 401 and "signature" in r.message and "server.token_secret" in r.message


@pytest.mark.parametrize("token", ["a.b.c", "not-a-jwt", ""])
def test_malformed_is_401_saying_malformed(token: str) -> None:
    r = refusal(token, "watch")
    assert r.status == 401 and r.message.startswith("malformed token")


def test_a_token_without_exp_or_scope_is_malformed() -> None:
    no_exp = jwt.encode({"scope": "watch"}, SECRET, algorithm="HS256")
    assert "'exp'" in refusal(no_exp, "watch").message
    no_scope = jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert "'scope'" in refusal(no_scope, None).message


def test_an_unsigned_token_is_refused() -> None:
    # alg "none" would let anyone write their own scope.
    unsigned = jwt.encode({"exp": int(time.time()) + 60, "scope": "command"}, "",
                          algorithm="none")
    assert refusal(unsigned, "command").status == 401


def test_ttl_and_scope_parsing() -> None:
    assert [parse_ttl(t) for t in ("90", "90s", "10m", "2h", "1d")] == [
        90, 90, 600, 7200, 86400]
    for bad in ("ten minutes", "0s", "8d", "-5m"):
        with pytest.raises(ValueError):
            parse_ttl(bad)
    assert parse_scopes("send,watch") == ["watch", "send"]
    assert parse_scopes("command watch send") == list(SCOPES)
    with pytest.raises(ValueError, match="found admin"):
        parse_scopes("watch,admin")
