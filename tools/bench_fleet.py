"""``tools/bench.py fleet``: what placing users through the fleet's balancer costs, and how
fast a fleet fills.

A real fleet, started as an operator starts one: ``reactor fleet start --count 3`` (three
daemons on this machine, Debian's HAProxy in front, checking each daemon's ``/readyz``
every second and retrying a daemon's 503 on another). Small frames (the packaged test
pattern at 160x120, 30 fps, ``device: cpu``), ``session.exclusive: true`` (a session is
one user's) and ``session.orphan_timeout_s: 0`` (the session ends with its last viewer,
so a daemon is free again at once), so that the machine's CPU does not dominate.

**Placement**, through the balancer against straight to a daemon, in alternating order
(the direct offers go to each daemon in turn):

- *offer -> 201*: a new client (a fresh HTTP connection) POSTs an aiortc WHEP offer (made
  before the clock starts) and gets the ``201 Created``; the session is then DELETEd at
  its absolute ``Location``, on the daemon that holds it.
- *offer -> first frame*: a new ``reactor.client.Client`` watches (its ``OPTIONS``, the
  offer, the ``201``, ICE, DTLS) until its first decoded frame; then it leaves.

Before each offer the bench waits until every daemon's ``/readyz`` says ready and HAProxy
has one in rotation, so neither path measures a wait for a daemon to become free (HAProxy
rechecks a daemon a second after it was busy; until then it sends users to the others).
The first offer of each kind and path warms up and is not counted. Goal: the balancer adds
at most 20 ms at p99.

**Fill rate**: from a start where all three daemons are free and in rotation, twelve users
fire offers through the balancer as fast as they can, each trying again at once after a
503, until three sessions are placed: the time to the third ``201`` (sessions placed per
second), and the 503s users saw meanwhile. Beside it, three users through the balancer
(as many as there are daemons: what HAProxy's own hop and round robin cost, without the
crowd), and the floor: three offers at once straight to the three daemons, one each.

A hundred offers per path and kind, ten fill rounds of each kind: one to two minutes in all
(``reactor fleet start`` 3 s, then mostly the placements; each fill round first waits for
HAProxy to see every daemon free again, up to its 1 s check interval).
``--quick``: five offers per path and kind, one fill round; goals not judged. Without
HAProxy the section says so and measures nothing. Everything it starts it stops (``reactor
fleet stop``, then SIGKILL for anything left).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from bench_common import percentiles_ms
from bench_pipeline import _met

from reactor.fleet import Fleet, balancer_states, haproxy_binary
from reactor.fleet.balancer import backend_stats
from reactor.runtime.stats import alive
from tests.support.daemon import run_cli, tree
from tests.support.rtc import video_offer

DAEMONS = 3
CONFIG: dict[str, Any] = {
    "model": {"module": "reactor.examples.pattern:TestPattern"},
    "video": {"width": 160, "height": 120, "fps": 30}, "device": "cpu",
    "server": {"host": "127.0.0.1"},
    "session": {"exclusive": True, "orphan_timeout_s": 0},
}
DESCRIBE = ("3 daemons (reactor fleet start --count 3), TestPattern 160x120@30 on cpu, "
            "session.exclusive, orphan_timeout_s 0")
#: How much later than a daemon's own the balancer's p99 may be.
GOAL_MS = 20.0
#: New clients per path and kind: a p99 of 30 would be the slowest one; each costs well
#: under 0.1 s on this machine, so a hundred fit.
PLACEMENTS = 100
#: The fill rounds: users firing offers at once through the balancer (None: one offer
#: straight to each daemon), and how many rounds of each.
FILLS: dict[str, int | None] = {"balancer": 12, "balancer_3": DAEMONS, "direct": None}
FILL_ROUNDS = 10
PATHS = ("direct", "balancer")
KINDS = ("created", "first_frame")


def _log(msg: str) -> None:
    print(f"bench: fleet {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def running_fleet() -> Iterator[Fleet]:
    """``reactor fleet start --count 3`` in a fresh directory; stopped with ``reactor
    fleet stop`` however the bench ends, and whatever that leaves killed."""
    tmp = Path(tempfile.mkdtemp(prefix="reactor-bench-fleet-"))
    config = tmp / "reactor.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    directory = tmp / "fleet"
    try:
        r = run_cli("fleet", "start", "-c", str(config), "--count", str(DAEMONS),
                    "--port", "0", "--run-dir", str(directory),
                    timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"reactor fleet start failed:\n{r.stdout}\n{r.stderr}")
        yield Fleet.load(directory)
    finally:
        if (directory / "fleet.json").exists():
            stop = run_cli("fleet", "stop", "--run-dir", str(directory), timeout=120)
            if stop.returncode != 0:
                _log(f"fleet stop failed: {stop.stderr.strip()}")
            _kill_leftovers(directory)
        shutil.rmtree(tmp, ignore_errors=True)


def _kill_leftovers(directory: Path) -> None:
    """What ``fleet stop`` left (it should leave nothing): HAProxy and each daemon's
    process tree, killed."""
    try:
        fleet = Fleet.load(directory)
    except Exception:
        return
    roots = [fleet.haproxy_pid] + [_pid(Path(m.run_dir)) for m in fleet.members]
    for root in roots:
        if root is None or not alive(root):
            continue
        for pid in [*tree(root)[1:], root]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _log(f"killed pid {root} (and its children), left after fleet stop")


def _pid(run_dir: Path) -> int | None:
    try:
        return int((run_dir / "daemon.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _haproxy_version() -> str:
    r = subprocess.run([haproxy_binary(), "-v"], capture_output=True, text=True, check=False)
    first = (r.stdout.splitlines() or [""])[0]
    return " ".join(first.split()[:3])  # "HAProxy version 2.6.12-1+deb12u4"


def _counters(fleet: Fleet) -> tuple[int, int]:
    """HAProxy's (retries, redispatches) of the daemons' backend so far."""
    row = backend_stats(fleet).get("BACKEND", {})
    return int(row.get("wretr") or 0), int(row.get("wredis") or 0)


def _member(fleet: Fleet, url: str) -> int:
    """Which daemon an absolute URL (a Location, a placed client's URL) belongs to."""
    for m in fleet.members:
        base = m.public_url.rstrip("/")
        if url.rstrip("/") == base or url.startswith(base + "/"):
            return m.index
    raise RuntimeError(f"{url} is no daemon's of the fleet")


async def _post(http: aiohttp.ClientSession, url: str, sdp: str,
                ) -> tuple[int, str | None, str | None]:
    async with http.post(url + "/whep", data=sdp,
                         headers={"Content-Type": "application/sdp"}) as r:
        await r.read()
        return r.status, r.headers.get("Location"), r.headers.get("Retry-After")


async def _delete(location: str) -> None:
    async with aiohttp.ClientSession() as http, http.delete(location) as r:
        if r.status != 200:
            raise RuntimeError(f"DELETE {location} answered {r.status}")


async def _free(fleet: Fleet, *, every_in_rotation: bool) -> bool:
    """Every daemon says ready; HAProxy has one of them (or, ``every_in_rotation``, all
    of them) in rotation."""
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for m in fleet.members:
            async with http.get(m.public_url.rstrip("/") + "/readyz") as r:
                if r.status != 200:
                    return False
    up = [s == "UP" for s in balancer_states(fleet).values()]
    return len(up) == DAEMONS and all(up) if every_in_rotation else any(up)


async def _wait_free(fleet: Fleet, *, every_in_rotation: bool = False,
                     timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await _free(fleet, every_in_rotation=every_in_rotation):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the fleet's daemons were not all free within {timeout:.0f} s "
                               f"after their sessions were deleted (balancer: "
                               f"{balancer_states(fleet)})")
        await asyncio.sleep(0.05)


async def _created(fleet: Fleet, url: str) -> tuple[float, int]:
    """A new client's offer to ``url``: ms to its 201, and the daemon that took it."""
    sdp = await video_offer()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        t0 = time.perf_counter()
        status, location, _ = await _post(http, url, sdp)
        ms = (time.perf_counter() - t0) * 1000
    if status != 201 or location is None:
        raise RuntimeError(f"POST {url}/whep answered {status} while every daemon was free")
    await _delete(location)
    return ms, _member(fleet, location)


async def _first_frame(fleet: Fleet, url: str) -> tuple[float, int]:
    """A new ``reactor.client`` watching ``url``: ms to its first decoded frame, and the
    daemon it was placed on."""
    from reactor.client import Client

    t0 = time.perf_counter()
    async with Client(url) as client:
        viewer = await client.watch(report=False)
        try:
            await asyncio.wait_for(viewer.recv(), 10)
            ms = (time.perf_counter() - t0) * 1000
        finally:
            await viewer.close()
        return ms, _member(fleet, client.url)


async def _placement(fleet: Fleet, n: int) -> dict[str, Any]:
    measure = {"created": _created, "first_frame": _first_frame}
    samples: dict[str, dict[str, list[float]]] = {p: {k: [] for k in KINDS} for p in PATHS}
    placed_on: dict[str, dict[int, int]] = {p: {} for p in PATHS}
    retries0 = _counters(fleet)
    for i in range(n + 1):  # the first of each: warm-up
        for kind in KINDS:
            for path in PATHS if i % 2 else PATHS[::-1]:
                url = (fleet.url if path == "balancer"
                       else fleet.members[i % DAEMONS].public_url.rstrip("/"))
                await _wait_free(fleet)
                ms, on = await measure[kind](fleet, url)
                if i:
                    samples[path][kind].append(ms)
                    placed_on[path][on] = placed_on[path].get(on, 0) + 1
    retries1 = _counters(fleet)
    out: dict[str, Any] = {"n": n}
    for path in PATHS:
        res: dict[str, Any] = {}
        for kind in KINDS:
            p50, p99, top = percentiles_ms(samples[path][kind], 50, 99, 100)
            res[kind] = {"p50_ms": p50, "p99_ms": p99, "max_ms": top}
        res["placed_on"] = {f"daemon-{k}": v for k, v in sorted(placed_on[path].items())}
        out[path] = res
    out["balancer_retries"] = retries1[0] - retries0[0]
    out["balancer_redispatches"] = retries1[1] - retries0[1]
    for kind in KINDS:
        b, d = out["balancer"][kind]["p99_ms"], out["direct"][kind]["p99_ms"]
        out[f"{kind}_p99_over_direct_ms"] = None if b is None or d is None else round(b - d, 2)
    return out


async def _fill(fleet: Fleet, users: int | None) -> dict[str, Any]:
    """From all daemons free and in rotation: offers until every daemon holds a session.
    Through the balancer, ``users`` users each try again at once after a 503; ``None``:
    one offer straight to each daemon."""
    balancer = users is not None
    await _wait_free(fleet, every_in_rotation=True)
    sdp = await video_offer()
    placed: list[tuple[float, str]] = []
    refused: list[float] = []  # when each 503 reached its user
    no_retry_after = 0
    sent = 0
    retries0 = _counters(fleet)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        t0 = time.perf_counter()

        async def user(url: str) -> None:
            nonlocal sent, no_retry_after
            while len(placed) < DAEMONS:
                sent += 1
                status, location, retry_after = await _post(http, url, sdp)
                now = time.perf_counter() - t0
                if status == 201 and location is not None:
                    placed.append((now, location))
                    return
                if status != 503:
                    raise RuntimeError(f"POST {url}/whep answered {status}, not 201 or 503")
                refused.append(now)
                no_retry_after += retry_after is None
                if not balancer:
                    return

        urls = ([m.public_url.rstrip("/") for m in fleet.members] if users is None
                else [fleet.url] * users)
        await asyncio.gather(*(user(u) for u in urls))
    retries1 = _counters(fleet)
    for _, location in placed:
        await _delete(location)
    if len(placed) != DAEMONS:
        raise RuntimeError(f"{len(placed)} sessions placed on {DAEMONS} free daemons")
    on = sorted(_member(fleet, loc) for _, loc in placed)
    if on != list(range(DAEMONS)):
        raise RuntimeError(f"sessions placed on daemons {on}: one daemon holds two")
    last = max(t for t, _ in placed)
    return {"seconds": round(last, 4), "sessions_per_s": round(DAEMONS / last, 1),
            "placed_at_ms": sorted(round(t * 1000, 1) for t, _ in placed),
            "offers": sent, "refused_503_before_full": sum(1 for t in refused if t <= last),
            "refused_503_total": len(refused), "refused_without_retry_after": no_retry_after,
            "balancer_retries": retries1[0] - retries0[0],
            "balancer_redispatches": retries1[1] - retries0[1]}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


async def _measure(fleet: Fleet, quick: bool) -> dict[str, Any]:
    import reactor.media

    reactor.media.install(loopback=True)  # the client side as the daemon's, as in the tests
    n, rounds = (5, 1) if quick else (PLACEMENTS, FILL_ROUNDS)
    _log(f"placement: {n} offers per path and kind (+1 warm-up)")
    t0 = time.monotonic()
    placement = await _placement(fleet, n)
    placement["seconds"] = round(time.monotonic() - t0, 1)
    _log(f"placement: {placement}")
    fill: dict[str, list[dict[str, Any]]] = {path: [] for path in FILLS}
    for i in range(rounds):
        for path in list(FILLS)[:: 1 if i % 2 else -1]:
            res = await _fill(fleet, FILLS[path])
            _log(f"fill {path}: {res}")
            fill[path].append(res)
    summary = {path: {"sessions_per_s": round(_median([r["sessions_per_s"] for r in runs]), 1),
                      "seconds": round(_median([r["seconds"] for r in runs]), 4),
                      "refused_503_before_full": _median(
                          [r["refused_503_before_full"] for r in runs])}
               for path, runs in fill.items()}
    return {"placement": placement, "fill": {"users": FILLS, "rounds": rounds,
                                             "runs": fill, **summary}}


def goals(result: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    out = []
    labels = {"created": "offer -> 201", "first_frame": "offer -> first frame"}
    for kind, label in labels.items():
        over = result["placement"][f"{kind}_p99_over_direct_ms"]
        b = result["placement"]["balancer"][kind]["p99_ms"]
        d = result["placement"]["direct"][kind]["p99_ms"]
        out.append({"target": f"{label} through the balancer <= {GOAL_MS:g} ms over direct "
                              "at p99",
                    "figure": f"{b} vs {d} ms: {over:+} ms" if over is not None else "none",
                    "met": None if quick or over is None else over <= GOAL_MS})
    return out


def run(quick: bool) -> dict[str, Any]:
    try:
        version = _haproxy_version()
    except Exception as exc:  # ConfigError naming the package to install
        return {"available": False, "reason": str(exc)}
    started = time.monotonic()
    with running_fleet() as fleet:
        start_s = round(time.monotonic() - started, 1)
        _log(f"started in {start_s} s: {fleet.url}")
        result = asyncio.run(_measure(fleet, quick))
    return {"available": True, "quick": quick, "config": DESCRIBE, "haproxy": version,
            "fleet_start_s": start_s, **result, "goals": goals(result, quick)}


def render(result: dict[str, Any]) -> str:
    if not result["available"]:
        return f"  skipped: {result['reason']}"
    p = result["placement"]
    lines = [f"  {result['config']}; {result['haproxy']}; fleet started in "
             f"{result['fleet_start_s']} s",
             f"  placement, {p['n']} new clients per path, alternating; every daemon free "
             "before each offer"]
    for kind, label in (("created", "offer -> 201"), ("first_frame", "offer -> first frame")):
        for path in PATHS:
            r = p[path][kind]
            lines.append(f"  {label + ', ' + path:<34} p50 {r['p50_ms']!s:>7} ms  p99 "
                         f"{r['p99_ms']!s:>7} ms  (max {r['max_ms']} ms)")
    lines.append(f"  {'placed on':<34} balancer {p['balancer']['placed_on']}; direct "
                 f"{p['direct']['placed_on']}; HAProxy retries {p['balancer_retries']}, "
                 f"redispatches {p['balancer_redispatches']}")
    f = result["fill"]
    for path, users in f["users"].items():
        label = (f"{users} users through the balancer" if users is not None
                 else "one offer straight to each daemon")
        lines.append(f"  {'fill 3 free daemons, ' + path:<34} {f[path]['sessions_per_s']} "
                     f"sessions/s ({f[path]['seconds'] * 1000:.1f} ms to the third 201; "
                     f"median of {f['rounds']}), {label}")
    for path, users in f["users"].items():
        if users is None:
            continue
        runs = f["runs"][path]
        lines.append(f"  {f'  503s the {users} users saw':<34} "
                     f"{[r['refused_503_before_full'] for r in runs]} per round (offers sent "
                     f"{[r['offers'] for r in runs]}; HAProxy retries "
                     f"{[r['balancer_retries'] for r in runs]}, redispatches "
                     f"{[r['balancer_redispatches'] for r in runs]}; 503s without "
                     f"Retry-After {sum(r['refused_without_retry_after'] for r in runs)})")
    for g in result["goals"]:
        lines.append(f"  goal: {g['target']}: {g['figure']} ({_met(g['met'])})")
    return "\n".join(lines)
