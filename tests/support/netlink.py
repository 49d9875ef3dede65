"""A link with a shape, and a viewer across it: what the network tests and ``tools/bench.py
network`` share.

The daemon runs in a network namespace (:mod:`tests.support.netns`); what it sends is
shaped on its side of the veth with ``tc tbf`` (a rate and a queue: these machines have no
``netem``), and dropped with ``nftables`` rules inside the namespace (``numgen random`` for
a share of the packets, everything for an outage).

A :class:`TimedViewer` is a stock aiortc viewer (:mod:`reactor.client`, H.264, decoding
every frame) in its own process, which prints the time of each frame it receives
(``time.monotonic()``, the same clock in every process) and every state its one peer
connection went through. The figures a user would notice are computed here from those
times: :func:`fps_between`, :func:`freezes` (a gap over :data:`FREEZE_MS`) and
:func:`recovered_at` (when the rate came back above a floor after a change of the link).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from tests.support.netns import Netns, RemoteDaemon

TC = "/usr/sbin/tc"
#: The narrow link of issue 26: 1.5 Mbit/s, a 200 ms queue, on the daemon's egress.
NARROW = ("rate", "1500kbit", "burst", "16kb", "latency", "200ms")
#: The wide link a step starts from and returns to: room for the encoder's most (4 Mbit/s).
WIDE = ("rate", "6mbit", "burst", "16kb", "latency", "200ms")
#: Film grain over a moving gradient at 720p30 (``network_models:Grain``): x264 wants
#: about 4 Mbit/s for it.
GRAIN: dict[str, Any] = {"model": {"module": "network_models:Grain"},
                         "video": {"width": 1280, "height": 720, "fps": 30}}
#: Start-up: frames before this (after the first frame, or the viewer's start) are not
#: judged.
WARMUP_S = 3.0
#: A gap between two frames longer than this is a freeze.
FREEZE_MS = 500.0


def tbf(rate_kbit: int, latency_ms: int = 200, burst: str = "16kb") -> tuple[str, ...]:
    """``tc tbf`` arguments for a link of ``rate_kbit`` with a ``latency_ms`` queue."""
    return ("rate", f"{rate_kbit}kbit", "burst", burst, "latency", f"{latency_ms}ms")


def shape(ns: Netns, *tbf_args: str) -> None:
    """Shape the daemon's side of the link (what it sends to the viewers)."""
    r = ns.run(TC, "qdisc", "replace", "dev", ns.inner_if, "root", "tbf", *tbf_args)
    if r.returncode != 0:
        raise RuntimeError(f"tc qdisc replace ... tbf {' '.join(tbf_args)} failed: {r.stderr}")


def unshape(ns: Netns) -> None:
    """Back to the veth's default qdisc (no shaping); nothing to do when there was none."""
    ns.run(TC, "qdisc", "del", "dev", ns.inner_if, "root")


def link_stats(ns: Netns) -> str:
    return ns.run(TC, "-s", "qdisc", "show", "dev", ns.inner_if).stdout


def received_bytes(ns: Netns) -> int:
    """Bytes our end of the veth has received: what the daemon sent that got through the
    shaping and the drop rules (media, RTCP and the little HTTP there is)."""
    return int(Path(f"/sys/class/net/{ns.outer_if}/statistics/rx_bytes").read_text())


def nft(ns: Netns, *rule: str) -> None:
    """One ``nft`` command inside the namespace (its tables go with it)."""
    r = ns.run("nft", *rule)
    if r.returncode != 0:
        raise RuntimeError(f"nft {' '.join(rule)} failed: {r.stderr}")


def drop_udp(ns: Netns, per_mille: int) -> None:
    """Drop ``per_mille`` of the UDP packets the namespace sends (the daemon's media), at
    random; 1000 is an outage. Undo with :func:`undrop`."""
    nft(ns, "add", "table", "inet", "reactor_loss")
    nft(ns, "add", "chain", "inet", "reactor_loss", "out",
        "{ type filter hook output priority 0 ; }")
    if per_mille >= 1000:
        nft(ns, "add", "rule", "inet", "reactor_loss", "out", "meta", "l4proto", "udp",
            "counter", "drop")
    else:
        nft(ns, "add", "rule", "inet", "reactor_loss", "out", "meta", "l4proto", "udp",
            "numgen", "random", "mod", "1000", "<", str(per_mille), "counter", "drop")


