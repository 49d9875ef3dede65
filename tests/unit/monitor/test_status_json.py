"""``snapshot_to_dict``: the object ``reactor daemon status --json`` and /api/status show."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest

from reactor.control.status import snapshot_to_dict
from reactor.proto.telemetry_pb2 import Snapshot

MakeSnapshot = Callable[..., Snapshot]


def test_top_level_keys(make_snapshot: MakeSnapshot) -> None:
    status = snapshot_to_dict(make_snapshot())
    assert list(status) == [
        "distribution", "version",
        "state", "pid", "uptime_s", "workers", "pipeline", "session",
        "model", "url", "run_dir", "config_path", "error", "logs", "gpu", "commands_applied",
        "draining", "drain", "session_ends",
    ]
    assert (status["state"], status["pid"], status["uptime_s"]) == ("degraded", 4242, 3723.4)
    assert status["model"] == "reactor.examples.pattern:TestPattern"
    assert status["url"] == "http://127.0.0.1:8081"
    assert status["run_dir"] == "/run/reactor"
    assert status["config_path"] == "configs/pattern.yaml"
    assert status["error"] == "egress restarting after a crash"
    json.dumps(status)  # plain data all the way down


def test_workers(make_snapshot: MakeSnapshot) -> None:
    ingress, _, egress = snapshot_to_dict(make_snapshot())["workers"]
    assert ingress == {
        "name": "ingress", "pid": 4243, "state": "running", "restarts": 0,
        "cpu_percent": 3.14, "rss_bytes": 89_338_675, "uptime_s": 3721.0,
        "heartbeat_age_s": 0.12, "last_error": None, "frames_in": 111_600,
        "frames_out": 111_600,
    }
    assert egress["pid"] is None  # not running: no pid rather than pid 0
    assert egress["state"] == "restarting"
    assert egress["last_error"] == "RuntimeError: encoder died"


def test_pipeline(make_snapshot: MakeSnapshot) -> None:
    pipeline = snapshot_to_dict(make_snapshot())["pipeline"]
    assert pipeline == {
        "fps_in": 29.94,
        "fps_model": 29.8,
        "fps_out": 14.2,
        "target_fps": 30.0,
        "warnings": [],
        "latency_ms": {
            "decode": {"p50": 2.1, "p99": 4.04},
            "input_ring": {"p50": 0.07, "p99": 0.31},
            "model": {"p50": 12.3, "p99": 20.1},
            "output_ring": {"p50": 0.1, "p99": 0.2},
            "encode": {"p50": 6.0, "p99": 9.8},
        },
        "frame_interval_ms": None,
        "rings": [
            {"name": "input", "slots": 4, "used": 1, "dropped": 12, "policy": "latest"},
            {"name": "output", "slots": 8, "used": 8, "dropped": 0, "policy": "block"},
        ],
        "encoders_active": 1,
        "audio": {"input": False, "output": False, "rate_in_hz": 0.0, "rate_out_hz": 0.0,
                  "dropped": 0, "av_offset_ms": None},
    }


def test_egress_frame_interval_is_shown_apart_from_the_stages(
        make_snapshot: MakeSnapshot) -> None:
    snap = make_snapshot()
    snap.pipeline.latency.add(stage="frame_interval", p50_ms=33.3, p99_ms=38.0,
                              window_count=300)
    pipeline = snapshot_to_dict(snap)["pipeline"]
    assert pipeline["frame_interval_ms"] == {"p50": pytest.approx(33.3),
                                             "p99": pytest.approx(38.0)}
    assert set(pipeline["latency_ms"]) == {"decode", "input_ring", "model", "output_ring",
                                           "encode"}


def test_pipeline_audio_reports_rates_drops_and_a_known_offset(
        make_snapshot: MakeSnapshot) -> None:
    snap = make_snapshot()
    a = snap.pipeline.audio
    a.input, a.output, a.rate_in_hz, a.rate_out_hz, a.dropped = True, True, 16000.0, 48000.0, 3
    a.av_offset_ms, a.av_offset_known = -4.5, True
    assert snapshot_to_dict(snap)["pipeline"]["audio"] == {
        "input": True, "output": True, "rate_in_hz": 16000.0, "rate_out_hz": 48000.0,
        "dropped": 3, "av_offset_ms": -4.5}


def test_session(make_snapshot: MakeSnapshot) -> None:
    session = snapshot_to_dict(make_snapshot())["session"]
    assert session == {
        "id": "3f2a9c1d",
        "state": "live",
        "duration_s": 65.0,
        "viewers": 2,
        "sender": True,
        "frames_emitted": 1950,
        "ends_in_s": None,
        "commands": [
            {"ts": 1_700_000_010.0, "name": "set_gain", "args": {"gain": 2.0}, "ok": True,
             "result": None, "error": None},
            {"ts": 1_700_000_020.0, "name": "set_gain", "args": {"gain": 9.0}, "ok": False,
             "result": None, "error": "gain: Input should be less than or equal to 4"},
            {"ts": 1_700_000_030.0, "name": "reset", "args": {}, "ok": True,
             "result": {"frames": 1200}, "error": None},
        ],
        "viewers_detail": [],
    }


def test_session_viewers_detail_shows_reports_and_null_for_what_was_not_said(
        make_snapshot: MakeSnapshot) -> None:
    snap = make_snapshot()
    v = snap.session.viewer_stats.add(
        id="a1b2c3", codec="h264", connected_s=12.5, agent="browser", age_s=0.4, reports=11,
        rejected=2, jitter_buffer_ms=18.5, decode_ms=2.25, render_ms=9.5, rtt_ms=1.5,
        rtt_source="viewer", frames_decoded=360, frames_dropped=1, freeze_count=0,
        freeze_s=0.0, width=1280, height=720, fps=29.5, glass_to_glass_ms=43.0,
        estimate_kbps=1200.0, loss=0.0, remb_kbps=1250.0, bitrate_kbps=1200.0,
        max_kbps=4000.0, rendition=1, sent_width=640, sent_height=360)
    snap.session.viewer_stats.add(id="d4e5f6", codec="vp8", connected_s=0.3, age_s=-1.0)
    detail = snapshot_to_dict(snap)["session"]["viewers_detail"]
    assert detail[0] == {
        "id": "a1b2c3", "codec": "h264", "connected_s": 12.5, "agent": "browser",
        "report_age_s": 0.4, "reports": 11, "rejected": 2, "jitter_buffer_ms": 18.5,
        "decode_ms": 2.25, "render_ms": 9.5, "rtt_ms": 1.5, "rtt_source": "viewer",
        "frames_decoded": 360,
        "frames_dropped": 1, "freeze_count": 0, "freeze_s": 0.0, "width": 1280,
        "height": 720, "fps": 29.5, "glass_to_glass_ms": 43.0, "estimate_kbps": 1200.0,
        "loss": 0.0, "remb_kbps": 1250.0, "bitrate_kbps": 1200.0, "max_kbps": 4000.0,
        "rendition": 1, "sent_width": 640, "sent_height": 360}
    assert v.HasField("freeze_count")  # a reported 0 stays 0, not "not reported"
    fresh = detail[1]
    assert (fresh["agent"], fresh["report_age_s"], fresh["glass_to_glass_ms"]) == (
        None, None, None)
    assert all(fresh[k] is None for k in ("jitter_buffer_ms", "rtt_ms", "width", "fps",
                                          "estimate_kbps", "loss", "bitrate_kbps",
                                          "max_kbps", "rendition", "sent_height"))


def test_no_session_is_null(make_snapshot: MakeSnapshot) -> None:
    assert snapshot_to_dict(make_snapshot(session=False))["session"] is None
    assert snapshot_to_dict(Snapshot())["session"] is None


def test_logs(make_snapshot: MakeSnapshot) -> None:
    status = snapshot_to_dict(make_snapshot())
    assert status["logs"][0] == {"ts": 1_700_000_001.0, "process": "ingress",
                                 "level": "WARNING", "message": "slow client"}


def test_an_empty_snapshot() -> None:
    status = snapshot_to_dict(Snapshot())
    assert status["pid"] is None
    assert status["config_path"] is None and status["error"] is None
    assert status["workers"] == [] and status["logs"] == []
    assert status["pipeline"]["latency_ms"] == {} and status["pipeline"]["rings"] == []


def test_gpu_devices_and_64_bit_counters_are_json_numbers_in_proto_order(
        make_snapshot: MakeSnapshot) -> None:
    # protobuf's JSON mapping writes 64-bit integers as strings unless told otherwise; status
    # keeps them numbers, and keeps each object's keys in the order it always had.
    snap = make_snapshot()
    snap.workers[0].rss_bytes = 2**40 + 3
    snap.gpu_stat.devices.add(index=0, name="NVIDIA H100", utilization_ratio=0.5,
                              memory_used_bytes=2**40 + 1, memory_total_bytes=80 * 2**30,
                              encoder_sessions=2, encoder_utilization_ratio=0.25)
    snap.gpu_stat.devices.add(index=1, name="spare")
    status = snapshot_to_dict(snap)
    assert list(status["workers"][0]) == [
        "name", "pid", "state", "restarts", "cpu_percent", "rss_bytes", "uptime_s",
        "heartbeat_age_s", "last_error", "frames_in", "frames_out"]
    assert status["workers"][0]["rss_bytes"] == 2**40 + 3
    assert status["gpu"]["devices"] == [
        {"index": 0, "name": "NVIDIA H100", "utilization_ratio": 0.5,
         "memory_used_bytes": 2**40 + 1, "memory_total_bytes": 80 * 2**30,
         "encoder_sessions": 2, "encoder_utilization_ratio": 0.25},
        {"index": 1, "name": "spare", "utilization_ratio": 0.0, "memory_used_bytes": 0,
         "memory_total_bytes": 0, "encoder_sessions": 0, "encoder_utilization_ratio": 0.0},
    ]
    assert '"memory_used_bytes": 1099511627777,' in json.dumps(status)


def test_nan_and_infinite_doubles_are_floats(make_snapshot: MakeSnapshot) -> None:
    # protobuf's JSON mapping writes them as the strings "NaN" and "Infinity"; status
    # shows numbers as numbers, as its hand mapping did.
    snap = make_snapshot()
    snap.workers[0].cpu_percent = float("nan")
    snap.workers[0].heartbeat_age_s = float("inf")
    ingress = snapshot_to_dict(snap)["workers"][0]
    assert isinstance(ingress["cpu_percent"], float) and math.isnan(ingress["cpu_percent"])
    assert ingress["heartbeat_age_s"] == float("inf")
    assert json.dumps(ingress["heartbeat_age_s"]) == "Infinity"
