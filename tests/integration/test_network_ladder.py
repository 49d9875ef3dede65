"""Two viewers of one daemon, one on a narrow link and one not: the rendition ladder
(``egress.renditions``) keeps the wide one on the full size while the narrow one plays
the half size.

The harness shapes the daemon's whole side of the veth (:mod:`tests.integration.
test_network`); both viewers run outside, at one address. So the narrow viewer's packets
are told apart by their destination port: once its process has opened its UDP sockets
(aioice gathers its candidates before the offer goes), a ``u32`` filter sends packets to
those ports into an ``htb`` class whose leaf is a ``tbf`` (1.5 Mbit/s, a 200 ms queue);
the rest go unshaped.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.netlink import (
    GRAIN,
    NARROW,
    TC,
    WARMUP_S,
    TimedViewer,
    fps_between,
    link_stats,
)
from tests.support.netns import Netns, RemoteDaemon

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

#: The grain with the two-rung ladder the guide suggests (the default is one rendition).
LADDER = {**GRAIN, "egress": {"renditions": [{"scale": 1.0, "bitrate_share": 1.0},
                                             {"scale": 0.5, "bitrate_share": 0.25}]}}
SECONDS = 30.0
#: When egress has placed both viewers: each starts at egress.start_bitrate_kbps (the half
#: size), the wide one probes the full size after 2 s and climbs with its REMB (8 %/s).
SETTLE_S = 15.0


def udp_ports(pid: int, timeout_s: float = 10.0) -> set[int]:
    """The UDP ports process ``pid`` has open, once it has some."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-uanpH"], capture_output=True, text=True).stdout
        ports = {int(m.group(1)) for line in out.splitlines() if f"pid={pid}," in line
                 for m in [re.search(r":(\d+)\s", line)] if m}
        if ports:
            return ports
        time.sleep(0.05)
    raise AssertionError(f"viewer {pid} opened no UDP socket in {timeout_s} s")


def shape_ports(ns: Netns, ports: set[int]) -> None:
    """Packets from the daemon to ``ports`` go through the narrow link; the rest do not."""
    dev = ns.inner_if
    # htb only to classify (both classes far above any rate here); the narrow class's
    # leaf is the tbf of test_network's narrow link. (This kernel has no prio qdisc.)
    wide = ("htb", "rate", "10gbit", "quantum", "1514")
    for args in (
        ("qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "20"),
        ("class", "add", "dev", dev, "parent", "1:", "classid", "1:10", *wide),
        ("class", "add", "dev", dev, "parent", "1:", "classid", "1:20", *wide),
        ("qdisc", "add", "dev", dev, "parent", "1:10", "handle", "10:", "tbf", *NARROW),
        *(("filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1",
           "u32", "match", "ip", "dport", str(port), "0xffff", "flowid", "1:10")
          for port in sorted(ports)),
    ):
        r = ns.run(TC, *args)
        assert r.returncode == 0, f"tc {' '.join(args)} failed: {r.stderr}"


def played(seen: dict[str, Any], end: float) -> tuple[float, float]:
    """fps after the first WARMUP_S of frames until ``end``, and the longest gap (ms)."""
    times = seen["times"]
    assert times, "no frame at all"
    start = times[0] + WARMUP_S
    late = [t for t in times if t >= start]
    gaps = [b - a for a, b in zip([start, *late], [*late, end], strict=False)]
    return fps_between(times, start, end), max(gaps) * 1000


def test_a_narrow_viewer_gets_the_half_size_and_a_wide_one_keeps_the_full_size(
        plain_ns: Netns, tmp_path: Path) -> None:
    with RemoteDaemon(plain_ns, LADDER, tmp_path / "daemon") as d:
        narrow = TimedViewer(d, SECONDS)
        shape_ports(plain_ns, udp_ports(narrow.proc.pid))
        wide = TimedViewer(d, SECONDS)
        # Egress's view of both, twice a second once they have settled.
        wide.sleep_until(SETTLE_S)
        samples: list[list[dict[str, Any]]] = []
        while time.monotonic() < wide.start + SECONDS - 2:
            samples.append((d.status().get("session") or {}).get("viewers_detail") or [])
            time.sleep(0.5)
        narrow_seen, wide_seen = narrow.result(), wide.result()
        logs = d.logs(6000)

    def of(seen: dict[str, Any], detail: list[dict[str, Any]]) -> dict[str, Any]:
        # The viewer's resource is the URL its WHEP answer named; status has the id.
        return next((v for v in detail if seen["resource"].endswith(v["id"])), {})

    narrows = [of(narrow_seen, s) for s in samples]
    wides = [of(wide_seen, s) for s in samples]
    n, w = narrows[-1], wides[-1]
    n_fps, n_gap = played(narrow_seen, narrow.start + SECONDS)
    w_fps, w_gap = played(wide_seen, wide.start + SECONDS)
    report = (f"narrow: {n_fps:.1f} fps, longest gap {n_gap:.0f} ms, rendition "
              f"{n.get('rendition')} {n.get('sent_width')}x{n.get('sent_height')} "
              f"est {n.get('estimate_kbps')} rate {n.get('bitrate_kbps')}\n"
              f"wide: {w_fps:.1f} fps, longest gap {w_gap:.0f} ms, rendition "
              f"{w.get('rendition')} {w.get('sent_width')}x{w.get('sent_height')} "
              f"est {w.get('estimate_kbps')} rate {w.get('bitrate_kbps')}\n"
              f"{link_stats(plain_ns)}")
    print(report)
    switches = [line for line in logs.splitlines() if "switched" in line]
    print("\n".join(switches))
    # The wide one keeps the full size all along, its rate never pulled down to the narrow
    # link's (a narrow viewer trying the full size out does not lower it)...
    assert all((x.get("rendition"), x.get("sent_width"), x.get("sent_height"))
               == (0, 1280, 720) for x in wides), (report, wides)
    assert min(x.get("bitrate_kbps") or 0 for x in wides) > 1500, (report, wides)
    assert w_fps >= 28, report
    # ...and the narrow one plays the half size (but for a probe's few seconds).
    on_half = [x.get("rendition") == 1 and x.get("sent_width") == 640 for x in narrows]
    assert sum(on_half) >= 0.75 * len(on_half), (report, narrows)
    assert n_fps >= 25 and n_gap <= 500, report
