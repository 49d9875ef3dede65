"""The model's schema as the daemon holds it: what `reactor schema` and GET /api/schema
answer, the model's name in the status and the command names in the metrics.

It comes as JSON in the inference worker's READY (``VideoModel.schema()``; a model may
override it). One that cannot be read — not JSON, or not the shape the daemon reads — is
kept as an error, so clients are told what is wrong with the model rather than that it is
still loading.
"""

from __future__ import annotations

import json
from typing import Any

from reactor.daemon.router import error_reply
from reactor.proto import control_pb2 as cpb


def parse_schema(text: str) -> dict[str, Any]:
    """The schema in ``text``, checked for what the daemon reads of it; ValueError says
    what is wrong."""
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc}): {text[:80]!r}") from None
    if not isinstance(schema, dict):
        raise ValueError(f"expected a JSON object, found {type(schema).__name__}")
    model = schema.get("model")
    if model is not None and not isinstance(model, str):
        raise ValueError(f"'model' must be the model's name, found {model!r}")
    commands = schema.get("commands", [])
    if not isinstance(commands, list):
        raise ValueError(f"'commands' must be a list, found {type(commands).__name__}")
    for i, cmd in enumerate(commands):
        if not isinstance(cmd, dict) or not isinstance(cmd.get("name"), str):
            raise ValueError(f"'commands'[{i}] must be an object with a 'name' string, "
                             f"found {cmd!r:.80}")
    return schema


class ModelSchema:
    """The last schema the inference worker sent, or why it could not be read."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        #: Each command's last applied arguments, defaults filled in, since the daemon
        #: started (a restarted model keeps what it is told again; status and the page
        #: show what it was last told).
        self.applied: dict[str, dict[str, Any]] = {}
        #: Why the last schema could not be read; empty when it could (or none came yet).
        self.error = ""

    def read(self, text: str) -> None:
        """Keep the schema in ``text``, or (ValueError, re-raised) why it cannot be read."""
        try:
            self.data, self.error = parse_schema(text), ""
        except ValueError as exc:
            self.data, self.error = {}, str(exc)
            raise

    def model(self, default: str) -> str:
        return str(self.data.get("model", default))

    def command_names(self) -> tuple[str, ...]:
        return tuple(str(c["name"]) for c in self.data.get("commands", []))

    def applied_now(self, name: str, args_json: str) -> dict[str, Any]:
        """Command ``name`` was applied with ``args_json`` (as the client sent them): keep
        them, defaults filled in, as its :attr:`applied`, and return them."""
        try:
            sent = json.loads(args_json) if args_json else {}
        except ValueError:
            sent = {}
        self.applied[name] = self.with_defaults(name, sent if isinstance(sent, dict) else {})
        return self.applied[name]

    def with_defaults(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """``args`` of command ``name`` as the model applied them: each parameter the
        client left out at its schema default."""
        for cmd in self.data.get("commands", []):
            if cmd.get("name") == name:
                props = (cmd.get("parameters") or {}).get("properties") or {}
                defaults = {k: p["default"] for k, p in props.items()
                            if isinstance(p, dict) and "default" in p}
                return {**defaults, **args}
        return dict(args)

    def reply(self, req_id: int) -> cpb.Reply:
        """The answer to a schema request: each command with the arguments it was last
        applied with as ``current``, where it was."""
        if self.error:
            return error_reply(req_id, f"the model's schema could not be read: {self.error}; "
                               "see `reactor daemon logs inference` and the model's schema()",
                               503)
        if not self.data:
            return error_reply(req_id, "the model is not loaded yet", 503)
        data = dict(self.data)
        applied = self.applied
        if applied:
            data["commands"] = [{**c, "current": applied[c["name"]]} if c.get("name") in applied
                                else c for c in data.get("commands", [])]
        return cpb.Reply(id=req_id, schema=cpb.SchemaReply(schema_json=json.dumps(data)))
