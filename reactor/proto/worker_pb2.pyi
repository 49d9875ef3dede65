from reactor.proto import control_pb2 as _control_pb2
from reactor.proto import telemetry_pb2 as _telemetry_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerStats(_message.Message):
    __slots__ = ("frames_in", "frames_out", "cpu_percent", "rss_bytes", "latency", "viewers", "encoders_active", "sender", "frames_emitted", "finished", "audio_samples_in", "audio_samples_out", "audio_dropped", "av_offset_ms", "av_offset_known", "awaiting_input", "http_requests", "viewer_stats", "frames_dropped_viewers", "encoder", "encoder_fallback")
    FRAMES_IN_FIELD_NUMBER: _ClassVar[int]
    FRAMES_OUT_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    ENCODERS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    FRAMES_EMITTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SAMPLES_IN_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SAMPLES_OUT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_DROPPED_FIELD_NUMBER: _ClassVar[int]
    AV_OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    AV_OFFSET_KNOWN_FIELD_NUMBER: _ClassVar[int]
    AWAITING_INPUT_FIELD_NUMBER: _ClassVar[int]
    HTTP_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    VIEWER_STATS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DROPPED_VIEWERS_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    frames_in: int
    frames_out: int
    cpu_percent: float
    rss_bytes: int
    latency: _containers.RepeatedCompositeFieldContainer[_telemetry_pb2.LatencyStat]
    viewers: int
    encoders_active: int
    sender: bool
    frames_emitted: int
    finished: bool
    audio_samples_in: int
    audio_samples_out: int
    audio_dropped: int
    av_offset_ms: float
    av_offset_known: bool
    awaiting_input: bool
    http_requests: _containers.RepeatedCompositeFieldContainer[HttpCount]
    viewer_stats: _containers.RepeatedCompositeFieldContainer[_telemetry_pb2.ViewerStat]
    frames_dropped_viewers: int
    encoder: str
    encoder_fallback: str
    def __init__(self, frames_in: _Optional[int] = ..., frames_out: _Optional[int] = ..., cpu_percent: _Optional[float] = ..., rss_bytes: _Optional[int] = ..., latency: _Optional[_Iterable[_Union[_telemetry_pb2.LatencyStat, _Mapping]]] = ..., viewers: _Optional[int] = ..., encoders_active: _Optional[int] = ..., sender: _Optional[bool] = ..., frames_emitted: _Optional[int] = ..., finished: _Optional[bool] = ..., audio_samples_in: _Optional[int] = ..., audio_samples_out: _Optional[int] = ..., audio_dropped: _Optional[int] = ..., av_offset_ms: _Optional[float] = ..., av_offset_known: _Optional[bool] = ..., awaiting_input: _Optional[bool] = ..., http_requests: _Optional[_Iterable[_Union[HttpCount, _Mapping]]] = ..., viewer_stats: _Optional[_Iterable[_Union[_telemetry_pb2.ViewerStat, _Mapping]]] = ..., frames_dropped_viewers: _Optional[int] = ..., encoder: _Optional[str] = ..., encoder_fallback: _Optional[str] = ...) -> None: ...

