"""The status object: one telemetry ``Snapshot`` as plain JSON-ready data.

``reactor daemon status --json`` prints it and ``GET /api/status`` returns it, so both show
the same keys. The keys the design names (``state``, ``pid``, ``uptime_s``, ``workers``,
``pipeline``, ``session``) are the public interface; the rest are extras for tools.
Empty strings the protobuf uses for "not set" become ``null`` where a reader would
otherwise have to know that convention (errors, the config path, a dead worker's pid).
"""

from __future__ import annotations

import json
from typing import Any

from reactor import __distribution__, __version__
from reactor.proto.telemetry_pb2 import (
    CommandLog,
    GpuStat,
    LatencyStat,
    LogLine,
    PipelineStat,
    RingStat,
    SessionInfo,
    Snapshot,
    WorkerStat,
)

__all__ = ["dict_to_snapshot", "snapshot_to_dict"]


def snapshot_to_dict(snap: Snapshot) -> dict[str, Any]:
    """The status object of ``snap``, ready for ``json.dumps``."""
    return {
        "distribution": __distribution__,
        "version": __version__,
        "state": snap.state,
        "pid": snap.pid or None,
        "uptime_s": snap.uptime_s,
        "workers": [_worker(w) for w in snap.workers],
        "pipeline": _pipeline(snap.pipeline),
        "session": _session(snap.session) if snap.HasField("session") else None,
        "model": snap.model,
        "url": snap.url,
        "run_dir": snap.run_dir,
        "config_path": snap.config_path or None,
        "error": snap.error or None,
        "logs": [_log(line) for line in snap.logs],
        "gpu": _gpu(snap.gpu) if snap.HasField("gpu") else None,
    }


def dict_to_snapshot(data: dict[str, Any]) -> Snapshot:
    """The inverse of :func:`snapshot_to_dict`, for tools and tests that build a status."""
    snap = Snapshot(
        state=data.get("state") or "",
        pid=data.get("pid") or 0,
        uptime_s=data.get("uptime_s") or 0.0,
        model=data.get("model") or "",
        url=data.get("url") or "",
        run_dir=data.get("run_dir") or "",
        config_path=data.get("config_path") or "",
        error=data.get("error") or "",
    )
    for w in data.get("workers") or ():
        snap.workers.append(
            WorkerStat(
                name=w.get("name", ""),
                pid=w.get("pid") or 0,
                state=w.get("state", ""),
                restarts=w.get("restarts", 0),
                cpu_percent=w.get("cpu_percent", 0.0),
                rss_bytes=w.get("rss_bytes", 0),
                uptime_s=w.get("uptime_s", 0.0),
                heartbeat_age_s=w.get("heartbeat_age_s", 0.0),
                last_error=w.get("last_error") or "",
                frames_in=w.get("frames_in", 0),
                frames_out=w.get("frames_out", 0),
            )
        )
    pipeline = data.get("pipeline")
    if pipeline:
        snap.pipeline.CopyFrom(_pipeline_from(pipeline))
    session = data.get("session")
    if session is not None:
        snap.session.CopyFrom(_session_from(session))
    for line in data.get("logs") or ():
        snap.logs.append(LogLine(**line))
    gpu = data.get("gpu")
    if gpu is not None:
        snap.gpu.CopyFrom(GpuStat(**gpu))
    return snap


def _worker(w: WorkerStat) -> dict[str, Any]:
    return {
        "name": w.name,
        "pid": w.pid or None,
        "state": w.state,
        "restarts": w.restarts,
        "cpu_percent": w.cpu_percent,
        "rss_bytes": w.rss_bytes,
        "uptime_s": w.uptime_s,
        "heartbeat_age_s": w.heartbeat_age_s,
        "last_error": w.last_error or None,
        "frames_in": w.frames_in,
        "frames_out": w.frames_out,
    }


def _pipeline(p: PipelineStat) -> dict[str, Any]:
    return {
        "fps_in": p.fps_in,
        "fps_model": p.fps_model,
        "fps_out": p.fps_out,
        "target_fps": p.target_fps,
        "latency_ms": {s.stage: {"p50": s.p50_ms, "p99": s.p99_ms} for s in p.latency},
        "rings": [_ring(r) for r in p.rings],
        "encoders_active": p.encoders_active,
    }


def _pipeline_from(d: dict[str, Any]) -> PipelineStat:
    p = PipelineStat(
        fps_in=d.get("fps_in", 0.0),
        fps_model=d.get("fps_model", 0.0),
        fps_out=d.get("fps_out", 0.0),
        target_fps=d.get("target_fps", 0.0),
        encoders_active=d.get("encoders_active", 0),
    )
    for stage, lat in (d.get("latency_ms") or {}).items():
        p.latency.append(LatencyStat(stage=stage, p50_ms=lat["p50"], p99_ms=lat["p99"]))
    for r in d.get("rings") or ():
        p.rings.append(RingStat(**r))
    return p


def _ring(r: RingStat) -> dict[str, Any]:
    return {"name": r.name, "slots": r.slots, "used": r.used, "dropped": r.dropped,
            "policy": r.policy}


def _session(s: SessionInfo) -> dict[str, Any]:
    return {
        "id": s.id,
        "state": s.state,
        "duration_s": s.duration_s,
        "viewers": s.viewers,
        "sender": s.sender,
        "frames_emitted": s.frames_emitted,
        "commands": [_command(c) for c in s.commands],
    }


def _session_from(d: dict[str, Any]) -> SessionInfo:
    s = SessionInfo(
        id=d.get("id", ""),
        state=d.get("state", ""),
        duration_s=d.get("duration_s", 0.0),
        viewers=d.get("viewers", 0),
        sender=d.get("sender", False),
        frames_emitted=d.get("frames_emitted", 0),
    )
    for c in d.get("commands") or ():
        ok = bool(c.get("ok"))
        s.commands.append(
            CommandLog(
                ts=c.get("ts", 0.0),
                name=c.get("name", ""),
                args_json=json.dumps(c.get("args") or {}),
                ok=ok,
                result=json.dumps(c.get("result")) if ok else (c.get("error") or ""),
            )
        )
    return s


def _command(c: CommandLog) -> dict[str, Any]:
    # ``result`` carries the handler's return value as JSON on success and the error
    # message on failure; split them so a reader never has to guess which it holds.
    return {
        "ts": c.ts,
        "name": c.name,
        "args": _json_or_raw(c.args_json) if c.args_json else {},
        "ok": c.ok,
        "result": (_json_or_raw(c.result) if c.result else None) if c.ok else None,
        "error": None if c.ok else (c.result or "failed"),
    }


def _json_or_raw(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _log(line: LogLine) -> dict[str, Any]:
    return {"ts": line.ts, "process": line.process, "level": line.level,
            "message": line.message}


def _gpu(g: GpuStat) -> dict[str, Any]:
    return {
        "name": g.name,
        "memory_used_bytes": g.memory_used_bytes,
        "memory_total_bytes": g.memory_total_bytes,
        "utilization_percent": g.utilization_percent,
    }
