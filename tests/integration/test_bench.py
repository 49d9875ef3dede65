"""``tools/bench.py all --quick``: every section still runs and reports its keys.

One run serves the module (it takes about three minutes): its JSON for the figures, and
its printed tables for what a user reads (the network section's rows and goals)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

SECTION_KEYS = {
    "ring": {"720p", "1080p"},
    "pipeline": {"720p", "1080p", "goal"},
    "e2e": {"daemon", "relay", "daemon_vs_relay_p50", "daemon_stages", "goal"},
    "browser": {"daemon", "relay", "firefox", "daemon_vs_relay_p50", "daemon_stages", "goals"},
    "viewers": {"steps", "viewers_held", "cpu_percent_per_viewer", "receiver"},
    "control": {"status", "command", "command_applied", "goal"},
    "record": {"egress_cpu_percent_off", "egress_cpu_percent_on", "record_egress_cpu_percent",
               "encoders_active_on", "goals"},
    "metrics": {"render", "scrape", "goal"},
    "network": {"links_available", "pacer_cpu", "pacer_micro", "ladder_cpu", "goals"},
    "fleet": {"available"},
    "gpu": {"available"},
}


@dataclass(frozen=True)
class QuickRun:
    printed: str  # the tables, as `make bench` prints them
    results: dict[str, Any]  # the JSON it wrote
    elapsed: float
    fleet_dirs_before: frozenset[Path]  # the fleet section's directories left by others


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    out = tmp_path_factory.mktemp("bench") / "bench-results.json"
    before = frozenset(Path("/tmp").glob("reactor-bench-fleet-*"))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "tools/bench.py", "all", "--quick", "--output",
                        str(out)], cwd=ROOT, capture_output=True, text=True, timeout=330)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return QuickRun(r.stdout, json.loads(out.read_text()), elapsed, before)


@pytest.mark.slow
@pytest.mark.timeout(340)
def test_quick_bench_reports_every_section(quick_all: QuickRun) -> None:
    printed, elapsed = quick_all.results, quick_all.elapsed
    assert {"machine", "quick", "seconds"} <= printed.keys()
    assert printed["machine"]["nproc"] >= 1
    for name, keys in SECTION_KEYS.items():
        assert keys <= printed[name].keys(), (name, printed[name])
    for size in ("720p", "1080p"):
        ring = printed["ring"][size]
        assert ring["ring_p50_us"] is not None and ring["ring_fps"] > 0
        pipe = printed["pipeline"][size]
        assert pipe["fps"] and pipe["naive_fps"] and pipe["vs_naive"]
        assert {"supervisor", "source", "inference", "sink"} <= pipe["reactor"]["processes"].keys()
    for side in ("daemon", "relay"):
        assert printed["e2e"][side]["frames"] > 0 and printed["e2e"][side]["p50_ms"] > 0
    for side in ("daemon", "relay"):  # Chromium read frame numbers back through each
        browser = printed["browser"][side]
        assert browser["counts"]["read_back"] > 0 and browser["p50_ms"] > 0, browser
    assert printed["viewers"]["steps"][0]["min_fps"] > 0
    for kind in ("status", "command"):
        assert printed["control"][kind]["p99_us"] > 0
    record = printed["record"]  # one encoder for the viewer and the file, which has frames
    assert record["encoders_active_on"] == 1 and record["runs"]["on"][0]["frames_recorded"] > 0
    if not printed["gpu"]["available"]:
        assert printed["gpu"]["reason"]
    if printed["fleet"]["available"]:  # needs Debian's haproxy
        assert {"placement", "fill", "goals"} <= printed["fleet"].keys()
    else:
        assert "haproxy" in printed["fleet"]["reason"]
    # Quick is a smoke run: goals are not judged on tiny sizes.
    assert printed["pipeline"]["goal"]["met"] is None
    # Left no daemon behind: every run directory the bench made is gone.
    assert not list(Path("/tmp").glob("reactor-bench-*/run/daemon.pid"))
    # 200 s before the network section, which watches seven links for a few seconds each.
    assert elapsed < 300, f"all --quick took {elapsed:.0f} s"


#: The rows ``tools/bench.py network`` prints: one per link (label, model), then the goals.
NETWORK_ROWS = [("clean", "pattern"), ("1.5 Mbit/s, 200 ms", "pattern"), ("5 % loss", "pattern"),
                ("10 % loss", "pattern"), ("3 s outage", "pattern"),
                ("1.5 Mbit/s, 200 ms", "grain"), ("6 -> 1.5 Mbit/s", "grain")]
NETWORK_GOALS = ["goal: 1.5 Mbit/s, 200 ms: >= 25 fps and no freeze over 500 ms",
                 "goal: 5 % loss: >= 27 fps", "goal: step 6 -> 1.5 Mbit/s: back to >= 25 fps",
                 "goal: 3 s outage: frames back within 1 s",
                 "goal: pacer + estimate <= 2 % of a core per viewer"]


@pytest.mark.slow
@pytest.mark.timeout(340)
def test_quick_network_bench_prints_a_row_per_link_and_every_goal(quick_all: QuickRun) -> None:
    """The network section's table: a row per link with an aiortc viewer's figures (or
    one line saying why the links were skipped: no namespaces), the pacer's CPU against
    none, the ladder's place, and a row per goal of issue 26."""
    text = quick_all.printed
    section = text[text.index("\n== network"):]
    section = section[:section.index("\n== ", 1)]
    lines = section.splitlines()
    if any("links skipped: network namespaces unavailable" in line for line in lines):
        assert not any("aiortc" in line for line in lines), section
    else:
        header = next(line.split() for line in lines if line.split()[:1] == ["link"])
        assert header[:4] == ["link", "model", "client", "fps"], header
        assert {"freezes", "frozen", "recovery", "kbit/s", "cap"} <= set(header), header
        for label, model in NETWORK_ROWS:
            row = [line for line in lines
                   if line.strip().startswith(label + " ") and f" {model} " in line]
            assert len(row) == 1 and "aiortc" in row[0] and "FAILED" not in row[0], \
                (label, model, section)
    assert any("egress CPU" in line and "adapt off" in line and "per viewer" in line
               for line in lines), section
    assert any("ladder CPU" in line and "one encode" in line and "full + half" in line
               for line in lines), section
    for goal in NETWORK_GOALS:
        found = [line for line in lines if line.strip().startswith(goal)]
        # --quick judges nothing; the goal rows are there all the same.
        assert len(found) == 1 and found[0].endswith("(not judged)"), (goal, section)


