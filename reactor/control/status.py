"""The status object: one telemetry ``Snapshot`` as plain JSON-ready data.

``reactor daemon status --json`` prints it and ``GET /api/status`` returns it, so both show
the same keys. The keys the design names (``state``, ``pid``, ``uptime_s``, ``workers``,
``pipeline``, ``session``) are the public interface; the rest are extras for tools.
Empty strings the protobuf uses for "not set" become ``null`` where a reader would
otherwise have to know that convention (errors, the config path, a dead worker's pid).
States are the telemetry's enums, shown by their lower-case names (``"running"``).

A message whose status keys are its field names goes through protobuf's own JSON mapping
(:func:`_fields`); only what status shows differently is written out here.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message

from reactor import __distribution__, __version__
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto.telemetry_pb2 import (
    AudioStat,
    CommandLog,
    DrainStat,
    GpuStat,
    LogLine,
    PipelineStat,
    RingStat,
    SessionInfo,
    Snapshot,
    ViewerStat,
    WorkerStat,
)

__all__ = ["daemon_state_name", "drain_text", "session_state_name", "snapshot_to_dict",
           "worker_state_name"]


def _state_name(enum: EnumTypeWrapper, value: int) -> str:
    if value == 0:
        return ""  # UNSPECIFIED: nothing said, as the string field's "" was
    try:
        name = enum.Name(value)
    except ValueError:  # a newer daemon's state, unknown to this reader
        return f"unknown ({value})"
    return name.split("_STATE_", 1)[1].lower()


def daemon_state_name(state: tpb.DaemonState) -> str:
    """The daemon's state as status shows it: ``starting``, ``running``, ``degraded``,
    ``stopping``, ``failed`` ("" when unset)."""
    return _state_name(tpb.DaemonState, state)


def worker_state_name(state: tpb.WorkerState) -> str:
    """A worker's state as status shows it: ``starting``, ``running``, ``restarting``,
    ``stopped``, ``failed`` ("" when unset)."""
    return _state_name(tpb.WorkerState, state)


def session_state_name(state: tpb.SessionState) -> str:
    """The session's state as status shows it: ``starting``, ``live``, ``ending``."""
    return _state_name(tpb.SessionState, state)


def _fields(msg: Message, *, omit: tuple[str, ...] = (), **shown: object,
            ) -> dict[str, object]:
    """``msg``'s fields under their .proto names, in the .proto's order, as protobuf's JSON
    mapping writes them: every field without presence included at its default, an unset
    ``optional`` one (or message) as ``None``, enums by name, 64-bit integers as numbers,
    and doubles and floats as Python floats, NaN and the infinities included (``json.dumps``
    writes them as before). ``shown`` replaces the value of the fields status shows
    differently; ``omit`` leaves fields out.

    Read from the descriptors rather than through ``json_format``, whose options were
    renamed in protobuf 5.26: this reads the same on every protobuf reactor supports."""
    out: dict[str, object] = {}
    for f in msg.DESCRIPTOR.fields:
        if f.name in omit:
            continue
        if f.name in shown:
            out[f.name] = shown[f.name]
        elif _repeated(f):
            out[f.name] = [_value(f, v) for v in getattr(msg, f.name)]
        elif ((f.message_type is not None or f.containing_oneof is not None)
              and not msg.HasField(f.name)):
            out[f.name] = None  # proto3 `optional` is a one-field oneof: it has presence
        else:
            out[f.name] = _value(f, getattr(msg, f.name))
    return out


# A field descriptor: its class differs by protobuf backend (upb, python) and version.
_Field = Any


def _repeated(f: _Field) -> bool:
    # `is_repeated` came in protobuf 5.x and `label` went in 7.x.
    repeated = getattr(f, "is_repeated", None)
    return bool(repeated) if repeated is not None else getattr(f, "label", 0) == 3


