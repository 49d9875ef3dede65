"""How the daemon's peer connections are made: configuration and the aiortc/aioice patches.

Every ``RTCPeerConnection`` the daemon answers with (WHIP in ingress, WHEP in egress) is
made by :func:`new_peer_connection`, after :func:`install_patches`. They take plain values,
not config objects (the workers pass the ``server`` section's fields):

- ``ice_servers`` becomes ``RTCConfiguration.iceServers`` (:func:`rtc_configuration`).
  aiortc uses the *first* STUN URL and the *first* usable TURN URL (``turn:`` over UDP or
  TCP, ``turns:`` over TLS) and ignores the rest; :func:`ice_connection_kwargs` shows what
  aioice receives.
- ``ice_transport_policy: relay`` becomes ``RTCConfiguration.iceTransportPolicy``, which
  aiortc 1.16 hands to aioice as ``transport_policy``: no host or server-reflexive
  candidates are gathered, so the answer carries relay candidates only, and aioice
  ignores the peer's mDNS candidates.
- ``announced_addresses`` are written into the answer's host candidates by
  :func:`reactor.media.sdp.announce_host_candidates` (called by
  :func:`reactor.media.sdp.answer_sdp_for` and the workers'
  :func:`reactor.workers.negotiation.answer_offer`, which wraps it).
- A daemon bound to loopback installs the loopback policy of :mod:`reactor.media.ice`.

The patches are all installed by :func:`reactor.media.install`; the registry
(:mod:`reactor.media.patches`) lists each with its targets, the versions it was checked
against and why it exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import connection_kwargs

from reactor.media import install
from reactor.media.ice import is_loopback_host
from reactor.media.links import IceServerLike

__all__ = ["ice_connection_kwargs", "ice_server_list", "install_patches",
           "new_peer_connection", "rtc_configuration"]


def ice_server_list(servers: Sequence[IceServerLike]) -> list[RTCIceServer]:
    """ICE servers (``server.ice_servers`` entries: ``url_list``, ``username``,
    ``credential``) as aiortc's :class:`RTCIceServer`."""
    return [RTCIceServer(urls=list(s.url_list), username=s.username, credential=s.credential)
            for s in servers]


def rtc_configuration(ice_servers: Sequence[IceServerLike] = (),
                      transport_policy: str = "all") -> RTCConfiguration:
    """The :class:`RTCConfiguration` of the daemon's peer connections: its ICE servers and
    its transport policy (``"all"`` or ``"relay"``; the ``server`` section's
    ``ice_servers`` and ``ice_transport_policy``)."""
    return RTCConfiguration(
        iceServers=ice_server_list(ice_servers),
        iceTransportPolicy=RTCIceTransportPolicy(transport_policy),
    )


def ice_connection_kwargs(ice_servers: Sequence[IceServerLike]) -> dict[str, Any]:
    """What aioice's ``Connection`` receives for these ICE servers (aiortc's own mapping:
    the first STUN server and the first usable TURN server)."""
    return connection_kwargs(ice_server_list(ice_servers))


def new_peer_connection(ice_servers: Sequence[IceServerLike] = (),
                        transport_policy: str = "all") -> RTCPeerConnection:
    """A peer connection with these ICE servers and transport policy
    (:func:`rtc_configuration`)."""
    return RTCPeerConnection(rtc_configuration(ice_servers, transport_policy))


def install_patches(host: str) -> None:
    """Install every patch the daemon's peer connections need (:func:`reactor.media.
    install`; idempotent). The loopback policy follows ``host``, the address the daemon
    binds (``server.host``). The ingress and egress workers call it once, at start."""
    install(loopback=is_loopback_host(host))
