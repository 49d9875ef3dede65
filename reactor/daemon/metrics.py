"""``GET /metrics``: the daemon's telemetry in the Prometheus text format.

Multiprocess-safe by construction: no worker keeps a Prometheus registry. Workers send
their counters in heartbeats; the supervisor keeps them here (:class:`MetricsState`),
summing each worker's successive processes so a counter never goes backwards when a
worker restarts, and renders the exposition on request from its private
:class:`~prometheus_client.CollectorRegistry`, whose one collector
(:class:`ReactorCollector`) turns a :class:`Scrape` — the snapshot the supervisor builds
for ``status`` plus these counters — into metric families. Ingress, the only public
listener, asks the supervisor for the text with a ``metrics`` control request.

Each family comes from one function of :data:`FAMILIES` (``Scrape -> metrics``), so new
series (per-viewer figures, say) are one more function.

Long module: a little past 500 lines, because it is every family the daemon exports, each a
short function over the same :class:`Scrape`; split, the families would lose the one list
(:data:`FAMILIES`) that says what ``/metrics`` holds.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import av
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from reactor.control.status import FRAME_INTERVAL, daemon_state_name, worker_state_name
from reactor.daemon.gpu_telemetry import gpu_families
from reactor.proto import control_pb2 as cpb
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb
from reactor.runtime import stats as procstats
from reactor.runtime.latency import LATENCY_BUCKETS_MS

__all__ = ["CONTENT_TYPE", "FAMILIES", "MetricsState", "ReactorCollector", "Scrape",
           "build_info", "make_registry", "render", "session_end_cause"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: The states a gauge is exported for, labelled with the name status shows ("running").
DAEMON_STATES = (tpb.DAEMON_STATE_STARTING, tpb.DAEMON_STATE_RUNNING, tpb.DAEMON_STATE_DEGRADED,
                 tpb.DAEMON_STATE_STOPPING, tpb.DAEMON_STATE_FAILED)
WORKER_STATES = (tpb.WORKER_STATE_STARTING, tpb.WORKER_STATE_RUNNING,
                 tpb.WORKER_STATE_RESTARTING, tpb.WORKER_STATE_STOPPED, tpb.WORKER_STATE_FAILED)
#: How a session ended: the ``reason`` label of ``reactor_sessions_ended_total``.
END_CAUSES = ("returned", "stopped", "orphaned", "input_ended", "error", "worker_died",
              "max_duration", "drained")
#: The ``result`` label of ``reactor_commands_total``.
COMMAND_RESULTS = ("ok", "rejected", "failed")
#: The ``command`` label of a command the model does not have (its name is the client's).
UNKNOWN_COMMAND = "(unknown)"

# One counter of a worker: ("frames_in",), ("latency", stage, "count" | "sum" | bucket
# index), ("http", method, route, status).
_Key = tuple[str | int, ...]
_FIELDS = ("frames_in", "frames_out", "frames_emitted", "audio_samples_in",
           "audio_samples_out", "audio_dropped", "frames_dropped_viewers")


def _flatten(stats: wpb.WorkerStats) -> dict[_Key, float]:
    out: dict[_Key, float] = {(f,): float(getattr(stats, f)) for f in _FIELDS}
    for lat in stats.latency:
        out[("latency", lat.stage, "count")] = float(lat.count)
        out[("latency", lat.stage, "sum")] = lat.sum_ms / 1000.0
        for i, n in enumerate(lat.buckets):
            out[("latency", lat.stage, i)] = float(n)
    for h in stats.http_requests:
        out[("http", h.method, h.route, str(h.status))] = float(h.count)
    return out


@dataclass
class _Incarnations:
    """One worker's counters: those of its dead processes, and its live one's last."""

    pid: int = 0
    dead: Counter[_Key] = field(default_factory=Counter)
    live: dict[_Key, float] = field(default_factory=dict)
    cpu_dead_s: float = 0.0
    cpu_live_s: float = 0.0

    def beat(self, pid: int, stats: wpb.WorkerStats) -> None:
        if pid != self.pid:
            self._retire(pid)
        self.live = _flatten(stats)

    def cpu(self, pid: int) -> float:
        """CPU seconds of every process of this worker so far (``pid``: the live one)."""
        if pid and pid != self.pid:
            self._retire(pid)
        if pid:
            now = procstats.cpu_seconds(pid)
            if now is not None:
                self.cpu_live_s = now
        return self.cpu_dead_s + self.cpu_live_s

    def _retire(self, pid: int) -> None:
        # A new process: what the old one counted until its last report stays counted.
        self.dead.update(self.live)
        self.cpu_dead_s += self.cpu_live_s
        self.live, self.cpu_live_s, self.pid = {}, 0.0, pid

    def total(self) -> Counter[_Key]:
        out = Counter(self.dead)
        out.update(self.live)
        return out


class MetricsState:
    """The counters ``/metrics`` exports that the snapshot does not hold: per worker
    (summed over its processes), sessions, commands. Updated on the supervisor's loop."""

    def __init__(self) -> None:
        self._workers: dict[str, _Incarnations] = {}
        self.sessions_started = 0
        self.sessions_ended: Counter[str] = Counter()
        self.commands: Counter[tuple[str, str]] = Counter()

    def _of(self, worker: str) -> _Incarnations:
        return self._workers.setdefault(worker, _Incarnations())

    def on_heartbeat(self, worker: str, pid: int, stats: wpb.WorkerStats) -> None:
        self._of(worker).beat(pid, stats)

    def on_command(self, name: str, reply: cpb.Reply, known: Iterable[str]) -> None:
        """A model command was answered. Names the model does not have count as
        :data:`UNKNOWN_COMMAND`: a client's typo must not make a new series."""
        label = name if name in set(known) else UNKNOWN_COMMAND
        if not reply.HasField("error"):
            result = "ok"
        elif reply.error.status in (400, 404, 409, 413, 422):
            result = "rejected"  # the client's mistake
        else:
            result = "failed"
        self.commands[(label, result)] += 1

    def on_session_started(self) -> None:
        self.sessions_started += 1

    def on_session_ended(self, cause: str) -> None:
        self.sessions_ended[cause] += 1

    def totals(self, worker: str) -> Counter[_Key]:
        return self._of(worker).total()

    def cpu_seconds(self, worker: str, pid: int) -> float:
        return self._of(worker).cpu(pid)