def _value(f: _Field, value: Any) -> object:
    if f.message_type is not None:
        return _fields(value)
    if f.enum_type is not None:
        known = f.enum_type.values_by_number.get(value)
        return known.name if known is not None else value
    if f.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return float(value)
    if f.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value


def snapshot_to_dict(snap: Snapshot) -> dict[str, Any]:
    """The status object of ``snap``, ready for ``json.dumps``."""
    return {
        "distribution": __distribution__,
        "version": __version__,
        "state": daemon_state_name(snap.state),
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
        "gpu": _gpu(snap.gpu_stat) if snap.HasField("gpu_stat") else None,
        "commands_applied": {c.name: _json_or_raw(c.args_json) for c in snap.applied},
        "draining": snap.HasField("drain"),
        "drain": _drain(snap.drain) if snap.HasField("drain") else None,
        "session_ends": dict(sorted(snap.session_ends.items())),
    }


def _drain(d: DrainStat) -> dict[str, object]:
    return _fields(d)


def drain_text(d: DrainStat) -> str:
    """A drain in words, for ``/readyz`` and the dashboard."""
    until = (f"it stops when the session ends, in {d.left_s:.0f} s at most"
             if d.HasField("left_s") else "it stops when the session ends")
    return f"the daemon takes no new session ({d.why}); {until}"


def _gpu(g: GpuStat) -> dict[str, object]:
    """The GPU path and, when NVML answers, each device's load (``available``);
    otherwise ``reason`` says why there are no figures."""
    return {
        "available": g.telemetry,
        "reason": g.telemetry_reason or None,
        "device": g.device,
        "ring": g.ring or "shm",
        "index": g.index if g.index >= 0 else None,
        "device_name": g.device_name or None,
        "encoder_plan": g.encoder_plan,
        "encoder": g.encoder or None,
        "encoder_fallback": g.encoder_fallback or None,
        "plan": g.reason,
        "devices": [_fields(d) for d in g.devices],
    }


def _worker(w: WorkerStat) -> dict[str, object]:
    return _fields(w, pid=w.pid or None, state=worker_state_name(w.state),
                   last_error=w.last_error or None)


#: Egress's window of the time between two frames handed to the viewers (smoothness). It
#: travels with the stages' latency windows but is no stage a frame passes, so status shows
#: it apart (``pipeline.frame_interval_ms``): ``latency_ms`` adds up to the server's part of
#: a frame's trip.
FRAME_INTERVAL = "frame_interval"


def _pipeline(p: PipelineStat) -> dict[str, object]:
    windows = {s.stage: {"p50": s.p50_ms, "p99": s.p99_ms} for s in p.latency
               if s.window_count}
    interval = windows.pop(FRAME_INTERVAL, None)
    return {
        "fps_in": p.fps_in,
        "fps_model": p.fps_model,
        "fps_out": p.fps_out,
        "target_fps": p.target_fps,
        "warnings": list(p.warnings),
        "latency_ms": windows,
        "frame_interval_ms": interval,
        "rings": [_ring(r) for r in p.rings],
        "encoders_active": p.encoders_active,
        "audio": _audio(p.audio),
    }


def _audio(a: AudioStat) -> dict[str, object]:
    return _fields(a, omit=("av_offset_known",),
                   av_offset_ms=a.av_offset_ms if a.av_offset_known else None)


def _ring(r: RingStat) -> dict[str, object]:
    return _fields(r, omit=("written",))


def _session(s: SessionInfo) -> dict[str, object]:
    return {
        "id": s.id,
        "state": session_state_name(s.state),
        "duration_s": s.duration_s,
        "viewers": s.viewers,
        "sender": s.sender,
        "frames_emitted": s.frames_emitted,
        "ends_in_s": s.ends_in_s if s.HasField("ends_in_s") else None,
        "commands": [_command(c) for c in s.commands],
        "viewers_detail": [_viewer(v) for v in s.viewer_stats],
    }


