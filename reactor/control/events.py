"""Session events as the JSON clients see (server-sent events and data channels)."""

from __future__ import annotations

import json
from typing import Any

from reactor.proto import worker_pb2 as wpb

KIND_NAMES = {
    wpb.SessionEvent.STARTED: "started",
    wpb.SessionEvent.ENDED: "ended",
    wpb.SessionEvent.MESSAGE: "message",
    wpb.SessionEvent.ERROR: "error",
    wpb.SessionEvent.WORKER: "worker",
    wpb.SessionEvent.VIEWER: "viewer",
    wpb.SessionEvent.WARNING: "warning",
    wpb.SessionEvent.COMMAND: "command",
    wpb.SessionEvent.DRAINING: "draining",
    wpb.SessionEvent.ENDING: "ending",
}


def event_to_dict(ev: wpb.SessionEvent) -> dict[str, Any]:
    """``{"type": "started" | "ended" | "message" | "error" | ..., "session_id", "reason",
    "data", "ts"}``."""
    data: Any = None
    if ev.json:
        try:
            data = json.loads(ev.json)
        except ValueError:
            data = ev.json
    return {
        "type": KIND_NAMES.get(ev.kind, "unknown"),
        "session_id": ev.session_id or None,
        "reason": ev.reason or None,
        "data": data,
        "ts": ev.ts,
    }


def event_to_json(ev: wpb.SessionEvent) -> str:
    return json.dumps(event_to_dict(ev))