def session_end_cause(kind: int, stop_cause: str) -> str:
    """The ``reason`` label of a session that ended with event ``kind`` (``ENDED`` or
    ``ERROR``); ``stop_cause`` is why the supervisor asked it to stop, if it did."""
    if kind == wpb.SessionEvent.ERROR:
        return "error"
    return stop_cause or "returned"


# --- build info -----------------------------------------------------------------------

#: What a ``reactor_build_info`` label reads when PyAV does not say the version.
UNKNOWN = "unknown"


def _codec_versions() -> dict[str, str]:
    """PyAV and the FFmpeg it is built on, from PyAV's own API.

    The encoder libraries FFmpeg links (libx264, libvpx, libopus) have no version in
    PyAV's API; their labels read ``unknown`` rather than be dug out of the shared
    libraries PyAV's wheel bundles. (The supervisor imports ``av`` anyway, for the GPU
    plan's encoders: reactor.media.gpu, so asking it costs nothing.)"""
    libavcodec = ".".join(str(n) for n in av.library_versions.get("libavcodec", ()))
    return {"pyav": av.__version__, "ffmpeg": av.ffmpeg_version_info,
            "libavcodec": libavcodec or UNKNOWN, "libx264": UNKNOWN, "libvpx": UNKNOWN,
            "opus": UNKNOWN}


def build_info(device: str) -> dict[str, str]:
    """``reactor_build_info`` labels: versions of reactor, Python and the codec libraries,
    and the device the model runs on."""
    try:
        version = importlib.metadata.version("reactor-live")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"version": version, "python": platform.python_version(), **_codec_versions(),
            "device": device}


# --- the families ---------------------------------------------------------------------

