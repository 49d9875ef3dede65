"""Viewers' stats reports as egress takes them: validated whole, rate-limited, logged
once, never trusted past display."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from reactor.errors import ReportError
from reactor.workers.viewer_stats import (
    BURST,
    MAX_REPORT_CHARS,
    RATE_PER_S,
    ViewerReports,
    parse_report,
)

GOOD: dict[str, Any] = {
    "type": "stats", "agent": "browser", "jitter_buffer_ms": 21.5, "decode_ms": 2.4,
    "rtt_ms": 0.9, "frames_decoded": 600, "frames_dropped": 2, "freeze_count": 1,
    "freeze_s": 0.35, "width": 1280, "height": 720, "fps": 29.7,
}


def test_a_browser_report_is_taken_field_by_field() -> None:
    fields = parse_report(json.dumps(GOOD))
    assert fields == {k: v for k, v in GOOD.items() if k != "type"}
    assert isinstance(fields["frames_decoded"], int)


def test_unknown_figures_may_be_null_or_left_out() -> None:
    assert parse_report('{"type": "stats", "rtt_ms": null, "fps": 30}') == {"fps": 30.0}


@pytest.mark.parametrize(("text", "why"), [
    ("not json", "not JSON"),
    ("[1, 2]", "a JSON object"),
    ('{"type": "hello"}', '"type" must be "stats"'),
    ('{"type": "stats", "rtt_ms": NaN}', "NaN is not a number"),
    ('{"type": "stats", "fps": Infinity}', "Infinity is not a number"),
    ('{"type": "stats", "jitter_buffer_ms": -3}', "'jitter_buffer_ms' must be within"),
    ('{"type": "stats", "jitter_buffer_ms": 1e9}', "'jitter_buffer_ms' must be within"),
    ('{"type": "stats", "width": 99999}', "'width' must be within"),
    ('{"type": "stats", "frames_decoded": 1.5}', "'frames_decoded' must be an integer"),
    ('{"type": "stats", "frames_decoded": true}', "'frames_decoded' must be a number"),
    ('{"type": "stats", "fps": "30"}', "'fps' must be a number"),
    ('{"type": "stats", "agent": "<script>"}', '"agent" must be a short name'),
    ('{"type": "stats", "evil": 1}', "unknown key 'evil'"),
    ('{"type": "stats", "fps": ' + "9" * 400 + "}", "'fps' must be within"),
])
def test_nonsense_is_refused_whole_saying_why(text: str, why: str) -> None:
    with pytest.raises(ReportError, match=why.replace("(", r"\(").replace("[", r"\[")):
        parse_report(text)


def test_huge_and_binary_messages_are_refused_unread() -> None:
    with pytest.raises(ReportError, match=f"at most {MAX_REPORT_CHARS} characters"):
        parse_report('{"type": "stats", "agent": "' + "x" * 10_000_000 + '"}')
    with pytest.raises(ReportError, match="JSON text, got bytes"):
        parse_report(b'{"type": "stats"}')


def test_the_newest_valid_report_is_kept_and_a_bad_one_changes_nothing() -> None:
    reports = ViewerReports()
    reports.add("v1")
    assert reports.take("v1", json.dumps(GOOD), now=100.0)
    assert not reports.take("v1", '{"type": "stats", "rtt_ms": -1}', now=101.0)
    st = reports.stat("v1", now=101.5)
    assert (st.reports, st.rejected, st.age_s) == (1, 1, 1.5)
    assert (st.jitter_buffer_ms, st.rtt_ms, st.rtt_source, st.agent) == (
        21.5, 0.9, "viewer", "browser")
    assert (st.width, st.height, st.frames_dropped, st.freeze_count) == (1280, 720, 2, 1)


def test_a_viewer_that_never_reported_has_no_figures() -> None:
    reports = ViewerReports()
    reports.add("v1")
    st = reports.stat("v1", now=5.0)
    assert st.age_s == -1.0 and st.reports == 0
    assert not any(st.HasField(f) for f in ("jitter_buffer_ms", "rtt_ms", "fps", "width"))


def test_a_flood_is_cut_to_the_rate_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    reports = ViewerReports()
    reports.add("v1")
    text = json.dumps(GOOD)
    with caplog.at_level(logging.WARNING, logger="reactor.workers.viewer_stats"):
        taken = sum(reports.take("v1", text, now=10.0) for _ in range(1000))
        assert taken == BURST  # 1000 at once: only the first few
        later = sum(reports.take("v1", text, now=20.0 + i * 0.01) for i in range(1000))
    # Over the next 10 s the bucket refills at RATE_PER_S (and starts full again).
    assert BURST <= later <= BURST + int(10 * RATE_PER_S) + 1
    st = reports.stat("v1", now=30.0)
    assert st.rejected == 2000 - taken - later
    lines = [r for r in caplog.records if "v1" in r.getMessage()]
    assert len(lines) == 1 and "more than" in lines[0].getMessage()


def test_a_steady_viewer_at_one_report_a_second_is_never_limited() -> None:
    reports = ViewerReports()
    reports.add("v1")
    assert all(reports.take("v1", json.dumps(GOOD), now=float(i)) for i in range(120))
    assert reports.stat("v1", now=120.0).rejected == 0


def test_reports_of_unknown_or_departed_viewers_are_dropped() -> None:
    reports = ViewerReports()
    assert not reports.take("ghost", json.dumps(GOOD))
    reports.add("v1")
    reports.remove("v1")
    assert not reports.take("v1", json.dumps(GOOD))
    assert reports.viewers == {}
