from reactor.proto import telemetry_pb2 as _telemetry_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Error(_message.Message):
    __slots__ = ("message", "field", "status")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    message: str
    field: str
    status: int
    def __init__(self, message: _Optional[str] = ..., field: _Optional[str] = ..., status: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RestartWorkerRequest(_message.Message):
    __slots__ = ("worker",)
    WORKER_FIELD_NUMBER: _ClassVar[int]
    worker: str
    def __init__(self, worker: _Optional[str] = ...) -> None: ...

class SchemaRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MetricsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("timeout_s",)
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    timeout_s: float
    def __init__(self, timeout_s: _Optional[float] = ...) -> None: ...

class CommandRequest(_message.Message):
    __slots__ = ("name", "args_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    args_json: str
    def __init__(self, name: _Optional[str] = ..., args_json: _Optional[str] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("action", "reason", "session_id")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        START: _ClassVar[SessionRequest.Action]
        STOP: _ClassVar[SessionRequest.Action]
    START: SessionRequest.Action
    STOP: SessionRequest.Action
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    action: SessionRequest.Action
    reason: str
    session_id: str
    def __init__(self, action: _Optional[_Union[SessionRequest.Action, str]] = ..., reason: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class WhepRequest(_message.Message):
    __slots__ = ("resource_id", "sdp", "close")
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    SDP_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    resource_id: str
    sdp: str
    close: bool
    def __init__(self, resource_id: _Optional[str] = ..., sdp: _Optional[str] = ..., close: _Optional[bool] = ...) -> None: ...

class Request(_message.Message):
    __slots__ = ("id", "status", "stop", "restart_worker", "command", "session", "schema", "whep", "metrics", "drain")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    RESTART_WORKER_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    WHEP_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    id: int
    status: StatusRequest
    stop: StopRequest
    restart_worker: RestartWorkerRequest
    command: CommandRequest
    session: SessionRequest
    schema: SchemaRequest
    whep: WhepRequest
    metrics: MetricsRequest
    drain: DrainRequest
    def __init__(self, id: _Optional[int] = ..., status: _Optional[_Union[StatusRequest, _Mapping]] = ..., stop: _Optional[_Union[StopRequest, _Mapping]] = ..., restart_worker: _Optional[_Union[RestartWorkerRequest, _Mapping]] = ..., command: _Optional[_Union[CommandRequest, _Mapping]] = ..., session: _Optional[_Union[SessionRequest, _Mapping]] = ..., schema: _Optional[_Union[SchemaRequest, _Mapping]] = ..., whep: _Optional[_Union[WhepRequest, _Mapping]] = ..., metrics: _Optional[_Union[MetricsRequest, _Mapping]] = ..., drain: _Optional[_Union[DrainRequest, _Mapping]] = ...) -> None: ...

class WhepReply(_message.Message):
    __slots__ = ("resource_id", "sdp", "codec")
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    SDP_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    resource_id: str
    sdp: str
    codec: str
    def __init__(self, resource_id: _Optional[str] = ..., sdp: _Optional[str] = ..., codec: _Optional[str] = ...) -> None: ...

class CommandReply(_message.Message):
    __slots__ = ("result_json",)
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    result_json: str
    def __init__(self, result_json: _Optional[str] = ...) -> None: ...

class SessionReply(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class SchemaReply(_message.Message):
    __slots__ = ("schema_json",)
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    schema_json: str
    def __init__(self, schema_json: _Optional[str] = ...) -> None: ...

class MetricsReply(_message.Message):
    __slots__ = ("text", "content_type")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    text: bytes
    content_type: str
    def __init__(self, text: _Optional[bytes] = ..., content_type: _Optional[str] = ...) -> None: ...

class Ok(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Reply(_message.Message):
    __slots__ = ("id", "error", "status", "ok", "command", "session", "schema", "whep", "metrics")
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    WHEP_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    id: int
    error: Error
    status: _telemetry_pb2.Snapshot
    ok: Ok
    command: CommandReply
    session: SessionReply
    schema: SchemaReply
    whep: WhepReply
    metrics: MetricsReply
    def __init__(self, id: _Optional[int] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., status: _Optional[_Union[_telemetry_pb2.Snapshot, _Mapping]] = ..., ok: _Optional[_Union[Ok, _Mapping]] = ..., command: _Optional[_Union[CommandReply, _Mapping]] = ..., session: _Optional[_Union[SessionReply, _Mapping]] = ..., schema: _Optional[_Union[SchemaReply, _Mapping]] = ..., whep: _Optional[_Union[WhepReply, _Mapping]] = ..., metrics: _Optional[_Union[MetricsReply, _Mapping]] = ...) -> None: ...