def _opt(v: ViewerStat, name: str) -> object:
    return getattr(v, name) if v.HasField(name) else None


def _viewer(v: ViewerStat) -> dict[str, object]:
    # What the viewer reported is its own word: shown, never acted on. null: not said.
    return {
        "id": v.id,
        "codec": v.codec,
        "connected_s": v.connected_s,
        "agent": v.agent or None,
        "report_age_s": v.age_s if v.age_s >= 0 else None,
        "reports": v.reports,
        "rejected": v.rejected,
        "jitter_buffer_ms": _opt(v, "jitter_buffer_ms"),
        "decode_ms": _opt(v, "decode_ms"),
        "render_ms": _opt(v, "render_ms"),
        "rtt_ms": _opt(v, "rtt_ms"),
        "rtt_source": v.rtt_source or None,
        "frames_decoded": _opt(v, "frames_decoded"),
        "frames_dropped": _opt(v, "frames_dropped"),
        "freeze_count": _opt(v, "freeze_count"),
        "freeze_s": _opt(v, "freeze_s"),
        "width": _opt(v, "width"),
        "height": _opt(v, "height"),
        "fps": _opt(v, "fps"),
        "glass_to_glass_ms": _opt(v, "glass_to_glass_ms"),
        # Egress's measures (reactor.media.bwe), not the viewer's word.
        "estimate_kbps": _opt(v, "estimate_kbps"),
        "loss": _opt(v, "loss"),
        "remb_kbps": _opt(v, "remb_kbps"),
        "bitrate_kbps": _opt(v, "bitrate_kbps"),
        "max_kbps": _opt(v, "max_kbps"),
        # The rung of egress.renditions it is sent (0: the full size), and its size.
        "rendition": _opt(v, "rendition"),
        "sent_width": _opt(v, "sent_width"),
        "sent_height": _opt(v, "sent_height"),
    }


def _command(c: CommandLog) -> dict[str, object]:
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


def _json_or_raw(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _log(line: LogLine) -> dict[str, object]:
    return _fields(line)


def readiness(snap: Snapshot, *, exclusive: bool, max_viewers: int | None = None,
              ) -> str | None:
    """Why the daemon cannot take a new session now (``GET /readyz``'s 503), or ``None``
    when it can: every worker is up with the model loaded, it is not draining, no
    exclusive session runs and fewer than ``max_viewers`` (``server.max_viewers``) watch.

    The reason starts with one word an orchestrator can match: ``failed``, ``stopping``,
    ``draining``, ``loading``, ``restarting`` or ``busy``.
    """
    if snap.state == tpb.DAEMON_STATE_FAILED:
        return f"failed: {snap.error or 'the daemon gave up'}"
    if snap.state == tpb.DAEMON_STATE_STOPPING:
        return "stopping: the daemon is shutting down"
    if snap.HasField("drain"):
        return f"draining: {drain_text(snap.drain)}"
    workers = {w.name: w for w in snap.workers}
    model = workers.get("inference")
    if (model is not None and model.state == tpb.WORKER_STATE_STARTING
            and model.restarts == 0):
        return "loading: the model is loading"
    down = [f"{w.name} ({worker_state_name(w.state)})" for w in snap.workers
            if w.state != tpb.WORKER_STATE_RUNNING]
    if down:
        return f"restarting: {', '.join(down)}"
    if snap.state != tpb.DAEMON_STATE_RUNNING:
        return f"{daemon_state_name(snap.state)}: {snap.error or 'not ready'}"
    if exclusive and snap.HasField("session"):
        return (f"busy: session {snap.session.id} belongs to the client that started it "
                "(session.exclusive)")
    if (max_viewers is not None and snap.HasField("session")
            and snap.session.viewers >= max_viewers):
        return (f"busy: {snap.session.viewers} viewers watch; the limit is "
                f"server.max_viewers = {max_viewers}")
    return None