@pytest.mark.slow
@pytest.mark.timeout(340)
@pytest.mark.skipif(shutil.which("haproxy", path="/usr/sbin:/usr/bin") is None,
                    reason="needs Debian's haproxy (apt-get install haproxy)")
def test_quick_fleet_bench_places_through_the_balancer_and_stops_the_fleet(
        quick_all: QuickRun) -> None:
    """The fleet section (about 10 s of the run): a real `reactor fleet start --count 3`;
    offer -> 201 and -> first frame measured on both paths, every balancer offer placed
    on a daemon of the fleet, three free daemons filled with sessions/s and the 503s seen,
    and the fleet, its daemons and HAProxy gone afterwards."""
    fleet = quick_all.results["fleet"]
    assert fleet["available"] is True and "160x120" in fleet["config"]
    placement = fleet["placement"]
    for path in ("direct", "balancer"):
        for kind in ("created", "first_frame"):
            assert placement[path][kind]["p50_ms"] > 0, (path, kind, placement)
        assert sum(placement[path]["placed_on"].values()) == 2 * placement["n"], placement
    for path in ("direct", "balancer", "balancer_3"):
        assert fleet["fill"][path]["sessions_per_s"] > 0, fleet["fill"]
    balancer = fleet["fill"]["runs"]["balancer"][0]
    assert balancer["offers"] == 3 + balancer["refused_503_total"], balancer
    assert balancer["refused_without_retry_after"] == 0, balancer
    assert [g["met"] for g in fleet["goals"]] == [None, None]  # --quick judges nothing
    # Nothing left: the fleet's directory is gone, and no process runs from it.
    assert set(Path("/tmp").glob("reactor-bench-fleet-*")) <= quick_all.fleet_dirs_before
    leftovers = subprocess.run(["pgrep", "-f", "reactor-bench-fleet-"], capture_output=True,
                               text=True, check=False).stdout.split()
    assert not leftovers, leftovers
