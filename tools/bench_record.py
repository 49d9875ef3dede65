"""``tools/bench.py record``: what ``egress.record`` costs egress, in % of a core.

The packaged TestPattern at 1280x720, 30 fps, sound off, watched by one light aiortc viewer
(H.264, a receiver that counts packets instead of decoding them); egress CPU is read from
/proc over a window, with ``egress.record`` off and on, in alternating rounds of one run so
that the machine's noise hits both. Recording muxes the H.264 packets the live encoder
already makes (no second encoder), so what it adds is the copy and the MP4 write. The
recording of each "on" round is opened afterwards and its frames counted, so a round
that recorded nothing cannot pass for a cheap one. ``--quick``: one round of 4 s.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import av
from bench_av import _config, _egress_window
from bench_common import config_daemon

GOALS = {"record_egress_cpu_percent": 10.0}


def _log(msg: str) -> None:
    print(f"bench: record {msg}", file=sys.stderr, flush=True)


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def run(quick: bool) -> dict[str, Any]:
    from bench_rtc import counting_decoders

    rounds, warm, window = (1, 2.0, 4.0) if quick else (3, 5.0, 20.0)
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    tmp = Path(tempfile.mkdtemp(prefix="reactor-bench-record-"))
    try:
        with counting_decoders():
            for i in range(rounds):
                for key in ("off", "on"):
                    path = tmp / f"round{i}.mp4"
                    egress = {"record": str(path)} if key == "on" else {}
                    with config_daemon(_config(audio=False, egress=egress)) as d:
                        res = asyncio.run(_egress_window(d, warm, window))
                        res["encoders_active"] = d.snapshot().pipeline.encoders_active
                    if key == "on":
                        res["frames_recorded"] = _frames(path)
                        if not res["frames_recorded"]:
                            raise RuntimeError(f"round {i} recorded no frame to {path}")
                    runs[key].append(res)
                    _log(f"egress.record {key}: {res}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mean = {k: round(sum(r["egress_cpu_percent"] for r in v) / len(v), 1)
            for k, v in runs.items()}
    added = round(mean["on"] - mean["off"], 1)
    goal = GOALS["record_egress_cpu_percent"]
    return {"quick": quick, "rounds": rounds, "window_s": window, "runs": runs,
            "egress_cpu_percent_off": mean["off"], "egress_cpu_percent_on": mean["on"],
            "record_egress_cpu_percent": added,
            "encoders_active_on": max(r["encoders_active"] for r in runs["on"]),
            "goals": [{"target": f"recording adds <= {goal:g} % of a core in egress",
                       "figure": f"{added} %",
                       "met": None if quick else added <= goal}]}


def render(result: dict[str, Any]) -> str:
    lines = [f"  {'egress CPU, one H.264 viewer':<30} record off "
             f"{result['egress_cpu_percent_off']} %, on {result['egress_cpu_percent_on']} % "
             f"of a core: recording adds {result['record_egress_cpu_percent']} % "
             f"({result['rounds']} x {result['window_s']:g} s each, alternating)",
             f"  {'encoders in egress, recording':<30} {result['encoders_active_on']}"]
    frames = [r["frames_recorded"] for r in result["runs"]["on"]]
    lines.append(f"  {'frames recorded per round':<30} {frames}")
    for g in result["goals"]:
        mark = {True: "met", False: "MISSED", None: "not judged (--quick)"}[g["met"]]
        lines.append(f"  goal: {g['target']}: {g['figure']} ({mark})")
    return "\n".join(lines)
