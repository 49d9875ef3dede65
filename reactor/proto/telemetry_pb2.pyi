from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DaemonState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DAEMON_STATE_UNSPECIFIED: _ClassVar[DaemonState]
    DAEMON_STATE_STARTING: _ClassVar[DaemonState]
    DAEMON_STATE_RUNNING: _ClassVar[DaemonState]
    DAEMON_STATE_DEGRADED: _ClassVar[DaemonState]
    DAEMON_STATE_STOPPING: _ClassVar[DaemonState]
    DAEMON_STATE_FAILED: _ClassVar[DaemonState]

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNSPECIFIED: _ClassVar[WorkerState]
    WORKER_STATE_STARTING: _ClassVar[WorkerState]
    WORKER_STATE_RUNNING: _ClassVar[WorkerState]
    WORKER_STATE_RESTARTING: _ClassVar[WorkerState]
    WORKER_STATE_STOPPED: _ClassVar[WorkerState]
    WORKER_STATE_FAILED: _ClassVar[WorkerState]

class SessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATE_UNSPECIFIED: _ClassVar[SessionState]
    SESSION_STATE_STARTING: _ClassVar[SessionState]
    SESSION_STATE_LIVE: _ClassVar[SessionState]
    SESSION_STATE_ENDING: _ClassVar[SessionState]
DAEMON_STATE_UNSPECIFIED: DaemonState
DAEMON_STATE_STARTING: DaemonState
DAEMON_STATE_RUNNING: DaemonState
DAEMON_STATE_DEGRADED: DaemonState
DAEMON_STATE_STOPPING: DaemonState
DAEMON_STATE_FAILED: DaemonState
WORKER_STATE_UNSPECIFIED: WorkerState
WORKER_STATE_STARTING: WorkerState
WORKER_STATE_RUNNING: WorkerState
WORKER_STATE_RESTARTING: WorkerState
WORKER_STATE_STOPPED: WorkerState
WORKER_STATE_FAILED: WorkerState
SESSION_STATE_UNSPECIFIED: SessionState
SESSION_STATE_STARTING: SessionState
SESSION_STATE_LIVE: SessionState
SESSION_STATE_ENDING: SessionState

class LatencyStat(_message.Message):
    __slots__ = ("stage", "p50_ms", "p99_ms", "count", "buckets", "sum_ms", "window_count")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    SUM_MS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_COUNT_FIELD_NUMBER: _ClassVar[int]
    stage: str
    p50_ms: float
    p99_ms: float
    count: int
    buckets: _containers.RepeatedScalarFieldContainer[int]
    sum_ms: float
    window_count: int
    def __init__(self, stage: _Optional[str] = ..., p50_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., count: _Optional[int] = ..., buckets: _Optional[_Iterable[int]] = ..., sum_ms: _Optional[float] = ..., window_count: _Optional[int] = ...) -> None: ...

class RingStat(_message.Message):
    __slots__ = ("name", "slots", "used", "dropped", "policy", "written")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    slots: int
    used: int
    dropped: int
    policy: str
    written: int
    def __init__(self, name: _Optional[str] = ..., slots: _Optional[int] = ..., used: _Optional[int] = ..., dropped: _Optional[int] = ..., policy: _Optional[str] = ..., written: _Optional[int] = ...) -> None: ...

class WorkerStat(_message.Message):
    __slots__ = ("name", "pid", "state", "restarts", "cpu_percent", "rss_bytes", "uptime_s", "heartbeat_age_s", "last_error", "frames_in", "frames_out")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    FRAMES_IN_FIELD_NUMBER: _ClassVar[int]
    FRAMES_OUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    pid: int
    state: WorkerState
    restarts: int
    cpu_percent: float
    rss_bytes: int
    uptime_s: float
    heartbeat_age_s: float
    last_error: str
    frames_in: int
    frames_out: int
    def __init__(self, name: _Optional[str] = ..., pid: _Optional[int] = ..., state: _Optional[_Union[WorkerState, str]] = ..., restarts: _Optional[int] = ..., cpu_percent: _Optional[float] = ..., rss_bytes: _Optional[int] = ..., uptime_s: _Optional[float] = ..., heartbeat_age_s: _Optional[float] = ..., last_error: _Optional[str] = ..., frames_in: _Optional[int] = ..., frames_out: _Optional[int] = ...) -> None: ...

class CommandLog(_message.Message):
    __slots__ = ("ts", "name", "args_json", "ok", "result")
    TS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ts: float
    name: str
    args_json: str
    ok: bool
    result: str
    def __init__(self, ts: _Optional[float] = ..., name: _Optional[str] = ..., args_json: _Optional[str] = ..., ok: _Optional[bool] = ..., result: _Optional[str] = ...) -> None: ...

