"""``server.ice_servers`` and ``ice_transport_policy: relay`` against a real coturn.

The TURN server is Debian's ``turnserver`` (coturn), started here on 127.0.0.1 with
long-term credentials; it relays from 127.0.0.1 and only to 127.0.0.1
(``--denied-peer-ip`` everything, ``--allowed-peer-ip`` loopback back in), so nothing
leaves this machine. The daemon's answer must hold relay candidates only, and the viewer
(``reactor.client``, aiortc) must get video over a relay pair, with TURN reached over UDP
and over TCP.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from reactor.client import Client
from reactor.media.ice import loopback_host_addresses
from tests.support.daemon import Daemon
from tests.support.turn import TurnServer


async def _watch(url: str, frames: int) -> dict[str, Any]:
    async with Client(url) as client:
        viewer = await client.watch()
        try:
            got = []
            for _ in range(frames):
                f = await asyncio.wait_for(viewer.recv(), 20)
                got.append((f.width, f.height))
            transport = viewer.pc.getTransceivers()[0].receiver.transport.transport
            pair = transport._connection._nominated.get(1)  # aioice's selected pair
            return {
                "sizes": got,
                "answer": viewer.pc.remoteDescription.sdp,
                "pair": None if pair is None else {
                    "local": pair.local_candidate.type, "remote": pair.remote_candidate.type,
                    "remote_addr": pair.remote_addr},
            }
        finally:
            await viewer.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_relay_policy_viewer_gets_video_over_a_turn_relay(
        start_daemon: Any, coturn: TurnServer, transport: str) -> None:
    d: Daemon = start_daemon({"server": {
        "ice_servers": [coturn.ice_server(transport)], "ice_transport_policy": "relay"}})
    res = asyncio.run(_watch(d.url, 30))
    candidates = [line for line in res["answer"].splitlines()
                  if line.startswith("a=candidate:")]
    print(f"TURN over {transport}: pair {res['pair']}; answer candidates {candidates}")
    assert res["sizes"][-1] == (1280, 720), res["sizes"][-5:]
    assert candidates, res["answer"]
    assert all(" typ relay" in c for c in candidates), candidates
    assert res["pair"] is not None and res["pair"]["remote"] == "relay", res["pair"]
    assert res["pair"]["remote_addr"][0] == "127.0.0.1", res["pair"]
    log = coturn.log()
    # The relay was really used: coturn allocated and relayed for the daemon's user.
    assert "ALLOCATE" in log and coturn.username in log, log[-3000:]
    assert ("TCP" if transport == "tcp" else "UDP") in log, log[-3000:]


def _hosts(sdp: str) -> list[str]:
    return [line.split()[4] for line in sdp.splitlines()
            if line.startswith("a=candidate:") and " typ host" in line]


async def _publish_answer(url: str) -> str:
    from aiortc.mediastreams import VideoStreamTrack

    async with Client(url) as client:
        publisher = await client.publish(VideoStreamTrack())
        try:
            return str(publisher.pc.remoteDescription.sdp)
        finally:
            await publisher.close()


def test_announced_address_is_written_into_whip_and_whep_answers(start_daemon: Any) -> None:
    # A loopback daemon announcing 127.0.0.1: every host candidate of both answers names
    # it (the interface addresses are gone), and the viewer still connects through the
    # candidate whose socket is bound there.
    d: Daemon = start_daemon({"server": {"announced_addresses": ["127.0.0.1"]}})
    res = asyncio.run(_watch(d.url, 10))
    whep_hosts = _hosts(res["answer"])
    whip_hosts = _hosts(asyncio.run(_publish_answer(d.url)))
    print(f"WHEP host candidates {whep_hosts}, WHIP {whip_hosts}")
    assert res["sizes"][-1] == (1280, 720)
    # One per IPv4 address the daemon gathers on (loopback and this machine's interfaces).
    ipv4 = [a for a in loopback_host_addresses(True, True) if ":" not in a]
    assert whep_hosts == ["127.0.0.1"] * len(ipv4), res["answer"]
    assert whip_hosts == ["127.0.0.1"] * len(ipv4), whip_hosts
