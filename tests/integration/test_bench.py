"""``tools/bench.py all --quick``: every section still runs and reports its keys."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

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
    "gpu": {"available"},
}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_quick_bench_reports_every_section(tmp_path: Path) -> None:
    out = tmp_path / "bench-results.json"
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "tools/bench.py", "all", "--quick", "--json",
                        "--output", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=230)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    printed = json.loads(r.stdout)
    assert json.loads(out.read_text()) == printed
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
    # Quick is a smoke run: goals are not judged on tiny sizes.
    assert printed["pipeline"]["goal"]["met"] is None
    # Left no daemon behind: every run directory the bench made is gone.
    assert not list(Path("/tmp").glob("reactor-bench-*/run/daemon.pid"))
    assert elapsed < 200, f"all --quick took {elapsed:.0f} s"
