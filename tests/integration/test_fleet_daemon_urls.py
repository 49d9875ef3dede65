"""Two real daemons of one fleet: a session placed through a stand-in balancer stays with
its daemon (server.public_url), a minted token works on both (server.token_secret), and
every UDP socket a daemon's peer connections bind lies in server.ice_port_range."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from reactor.client import Client
from reactor.control import tokens
from reactor.fleet.plan import free_port
from tests.support.daemon import Daemon, models_env, run_cli
from tests.support.http import SMALL, request

pytestmark = pytest.mark.timeout(180)

SECRET = "fleet-test-secret-" + "z" * 30
STATIC = "static-token-a1"
RANGE = (23100, 23139)  # below the kernel's ephemeral ports (32768-60999)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Daemon]]:
    """Daemon A (static token too, the port range, max_viewers 4) and daemon B, sharing
    the token secret, each with public_url its own http://127.0.0.1:PORT."""
    tmp = tmp_path_factory.mktemp("fleet")
    daemons: list[Daemon] = []
    try:
        for name, extra in (("a", {"token": STATIC, "ice_port_range": list(RANGE),
                                   "max_viewers": 4}), ("b", {})):
            port = free_port("127.0.0.1")
            cfg = {**SMALL, "server": {"port": port, "token_secret": SECRET,
                                       "public_url": f"http://127.0.0.1:{port}", **extra}}
            path = tmp / f"{name}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            d = Daemon(Path(f"/tmp/reactor-test-{os.getpid()}-fleet-{name}"), path, models_env())
            daemons.append(d)
            r = d.start()
            assert r.returncode == 0, r.stderr
        yield daemons
    finally:
        for d in daemons:
            d.stop()
            d.remove_leftovers()


def mint(config: Path, *args: str) -> str:
    return run_cli("token", "-c", str(config), *args, check=True).stdout.strip()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Forwarder:
    """A stand-in balancer: a TCP port that forwards to the daemon, counting the bytes
    it carried, so a test sees which requests went through it."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.carried = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://localhost:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    self.carried += len(data)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(r, uw), pipe(ur, w))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def test_a_session_placed_through_a_balancer_stays_with_its_daemon(fleet) -> None:
    a, _b = fleet
    public = a.url.rstrip("/")
    token = mint(a.config_path, "--scope", "watch,command")

    async def run() -> dict[str, Any]:
        balancer = Forwarder(int(public.rsplit(":", 1)[1]))
        entry = await balancer.start()
        try:
            async with Client(entry, token=token) as client:
                viewer = await client.watch()
                await asyncio.wait_for(viewer.recv(), 20)
                seen = {"resource": viewer.resource, "url": client.url,
                        "placed_at": balancer.carried}
                # Everything after placement: a command, the events, status, DELETE.
                await client.command("set_speed", speed=3)
                async for _event in _first(client.events()):
                    pass
                seen["status"] = await client.status()
                await viewer.close()
                return {**seen, "carried": balancer.carried}
        finally:
            balancer.close()

    seen = asyncio.run(run())
    assert seen["resource"].startswith(public + "/whep/"), seen  # absolute, to the daemon
    assert seen["url"] == public
    assert seen["placed_at"] > 0  # the offer went through the balancer
    assert seen["carried"] == seen["placed_at"], "a request after placement used the balancer"
    assert seen["status"]["state"]


async def _first(events: Any) -> Any:
    # The event stream's first event, then stop (it was opened at the daemon's own URL).
    async for event in events:
        yield event
        break


def test_a_minted_token_works_on_every_daemon_sharing_the_secret(fleet) -> None:
    a, b = fleet
    watch = mint(a.config_path, "--scope", "watch", "--ttl", "10m")
    # Minted (with the same secret) a minute ago for 10 s: expired, without waiting.
    expired = tokens.mint(SECRET, ["watch"], 10, now=time.time() - 60)
    for d in (a, b):
        assert request(d, "GET", "/api/status", headers=auth(watch))[0] == 200
        status, body = request(d, "POST", "/api/commands/set_speed", "{}",
                               {"Content-Type": "application/json", **auth(watch)})
        assert status == 403 and "'command'" in body["error"]
        status, body = request(d, "GET", "/api/status", headers=auth("a.b.c"))
        assert status == 401 and "malformed" in body["error"]
    for d in (a, b):
        status, body = request(d, "GET", "/api/status", headers=auth(expired))
        assert status == 401 and "expired" in body["error"], (d.url, body)
    # The static token of A keeps working beside the secret.
    assert request(a, "GET", "/api/status", headers=auth(STATIC))[0] == 200


def daemon_udp_ports(pids: list[int]) -> list[int]:
    """The local ports of every UDP socket the processes ``pids`` hold."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
    found = []
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append(int(fields[1].rsplit(":", 1)[1], 16))
    return found


def test_every_udp_socket_of_the_peer_connections_is_in_the_port_range(fleet) -> None:
    a, _b = fleet
    import numpy as np

    from reactor.client import FrameTrack

    grey = np.full((240, 320, 3), 128, np.uint8)

    async def run() -> list[int]:
        async with Client(a.url, token=STATIC) as client, \
                await client.publish(FrameTrack(lambda n: grey, fps=30)), \
                await client.watch() as v1, await client.watch() as v2:
            for v in (v1, v2):
                await asyncio.wait_for(v.recv(), 20)
            return daemon_udp_ports(a.pids())

    ports = asyncio.run(run())
    # A sender and two viewers: three peer connections, each bound on every address.
    assert len(ports) >= 3, ports
    outside = [p for p in ports if not RANGE[0] <= p <= RANGE[1]]
    assert not outside, f"UDP ports outside {RANGE}: {outside} (all: {sorted(ports)})"