@dataclass
class Scrape:
    """Everything one scrape reads: taken on the supervisor's loop, so it is consistent."""

    snapshot: tpb.Snapshot
    state: MetricsState
    build: dict[str, str]
    codec: str = ""                      # what egress encodes: h264 | vp8
    #: The model's command names: their counters start at 0, so that the first command
    #: shows in ``increase()`` (a series born at 1 has no earlier sample to rise from).
    commands: tuple[str, ...] = ()
    #: (worker, role) in pipeline order; role is front | model | back.
    roles: tuple[tuple[str, str], ...] = ()
    supervisor_pid: int = field(default_factory=os.getpid)

    def worker(self, role: str) -> str:
        return next((w for w, r in self.roles if r == role), "")


Family = Callable[[Scrape], Iterable[Metric]]


def daemon_families(s: Scrape) -> Iterator[Metric]:
    snap = s.snapshot
    info = InfoMetricFamily("reactor_build", "Versions of reactor, Python and the codec "
                            "libraries, and the model's device")
    info.add_metric([], s.build)
    yield info
    model = InfoMetricFamily("reactor_model", "The model this daemon serves")
    model.add_metric([], {"model": snap.model})
    yield model
    state = GaugeMetricFamily("reactor_daemon_state", "1 for the daemon's state",
                              labels=["state"])
    for code in DAEMON_STATES:
        state.add_metric([daemon_state_name(code)], 1.0 if snap.state == code else 0.0)
    yield state
    yield GaugeMetricFamily("reactor_daemon_start_time_seconds",
                            "When the daemon started, in seconds since the epoch",
                            value=snap.ts - snap.uptime_s)


def worker_families(s: Scrape) -> Iterator[Metric]:
    snap = s.snapshot
    state = GaugeMetricFamily("reactor_worker_state", "1 for each worker's state",
                              labels=["worker", "state"])
    up = GaugeMetricFamily("reactor_worker_up", "1 while the worker runs", labels=["worker"])
    restarts = CounterMetricFamily("reactor_worker_restarts", "Times the worker was "
                                   "restarted since the daemon started", labels=["worker"])
    for w in snap.workers:
        for code in WORKER_STATES:
            state.add_metric([w.name, worker_state_name(code)], 1.0 if w.state == code else 0.0)
        up.add_metric([w.name], 1.0 if w.state == tpb.WORKER_STATE_RUNNING else 0.0)
        restarts.add_metric([w.name], float(w.restarts))
    yield from (state, up, restarts)
    cpu = CounterMetricFamily("reactor_process_cpu_seconds", "CPU time of each process "
                              "(a worker's every process summed)", labels=["process"])
    rss = GaugeMetricFamily("reactor_process_resident_memory_bytes",
                            "Resident memory of each process", labels=["process"])
    own = procstats.cpu_seconds(s.supervisor_pid)
    cpu.add_metric(["supervisor"], own or 0.0)
    rss.add_metric(["supervisor"], float(procstats.rss_bytes(s.supervisor_pid)))
    for w in snap.workers:
        cpu.add_metric([w.name], s.state.cpu_seconds(w.name, w.pid))
        rss.add_metric([w.name], float(w.rss_bytes))
    yield from (cpu, rss)