def undrop(ns: Netns) -> None:
    nft(ns, "delete", "table", "inet", "reactor_loss")


def dropped(ns: Netns) -> str:
    return ns.run("nft", "list", "ruleset").stdout


# One aiortc viewer that prints the time (time.monotonic, the same clock in every process)
# of each frame it receives, and every state its one peer connection went through.
TIMED_VIEWER = textwrap.dedent('''
    import asyncio, json, sys, time
    from reactor.client import Client

    url, token, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])

    async def main():
        out = {}
        async with Client(url, token=token) as client:
            viewer = await client.watch(codec="h264")
            states = [viewer.pc.connectionState]
            viewer.pc.on("connectionstatechange",
                         lambda: states.append(viewer.pc.connectionState))
            try:
                end = time.monotonic() + seconds
                times = []
                while time.monotonic() < end:
                    try:
                        await asyncio.wait_for(viewer.recv(), end - time.monotonic())
                    except asyncio.TimeoutError:
                        break
                    times.append(time.monotonic())
                out.update(times=times, states=states, resource=viewer.resource)
            finally:
                await viewer.close()
        print(json.dumps(out), flush=True)

    asyncio.run(main())
''')


class TimedViewer:
    """:data:`TIMED_VIEWER` in its own process: ``start`` is when it was started,
    :meth:`result` its frame times (monotonic) and connection states."""

    def __init__(self, d: RemoteDaemon, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-c", TIMED_VIEWER, d.url, d.token,
                                      str(seconds)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    @property
    def end(self) -> float:
        """When it stops watching (monotonic)."""
        return self.start + self.seconds

    def sleep_until(self, at_s: float) -> None:
        """Sleep until ``at_s`` seconds after the viewer was started."""
        time.sleep(max(0.0, self.start + at_s - time.monotonic()))

    def result(self) -> dict[str, Any]:
        return last_json(self.proc, self.seconds + 60)


def last_json(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The JSON object a client process prints last, once it has ended (killed after
    ``timeout``); RuntimeError with its output when it failed or printed none."""
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the client failed ({proc.returncode}):\n{out}\n{err[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def fps_between(times: list[float], a: float, b: float) -> float:
    """Frames per second received between monotonic times ``a`` and ``b``."""
    return sum(a <= t < b for t in times) / (b - a)


def freezes(times: list[float], a: float, b: float,
            freeze_ms: float = FREEZE_MS) -> tuple[int, float, float]:
    """Gaps over ``freeze_ms`` between frames from ``a`` to ``b`` (monotonic), counting
    ``a`` and ``b`` themselves as frames, so a picture that stops is frozen until ``b``:
    (how many, their total seconds, the longest gap in seconds)."""
    inside = [t for t in times if a <= t < b]
    edges = [a, *inside, b]
    gaps = [y - x for x, y in itertools.pairwise(edges)]
    long = [g for g in gaps if g * 1000 > freeze_ms]
    return len(long), sum(long), max(gaps)


def recovered_at(times: list[float], since: float, until: float, floor_fps: float,
                 window_s: float = 1.0, step_s: float = 0.1) -> float | None:
    """When the rate was back at ``floor_fps`` or more for good: the start of the first
    ``window_s`` window after ``since`` from which every window (sliding by ``step_s``)
    up to ``until`` holds it. ``since`` itself when it never dropped below; None when
    the last window is still below."""
    good_from: float | None = None
    k = 0
    while (t := until - window_s - k * step_s) >= since - 1e-9:
        if fps_between(times, t, t + window_s) < floor_fps:
            return good_from
        good_from = t
        k += 1
    return None if good_from is None else since
