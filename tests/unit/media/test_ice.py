"""reactor.media.ice and reactor.media.peer: the aioice patches and the ICE configuration.

The ICE tests use real aioice connections talking over loopback UDP. The peer's offered
candidates are ones the daemon must drop (an address of another machine, as under the
loopback policy an mDNS name is too), so no query or check ever leaves this machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aioice.ice
import pytest
from aioice import Candidate, Connection

from reactor.config import ServerSection
from reactor.media import ice
from reactor.media.peer import ice_connection_kwargs, rtc_configuration

FOREIGN = "198.51.100.7"  # TEST-NET-2: another machine's address, never contacted


@pytest.fixture(autouse=True)
def stock_ice() -> Iterator[None]:
    ice.restrict_ice_to_loopback(False)
    ice.enable_end_of_candidates_grace(False)
    yield
    ice.restrict_ice_to_loopback(False)
    ice.enable_end_of_candidates_grace(False)


def _foreign_candidate(component: int = 1) -> Candidate:
    return Candidate(foundation="1", component=component, transport="udp",
                     priority=2122187007, host=FOREIGN, port=54051, type="host")


def _loopback_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The policy, with gathering kept on 127.0.0.1 for the test (see conftest.py).
    ice.restrict_ice_to_loopback()
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


async def _answerer_after_firefox_offer() -> Connection:
    # What aiortc does with Firefox's offer: remote candidates (none usable) and
    # end-of-candidates first, then gathering.
    conn = Connection(ice_controlling=False, components=1)
    await conn.add_remote_candidate(_foreign_candidate())
    await conn.add_remote_candidate(None)
    await conn.gather_candidates()
    return conn


def test_without_the_patch_an_offer_with_no_usable_candidate_leaves_nothing_to_gather(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bug the patch fixes (aioice 0.13): the components are pruned away before gathering.
    _loopback_policy(monkeypatch)

    async def run() -> list[Candidate]:
        conn = await _answerer_after_firefox_offer()
        try:
            return list(conn.local_candidates)
        finally:
            await conn.close()

    assert asyncio.run(run()) == []


def test_end_of_candidates_grace_gathers_and_connects_by_peer_reflexive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ice.enable_end_of_candidates_grace()
    _loopback_policy(monkeypatch)

    async def run() -> tuple[list[str], str]:
        answerer = await _answerer_after_firefox_offer()
        offerer = Connection(ice_controlling=True, components=1)
        try:
            await offerer.gather_candidates()
            answerer.remote_username = offerer.local_username
            answerer.remote_password = offerer.local_password
            offerer.remote_username = answerer.local_username
            offerer.remote_password = answerer.local_password
            for c in answerer.local_candidates:
                await offerer.add_remote_candidate(c)
            await offerer.add_remote_candidate(None)
            await asyncio.wait_for(asyncio.gather(answerer.connect(), offerer.connect()), 10)
            pair = answerer._nominated[1]
            return [c.host for c in answerer.local_candidates], pair.remote_candidate.type
        finally:
            await offerer.close()
            await answerer.close()

    hosts, remote_type = asyncio.run(run())
    assert hosts == ["127.0.0.1"]
    assert remote_type == "prflx"  # learnt from the offerer's checks


def test_end_of_candidates_is_applied_when_no_check_arrives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ice.enable_end_of_candidates_grace()
    _loopback_policy(monkeypatch)
    monkeypatch.setattr(ice, "PRFLX_GRACE_S", 0.3)

    async def run() -> float:
        conn = await _answerer_after_firefox_offer()
        conn.remote_username, conn.remote_password = "peer", "peer-password-0123456789"
        t0 = asyncio.get_running_loop().time()
        try:
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(conn.connect(), 5)
            return asyncio.get_running_loop().time() - t0
        finally:
            await conn.close()

    assert 0.2 < asyncio.run(run()) < 3


def test_loopback_policy_keeps_only_this_machines_candidates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _loopback_policy(monkeypatch)

    async def run() -> list[str]:
        conn = Connection(ice_controlling=False, components=1)
        try:
            await conn.add_remote_candidate(_foreign_candidate())
            mdns = _foreign_candidate()
            mdns.host = "6c8e121d-3c59-4470-8630-999374067941.local"
            await conn.add_remote_candidate(mdns)  # dropped unresolved: no multicast query
            own = _foreign_candidate()
            own.host = "127.0.0.1"
            await conn.add_remote_candidate(own)
            return [c.host for c in conn.remote_candidates]
        finally:
            await conn.close()

    assert asyncio.run(run()) == ["127.0.0.1"]


def test_loopback_daemon_offers_loopback_then_this_machines_addresses() -> None:
    addresses = ice.loopback_host_addresses(True, True)
    assert addresses[0] == "127.0.0.1"
    # The fixture turned the policy off: aioice's own gathering is in place.
    assert set(addresses[1:]) == set(aioice.ice.get_host_addresses(True, True)) - {"127.0.0.1"}
    assert all(ice.is_own_address(a) for a in addresses)
    ice.restrict_ice_to_loopback()
    assert aioice.ice.get_host_addresses is ice.loopback_host_addresses
    ice.restrict_ice_to_loopback(False)
    assert aioice.ice.get_host_addresses is not ice.loopback_host_addresses


def test_own_addresses() -> None:
    assert ice.is_own_address("127.0.0.1") and ice.is_own_address("::1")
    assert ice.is_own_address("localhost")
    assert not ice.is_own_address(FOREIGN)
    assert not ice.is_own_address("abc.local")


# --- configuration -> aiortc / aioice ---------------------------------------------------


def test_no_ice_servers_by_default() -> None:
    server = ServerSection.model_validate({})
    cfg = rtc_configuration(server.ice_servers, server.ice_transport_policy)
    assert cfg.iceServers == []
    assert cfg.iceTransportPolicy.value == "all"
    assert ice_connection_kwargs(server.ice_servers) == {}


def test_stun_and_turn_servers_reach_aioice() -> None:
    server = ServerSection.model_validate({
        "ice_servers": [
            {"urls": "stun:stun.example.org:3479"},
            {"urls": ["turn:turn.example.org?transport=tcp", "turns:turn.example.org:5350"],
             "username": "u", "credential": "p"},
        ],
        "ice_transport_policy": "relay",
    })
    cfg = rtc_configuration(server.ice_servers, server.ice_transport_policy)
    assert cfg.iceServers is not None
    assert [s.urls for s in cfg.iceServers] == [
        ["stun:stun.example.org:3479"],
        ["turn:turn.example.org?transport=tcp", "turns:turn.example.org:5350"]]
    assert cfg.iceServers[1].username == "u" and cfg.iceServers[1].credential == "p"
    assert cfg.iceTransportPolicy.value == "relay"
    assert ice_connection_kwargs(server.ice_servers) == {
        "stun_server": ("stun.example.org", 3479),
        "turn_server": ("turn.example.org", 3478),  # aiortc takes the first TURN URL
        "turn_ssl": False, "turn_transport": "tcp",
        "turn_username": "u", "turn_password": "p",
    }


def test_turn_over_udp_is_the_default_transport() -> None:
    server = ServerSection.model_validate({"ice_servers": [
        {"urls": "turn:127.0.0.1:3478", "username": "u", "credential": "p"}]})
    kwargs = ice_connection_kwargs(server.ice_servers)
    assert kwargs["turn_transport"] == "udp" and kwargs["turn_server"] == ("127.0.0.1", 3478)


def test_relay_policy_reaches_aioice() -> None:
    # aiortc hands the policy to aioice, which then gathers no host or server-reflexive
    # candidate (tests/integration/test_ice_servers.py checks the answer with a real TURN).
    from aiortc.rtcicetransport import RTCIceGatherer

    server = ServerSection.model_validate({
        "ice_servers": [{"urls": "turn:127.0.0.1:9?transport=tcp", "username": "u",
                         "credential": "p"}],
        "ice_transport_policy": "relay"})
    cfg = rtc_configuration(server.ice_servers, server.ice_transport_policy)
    gatherer = RTCIceGatherer(iceServers=cfg.iceServers,
                              iceTransportPolicy=cfg.iceTransportPolicy)
    assert gatherer._connection._transport_policy == aioice.ice.TransportPolicy.RELAY
