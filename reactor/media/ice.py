"""The two aioice patches the daemon's ICE needs: the loopback policy and Firefox.

Loopback policy (:func:`restrict_ice_to_loopback`)
--------------------------------------------------
A daemon bound to 127.0.0.1 serves clients on this machine only, and its media must stay
on this machine. Stock clients do not pair with a loopback-only answer: aioice itself,
libnice (GStreamer's ``webrtcbin``) and browsers leave loopback out of their own
gathering, and libnice does not pair its interface addresses with a lone 127.0.0.1
candidate (its ICE stayed in ``checking``). So the
daemon offers 127.0.0.1 *and this machine's own interface addresses* as host candidates,
and talks to this machine only:

- it accepts remote candidates only when their address is one of this machine's own
  (others, and mDNS names, are dropped unresolved: no multicast query is sent);
- it answers connectivity checks, and accepts any other datagram, only from this
  machine's own addresses; the rest are dropped unanswered;
- with no STUN/TURN server configured, it sends nothing at all but to those remote
  candidates and to the sources of the checks it answers.

A packet from this machine to one of this machine's own interface addresses never leaves
it: the kernel routes every local destination through the loopback device (the ``local``
routing table), whichever interface the address belongs to. So a browser or GStreamer on
this machine that checks our ``192.0.2.2`` candidate from its own ``192.0.2.2``, or our
``127.0.0.1`` from its ``192.0.2.2`` (a peer-reflexive candidate for us, RFC 8445
7.3.1.3), talks to us over loopback; a machine elsewhere that learns the candidates gets
no answer. That is the reasoning the "own addresses only" rule rests on.

Firefox (:func:`enable_end_of_candidates_grace`)
------------------------------------------------
Firefox's offer carries its candidates *and* ``a=end-of-candidates``; its host candidates
are mDNS names (``<uuid>.local``), plus component-2 and TCP candidates. aiortc's
``setRemoteDescription`` hands the offer's candidates and the end-of-candidates mark to
aioice *before* it gathers its own candidates. aioice drops every candidate it cannot use
(an mDNS name that does not resolve, or under the loopback policy any name), and on
end-of-candidates it prunes the components for which no remote candidate is left
(``Connection._prune_components``). With none left it prunes them *all*, so the gathering
that follows gathers for no component: the answer carried no ``a=candidate`` line. And
even with local candidates, ``connect()`` fails at once on an empty check list after
end-of-candidates, before Firefox's checks (which teach us its real address as a
peer-reflexive candidate) can arrive. Chromium never writes ``a=end-of-candidates`` into
its SDP, so it never met this. The patch holds back an end-of-candidates that arrives while
no remote candidate is known, for :data:`PRFLX_GRACE_S` seconds: the answer gets its
candidates, the peer's checks arrive and pair, and if none come the mark is applied then
and ICE fails as it did.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import aioice.ice

log = logging.getLogger(__name__)

#: How long an end-of-candidates that left no usable remote candidate is held back, for
#: the peer's checks to arrive (it starts them as soon as it reads our answer).
PRFLX_GRACE_S = 10.0

_state = {"loopback": False, "grace": False}


@functools.cache
def _stock() -> dict[str, Any]:
    """aioice's own functions, read the first time they are needed rather than on import:
    importing this module must work even when a target is gone, so that
    :func:`reactor.media.install` can say which one (its check runs first)."""
    conn = aioice.ice.Connection
    stock: dict[str, Any] = {
        "request": conn.request_received,
        "add": conn.add_remote_candidate,
        "close": conn.close,
        "datagram": aioice.ice.StunProtocol.datagram_received,
    }
    # Each wrapper carries its original's name and signature (``__wrapped__``), so the
    # registry's check of an installed wrapper reads aioice's.
    for key, wrapper in (("request", _request_received), ("datagram", _datagram_received),
                         ("add", _add_remote_candidate), ("close", _close)):
        functools.update_wrapper(wrapper, stock[key])
    return stock


# aioice's get_host_addresses while the loopback policy's own is in its place.
_replaced_gathering: list[Callable[[bool, bool], list[str]]] = []


def _gather(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """The addresses aioice itself would gather."""
    gather: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses
    if gather is loopback_host_addresses:
        gather = _replaced_gathering[0]
    return gather(use_ipv4, use_ipv6)


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
    return frozenset(_gather(True, True)) | {"127.0.0.1", "::1"}


def is_own_address(host: str) -> bool:
    return is_loopback_host(host) or host.split("%")[0] in own_addresses()


def loopback_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """The host candidate addresses of a loopback daemon: loopback first, then this
    machine's interface addresses (what aioice would gather)."""
    first = (["127.0.0.1"] if use_ipv4 else []) + (["::1"] if use_ipv6 and not use_ipv4 else [])
    # Only addresses counted as our own (read once per process), so every candidate offered
    # is one whose checks we answer.
    own = own_addresses()
    return first + [a for a in _gather(use_ipv4, use_ipv6)
                    if a not in first and a in own]


