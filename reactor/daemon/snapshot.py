"""Telemetry: the ``Snapshot`` the supervisor publishes and answers ``status`` with.

Built from what the supervisor holds — the worker pool (states, rates, CPU, memory, each
worker's last heartbeat), the rings' headers, the session and recent log lines — and
nothing else, so a snapshot never waits on a worker.

Each viewer's stats (what it reports of its own side, from egress's heartbeat) go in the
session with an estimate of its glass-to-glass latency (:func:`glass_to_glass_ms`).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from reactor.config import Config
from reactor.daemon.lifecycle import DaemonState
from reactor.daemon.pool import WorkerProcess, WorkerState
from reactor.ipc import CudaRing, ShmRing
from reactor.proto import telemetry_pb2 as tpb

if TYPE_CHECKING:  # both import this module: the session manager to fill its state
    from reactor.daemon.sessions import SessionManager, SessionState

TELEMETRY_S = 0.25

#: The server's stages a frame passes between entering the pipeline (decoded from the
#: sender, or emitted by a generative model) and leaving egress, in order.
SERVER_STAGES = ("decode", "input_ring", "model", "output_ring", "encode", "send")


@dataclass
class Telemetry:
    """What the snapshot shows beyond the present moment: recent log lines and fps."""

    logs: deque[tpb.LogLine] = field(default_factory=lambda: deque(maxlen=20))
    fps_history: deque[float] = field(default_factory=lambda: deque(maxlen=60))

    def add_log(self, process: str, level: str, message: str) -> None:
        self.logs.append(tpb.LogLine(ts=time.time(), process=process, level=level,
                                     message=message[:500]))


# The supervisor's states as the telemetry's enums, by member name (RUNNING ->
# DAEMON_STATE_RUNNING): the one place the two meet. ``Value`` raises ValueError naming a
# member the .proto lacks (tests/unit/daemon/test_snapshot_states.py maps every member); its
# stub says int, hence the casts.

def daemon_state(state: DaemonState) -> tpb.DaemonState:
    """``state`` as the telemetry's ``DaemonState``."""
    return cast("tpb.DaemonState", tpb.DaemonState.Value(f"DAEMON_STATE_{state.name}"))


def worker_state(state: WorkerState) -> tpb.WorkerState:
    """``state`` as the telemetry's ``WorkerState``."""
    return cast("tpb.WorkerState", tpb.WorkerState.Value(f"WORKER_STATE_{state.name}"))


def session_state(state: SessionState) -> tpb.SessionState:
    """``state`` as the telemetry's ``SessionState``."""
    return cast("tpb.SessionState", tpb.SessionState.Value(f"SESSION_STATE_{state.name}"))


def worker_stat(w: WorkerProcess, now: float) -> tpb.WorkerStat:
    alive = w.alive
    return tpb.WorkerStat(
        name=w.name, pid=w.pid if alive else 0, state=worker_state(w.state),
        restarts=w.restarts,
        cpu_percent=w.cpu_percent(now) if alive else 0.0,
        rss_bytes=w.rss_bytes() if alive else 0,
        uptime_s=now - w.started_at if alive else 0.0,
        heartbeat_age_s=now - w.last_beat if alive else 0.0,
        last_error=w.last_error, frames_in=w.stats.frames_in,
        frames_out=w.stats.frames_out,
    )


def glass_to_glass_ms(latency: Iterable[tpb.LatencyStat], viewer: tpb.ViewerStat,
                      ) -> float | None:
    """The estimated time from a frame entering the pipeline to ``viewer``'s screen: the
    p50 of each server stage (:data:`SERVER_STAGES` that have samples), half the viewer's
    round trip, its jitter-buffer delay, its decode time and its render time (decoded to
    shown, where the viewer measures it: the web client does), each where known; None until
    the viewer has reported or has a round trip. For display: the viewer's figures are
    its own word."""
    if viewer.age_s < 0 and not viewer.HasField("rtt_ms"):
        return None
    total = sum(s.p50_ms for s in latency if s.stage in SERVER_STAGES and s.window_count)
    if viewer.HasField("rtt_ms"):
        total += viewer.rtt_ms / 2
    if viewer.HasField("jitter_buffer_ms"):
        total += viewer.jitter_buffer_ms
    if viewer.HasField("decode_ms"):
        total += viewer.decode_ms
    if viewer.HasField("render_ms"):
        total += viewer.render_ms
    return total


def build_snapshot(
    *,
    state: DaemonState,
    error: str,
    uptime_s: float,
    config: Config,
    model: str,
    url: str,
    run_dir: Path,
    workers: Sequence[WorkerProcess],
    rings: Mapping[str, ShmRing | CudaRing],
    sessions: SessionManager,
    telemetry: Telemetry,
    now: float,
) -> tpb.Snapshot:
    """``workers`` in pipeline order: front, model, back."""
    snap = tpb.Snapshot(
        state=daemon_state(state), pid=os.getpid(), uptime_s=uptime_s, ts=time.time(),
        config_path=config.source or "(packaged default)", model=model, url=url,
        run_dir=str(run_dir), error=error,
    )
    snap.workers.extend(worker_stat(w, now) for w in workers)
    p = snap.pipeline
    p.target_fps = config.video.fps
    front, model_w, back = workers
    p.fps_in = front.rates()[1]
    p.fps_model = model_w.rates()[1]
    p.fps_out = back.rates()[1]
    p.encoders_active = back.stats.encoders_active
    a = p.audio
    a.input, a.output = config.audio.input, config.audio.output
    a.rate_in_hz = front.rates(audio=True)[1]
    a.rate_out_hz = back.rates(audio=True)[1]
    a.dropped = sum(w.stats.audio_dropped for w in workers)
    a.av_offset_ms, a.av_offset_known = back.stats.av_offset_ms, back.stats.av_offset_known
    p.fps_history.extend(telemetry.fps_history)
    for w in workers:
        if w.state == WorkerState.RUNNING:
            p.latency.extend(w.stats.latency)
    for ring_name, ring in rings.items():
        st = ring.stats()
        p.rings.append(tpb.RingStat(name=ring_name, slots=st.slots, used=st.used,
                                    dropped=st.dropped, policy=st.policy,
                                    written=st.written))
    sessions.fill(snap)
    if snap.HasField("session") and back.state == WorkerState.RUNNING:
        beat_age = max(0.0, now - back.last_beat)
        for v in back.stats.viewer_stats:
            vs = snap.session.viewer_stats.add()
            vs.CopyFrom(v)
            if vs.age_s >= 0:
                vs.age_s += beat_age
            vs.connected_s += beat_age
            estimate = glass_to_glass_ms(p.latency, vs)
            if estimate is not None:
                vs.glass_to_glass_ms = estimate
    snap.logs.extend(telemetry.logs)
    return snap
