"""``reactor fleet start --count 3``, for real: three daemons on this machine and Debian's
HAProxy in front, as the command starts them. Users placed through the balancer land on
free daemons only, twenty offers at once book each free daemon once, a session's commands
and events reach the daemon that holds it, a drained daemon's user plays on while new
users go elsewhere, and a daemon killed outright is out of rotation within the check
interval while the others play on.

One fleet serves the module; the kill test comes last. Small frames (the packaged test
pattern at 160x120) keep three daemons cheap on two cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from reactor.client import Client
from reactor.fleet import Fleet, balancer_states
from reactor.fleet.balancer import CHECK_INTERVAL_MS, RETRY_AFTER_S, backend_stats
from reactor.runtime.stats import alive
from tests.support.daemon import run_cli, tree, wait_for, wait_for_async
from tests.support.rtc import video_offer

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(shutil.which("haproxy", path="/usr/sbin:/usr/bin") is None,
                       reason="needs Debian's haproxy (apt-get install haproxy)"),
]

CONFIG: dict[str, Any] = {"video": {"width": 160, "height": 120, "fps": 15}, "device": "cpu",
          "server": {"host": "127.0.0.1"},
          "session": {"exclusive": True, "orphan_timeout_s": 0}}
#: Offers fired at once at the fleet when two daemons are free.
OFFERS = 20


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("fleet")
    config = folder / "reactor.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    # Short: the daemons' ipc:// socket paths inside it have a length limit.
    directory = Path(f"/tmp/reactor-fleet-{os.getpid()}")
    # --port 0: the balancer and each daemon on a free port.
    r = run_cli("fleet", "start", "-c", str(config), "--count", "3", "--port", "0",
                "--run-dir", str(directory), timeout=180)
    try:
        assert r.returncode == 0, f"fleet start failed:\n{r.stdout}\n{r.stderr}"
        assert "reactor fleet running: http://127.0.0.1:" in r.stdout, r.stdout
        yield Fleet.load(directory)
    finally:
        stop = run_cli("fleet", "stop", "--run-dir", str(directory), timeout=120)
        _kill_leftovers(directory)
        shutil.rmtree(directory, ignore_errors=True)
        assert stop.returncode == 0 or not (directory / "fleet.json").exists(), stop.stderr


def _kill_leftovers(directory: Path) -> None:
    """Whatever `fleet stop` left (it should leave nothing): killed, so no test leaks."""
    try:
        fleet = Fleet.load(directory)
    except Exception:
        return
    pids = [fleet.haproxy_pid] + [_pid(m.run_dir) for m in fleet.members]
    for pid in pids:
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)


def _pid(run_dir: str) -> int | None:
    try:
        return int((Path(run_dir) / "daemon.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def status(fleet: Fleet) -> dict[str, Any]:
    r = run_cli("fleet", "status", "--json", "--run-dir", fleet.directory)
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def all_free(fleet: Fleet) -> bool:
    """Every daemon is ready and HAProxy has it in rotation again."""
    seen = balancer_states(fleet)
    return (len(seen) == len(fleet.members) and all(s == "UP" for s in seen.values())
            and all(d["ready"] == "ready" for d in status(fleet)["daemons"]))


def member_at(fleet: Fleet, location: str) -> int:
    """Which daemon an absolute session URL (a Location) belongs to."""
    [index] = [m.index for m in fleet.members
               if location.startswith(m.public_url.rstrip("/") + "/")]
    return index


def member_of(fleet: Fleet, url: str) -> int:
    """Which daemon a placed client's URL (its public_url) is."""
    [index] = [m.index for m in fleet.members if m.public_url.rstrip("/") == url.rstrip("/")]
    return index


async def frames(viewer: Any, n: int) -> None:
    for _ in range(n):
        await asyncio.wait_for(viewer.recv(), 10)


