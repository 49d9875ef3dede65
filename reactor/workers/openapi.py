"""How the HTTP route table becomes an OpenAPI 3.1 document.

The routes themselves (method, path, handler, and the :class:`Operation` that documents
each one) are one table in :mod:`reactor.workers.http`; the same table registers the
aiohttp routes and, through :func:`build_document`, makes ``/api/openapi.json`` and the
docs' HTTP reference. This module holds only what the table's entries share: the
response shapes and the document's frame. It imports nothing of the workers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from reactor import __version__
from reactor.config import AudioSection

__all__ = ["ANY_JSON", "ERROR", "ICE_OPTIONS", "MODEL_SCHEMA", "SDP_BODY", "SDP_CREATED",
           "DocumentedRoute", "Operation", "audio_schema", "build_document"]

ERROR: dict[str, Any] = {
    "description": "a refusal, with a reason",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
SDP_BODY: dict[str, Any] = {
    "required": True, "content": {"application/sdp": {"schema": {"type": "string"}}}}
_LINK = {
    "description": 'One value per URL of server.ice_servers (RFC 9725 §4.6): '
    '`<stun:host:port>; rel="ice-server"`, and for a server with credentials '
    '`; username="..."; credential="..."; credential-type="password"` (quoted strings, '
    '`"` and `\\` escaped; a value that is not printable ASCII as `username*=UTF-8\'\'%..`, '
    "RFC 8187). Absent when no server is configured.",
    "schema": {"type": "string"},
}
SDP_CREATED: dict[str, Any] = {
    "description": "the answer; Location (relative) names the resource to DELETE",
    "headers": {"Location": {"schema": {"type": "string"}}, "Link": _LINK},
    "content": {"application/sdp": {"schema": {"type": "string"}}},
}
ICE_OPTIONS: dict[str, Any] = {
    "description": "the ICE servers, for a client that needs them before it makes its offer",
    "headers": {"Link": _LINK},
}
ANY_JSON: dict[str, Any] = {"content": {"application/json": {"schema": {"type": "object"}}}}
MODEL_SCHEMA: dict[str, Any] = {
    "description": "the model's name, video format, audio and commands",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ModelSchema"}}},
}
_MODEL_SCHEMA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["model", "video", "audio", "commands"],
    "properties": {
        "model": {"type": "string"},
        "video": {"type": "object", "required": ["width", "height", "fps"], "properties": {
            "width": {"type": "integer"}, "height": {"type": "integer"},
            "fps": {"type": "integer"}}},
        "audio": {
            "type": "object", "required": ["output", "input", "sample_rate", "channels"],
            "properties": {
                "output": {"type": "boolean", "description":
                           "the model speaks: WHEP answers carry an Opus audio track"},
                "input": {"type": "boolean", "description":
                          "the model listens: the audio a WHIP client sends reaches it"},
                "sample_rate": {"type": "integer", "enum": [16000, 24000, 44100, 48000],
                                "description": "the rate the model works in (Opus on the "
                                "wire is 48 kHz)"},
                "channels": {"type": "integer", "enum": [1, 2]},
            }},
        "commands": {"type": "array", "items": {"type": "object", "required": [
            "name", "parameters"], "properties": {
                "name": {"type": "string"}, "description": {"type": "string"},
                "parameters": {"type": "object", "description": "JSON Schema"}}}},
    },
}

_PATH_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Operation:
    """The OpenAPI description of one route.

    Path parameters (``{id}``) are described from the path itself. ``per_command`` marks
    the command route: the document has one operation per command of the loaded model,
    its path's ``{name}`` replaced by the command's name and its request body the
    command's JSON Schema.
    """

    summary: str
    responses: Mapping[str, Any]
    parameters: tuple[Mapping[str, Any], ...] = ()
    request_body: Mapping[str, Any] | None = None
    per_command: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


class DocumentedRoute(Protocol):
    """What :func:`build_document` reads of a route table's entry."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def doc(self) -> Operation | None: ...
    @property
    def public(self) -> bool: ...


def _operation(route: DocumentedRoute, op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "responses": dict(op.responses)}
    if route.public:
        out["security"] = []
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in _PATH_PARAM.findall(route.path)]
    params += [dict(p) for p in op.parameters]
    if params:
        out["parameters"] = params
    if op.request_body is not None:
        out["requestBody"] = dict(op.request_body)
    out.update(op.extra)
    return out


def _command_operations(route: DocumentedRoute, op: Operation,
                        commands: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for cmd in commands:
        path = _PATH_PARAM.sub(str(cmd["name"]), route.path, count=1)
        paths[path] = {route.method.lower(): {
            "summary": cmd.get("description") or cmd["name"],
            "responses": dict(op.responses),
            "operationId": f"command_{cmd['name']}",
            "requestBody": {"required": False,
                            "content": {"application/json": {"schema": cmd["parameters"]}}},
        }}
    return paths


def audio_schema(audio: AudioSection) -> dict[str, Any]:
    """The ``audio`` object of ``/api/schema``: whether the model speaks (``output``: WHEP
    answers carry its sound) and listens (``input``: it hears what WHIP clients send), and
    the rate and channels it works in (WebRTC carries Opus at 48 kHz either way)."""
    return {"output": audio.output, "input": audio.input, "sample_rate": audio.sample_rate,
            "channels": audio.channels}


def _audio_text(audio: Mapping[str, Any]) -> str:
    fmt = f"{audio.get('sample_rate')} Hz, {audio.get('channels')} channel(s)"
    speaks = "speaks (WHEP answers carry its sound)" if audio.get("output") else \
        "does not speak (no audio track)"
    listens = "listens (send sound with WHIP)" if audio.get("input") else \
        "does not listen (sound sent with WHIP is ignored)"
    return f"The model {speaks} and {listens}; it works in {fmt}. " \
        "The same is in GET /api/schema under `audio` (info.x-reactor-audio here)."


def build_document(routes: Iterable[DocumentedRoute],
                   model_schema: Mapping[str, Any]) -> dict[str, Any]:
    """The document of the documented ``routes`` (those with a ``doc``), for a model whose
    ``/api/schema`` is ``model_schema``."""
    paths: dict[str, Any] = {}
    for route in routes:
        op = route.doc
        if op is None:
            continue
        if op.per_command:
            paths.update(_command_operations(route, op, model_schema.get("commands", [])))
        else:
            paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, op)
    info: dict[str, Any] = {"title": f"reactor: {model_schema.get('model', 'model')}",
                            "version": __version__}
    audio = model_schema.get("audio")
    if audio is not None:
        info["description"] = _audio_text(audio)
        info["x-reactor-audio"] = dict(audio)
    return {
        "openapi": "3.1.0",
        "info": info,
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string"}, "field": {"type": "string"}}},
                "ModelSchema": _MODEL_SCHEMA_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
