"""The bench's arithmetic on the figures it measured: a stall is reported, never divided by."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "tools"))

from bench_common import ProcSampler
from bench_pipeline import _steady, render


def _sampler() -> ProcSampler:
    sampler = ProcSampler(os.getpid())
    sampler.sample()
    time.sleep(0.05)
    sampler.sample()
    return sampler


def test_a_window_in_which_no_frame_moved_is_a_stall_not_a_crash() -> None:
    """Two sink heartbeats with the same frame count (a busy machine) made n 0:
    `float division by zero` failed CI's quick bench."""
    sampler = _sampler()
    t0, t1 = sampler.procs[os.getpid()].samples[0][0], time.time()
    steady = _steady(sampler, (t0, t1, 0), 100, 2.0)
    assert steady["stalled"] is True and steady["fps"] == 0.0
    assert steady["cpu_ms_per_frame"] is None
    assert all(p["cpu_ms_per_frame"] is None for p in steady["processes"].values())


def test_a_stall_is_rendered_as_a_stall() -> None:
    sampler = _sampler()
    stalled = {**_steady(sampler, (0.0, float("inf"), 0), 0, 1.0), "latency_ms": {}}
    moving = _steady(sampler, (0.0, float("inf"), 30), 30, 1.0)
    assert moving["stalled"] is False and moving["fps"] == 30.0
    result = {"720p": {"width": 1280, "height": 720, "frames": 30, "reactor": stalled,
                       "naive": moving, "vs_naive": None, "cpu_vs_naive": None},
              "goal": {"target": ">= 30 fps at 720p", "met": False}}
    text = render(result)
    assert "reactor: STALLED, no frame moved in its window" in text
    assert "naive: STALLED" not in text