class HttpCount(_message.Message):
    __slots__ = ("method", "route", "status", "count")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    method: str
    route: str
    status: int
    count: int
    def __init__(self, method: _Optional[str] = ..., route: _Optional[str] = ..., status: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class SessionEvent(_message.Message):
    __slots__ = ("kind", "session_id", "reason", "json", "ts")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STARTED: _ClassVar[SessionEvent.Kind]
        ENDED: _ClassVar[SessionEvent.Kind]
        MESSAGE: _ClassVar[SessionEvent.Kind]
        ERROR: _ClassVar[SessionEvent.Kind]
        WORKER: _ClassVar[SessionEvent.Kind]
        VIEWER: _ClassVar[SessionEvent.Kind]
        WARNING: _ClassVar[SessionEvent.Kind]
        COMMAND: _ClassVar[SessionEvent.Kind]
        DRAINING: _ClassVar[SessionEvent.Kind]
        ENDING: _ClassVar[SessionEvent.Kind]
    STARTED: SessionEvent.Kind
    ENDED: SessionEvent.Kind
    MESSAGE: SessionEvent.Kind
    ERROR: SessionEvent.Kind
    WORKER: SessionEvent.Kind
    VIEWER: SessionEvent.Kind
    WARNING: SessionEvent.Kind
    COMMAND: SessionEvent.Kind
    DRAINING: SessionEvent.Kind
    ENDING: SessionEvent.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    kind: SessionEvent.Kind
    session_id: str
    reason: str
    json: str
    ts: float
    def __init__(self, kind: _Optional[_Union[SessionEvent.Kind, str]] = ..., session_id: _Optional[str] = ..., reason: _Optional[str] = ..., json: _Optional[str] = ..., ts: _Optional[float] = ...) -> None: ...

class IngressReady(_message.Message):
    __slots__ = ("host", "port")
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    host: str
    port: int
    def __init__(self, host: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class InferenceReady(_message.Message):
    __slots__ = ("schema_json",)
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    schema_json: str
    def __init__(self, schema_json: _Optional[str] = ...) -> None: ...

class EgressReady(_message.Message):
    __slots__ = ("codec",)
    CODEC_FIELD_NUMBER: _ClassVar[int]
    codec: str
    def __init__(self, codec: _Optional[str] = ...) -> None: ...

class SourceReady(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class SinkReady(_message.Message):
    __slots__ = ("recording",)
    RECORDING_FIELD_NUMBER: _ClassVar[int]
    recording: bool
    def __init__(self, recording: _Optional[bool] = ...) -> None: ...

class Ready(_message.Message):
    __slots__ = ("ingress", "inference", "egress", "source", "sink")
    INGRESS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SINK_FIELD_NUMBER: _ClassVar[int]
    ingress: IngressReady
    inference: InferenceReady
    egress: EgressReady
    source: SourceReady
    sink: SinkReady
    def __init__(self, ingress: _Optional[_Union[IngressReady, _Mapping]] = ..., inference: _Optional[_Union[InferenceReady, _Mapping]] = ..., egress: _Optional[_Union[EgressReady, _Mapping]] = ..., source: _Optional[_Union[SourceReady, _Mapping]] = ..., sink: _Optional[_Union[SinkReady, _Mapping]] = ...) -> None: ...

class ClientCount(_message.Message):
    __slots__ = ("viewers", "sender")
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    viewers: int
    sender: bool
    def __init__(self, viewers: _Optional[int] = ..., sender: _Optional[bool] = ...) -> None: ...

class FromWorker(_message.Message):
    __slots__ = ("worker", "pid", "reply_to", "ready", "heartbeat", "fatal", "event", "reply", "request", "log", "clients")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    FATAL_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    worker: str
    pid: int
    reply_to: int
    ready: Ready
    heartbeat: WorkerStats
    fatal: str
    event: SessionEvent
    reply: _control_pb2.Reply
    request: _control_pb2.Request
    log: _telemetry_pb2.LogLine
    clients: ClientCount
    def __init__(self, worker: _Optional[str] = ..., pid: _Optional[int] = ..., reply_to: _Optional[int] = ..., ready: _Optional[_Union[Ready, _Mapping]] = ..., heartbeat: _Optional[_Union[WorkerStats, _Mapping]] = ..., fatal: _Optional[str] = ..., event: _Optional[_Union[SessionEvent, _Mapping]] = ..., reply: _Optional[_Union[_control_pb2.Reply, _Mapping]] = ..., request: _Optional[_Union[_control_pb2.Request, _Mapping]] = ..., log: _Optional[_Union[_telemetry_pb2.LogLine, _Mapping]] = ..., clients: _Optional[_Union[ClientCount, _Mapping]] = ...) -> None: ...

class ToWorker(_message.Message):
    __slots__ = ("id", "stop", "request", "event", "reply")
    ID_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    id: int
    stop: str
    request: _control_pb2.Request
    event: SessionEvent
    reply: _control_pb2.Reply
    def __init__(self, id: _Optional[int] = ..., stop: _Optional[str] = ..., request: _Optional[_Union[_control_pb2.Request, _Mapping]] = ..., event: _Optional[_Union[SessionEvent, _Mapping]] = ..., reply: _Optional[_Union[_control_pb2.Reply, _Mapping]] = ...) -> None: ...
