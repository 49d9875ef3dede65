"""``server.ice_port_range``: the daemon's peer connections bind their UDP ports in a range.

A firewall rule, a Kubernetes ``hostPort`` or a NodePort must name the UDP ports media
arrives on; by default aioice binds each host candidate's socket on a port the kernel picks
(``local_addr=(address, 0)``). aioice has no setting for it (aiortc/aioice#47, its pull
requests #63 and #112 are not merged), and reactor patches nothing it can avoid: instead the
ingress and egress workers run their event loop as a :class:`PortRangeLoop`, whose
``create_datagram_endpoint`` binds a request for "any port" (port 0) on a free port of the
range. In those two processes only aioice makes UDP endpoints, and it takes the running
loop's (the ``ice-port-range`` reading in :mod:`reactor.media.patches` checks at start that
it still does, with ``local_addr=(address, 0)``).

What lies in the range: every host candidate socket, one per address gathered (per ICE
transport: one per peer connection with BUNDLE), which is also where server-reflexive
candidates are learnt from. Outside it, and needing no inbound rule: the socket a TURN
client opens towards its TURN server (an outgoing flow whose answers a stateful firewall
lets in; media then arrives through the TURN server), and the process's one mDNS socket
(UDP 5353, link-local multicast) that resolves a browser's ``.local`` candidates on the
same LAN.

Ports are tried from a random place in the range onwards, wrapping, so that the two
workers and many peer connections rarely try the same one twice; a port in use (by the
other worker, or anything else) is skipped. When every port is in use, the bind fails as
aioice's own would (that address gives no candidate) and a warning names the setting.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["PortRangeLoop", "host_address_count", "run"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class PortRangeLoop(asyncio.SelectorEventLoop):
    """asyncio's event loop (the selector loop, Linux's default) whose UDP endpoints that
    ask for any port (``local_addr=(host, 0)``) get one in ``[low, high]``."""

    def __init__(self, port_range: tuple[int, int]) -> None:
        super().__init__()
        low, high = port_range
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"a port range is [min, max] within 1-65535, found {port_range}")
        self.port_range = (low, high)

    def ports(self) -> list[int]:
        """The range's ports in the order the next bind tries them."""
        low, high = self.port_range
        start = random.randint(low, high)
        return [*range(start, high + 1), *range(low, start)]

    async def create_datagram_endpoint(  # type: ignore[override]
        self, protocol_factory: Any, local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None, **kwargs: Any,
    ) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
        if local_addr is None or local_addr[1] != 0 or remote_addr is not None:
            return await super().create_datagram_endpoint(
                protocol_factory, local_addr=local_addr, remote_addr=remote_addr, **kwargs)
        host = local_addr[0]
        for port in self.ports():
            try:
                return await super().create_datagram_endpoint(
                    protocol_factory, local_addr=(host, port), **kwargs)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        low, high = self.port_range
        log.warning("server.ice_port_range [%d, %d]: every port is in use on %s; widen the "
                    "range (a peer connection gets no candidate on this address)",
                    low, high, host)
        raise OSError(errno.EADDRINUSE, f"server.ice_port_range [{low}, {high}]: every port "
                      f"is in use on {host}")


def run(main: Coroutine[Any, Any, T], port_range: tuple[int, int] | None) -> T:
    """``asyncio.run(main)``, on a :class:`PortRangeLoop` when ``port_range`` is set."""
    if port_range is None:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=lambda: PortRangeLoop(port_range)) as runner:
        return runner.run(main)


def host_address_count(loopback: bool) -> int:
    """How many addresses the daemon's peer connections gather host candidates on, on
    this machine (``loopback``: under the loopback policy): each peer connection binds
    one port of the range per address."""
    from reactor.media.ice import host_addresses

    return len(host_addresses(loopback))
