"""Admission: which offers a daemon takes, and with which status it refuses the others."""

from __future__ import annotations

import pytest

from reactor.errors import HttpError
from reactor.workers.admission import BUSY_RETRY_AFTER_S, Admission, Held


def refused(adm: Admission, key: str | None, held: Held | None = None) -> HttpError:
    with pytest.raises(HttpError) as exc:
        adm.admit(key, whip_held=held)
    return exc.value


def test_an_exclusive_daemon_admits_one_new_client_and_503s_the_next() -> None:
    adm = Admission(exclusive=True)
    assert adm.busy() is None
    owner = adm.admit(None)
    assert owner is not None and adm.busy() is not None
    # The second offer in the same loop turn: refused before anything awaited.
    err = refused(adm, None)
    assert (err.status, err.retry_after_s) == (503, BUSY_RETRY_AFTER_S)
    assert "the session starting now belongs to the client that started it" in err.message
    assert refused(adm, "a guessed key").status == 503
    assert adm.admit(owner) == owner  # its own second connection joins


def test_busy_names_the_session_once_it_started_and_clears_when_it_ended() -> None:
    adm = Admission(exclusive=True)
    owner = adm.admit(None)
    adm.session_started("s1")
    assert adm.busy() == ("busy: session s1 belongs to the client that started it "
                          "(session.exclusive)")
    adm.release(owner)  # an offer of the owner's failed: the running session stays its own
    assert adm.owner == owner
    adm.session_ended("s1")
    assert adm.busy() is None and adm.admit(None) is not None


def test_a_failed_first_offer_frees_the_claim() -> None:
    adm = Admission(exclusive=True)
    owner = adm.admit(None)
    adm.release(owner)
    assert adm.busy() is None


def test_draining_refuses_new_clients_with_503_but_lets_the_sessions_own_in() -> None:
    adm = Admission(exclusive=True)
    owner = adm.admit(None)
    adm.session_started("s1")
    adm.draining = "the daemon is draining"
    assert adm.busy() == "draining: the daemon is draining"
    err = refused(adm, None)
    assert err.status == 503 and err.message.startswith("draining: ")
    assert adm.admit(owner) == owner
    shared = Admission(exclusive=False)
    shared.draining = "the daemon is draining"
    assert refused(shared, None).status == 503


def test_a_taken_whip_slot_is_503_for_a_new_client_and_409_for_the_sessions_own() -> None:
    shared = Admission(exclusive=False)
    err = refused(shared, None, Held("another client is already sending", 7.0))
    assert (err.status, err.retry_after_s, err.message) == (
        503, 7.0, "another client is already sending")
    adm = Admission(exclusive=True)
    owner = adm.admit(None)
    err = refused(adm, owner, Held("another client is already sending"))
    assert err.status == 409 and err.retry_after_s is None
    assert "retrying on another daemon would not reach it" in err.message


def test_without_exclusive_no_key_is_claimed() -> None:
    adm = Admission(exclusive=False)
    assert adm.admit(None) is None and adm.admit(None) is None
    assert adm.busy() is None