def pipeline_families(s: Scrape) -> Iterator[Metric]:
    p = s.snapshot.pipeline
    fps = GaugeMetricFamily("reactor_frames_per_second", "Frame rate over the last second: "
                            "in (from the sender), model (emitted), out (sent)",
                            labels=["stage"])
    fps.add_metric(["in"], p.fps_in)
    fps.add_metric(["model"], p.fps_model)
    fps.add_metric(["out"], p.fps_out)
    yield fps
    yield GaugeMetricFamily("reactor_target_frames_per_second", "video.fps", value=p.target_fps)
    front = s.state.totals(s.worker("front"))
    model = s.state.totals(s.worker("model"))
    back = s.state.totals(s.worker("back"))
    yield CounterMetricFamily("reactor_frames_received", "Video frames decoded from the "
                              "sender (or the input file)", value=front[("frames_in",)])
    yield CounterMetricFamily("reactor_frames_emitted", "Frames the model emitted",
                              value=model[("frames_emitted",)])
    yield CounterMetricFamily("reactor_frames_sent", "Frames encoded and sent to viewers "
                              "(or written to the output)", value=back[("frames_out",)])
    dropped = CounterMetricFamily("reactor_frames_dropped", "Frames dropped, by where: "
                                  "input_ring (the model skipped to a newer frame), "
                                  "viewer_queue (encoded frames a slow viewer skipped)",
                                  labels=["reason"])
    dropped.add_metric(["viewer_queue"], back[("frames_dropped_viewers",)])
    slots = GaugeMetricFamily("reactor_ring_slots", "Slots of each ring", labels=["ring"])
    used = GaugeMetricFamily("reactor_ring_used_slots", "Slots holding unread frames",
                             labels=["ring"])
    written = CounterMetricFamily("reactor_ring_written", "Frames (or audio chunks) written "
                                  "to each ring", labels=["ring"])
    ring_dropped = CounterMetricFamily("reactor_ring_dropped", "Frames (or chunks) a ring "
                                       "dropped unread", labels=["ring"])
    for r in p.rings:
        slots.add_metric([r.name], float(r.slots))
        used.add_metric([r.name], float(r.used))
        written.add_metric([r.name], float(r.written))
        ring_dropped.add_metric([r.name], float(r.dropped))
        if r.name == "input":
            dropped.add_metric(["input_ring"], float(r.dropped))
    yield from (dropped, slots, used, written, ring_dropped)
    yield from _latency(s)
    enc = InfoMetricFamily("reactor_encoder", "The codec egress encodes")
    enc.add_metric([], {"codec": s.codec})
    yield enc
    yield GaugeMetricFamily("reactor_encoders_active", "Encoders running in egress "
                            "(one per codec being watched)", value=float(p.encoders_active))


def _latency(s: Scrape) -> Iterator[Metric]:
    hist = HistogramMetricFamily("reactor_stage_latency_seconds", "Time a frame spends in "
                                 "each stage (decode, input_ring, model, output_ring, encode)",
                                 labels=["stage"])
    stages: dict[str, Counter[_Key]] = {}
    for name, _ in s.roles:
        for key, value in s.state.totals(name).items():
            if key[0] == "latency":
                stages.setdefault(str(key[1]), Counter())[key[2:]] += value
    interval = HistogramMetricFamily(
        "reactor_egress_frame_interval_seconds", "Time between two frames egress hands to "
        "the viewers (smoothness; 1/fps when steady)")
    for stage, c in stages.items():
        buckets = [(f"{b / 1000:g}", c[(i,)]) for i, b in enumerate(LATENCY_BUCKETS_MS)]
        count = max(c[("count",)], buckets[-1][1])
        buckets.append(("+Inf", count))
        if stage == FRAME_INTERVAL:
            interval.add_metric([], buckets, c[("sum",)])
        else:
            hist.add_metric([stage], buckets, c[("sum",)])
    yield hist
    yield interval


def audio_families(s: Scrape) -> Iterator[Metric]:
    a = s.snapshot.pipeline.audio
    samples_in = CounterMetricFamily("reactor_audio_samples_in", "Audio samples per channel "
                                     "each worker took in", labels=["worker"])
    samples_out = CounterMetricFamily("reactor_audio_samples_out", "Audio samples per "
                                      "channel each worker passed on", labels=["worker"])
    dropped = CounterMetricFamily("reactor_audio_chunks_dropped", "Audio chunks refused, late "
                                  "or too far ahead", labels=["worker"])
    for name, _ in s.roles:
        t = s.state.totals(name)
        samples_in.add_metric([name], t[("audio_samples_in",)])
        samples_out.add_metric([name], t[("audio_samples_out",)])
        dropped.add_metric([name], t[("audio_dropped",)])
    yield from (samples_in, samples_out, dropped)
    if a.av_offset_known:
        yield GaugeMetricFamily("reactor_audio_video_offset_seconds", "At egress: the sound "
                                "ahead (+) of or behind (-) the video", value=a.av_offset_ms / 1000)