class ViewerStat(_message.Message):
    __slots__ = ("id", "codec", "connected_s", "agent", "age_s", "jitter_buffer_ms", "frames_decoded", "frames_dropped", "freeze_count", "freeze_s", "rtt_ms", "decode_ms", "width", "height", "fps", "reports", "rejected", "glass_to_glass_ms", "rtt_source", "render_ms", "estimate_kbps", "loss", "remb_kbps", "bitrate_kbps", "max_kbps", "rendition", "sent_width", "sent_height")
    ID_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_S_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    AGE_S_FIELD_NUMBER: _ClassVar[int]
    JITTER_BUFFER_MS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DECODED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    FREEZE_COUNT_FIELD_NUMBER: _ClassVar[int]
    FREEZE_S_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    GLASS_TO_GLASS_MS_FIELD_NUMBER: _ClassVar[int]
    RTT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    RENDER_MS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_KBPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    REMB_KBPS_FIELD_NUMBER: _ClassVar[int]
    BITRATE_KBPS_FIELD_NUMBER: _ClassVar[int]
    MAX_KBPS_FIELD_NUMBER: _ClassVar[int]
    RENDITION_FIELD_NUMBER: _ClassVar[int]
    SENT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    SENT_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    id: str
    codec: str
    connected_s: float
    agent: str
    age_s: float
    jitter_buffer_ms: float
    frames_decoded: int
    frames_dropped: int
    freeze_count: int
    freeze_s: float
    rtt_ms: float
    decode_ms: float
    width: int
    height: int
    fps: float
    reports: int
    rejected: int
    glass_to_glass_ms: float
    rtt_source: str
    render_ms: float
    estimate_kbps: float
    loss: float
    remb_kbps: float
    bitrate_kbps: float
    max_kbps: float
    rendition: int
    sent_width: int
    sent_height: int
    def __init__(self, id: _Optional[str] = ..., codec: _Optional[str] = ..., connected_s: _Optional[float] = ..., agent: _Optional[str] = ..., age_s: _Optional[float] = ..., jitter_buffer_ms: _Optional[float] = ..., frames_decoded: _Optional[int] = ..., frames_dropped: _Optional[int] = ..., freeze_count: _Optional[int] = ..., freeze_s: _Optional[float] = ..., rtt_ms: _Optional[float] = ..., decode_ms: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[float] = ..., reports: _Optional[int] = ..., rejected: _Optional[int] = ..., glass_to_glass_ms: _Optional[float] = ..., rtt_source: _Optional[str] = ..., render_ms: _Optional[float] = ..., estimate_kbps: _Optional[float] = ..., loss: _Optional[float] = ..., remb_kbps: _Optional[float] = ..., bitrate_kbps: _Optional[float] = ..., max_kbps: _Optional[float] = ..., rendition: _Optional[int] = ..., sent_width: _Optional[int] = ..., sent_height: _Optional[int] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("id", "state", "duration_s", "viewers", "sender", "commands", "frames_emitted", "viewer_stats", "ends_in_s")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_EMITTED_FIELD_NUMBER: _ClassVar[int]
    VIEWER_STATS_FIELD_NUMBER: _ClassVar[int]
    ENDS_IN_S_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: SessionState
    duration_s: float
    viewers: int
    sender: bool
    commands: _containers.RepeatedCompositeFieldContainer[CommandLog]
    frames_emitted: int
    viewer_stats: _containers.RepeatedCompositeFieldContainer[ViewerStat]
    ends_in_s: float
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[SessionState, str]] = ..., duration_s: _Optional[float] = ..., viewers: _Optional[int] = ..., sender: _Optional[bool] = ..., commands: _Optional[_Iterable[_Union[CommandLog, _Mapping]]] = ..., frames_emitted: _Optional[int] = ..., viewer_stats: _Optional[_Iterable[_Union[ViewerStat, _Mapping]]] = ..., ends_in_s: _Optional[float] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("ts", "process", "level", "message")
    TS_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ts: float
    process: str
    level: str
    message: str
    def __init__(self, ts: _Optional[float] = ..., process: _Optional[str] = ..., level: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class AudioStat(_message.Message):
    __slots__ = ("input", "output", "rate_in_hz", "rate_out_hz", "dropped", "av_offset_ms", "av_offset_known")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    RATE_IN_HZ_FIELD_NUMBER: _ClassVar[int]
    RATE_OUT_HZ_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    AV_OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    AV_OFFSET_KNOWN_FIELD_NUMBER: _ClassVar[int]
    input: bool
    output: bool
    rate_in_hz: float
    rate_out_hz: float
    dropped: int
    av_offset_ms: float
    av_offset_known: bool
    def __init__(self, input: _Optional[bool] = ..., output: _Optional[bool] = ..., rate_in_hz: _Optional[float] = ..., rate_out_hz: _Optional[float] = ..., dropped: _Optional[int] = ..., av_offset_ms: _Optional[float] = ..., av_offset_known: _Optional[bool] = ...) -> None: ...

class PipelineStat(_message.Message):
    __slots__ = ("fps_in", "fps_model", "fps_out", "target_fps", "latency", "rings", "encoders_active", "fps_history", "audio", "warnings")
    FPS_IN_FIELD_NUMBER: _ClassVar[int]
    FPS_MODEL_FIELD_NUMBER: _ClassVar[int]
    FPS_OUT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FPS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    RINGS_FIELD_NUMBER: _ClassVar[int]
    ENCODERS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    FPS_HISTORY_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    fps_in: float
    fps_model: float
    fps_out: float
    target_fps: float
    latency: _containers.RepeatedCompositeFieldContainer[LatencyStat]
    rings: _containers.RepeatedCompositeFieldContainer[RingStat]
    encoders_active: int
    fps_history: _containers.RepeatedScalarFieldContainer[float]
    audio: AudioStat
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, fps_in: _Optional[float] = ..., fps_model: _Optional[float] = ..., fps_out: _Optional[float] = ..., target_fps: _Optional[float] = ..., latency: _Optional[_Iterable[_Union[LatencyStat, _Mapping]]] = ..., rings: _Optional[_Iterable[_Union[RingStat, _Mapping]]] = ..., encoders_active: _Optional[int] = ..., fps_history: _Optional[_Iterable[float]] = ..., audio: _Optional[_Union[AudioStat, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("state", "pid", "uptime_s", "ts", "config_path", "model", "url", "run_dir", "workers", "pipeline", "session", "logs", "error", "gpu_stat", "applied", "drain", "session_ends")
    class SessionEndsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_PATH_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    RUN_DIR_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    GPU_STAT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    SESSION_ENDS_FIELD_NUMBER: _ClassVar[int]
    state: DaemonState
    pid: int
    uptime_s: float
    ts: float
    config_path: str
    model: str
    url: str
    run_dir: str
    workers: _containers.RepeatedCompositeFieldContainer[WorkerStat]
    pipeline: PipelineStat
    session: SessionInfo
    logs: _containers.RepeatedCompositeFieldContainer[LogLine]
    error: str
    gpu_stat: GpuStat
    applied: _containers.RepeatedCompositeFieldContainer[CommandLog]
    drain: DrainStat
    session_ends: _containers.ScalarMap[str, int]
    def __init__(self, state: _Optional[_Union[DaemonState, str]] = ..., pid: _Optional[int] = ..., uptime_s: _Optional[float] = ..., ts: _Optional[float] = ..., config_path: _Optional[str] = ..., model: _Optional[str] = ..., url: _Optional[str] = ..., run_dir: _Optional[str] = ..., workers: _Optional[_Iterable[_Union[WorkerStat, _Mapping]]] = ..., pipeline: _Optional[_Union[PipelineStat, _Mapping]] = ..., session: _Optional[_Union[SessionInfo, _Mapping]] = ..., logs: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ..., error: _Optional[str] = ..., gpu_stat: _Optional[_Union[GpuStat, _Mapping]] = ..., applied: _Optional[_Iterable[_Union[CommandLog, _Mapping]]] = ..., drain: _Optional[_Union[DrainStat, _Mapping]] = ..., session_ends: _Optional[_Mapping[str, int]] = ...) -> None: ...

class DrainStat(_message.Message):
    __slots__ = ("since_s", "timeout_s", "left_s", "why")
    SINCE_S_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    LEFT_S_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    since_s: float
    timeout_s: float
    left_s: float
    why: str
    def __init__(self, since_s: _Optional[float] = ..., timeout_s: _Optional[float] = ..., left_s: _Optional[float] = ..., why: _Optional[str] = ...) -> None: ...

class GpuStat(_message.Message):
    __slots__ = ("device", "ring", "index", "device_name", "encoder_plan", "encoder", "encoder_fallback", "reason", "telemetry", "telemetry_reason", "devices")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    RING_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    ENCODER_PLAN_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_REASON_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    device: str
    ring: str
    index: int
    device_name: str
    encoder_plan: str
    encoder: str
    encoder_fallback: str
    reason: str
    telemetry: bool
    telemetry_reason: str
    devices: _containers.RepeatedCompositeFieldContainer[GpuDeviceStat]
    def __init__(self, device: _Optional[str] = ..., ring: _Optional[str] = ..., index: _Optional[int] = ..., device_name: _Optional[str] = ..., encoder_plan: _Optional[str] = ..., encoder: _Optional[str] = ..., encoder_fallback: _Optional[str] = ..., reason: _Optional[str] = ..., telemetry: _Optional[bool] = ..., telemetry_reason: _Optional[str] = ..., devices: _Optional[_Iterable[_Union[GpuDeviceStat, _Mapping]]] = ...) -> None: ...

class GpuDeviceStat(_message.Message):
    __slots__ = ("index", "name", "utilization_ratio", "memory_used_bytes", "memory_total_bytes", "encoder_sessions", "encoder_utilization_ratio")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_RATIO_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    ENCODER_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    ENCODER_UTILIZATION_RATIO_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    utilization_ratio: float
    memory_used_bytes: int
    memory_total_bytes: int
    encoder_sessions: int
    encoder_utilization_ratio: float
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., utilization_ratio: _Optional[float] = ..., memory_used_bytes: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., encoder_sessions: _Optional[int] = ..., encoder_utilization_ratio: _Optional[float] = ...) -> None: ...
