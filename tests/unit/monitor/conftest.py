"""Fixtures for the monitor tests: a fixed, hand-built telemetry snapshot, and UTC clocks."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from reactor.proto import telemetry_pb2 as tpb
from reactor.proto.telemetry_pb2 import (
    CommandLog,
    LatencyStat,
    LogLine,
    PipelineStat,
    RingStat,
    SessionInfo,
    Snapshot,
    WorkerStat,
)

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def build_snapshot(*, session: bool = True) -> Snapshot:
    snap = Snapshot(
        state=tpb.DAEMON_STATE_DEGRADED,
        pid=4242,
        uptime_s=3723.4,
        ts=T0 + 60,
        config_path="configs/pattern.yaml",
        model="reactor.examples.pattern:TestPattern",
        url="http://127.0.0.1:8081",
        run_dir="/run/reactor",
        error="egress restarting after a crash",
        workers=[
            WorkerStat(name="ingress", pid=4243, state=tpb.WORKER_STATE_RUNNING, restarts=0,
                       cpu_percent=3.14,
                       rss_bytes=89_338_675, uptime_s=3721.0, heartbeat_age_s=0.12,
                       frames_in=111_600, frames_out=111_600),
            WorkerStat(name="inference", pid=4244, state=tpb.WORKER_STATE_RUNNING, restarts=0,
                       cpu_percent=97.0, rss_bytes=1_288_490_189, uptime_s=3720.0,
                       heartbeat_age_s=0.2, frames_in=111_590, frames_out=111_580),
            WorkerStat(name="egress", pid=0, state=tpb.WORKER_STATE_RESTARTING, restarts=2,
                       cpu_percent=0.0,
                       rss_bytes=0, uptime_s=0.0, heartbeat_age_s=6.5,
                       last_error="RuntimeError: encoder died"),
        ],
        pipeline=PipelineStat(
            fps_in=29.94, fps_model=29.8, fps_out=14.2, target_fps=30.0, encoders_active=1,
            latency=[
                LatencyStat(stage="decode", p50_ms=2.1, p99_ms=4.04, count=900,
                            window_count=300),
                LatencyStat(stage="input_ring", p50_ms=0.07, p99_ms=0.31, count=900,
                            window_count=300),
                LatencyStat(stage="model", p50_ms=12.3, p99_ms=20.1, count=900,
                            window_count=300),
                LatencyStat(stage="output_ring", p50_ms=0.1, p99_ms=0.2, count=900,
                            window_count=300),
                LatencyStat(stage="encode", p50_ms=6.0, p99_ms=9.8, count=900,
                            window_count=300),
            ],
            rings=[
                RingStat(name="input", slots=4, used=1, dropped=12, policy="latest",
                         written=111_600),
                RingStat(name="output", slots=8, used=8, dropped=0, policy="block",
                         written=111_580),
            ],
            fps_history=[30, 30, 29.5, 30, 28, 22, 15, 10, 12, 14.2],
        ),
        logs=[
            LogLine(ts=T0 + 1, process="ingress", level="WARNING", message="slow client"),
            LogLine(ts=T0 + 50, process="egress", level="ERROR",
                    message="RuntimeError: encoder died"),
            LogLine(ts=T0 + 52, process="supervisor", level="WARNING",
                    message="restarting egress in 2.0 s (attempt 2)"),
        ],
    )
    if session:
        snap.session.CopyFrom(SessionInfo(
            id="3f2a9c1d", state=tpb.SESSION_STATE_LIVE, duration_s=65.0, viewers=2, sender=True,
            frames_emitted=1950,
            commands=[
                CommandLog(ts=T0 + 10, name="set_gain", args_json='{"gain": 2.0}', ok=True,
                           result="null"),
                CommandLog(ts=T0 + 20, name="set_gain", args_json='{"gain": 9.0}', ok=False,
                           result="gain: Input should be less than or equal to 4"),
                CommandLog(ts=T0 + 30, name="reset", args_json="{}", ok=True,
                           result='{"frames": 1200}'),
            ],
        ))
    return snap


@pytest.fixture
def make_snapshot() -> Callable[..., Snapshot]:
    """``make_snapshot(session=True)``: the fixed snapshot every test renders."""
    return build_snapshot


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Render wall-clock times in UTC, whatever the machine's zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