def client_families(s: Scrape) -> Iterator[Metric]:
    snap, st = s.snapshot, s.state
    viewers = snap.session.viewers if snap.HasField("session") else 0
    sender = snap.session.sender if snap.HasField("session") else False
    yield GaugeMetricFamily("reactor_viewers", "WHEP viewers watching", value=float(viewers))
    yield GaugeMetricFamily("reactor_publishers", "WHIP clients sending", value=float(sender))
    yield GaugeMetricFamily("reactor_session_active", "1 while a session runs",
                            value=1.0 if snap.HasField("session") else 0.0)
    yield from fleet_families(s)
    yield CounterMetricFamily("reactor_sessions_started", "Sessions started",
                              value=float(st.sessions_started))
    ended = CounterMetricFamily("reactor_sessions_ended", "Sessions ended, by why: returned "
                                "(start_session returned), stopped (by request), orphaned "
                                "(no clients), input_ended, error (the model raised or a "
                                "limit was hit), worker_died, max_duration "
                                "(session.max_duration_s), drained (the drain's timeout)",
                                labels=["reason"])
    for cause in END_CAUSES:
        ended.add_metric([cause], float(st.sessions_ended[cause]))
    yield ended
    cmds = CounterMetricFamily("reactor_commands", "Model commands answered, by name and "
                               "result (ok, rejected: the client's error, failed)",
                               labels=["command", "result"])
    counts = Counter({(name, result): 0 for name in s.commands for result in COMMAND_RESULTS})
    counts.update(st.commands)
    for (name, result), n in sorted(counts.items()):
        cmds.add_metric([name, result], float(n))
    yield cmds
    http = CounterMetricFamily("reactor_http_requests", "HTTP requests ingress answered, by "
                               "method, route and status", labels=["method", "route", "status"])
    front = st.totals(s.worker("front"))
    for key, n in sorted(front.items(), key=lambda kv: tuple(map(str, kv[0]))):
        if key[0] == "http":
            http.add_metric([str(key[1]), str(key[2]) or "(unmatched)", str(key[3])], n)
    yield http


def fleet_families(s: Scrape) -> Iterator[Metric]:
    """What a fleet's dashboard and autoscaler read: ``sum(reactor_session_capacity) -
    sum(reactor_sessions_active)`` is the fleet's free sessions (never negative: a
    draining or failed daemon's capacity is only the session it still runs)."""
    snap = s.snapshot
    active = 1.0 if snap.HasField("session") else 0.0
    draining = snap.HasField("drain")
    # One session at a time: the model, and its GPU, serve one.
    capacity = active if draining or snap.state in (
        tpb.DAEMON_STATE_FAILED, tpb.DAEMON_STATE_STOPPING) else 1.0
    yield GaugeMetricFamily("reactor_session_capacity", "Sessions this daemon can hold: 1, "
                            "or while draining, failed or stopping only the one it still "
                            "runs (free: this minus reactor_sessions_active)", value=capacity)
    yield GaugeMetricFamily("reactor_sessions_active", "Sessions running (0 or 1)",
                            value=active)
    yield GaugeMetricFamily("reactor_draining", "1 while the daemon drains (no new session; "
                            "it stops when the running one ends)", value=1.0 if draining else 0.0)


