"""The /metrics collector on its own: a snapshot and heartbeats as the supervisor holds
them, rendered by prometheus-client and parsed back with its parser."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reactor.daemon.metrics import (
    END_CAUSES,
    UNKNOWN_COMMAND,
    MetricsState,
    Scrape,
    build_info,
    make_registry,
    render,
)
from reactor.daemon.sessions import SessionManager
from reactor.proto import control_pb2 as cpb
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb
from reactor.runtime.latency import LATENCY_BUCKETS_MS, LatencyWindow
from tests.support.fakes import FakeClock
from tests.unit.daemon.test_sessions import Host

ROLES = (("ingress", "front"), ("inference", "model"), ("egress", "back"))
BUILD = {"version": "1.2.3", "python": "3.11.2", "pyav": "18.1.0", "ffmpeg": "8.1.2",
         "device": "cpu"}


def snapshot(restarts: int = 0, viewers: int = 2) -> tpb.Snapshot:
    snap = tpb.Snapshot(state=tpb.DAEMON_STATE_RUNNING, pid=1, uptime_s=10.0, ts=1_700_000_010.0,
                        model="TestPattern")
    for name in ("ingress", "inference", "egress"):
        snap.workers.add(name=name, pid=0, state=tpb.WORKER_STATE_RUNNING, restarts=restarts,
                         rss_bytes=50_000_000)
    p = snap.pipeline
    p.fps_in, p.fps_model, p.fps_out, p.target_fps = 29.5, 30.0, 29.9, 30.0
    p.encoders_active = 1
    p.rings.add(name="input", slots=4, used=1, dropped=7, policy="latest", written=100)
    p.rings.add(name="output", slots=8, used=2, dropped=0, policy="block", written=90)
    snap.session.CopyFrom(tpb.SessionInfo(id="abc", state=tpb.SESSION_STATE_LIVE, viewers=viewers,
                                          sender=True))
    return snap


def heartbeat(frames: int, samples_ms: tuple[float, ...] = (), stage: str = "encode",
              http: tuple[tuple[str, str, int, int], ...] = ()) -> wpb.WorkerStats:
    window = LatencyWindow(stage)
    for ms in samples_ms:
        window.add(ms)
    stats = wpb.WorkerStats(frames_in=frames, frames_out=frames, frames_emitted=frames,
                            audio_samples_in=frames * 960, audio_samples_out=frames * 960,
                            audio_dropped=frames // 10, frames_dropped_viewers=frames // 5)
    st = window.stat()
    if st is not None:
        stats.latency.append(st)
    for method, route, status, n in http:
        stats.http_requests.add(method=method, route=route, status=status, count=n)
    return stats


def scrape_text(state: MetricsState, snap: tpb.Snapshot | None = None) -> str:
    registry = make_registry(lambda: Scrape(snapshot=snap or snapshot(), state=state,
                                            build=BUILD, codec="h264", roles=ROLES))
    return render(registry).decode()


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(text: str, name: str, **labels: str) -> float:
    found = [s.value for f in text_string_to_metric_families(text) for s in f.samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return float(found[0])


def test_families_have_prometheus_names_types_and_label_sets() -> None:
    state = MetricsState()
    state.on_heartbeat("ingress", 11, heartbeat(5, (3.0,), "decode",
                                                http=(("GET", "/api/status", 200, 4),
                                                      ("POST", "/whep", 201, 1),
                                                      ("GET", "", 404, 2))))
    state.on_heartbeat("inference", 12, heartbeat(5, (20.0, 40.0), "model"))
    state.on_heartbeat("egress", 13, heartbeat(5, (8.0,), "encode"))
    fams = families(scrape_text(state))
    expected = {
        "reactor_build_info": ("gauge", set(BUILD)),  # text format 0.0.4: info is a gauge
        "reactor_daemon_state": ("gauge", {"state"}),
        "reactor_worker_state": ("gauge", {"worker", "state"}),
        "reactor_worker_up": ("gauge", {"worker"}),
        "reactor_worker_restarts": ("counter", {"worker"}),
        "reactor_process_cpu_seconds": ("counter", {"process"}),
        "reactor_process_resident_memory_bytes": ("gauge", {"process"}),
        "reactor_frames_per_second": ("gauge", {"stage"}),
        "reactor_frames_received": ("counter", set()),
        "reactor_frames_emitted": ("counter", set()),
        "reactor_frames_sent": ("counter", set()),
        "reactor_frames_dropped": ("counter", {"reason"}),
        "reactor_ring_used_slots": ("gauge", {"ring"}),
        "reactor_stage_latency_seconds": ("histogram", {"stage"}),
        "reactor_audio_samples_in": ("counter", {"worker"}),
        "reactor_audio_chunks_dropped": ("counter", {"worker"}),
        "reactor_encoder_info": ("gauge", {"codec"}),
        "reactor_viewers": ("gauge", set()),
        "reactor_publishers": ("gauge", set()),
        "reactor_sessions_started": ("counter", set()),
        "reactor_sessions_ended": ("counter", {"reason"}),
        "reactor_commands": ("counter", {"command", "result"}),
        "reactor_http_requests": ("counter", {"method", "route", "status"}),
    }
    for name, (kind, labels) in expected.items():
        assert name in fams, name
        assert fams[name].type == kind, name
        for s in fams[name].samples:
            assert set(s.labels) - {"le"} == labels, (name, s)
    for name in fams:
        assert name.startswith("reactor_"), name
    stages = {s.labels["stage"] for s in fams["reactor_stage_latency_seconds"].samples}
    assert stages == {"decode", "model", "encode"}
    assert fams["reactor_http_requests"].samples[0].name == "reactor_http_requests_total"
    http = {(s.labels["route"], s.labels["status"]): s.value
            for s in fams["reactor_http_requests"].samples}
    assert http == {("/api/status", "200"): 4, ("/whep", "201"): 1, ("(unmatched)", "404"): 2}


def test_latency_histogram_buckets_count_and_sum_in_seconds() -> None:
    state = MetricsState()
    state.on_heartbeat("egress", 13, heartbeat(3, (0.3, 7.0, 2000.0), "encode"))
    text = scrape_text(state)
    name = "reactor_stage_latency_seconds"
    assert value(text, name + "_bucket", stage="encode", le="0.0005") == 1
    assert value(text, name + "_bucket", stage="encode", le="0.01") == 2
    top = f"{LATENCY_BUCKETS_MS[-1] / 1000:g}"
    assert value(text, name + "_bucket", stage="encode", le=top) == 2
    assert value(text, name + "_bucket", stage="encode", le="+Inf") == 3
    assert value(text, name + "_count", stage="encode") == 3
    assert value(text, name + "_sum", stage="encode") == pytest.approx(2.0073)


def test_egress_frame_interval_is_its_own_histogram_not_a_stage() -> None:
    state = MetricsState()
    state.on_heartbeat("egress", 13, heartbeat(3, (33.0, 34.0, 60.0), "frame_interval"))
    state.on_heartbeat("inference", 12, heartbeat(3, (1.0,), "model"))
    text = scrape_text(state)
    name = "reactor_egress_frame_interval_seconds"
    assert value(text, name + "_count") == 3
    assert value(text, name + "_sum") == pytest.approx(0.127)
    assert value(text, name + "_bucket", le="0.05") == 2
    stages = {s.labels["stage"] for s in families(text)["reactor_stage_latency_seconds"].samples}
    assert stages == {"model"}


def test_counters_never_go_backwards_when_a_worker_restarts() -> None:
    state = MetricsState()
    state.on_heartbeat("egress", 100, heartbeat(50, (5.0,) * 50, "encode",
                                                http=(("GET", "/", 200, 3),)))
    state.on_heartbeat("ingress", 200, heartbeat(0, http=(("GET", "/", 200, 3),)))
    before = scrape_text(state)
    # egress restarts: the new process counts from zero again.
    state.on_heartbeat("egress", 101, heartbeat(2, (5.0, 5.0), "encode"))
    after = scrape_text(state, snapshot(restarts=1))
    assert value(before, "reactor_frames_sent_total") == 50
    assert value(after, "reactor_frames_sent_total") == 52
    assert value(after, "reactor_stage_latency_seconds_count", stage="encode") == 52
    assert value(after, "reactor_stage_latency_seconds_bucket", stage="encode",
                 le="0.005") == 52
    assert value(after, "reactor_audio_samples_out_total", worker="egress") == 52 * 960
    assert value(after, "reactor_worker_restarts_total", worker="egress") == 1
    assert value(before, "reactor_frames_dropped_total", reason="viewer_queue") == 10
    assert value(after, "reactor_frames_dropped_total", reason="viewer_queue") == 10
    assert value(after, "reactor_frames_dropped_total", reason="input_ring") == 7
    # And the next beat of the same process replaces its own figures, not adds to them.
    state.on_heartbeat("egress", 101, heartbeat(4, (5.0,) * 4, "encode"))
    later = scrape_text(state, snapshot(restarts=1))
    assert value(later, "reactor_frames_sent_total") == 54
    # Every sample of every counter and histogram is at least what it was.
    for old in text_string_to_metric_families(before):
        if old.type not in ("counter", "histogram"):
            continue
        for s in old.samples:
            if s.name.endswith("_created"):
                continue
            assert value(later, s.name, **s.labels) >= s.value, s


def test_commands_count_by_name_and_result_and_unknown_names_share_one_series() -> None:
    state = MetricsState()
    known = ("set_speed", "pause")
    state.on_command("set_speed", cpb.Reply(command=cpb.CommandReply(result_json="1")), known)
    state.on_command("set_speed", cpb.Reply(error=cpb.Error(message="bad", status=422)),
                     known)
    state.on_command("pause", cpb.Reply(error=cpb.Error(message="boom", status=500)), known)
    for junk in ("x1", "x2", "x3"):
        state.on_command(junk, cpb.Reply(error=cpb.Error(message="no", status=404)), known)
    registry = make_registry(lambda: Scrape(snapshot=snapshot(), state=state, build=BUILD,
                                            roles=ROLES, commands=(*known, "reset")))
    text = render(registry).decode()
    assert value(text, "reactor_commands_total", command="set_speed", result="ok") == 1
    assert value(text, "reactor_commands_total", command="set_speed", result="rejected") == 1
    assert value(text, "reactor_commands_total", command="pause", result="failed") == 1
    assert value(text, "reactor_commands_total", command=UNKNOWN_COMMAND,
                 result="rejected") == 3
    # The model's other commands count from 0, so their first use shows in increase().
    for result in ("ok", "rejected", "failed"):
        assert value(text, "reactor_commands_total", command="reset", result=result) == 0


def test_sessions_count_starts_and_ends_by_reason(clock: FakeClock) -> None:
    host = Host()
    state = MetricsState()
    sessions = SessionManager(host, orphan_timeout_s=5.0, clock=clock, metrics=state)

    def end(kind: int = wpb.SessionEvent.ENDED) -> None:
        assert sessions.current is not None
        sessions.on_event("inference", wpb.SessionEvent(kind=kind,  # type: ignore[arg-type]
                                                        session_id=sessions.current.id))

    sessions.start()
    end()                                    # the model returned
    sessions.start()
    sessions.on_request(cpb.Request(session=cpb.SessionRequest(
        action=cpb.SessionRequest.STOP)), ("control", b"x"))
    end()                                    # stopped by request
    sessions.on_clients(viewers=1)
    sessions.start()
    sessions.on_clients(viewers=0)
    clock.advance(6.0)
    sessions.tick(clock())
    end()                                    # orphaned
    sessions.start()
    end(wpb.SessionEvent.ERROR)              # the model raised
    sessions.start()
    sessions.on_inference_lost("the inference worker died")
    sessions.max_duration_s = 60.0
    sessions.start()
    clock.advance(61.0)
    sessions.tick(clock())
    end()                                    # session.max_duration_s
    sessions.start()
    sessions.stop("the drain's timeout passed", cause="drained", announce=True)
    end()                                    # a drain's timeout
    text = scrape_text(state)
    assert value(text, "reactor_sessions_started_total") == 7
    ended = {c: value(text, "reactor_sessions_ended_total", reason=c) for c in END_CAUSES}
    assert ended == {"returned": 1, "stopped": 1, "orphaned": 1, "input_ended": 0,
                     "error": 1, "worker_died": 1, "max_duration": 1, "drained": 1}


def test_64_viewers_page_is_accepted_by_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    state = MetricsState()
    state.on_heartbeat("egress", 13, heartbeat(5, (8.0,), "encode"))
    state.on_command("set_speed", cpb.Reply(), ("set_speed",))
    snap = snapshot(viewers=64)
    for v in range(64):  # every viewer reported every figure: all per-viewer series
        snap.session.viewer_stats.add(
            id=f"{v:016x}", codec="h264", age_s=0.5, jitter_buffer_ms=20.0,
            frames_decoded=900, frames_dropped=1, freeze_count=0, freeze_s=0.0, rtt_ms=2.0,
            decode_ms=1.5, width=320, height=240, fps=30.0, reports=30, rejected=1,
            glass_to_glass_ms=40.0)
    text = scrape_text(state, snap)
    assert value(text, "reactor_viewer_glass_to_glass_seconds", viewer=f"{63:016x}") == 0.04
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert value(text, "reactor_viewers") == 64


def test_build_info_reads_codec_versions_from_pyav_and_says_what_it_cannot() -> None:
    import av

    info = build_info("cpu")
    assert (info["pyav"], info["ffmpeg"]) == (av.__version__, av.ffmpeg_version_info)
    assert info["libavcodec"] == ".".join(map(str, av.library_versions["libavcodec"]))
    # PyAV has no API for the encoder libraries' versions: said, not guessed.
    assert {info[k] for k in ("libx264", "libvpx", "opus")} == {"unknown"}
    assert set(info) == {"version", "python", "pyav", "ffmpeg", "libavcodec", "libx264",
                         "libvpx", "opus", "device"}


def test_fleet_gauges_capacity_active_and_draining() -> None:
    """``sum(capacity) - sum(active)`` is a fleet's free sessions: never negative, and a
    draining daemon offers none."""
    state = MetricsState()
    busy = snapshot()  # a session runs
    idle = snapshot()
    idle.ClearField("session")
    draining_busy = snapshot()
    draining_busy.drain.why = "SIGTERM"
    draining_idle = snapshot()
    draining_idle.ClearField("session")
    draining_idle.drain.why = "SIGTERM"
    seen = {}
    for name, snap in (("busy", busy), ("idle", idle), ("draining_busy", draining_busy),
                       ("draining_idle", draining_idle)):
        text = scrape_text(state, snap)
        seen[name] = tuple(value(text, n) for n in (
            "reactor_session_capacity", "reactor_sessions_active", "reactor_draining"))
    assert seen == {"busy": (1, 1, 0), "idle": (1, 0, 0), "draining_busy": (1, 1, 1),
                    "draining_idle": (0, 0, 1)}