def test_fleet_status_shows_every_daemon_ready_and_in_rotation(fleet: Fleet) -> None:
    st = status(fleet)
    assert st["balancer"]["running"] is True
    assert [(d["index"], d["state"], d["ready"], d["balancer"], d["session"])
            for d in st["daemons"]] == [(i, "running", "ready", "UP", None) for i in range(3)]
    # Each daemon answers with its own public URL.
    assert [d["url"] for d in st["daemons"]] == [m.public_url for m in fleet.members]
    # The same, live: `reactor monitor --fleet --once` prints the table.
    r = run_cli("monitor", "--fleet", "--once", "--run-dir", fleet.directory)
    assert r.returncode == 0 and "balancer running" in r.stdout, r.stdout + r.stderr


def test_twenty_offers_at_two_free_daemons_book_each_once(fleet: Fleet) -> None:
    """One daemon is busy; twenty new users at once: two sessions, one per free daemon,
    and eighteen 503s with Retry-After."""
    wait_for(lambda: all_free(fleet), 20, "every daemon free")

    async def run() -> None:
        async with Client(fleet.url) as first:
            viewer = await first.watch(report=False)
            busy = member_of(fleet, first.url)
            await frames(viewer, 3)
            await wait_for_async(_async(lambda: balancer_states(fleet)[f"daemon-{busy}"]
                                        == "DOWN"), 5, "the busy daemon out of rotation")
            sdp = await video_offer()
            async with aiohttp.ClientSession() as http:

                async def post() -> tuple[int, str | None, str | None]:
                    async with http.post(fleet.url + "/whep", data=sdp,
                                         headers={"Content-Type": "application/sdp"}) as r:
                        await r.read()
                        return r.status, r.headers.get("Location"), r.headers.get(
                            "Retry-After")

                answers = await asyncio.gather(*(post() for _ in range(OFFERS)))
                placed = [a[1] for a in answers if a[0] == 201]
                assert sorted(a[0] for a in answers) == [201] * 2 + [503] * (OFFERS - 2), answers
                assert all(a[2] is not None and int(a[2]) > 0 for a in answers if a[0] == 503)
                # A daemon's 503 (another offer took its place first) was tried elsewhere.
                assert int(backend_stats(fleet)["BACKEND"]["wredis"]) > 0
                # Absolute Locations (public_url) on the two free daemons, one each.
                on = sorted(member_at(fleet, loc) for loc in placed if loc is not None)
                assert on == sorted({0, 1, 2} - {busy}), (busy, placed)
                # Nobody double-booked: each daemon holds one session, with one viewer.
                sessions = [d["session"] for d in status(fleet)["daemons"]]
                assert all(s is not None for s in sessions), sessions
                assert [d["viewers"] for d in status(fleet)["daemons"]] == [1, 1, 1]
                for loc in placed:
                    assert loc is not None
                    async with http.delete(loc) as r:
                        assert r.status == 200
            await frames(viewer, 3)  # the first user played on throughout
            await viewer.close()

    asyncio.run(run())


def _async(pred: Any) -> Any:
    async def check() -> Any:
        return pred()
    return check


def test_commands_and_events_of_a_placed_session_reach_its_daemon(fleet: Fleet) -> None:
    wait_for(lambda: all_free(fleet), 20, "every daemon free")

    async def run() -> None:
        async with Client(fleet.url) as client:
            viewer = await client.watch(report=False)
            index = member_of(fleet, client.url)
            await frames(viewer, 2)

            async def first_command() -> dict[str, Any]:
                async for event in client.events():  # the placed daemon's stream
                    if event["type"] == "command":
                        return event
                raise AssertionError("the event stream ended")

            seen = asyncio.ensure_future(first_command())
            await asyncio.sleep(0.5)
            await client.command("set_text", text="placed through the balancer")
            event = await asyncio.wait_for(seen, 10)
            assert event["reason"] == "set_text", event
            # The model of the daemon that holds the session applied it; no other did.
            applied = {d["index"]: _applied(fleet, d["index"]) for d in status(fleet)["daemons"]}
            assert applied[index] == {"text": "placed through the balancer"}, applied
            assert all(a is None for i, a in applied.items() if i != index), applied
            await viewer.close()

    asyncio.run(run())