def host_addresses(loopback: bool) -> list[str]:
    """The addresses a peer connection of this machine gathers host candidates on: the
    loopback policy's (``loopback``) or aioice's own, IPv4 and IPv6 as aiortc asks."""
    return loopback_host_addresses(True, True) if loopback else _gather(True, True)


def _request_received(self: Any, message: Any, addr: tuple[str, int], protocol: Any,
                      *rest: Any) -> None:
    # ``rest``: aioice 0.12 also passes the raw datagram (0.13 does not).
    if _state["loopback"] and not is_own_address(addr[0]):
        return  # unanswered, the check fails and that pair is never used
    _stock()["request"](self, message, addr, protocol, *rest)


def _datagram_received(self: Any, data: Any, addr: tuple[Any, ...]) -> None:
    if _state["loopback"] and not is_own_address(str(addr[0])):
        return
    _stock()["datagram"](self, data, addr)


async def _add_remote_candidate(self: Any, candidate: Any) -> None:
    if candidate is not None:
        # Other machines' addresses, and mDNS names (.local), are skipped: a local peer's
        # checks reach us anyway and teach us its address.
        if _state["loopback"] and not is_own_address(candidate.host):
            return
        await _stock()["add"](self, candidate)
        return
    if not _state["grace"] or self._remote_candidates or self._closing:
        await _stock()["add"](self, None)
        return
    if getattr(self, "_reactor_eoc_task", None) is not None:
        return

    async def later() -> None:
        await asyncio.sleep(PRFLX_GRACE_S)
        self._reactor_eoc_task = None
        if not self._closing and not self._remote_candidates_end:
            log.debug("end-of-candidates applied after %.0f s", PRFLX_GRACE_S)
            await _stock()["add"](self, None)

    self._reactor_eoc_task = asyncio.ensure_future(later())


async def _close(self: Any) -> None:
    task = getattr(self, "_reactor_eoc_task", None)
    if task is not None:
        task.cancel()
        self._reactor_eoc_task = None
    await _stock()["close"](self)


def _install() -> None:
    stock = _stock()
    patched = _state["loopback"] or _state["grace"]
    conn = aioice.ice.Connection
    conn.add_remote_candidate = (  # type: ignore[method-assign]
        _add_remote_candidate if patched else stock["add"])  # type: ignore[assignment]
    conn.close = _close if patched else stock["close"]  # type: ignore[method-assign]
    conn.request_received = (  # type: ignore[method-assign]
        _request_received if _state["loopback"] else stock["request"])
    aioice.ice.StunProtocol.datagram_received = (  # type: ignore[method-assign]
        _datagram_received if _state["loopback"] else stock["datagram"])


def restrict_ice_to_loopback(enabled: bool = True) -> None:
    """Offer loopback and this machine's interface addresses, and talk only to this
    machine's addresses (``enabled``); or use every interface and talk to anyone again."""
    _state["loopback"] = enabled
    _install()
    current = aioice.ice.get_host_addresses
    if enabled and current is not loopback_host_addresses:
        _replaced_gathering[:] = [current]
        aioice.ice.get_host_addresses = loopback_host_addresses
    elif not enabled and current is loopback_host_addresses:
        # Only undo our own.
        aioice.ice.get_host_addresses = _replaced_gathering[0]  # type: ignore[assignment]


def enable_end_of_candidates_grace(enabled: bool = True) -> None:
    """Hold back an end-of-candidates that leaves no usable remote candidate for
    :data:`PRFLX_GRACE_S` seconds (what makes Firefox work), or stop (``enabled=False``)."""
    _state["grace"] = enabled
    _install()


def loopback_restricted() -> bool:
    return _state["loopback"]
