"""Which local addresses ICE offers as host candidates.

aioice gathers host candidates on every interface *except* loopback. A daemon bound to
127.0.0.1 serves clients on this machine only, so it offers 127.0.0.1 and nothing else:
media then stays on loopback like the signalling does, and no other interface is exposed.
"""

from __future__ import annotations

import ipaddress

import aioice.ice

_ORIGINAL = aioice.ice.get_host_addresses


def _loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"] if use_ipv4 else ["::1"]


def restrict_ice_to_loopback(enabled: bool = True) -> None:
    """Offer only loopback host candidates (``enabled``), or every interface again."""
    aioice.ice.get_host_addresses = _loopback_only if enabled else _ORIGINAL


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