def _applied(fleet: Fleet, index: int) -> dict[str, Any] | None:
    r = run_cli("daemon", "status", "--json", "--run-dir", fleet.members[index].run_dir)
    st = json.loads(r.stdout)
    found: dict[str, Any] | None = st.get("commands_applied", {}).get("set_text")
    return found


def test_a_drained_daemons_user_plays_on_while_new_users_go_elsewhere(fleet: Fleet) -> None:
    wait_for(lambda: all_free(fleet), 20, "every daemon free")
    drained: list[int] = []

    async def run() -> None:
        async with Client(fleet.url) as user:
            viewer = await user.watch(report=False)
            index = member_of(fleet, user.url)
            await frames(viewer, 2)
            r = run_cli("daemon", "drain", "--no-wait", "--timeout", "60", "--run-dir",
                        fleet.members[index].run_dir)
            assert r.returncode == 0, r.stdout + r.stderr
            drained.append(index)
            # New users: each lands on another daemon, while the drained one's plays on.
            others = []
            for _ in range(2):
                async with Client(fleet.url) as newcomer:
                    v = await newcomer.watch(report=False)
                    others.append(member_of(fleet, newcomer.url))
                    await v.close()
                await frames(viewer, 5)
            assert index not in others, (index, others)
            ready = status(fleet)["daemons"][index]["ready"]
            assert ready.startswith("draining"), ready
            await viewer.close()
        # The session over, the drained daemon stops.
        pid = _pid(fleet.members[index].run_dir)
        wait_for(lambda: pid is None or not alive(pid), 20, "the drained daemon stopped")

    try:
        asyncio.run(run())
    finally:
        for index in drained:  # back, for the next test
            def stopped(i: int = index) -> bool:
                return bool(status(fleet)["daemons"][i]["state"] == "stopped")

            wait_for(stopped, 30, "the drained daemon stopped")
            _restart_member(fleet, index)


def _restart_member(fleet: Fleet, index: int) -> None:
    """Start a stopped daemon of the fleet again, as an operator would, from its config."""
    m = fleet.members[index]
    cfg = Path(fleet.directory) / f"daemon-{index}.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "server": {**CONFIG["server"], "port": m.port,
                                                        "public_url": m.public_url}}))
    r = run_cli("daemon", "start", "-c", str(cfg), "--run-dir", m.run_dir, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_daemon_killed_outright_is_out_of_rotation_and_the_others_play_on(
        fleet: Fleet) -> None:
    wait_for(lambda: all_free(fleet), 30, "every daemon free")

    async def run() -> None:
        async with Client(fleet.url) as a, Client(fleet.url) as b:
            va, vb = await a.watch(report=False), await b.watch(report=False)
            ia, ib = member_of(fleet, a.url), member_of(fleet, b.url)
            assert ia != ib
            [victim] = {0, 1, 2} - {ia, ib}
            pid = _pid(fleet.members[victim].run_dir)
            assert pid is not None
            workers = [p for p in tree(pid) if p != pid]
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            await wait_for_async(
                _async(lambda: balancer_states(fleet)[f"daemon-{victim}"] != "UP"), 10,
                "the killed daemon out of rotation")
            out_after = time.monotonic() - killed
            # Within its check interval (and the check's own timeout), not minutes.
            assert out_after < CHECK_INTERVAL_MS / 1000 + 2.5, out_after
            # The two sessions ran on, untouched.
            await asyncio.gather(frames(va, 15), frames(vb, 15))
            # The victim's workers follow their supervisor out.
            try:
                wait_for(lambda: not any(alive(w) for w in workers), 15,
                         "the killed daemon's workers gone")
            finally:
                for w in workers:
                    if alive(w):
                        os.kill(w, signal.SIGKILL)
            # Every daemon is now busy or gone: the balancer's own 503 says when to retry.
            async with aiohttp.ClientSession() as http:
                async with http.post(fleet.url + "/whep", data=await video_offer(),
                                     headers={"Content-Type": "application/sdp"}) as r:
                    assert r.status == 503
                    assert r.headers.get("Retry-After") == str(RETRY_AFTER_S)
            await va.close()
            await vb.close()

    asyncio.run(run())
