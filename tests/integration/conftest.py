"""Fixtures that start real daemons (real processes, sockets, rings) and always stop them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import reactor.media
from tests.support.daemon import Daemon, models_env
from tests.support.firefox import FirefoxPage, firefox_pages
from tests.support.netlink import NARROW, WIDE, shape
from tests.support.netns import Netns, NetnsUnavailable, netns
from tests.support.turn import TURNSERVER, TurnServer, turn_server


@pytest.fixture(autouse=True)
def client_media_patches() -> None:
    """The tests' in-process clients (``reactor.client``, aiortc) talk to loopback daemons
    with the daemon's own aiortc/aioice behaviour, opted into as the client docs say."""
    reactor.media.install(loopback=True)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """``start_daemon(config_dict, expect_ok=True)``: a real detached daemon on a free port."""
    started: list[Daemon] = []
    counter = iter(range(100))

    def start(config: dict[str, Any] | None = None, *, expect_ok: bool = True) -> Daemon:
        n = next(counter)
        cfg = {"server": {"port": 0}, **(config or {})}
        cfg["server"] = {"port": 0, **cfg.get("server", {})}
        path = tmp_path / f"reactor-{n}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        run_dir = Path(f"/tmp/reactor-test-{os.getpid()}-{tmp_path.name[-20:]}-{n}")
        d = Daemon(run_dir, path, models_env())
        started.append(d)
        r = d.start()
        if expect_ok:
            assert r.returncode == 0, f"daemon failed to start:\n{r.stdout}\n{r.stderr}"
        return d

    yield start
    for d in started:
        d.stop()
        d.remove_leftovers()
        shutil.rmtree(d.run_dir, ignore_errors=True)


def _namespace(*tbf: str) -> Iterator[Netns]:
    """A network namespace joined to this one by a veth pair (198.18.x.2 inside, x.1
    outside), its side of the link shaped with ``tc tbf`` (``tbf``: its arguments, none:
    unshaped), removed with everything in it afterwards; skips where namespaces cannot be
    made (not root, no ``ip``, EPERM)."""
    try:
        with netns() as ns:
            if tbf:
                shape(ns, *tbf)
            yield ns
    except NetnsUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def remote_ns() -> Iterator[Netns]:
    """A namespace (see :func:`_namespace`) for all of a module's tests."""
    yield from _namespace()


@pytest.fixture
def plain_ns() -> Iterator[Netns]:
    """A namespace of one test, its link unshaped (loss and outages are nft rules)."""
    yield from _namespace()


@pytest.fixture
def narrow_ns() -> Iterator[Netns]:
    """A namespace whose daemon side sends at most 1.5 Mbit/s with a 200 ms queue."""
    yield from _namespace(*NARROW)


@pytest.fixture
def wide_ns() -> Iterator[Netns]:
    """A namespace whose daemon side sends at most 6 Mbit/s (a step's start and end)."""
    yield from _namespace(*WIDE)


@pytest.fixture
def firefox(tmp_path: Path) -> Iterator[Callable[[str], FirefoxPage]]:
    """``firefox(url)``: a stock headless Firefox ESR at ``url``, closed at the end; skips
    where Firefox, node or the driver's packages are missing."""
    yield from firefox_pages(tmp_path)


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[TurnServer]:
    """coturn on 127.0.0.1 (long-term credentials); stopped at the end, even on failure."""
    if not TURNSERVER.exists():
        pytest.skip(f"{TURNSERVER} is missing (apt-get install coturn)")
    with turn_server("127.0.0.1", tmp_path / "turn") as server:
        yield server
