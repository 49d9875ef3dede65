"""server.ice_port_range's event loop: UDP endpoints that ask for any port get one in it."""

from __future__ import annotations

import asyncio
import socket

import pytest

from reactor.media import ports
from reactor.media.ports import PortRangeLoop


def free_udp_range(n: int) -> tuple[int, int]:
    """``n`` consecutive UDP ports free on 127.0.0.1 right now, below the kernel's
    ephemeral ports (Linux: from 32768), so a kernel-picked port is never in it."""
    for low in range(21000, 32000, 97):
        socks = []
        try:
            for p in range(low, low + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return low, low + n - 1
    raise AssertionError("no free UDP range")


def test_any_port_endpoints_land_in_the_range_skipping_used_ports() -> None:
    low, high = free_udp_range(4)

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, PortRangeLoop)
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        taken.bind(("127.0.0.1", low + 1))  # something else holds one port
        transports = []
        try:
            for _ in range(3):
                t, _p = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
                transports.append(t)
            found = [t.get_extra_info("sockname")[1] for t in transports]
            with pytest.raises(OSError, match="server.ice_port_range"):
                await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
            # A fixed port and a connected endpoint are left as asked.
            t, _p = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=("127.0.0.1", 9))
            assert not low <= t.get_extra_info("sockname")[1] <= high
            t.close()
            return found
        finally:
            taken.close()
            for t in transports:
                t.close()

    found = ports.run(main(), (low, high))
    assert sorted(found) == [p for p in range(low, high + 1) if p != low + 1]


def test_without_a_range_the_loop_is_asyncios_own() -> None:
    async def main() -> bool:
        return isinstance(asyncio.get_running_loop(), PortRangeLoop)

    assert ports.run(main(), None) is False
