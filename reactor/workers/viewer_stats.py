"""What a WHEP viewer reports of its own side, and how egress takes it.

The web client and ``reactor.client`` send one *stats report* a second over the viewer's
``events`` data channel: a JSON object ``{"type": "stats", "agent": ..., ...}`` with what
the viewer's ``getStats()`` knows (:data:`FIELDS`). Egress keeps the newest valid report
of each viewer (:class:`ViewerReports`) and puts it in its heartbeat; the supervisor shows
it in ``status``, the monitor and ``/metrics``, beside an estimate of the viewer's
glass-to-glass latency.

A report is the viewer's word, so it is used for display only and taken with care: a
message that is too long, not JSON, not an object, of another ``type``, with an unknown
key, a value of the wrong type, or one outside its range (:data:`FIELDS`) is ignored
whole; a viewer that sends more than :data:`BURST` reports at once or more than
:data:`RATE_PER_S` a second over time has the extra ones ignored. Each viewer's first
ignored report is logged (with why); the rest are only counted (``rejected``). None of it
can raise out of :meth:`ViewerReports.take`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from reactor.errors import ReportError
from reactor.proto import telemetry_pb2 as tpb

log = logging.getLogger(__name__)

#: The longest report taken, in characters (a real one is about 300).
MAX_REPORT_CHARS = 2048
#: Reports a viewer may send at once, and a second over time (a token bucket).
BURST = 4
RATE_PER_S = 2.0
_AGENT = re.compile(r"^[A-Za-z0-9._/ -]{1,40}$")

#: Each field a report may carry: (kind, lowest, highest). ``int`` fields take integers
#: only (not booleans, not 1.5); ``float`` fields any finite number.
FIELDS: dict[str, tuple[type, float, float]] = {
    "jitter_buffer_ms": (float, 0.0, 60_000.0),
    "frames_decoded": (int, 0, 2**53),
    "frames_dropped": (int, 0, 2**53),
    "freeze_count": (int, 0, 2**31),
    "freeze_s": (float, 0.0, 1e7),
    "rtt_ms": (float, 0.0, 60_000.0),
    "decode_ms": (float, 0.0, 10_000.0),
    "render_ms": (float, 0.0, 10_000.0),
    "width": (int, 0, 16_384),
    "height": (int, 0, 16_384),
    "fps": (float, 0.0, 1_000.0),
}


def _reject_constant(name: str) -> Any:
    raise ReportError(f"{name} is not a number a report may carry")


def parse_report(text: Any) -> dict[str, Any]:
    """The fields of one report (``agent`` and those of :data:`FIELDS` it has), or
    :class:`ReportError` saying what is wrong with it."""
    if not isinstance(text, str):
        raise ReportError(f"a report is JSON text, got {type(text).__name__}")
    if len(text) > MAX_REPORT_CHARS:
        raise ReportError(f"a report is at most {MAX_REPORT_CHARS} characters, "
                          f"got {len(text)}")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ReportError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReportError(f"a report is a JSON object, got {type(data).__name__}")
    if data.get("type") != "stats":
        raise ReportError(f'"type" must be "stats", got {data.get("type")!r:.40}')
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "type":
            continue
        if key == "agent":
            if not isinstance(value, str) or not _AGENT.match(value):
                raise ReportError('"agent" must be a short name (letters, digits, ._/ -)')
            out[key] = value
            continue
        spec = FIELDS.get(key)
        if spec is None:
            raise ReportError(f"unknown key {key!r:.40}")
        if value is None:
            continue  # the viewer does not know it
        kind, low, high = spec
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ReportError(f"{key!r} must be a number, got {type(value).__name__}")
        # Range first: a JSON integer may have hundreds of digits (no float holds it).
        if (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
            raise ReportError(f"{key!r} must be within [{low:g}, {high:g}], "
                              f"got {str(value)[:20]}")
        if kind is int and not (isinstance(value, int) or value.is_integer()):
            raise ReportError(f"{key!r} must be an integer, got {value!r}")
        out[key] = int(value) if kind is int else float(value)
    return out


@dataclass
class _Bucket:
    tokens: float = float(BURST)
    at: float | None = None

    def take(self, now: float) -> bool:
        if self.at is not None:
            self.tokens = min(float(BURST), self.tokens + max(0.0, now - self.at) * RATE_PER_S)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class ViewerReport:
    """One viewer's newest valid report, and how many it sent that were taken/ignored."""

    id: str
    fields: dict[str, Any] = field(default_factory=dict)
    received: float = 0.0      # time.monotonic() of the newest valid report; 0: none
    reports: int = 0
    rejected: int = 0
    logged: bool = False
    bucket: _Bucket = field(default_factory=_Bucket)


class ViewerReports:
    """The reports of every viewer egress serves, by viewer id."""

    def __init__(self) -> None:
        self.viewers: dict[str, ViewerReport] = {}

    def add(self, viewer_id: str) -> None:
        self.viewers.setdefault(viewer_id, ViewerReport(viewer_id))

    def remove(self, viewer_id: str) -> None:
        self.viewers.pop(viewer_id, None)

    def take(self, viewer_id: str, text: Any, now: float | None = None) -> bool:
        """A message from ``viewer_id``'s data channel: kept when it is a valid report
        within the rate; otherwise counted (and, the first time, logged). Never raises."""
        r = self.viewers.get(viewer_id)
        if r is None:
            return False
        now = time.monotonic() if now is None else now
        if not r.bucket.take(now):
            self._reject(r, f"more than {BURST} reports at once or {RATE_PER_S:g} a second")
            return False
        try:
            fields = parse_report(text)
        except ReportError as exc:
            self._reject(r, str(exc))
            return False
        except Exception as exc:  # belt and braces: a viewer must never break egress
            self._reject(r, f"{type(exc).__name__}: {exc}")
            return False
        r.fields, r.received = fields, now
        r.reports += 1
        return True

    def _reject(self, r: ViewerReport, why: str) -> None:
        r.rejected += 1
        if not r.logged:
            r.logged = True
            log.warning("viewer %s: stats report ignored (%s); later ones are only counted",
                        r.id, why[:200])

    def stat(self, viewer_id: str, now: float | None = None) -> tpb.ViewerStat:
        """``viewer_id``'s report as a :class:`ViewerStat` (id, age and counts; the rest
        only where the viewer said)."""
        now = time.monotonic() if now is None else now
        r = self.viewers.get(viewer_id) or ViewerReport(viewer_id)
        st = tpb.ViewerStat(id=viewer_id, reports=r.reports, rejected=r.rejected,
                            age_s=now - r.received if r.received else -1.0,
                            agent=r.fields.get("agent", ""))
        for key in FIELDS:
            value = r.fields.get(key)
            if value is not None:
                setattr(st, key, value)
        if "rtt_ms" in r.fields:
            st.rtt_source = "viewer"
        return st
