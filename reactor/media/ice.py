"""Which addresses ICE uses on each side.

aioice gathers host candidates on every interface *except* loopback. A daemon bound to
127.0.0.1 serves clients on this machine only, so it offers 127.0.0.1 and nothing else,
and it refuses remote candidates and connectivity checks from any address that is not
this machine's own. Browsers leave loopback out of WebRTC by default: a browser on this
machine checks our 127.0.0.1 candidate from its LAN address, which we learn as a
peer-reflexive candidate (RFC 8445 7.3.1.3). That address is one of ours, so the packets
never leave the machine, and a stock browser can watch without special flags.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

import aioice.ice

_ORIGINAL_ADDRESSES = aioice.ice.get_host_addresses
_ORIGINAL_REQUEST = aioice.ice.Connection.request_received
_ORIGINAL_ADD = aioice.ice.Connection.add_remote_candidate


def _loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"] if use_ipv4 else ["::1"]


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=1)
def own_addresses() -> frozenset[str]:
    """The addresses of this machine's interfaces (loopback included)."""
    return frozenset(_ORIGINAL_ADDRESSES(True, True)) | {"127.0.0.1", "::1"}


def is_own_address(host: str) -> bool:
    return is_loopback_host(host) or host.split("%")[0] in own_addresses()


@functools.wraps(_ORIGINAL_REQUEST)
def _request_from_loopback(self: Any, message: Any, addr: tuple[str, int], protocol: Any) -> None:
    if not is_own_address(addr[0]):
        return  # unanswered, the check fails and that pair is never used
    _ORIGINAL_REQUEST(self, message, addr, protocol)


@functools.wraps(_ORIGINAL_ADD)
async def _add_loopback_candidate(self: Any, candidate: Any) -> None:
    # Other machines' addresses, and mDNS names (.local), are skipped: a local peer's
    # checks reach us anyway and teach us its address.
    if candidate is not None and not is_own_address(candidate.host):
        return
    await _ORIGINAL_ADD(self, candidate)


def restrict_ice_to_loopback(enabled: bool = True) -> None:
    """Offer only loopback and talk only to this machine's addresses (``enabled``), or
    use every interface again."""
    conn = aioice.ice.Connection
    if enabled:
        aioice.ice.get_host_addresses = _loopback_only
        conn.request_received = _request_from_loopback  # type: ignore[method-assign]
        conn.add_remote_candidate = _add_loopback_candidate  # type: ignore[method-assign,assignment]
    else:
        aioice.ice.get_host_addresses = _ORIGINAL_ADDRESSES
        conn.request_received = _ORIGINAL_REQUEST  # type: ignore[method-assign]
        conn.add_remote_candidate = _ORIGINAL_ADD  # type: ignore[method-assign]
