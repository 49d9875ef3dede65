"""The OpenAPI 3.1 document of the HTTP API, with the loaded model's commands."""

from __future__ import annotations

from typing import Any

from reactor import __version__

_ERROR = {
    "description": "a refusal, with a reason",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_SDP_BODY = {"required": True, "content": {"application/sdp": {"schema": {"type": "string"}}}}
_LINK = {
    "description": 'One value per URL of server.ice_servers (RFC 9725 §4.6): '
    '`<stun:host:port>; rel="ice-server"`, and for a server with credentials '
    '`; username="..."; credential="..."; credential-type="password"` (quoted strings, '
    '`"` and `\\` escaped; a value that is not printable ASCII as `username*=UTF-8\'\'%..`, '
    "RFC 8187). Absent when no server is configured.",
    "schema": {"type": "string"},
}
_SDP_CREATED = {
    "description": "the answer; Location (relative) names the resource to DELETE",
    "headers": {"Location": {"schema": {"type": "string"}}, "Link": _LINK},
    "content": {"application/sdp": {"schema": {"type": "string"}}},
}
_ICE_OPTIONS = {
    "description": "the ICE servers, for a client that needs them before it makes its offer",
    "headers": {"Link": _LINK},
}
_ANY_JSON = {"content": {"application/json": {"schema": {"type": "object"}}}}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, **extra}


def openapi_document(model_schema: dict[str, Any]) -> dict[str, Any]:
    """The document for a model whose ``/api/schema`` is ``model_schema``."""
    paths: dict[str, Any] = {
        "/": {"get": _op("the web client", {"200": {"description": "HTML page",
                                                    "content": {"text/html": {}}}},
                         security=[])},
        "/healthz": {"get": _op("200 when every worker is up",
                                {"200": {"description": "healthy", **_ANY_JSON},
                                 "503": {"description": "a worker is down", **_ANY_JSON}},
                                security=[])},
        "/api/schema": {"get": _op("the model's name, video and commands",
                                   {"200": {"description": "schema", **_ANY_JSON},
                                    "401": _ERROR, "503": _ERROR})},
        "/api/status": {"get": _op("the daemon status object",
                                   {"200": {"description": "status", **_ANY_JSON},
                                    "401": _ERROR, "504": _ERROR})},
        "/api/openapi.json": {"get": _op("this document",
                                         {"200": {"description": "OpenAPI", **_ANY_JSON},
                                          "401": _ERROR})},
        "/api/events": {"get": _op("server-sent session events and model messages",
                                   {"200": {"description": "event stream",
                                            "content": {"text/event-stream": {}}},
                                    "401": _ERROR},
                                   parameters=[{"name": "token", "in": "query",
                                                "required": False,
                                                "schema": {"type": "string"}}])},
        "/whip": {"post": _op("WHIP: send video (RFC 9725)",
                              {"201": _SDP_CREATED, "400": _ERROR, "401": _ERROR,
                               "409": _ERROR, "413": _ERROR, "415": _ERROR},
                              requestBody=_SDP_BODY),
                  "options": _op("WHIP: the ICE servers (Link headers) before an offer; a "
                                 "CORS preflight gets none", {"204": _ICE_OPTIONS,
                                                              "401": _ERROR})},
        "/whip/{id}": {"delete": _op("WHIP: stop sending", {"200": {"description": "ended"},
                                                            "401": _ERROR, "404": _ERROR},
                                     parameters=[_id_param()])},
        "/whep": {"post": _op("WHEP: watch", {"201": _SDP_CREATED, "400": _ERROR,
                                               "401": _ERROR, "413": _ERROR, "415": _ERROR,
                                               "503": _ERROR},
                              requestBody=_SDP_BODY),
                  "options": _op("WHEP: the ICE servers (Link headers) before an offer; a "
                                 "CORS preflight gets none", {"204": _ICE_OPTIONS,
                                                              "401": _ERROR})},
        "/whep/{id}": {"delete": _op("WHEP: stop watching", {"200": {"description": "ended"},
                                                             "401": _ERROR, "404": _ERROR},
                                     parameters=[_id_param()])},
    }
    for cmd in model_schema.get("commands", []):
        paths[f"/api/commands/{cmd['name']}"] = {"post": _op(
            cmd.get("description") or cmd["name"],
            {"200": {"description": "applied; the handler's result", **_ANY_JSON},
             "400": _ERROR, "401": _ERROR, "404": _ERROR, "413": _ERROR, "422": _ERROR,
             "503": _ERROR, "504": _ERROR},
            operationId=f"command_{cmd['name']}",
            requestBody={"required": False,
                         "content": {"application/json": {"schema": cmd["parameters"]}}},
        )}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"reactor: {model_schema.get('model', 'model')}",
                 "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string"}, "field": {"type": "string"}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }


def _id_param() -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