def viewer_families(s: Scrape) -> Iterator[Metric]:
    """What each viewer reports of its own side, and its estimated glass-to-glass
    latency: one series per *connected* viewer (label ``viewer``, its WHEP resource id),
    so the label set is bounded by ``server.max_viewers``; a figure the viewer did not
    report has no series."""
    snap = s.snapshot
    viewers = list(snap.session.viewer_stats) if snap.HasField("session") else []
    gauges = [  # (name, help, field, scale)
        ("reactor_viewer_glass_to_glass_seconds", "Estimated glass-to-glass latency of each "
         "viewer: server stages (p50) + half its round trip + its jitter buffer, decode "
         "and render",
         "glass_to_glass_ms", 1e-3),
        ("reactor_viewer_jitter_buffer_seconds", "Mean jitter-buffer delay each viewer "
         "reports over its last second", "jitter_buffer_ms", 1e-3),
        ("reactor_viewer_round_trip_seconds", "Round-trip time to each viewer (its own, "
         "else egress's RTCP measure)", "rtt_ms", 1e-3),
        ("reactor_viewer_decode_seconds", "Mean decode time a frame each viewer reports",
         "decode_ms", 1e-3),
        ("reactor_viewer_render_seconds", "Mean time from decoded to shown each viewer "
         "reports (browsers)", "render_ms", 1e-3),
        ("reactor_viewer_frames_per_second", "Frames a second each viewer decodes", "fps",
         1.0),
        # Bytes, as Prometheus's conventions (promtool) want; kbit/s * 125 = bytes/s.
        ("reactor_viewer_estimate_bytes_per_second", "Egress's bandwidth estimate of the "
         "path to each viewer (REMB and receiver-report loss)", "estimate_kbps", 125.0),
        ("reactor_viewer_loss_ratio", "Fraction lost in each viewer's last RTCP receiver "
         "report", "loss", 1.0),
        ("reactor_viewer_encoder_bytes_per_second", "The rate the encoder each viewer "
         "watches runs at", "bitrate_kbps", 125.0),
        ("reactor_viewer_rendition", "The rung of egress.renditions each viewer is sent "
         "(0: the full size)", "rendition", 1.0),
        ("reactor_viewer_sent_height_pixels", "The height of the picture each viewer is "
         "sent (its rendition's)", "sent_height", 1.0),
    ]
    for name, doc, fld, scale in gauges:
        g = GaugeMetricFamily(name, doc, labels=["viewer"])
        for v in viewers:
            if v.HasField(fld):
                g.add_metric([v.id], getattr(v, fld) * scale)
        yield g
    counters = [
        ("reactor_viewer_frames_decoded", "Frames each viewer reports it decoded",
         "frames_decoded"),
        ("reactor_viewer_frames_dropped", "Frames each viewer reports it dropped",
         "frames_dropped"),
        ("reactor_viewer_freezes", "Video freezes each viewer reports", "freeze_count"),
    ]
    for name, doc, fld in counters:
        c = CounterMetricFamily(name, doc, labels=["viewer"])
        for v in viewers:
            if v.HasField(fld):
                c.add_metric([v.id], float(getattr(v, fld)))
        yield c
    rejected = CounterMetricFamily("reactor_viewer_reports_rejected", "Stats reports egress "
                                   "ignored from each viewer (malformed, out of range, too "
                                   "many)", labels=["viewer"])
    age = GaugeMetricFamily("reactor_viewer_report_age_seconds", "Time since each viewer's "
                            "last valid stats report", labels=["viewer"])
    for v in viewers:
        rejected.add_metric([v.id], float(v.rejected))
        if v.age_s >= 0:
            age.add_metric([v.id], v.age_s)
    yield from (rejected, age)


#: Every family ``/metrics`` exports, in page order. Add a function to add series.
FAMILIES: list[Family] = [daemon_families, worker_families, pipeline_families,
                          audio_families, client_families, viewer_families, gpu_families]


class ReactorCollector(Collector):
    """The daemon's metric families, from a fresh :class:`Scrape` each collection."""

    def __init__(self, scrape: Callable[[], Scrape],
                 families: Iterable[Family] | None = None) -> None:
        self._scrape = scrape
        self._families = families

    def collect(self) -> Iterator[Metric]:
        s = self._scrape()
        for family in (FAMILIES if self._families is None else self._families):
            yield from family(s)


def make_registry(scrape: Callable[[], Scrape]) -> CollectorRegistry:
    """A private registry (never the global one) holding the daemon's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReactorCollector(scrape))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The exposition: Prometheus text format 0.0.4 (:data:`CONTENT_TYPE`)."""
    return generate_latest(registry)


def timed_render(registry: CollectorRegistry) -> tuple[bytes, float]:
    """The exposition and the seconds it took to render."""
    t0 = time.perf_counter()
    text = render(registry)
    return text, time.perf_counter() - t0
