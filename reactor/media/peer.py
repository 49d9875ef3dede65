"""How the daemon's peer connections are made: configuration and the aiortc/aioice patches.

Every ``RTCPeerConnection`` the daemon answers with (WHIP in ingress, WHEP in egress) is
made by :func:`new_peer_connection`, after :func:`install_patches`. The configuration
comes from the ``server`` section:

- ``ice_servers`` becomes ``RTCConfiguration.iceServers`` (:func:`rtc_configuration`).
  aiortc uses the *first* STUN URL and the *first* usable TURN URL (``turn:`` over UDP or
  TCP, ``turns:`` over TLS) and ignores the rest; :func:`ice_connection_kwargs` shows what
  aioice receives.
- ``ice_transport_policy: relay`` becomes ``RTCConfiguration.iceTransportPolicy``, which
  aiortc 1.16 hands to aioice as ``transport_policy``: no host or server-reflexive
  candidates are gathered, so the answer carries relay candidates only, and aioice
  ignores the peer's mDNS candidates.
- ``announced_addresses`` are written into the answer's host candidates by
  :func:`reactor.media.sdp.announce_host_candidates` (in :func:`reactor.media.sdp.answer_sdp_for`).
- A daemon bound to loopback installs the loopback policy of :mod:`reactor.media.ice`.

The patches (all installed by :func:`reactor.media.install`), each explained in one place:

1. :func:`reactor.media.dtls.enable_rsa_cipher_suites`: DTLS with peers that hold an RSA
   certificate (GStreamer).
2. :func:`reactor.media.ice.enable_end_of_candidates_grace`: Firefox (its offer's
   ``a=end-of-candidates`` with mDNS-only candidates left aiortc's answer empty).
3. :func:`reactor.media.ice.restrict_ice_to_loopback`: the loopback policy, for a daemon
   bound to loopback.
4. :func:`reactor.media.jitter.enable_marker_bit_completion`: received frames complete on
   the marker bit (ingress).
5. :func:`reactor.media.tracks.enable_keyframe_requests`: a viewer's PLI reaches the
   encoder (egress).
6. :func:`reactor.media.playout.enable_playout_delay`: a viewer that offers the
   ``playout-delay`` header extension gets min = max = 0 on every video packet, so a
   browser does not hold frames in its jitter buffer (egress).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import connection_kwargs

from reactor.config import IceServer, ServerSection
from reactor.media import install
from reactor.media.ice import is_loopback_host

__all__ = ["ice_connection_kwargs", "ice_server_list", "install_patches",
           "new_peer_connection", "rtc_configuration"]


def ice_server_list(servers: Sequence[IceServer]) -> list[RTCIceServer]:
    """``server.ice_servers`` entries (``urls``, ``username``, ``credential``) as aiortc's
    :class:`RTCIceServer`."""
    return [
        RTCIceServer(urls=s.urls if isinstance(s.urls, str) else list(s.urls),
                     username=s.username, credential=s.credential)
        for s in servers
    ]


def rtc_configuration(server: ServerSection) -> RTCConfiguration:
    """The :class:`RTCConfiguration` of the daemon's peer connections, from the config's
    ``server`` section (``ice_servers``, ``ice_transport_policy``)."""
    return RTCConfiguration(
        iceServers=ice_server_list(server.ice_servers),
        iceTransportPolicy=RTCIceTransportPolicy(server.ice_transport_policy),
    )


def ice_connection_kwargs(server: ServerSection) -> dict[str, Any]:
    """What aioice's ``Connection`` receives for these ICE servers (aiortc's own mapping:
    the first STUN server and the first usable TURN server)."""
    return connection_kwargs(ice_server_list(server.ice_servers))


def new_peer_connection(server: ServerSection) -> RTCPeerConnection:
    """A peer connection configured from the ``server`` section."""
    return RTCPeerConnection(rtc_configuration(server))


def install_patches(server: ServerSection) -> None:
    """Install every patch the daemon's peer connections need (:func:`reactor.media.
    install`; idempotent). The loopback policy follows ``server.host``. The ingress and
    egress workers call it once, at start."""
    install(loopback=is_loopback_host(server.host))
