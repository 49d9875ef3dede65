"""Each viewer's glass-to-glass estimate, and its per-viewer series on /metrics."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reactor.daemon.metrics import MetricsState
from reactor.daemon.snapshot import glass_to_glass_ms
from reactor.proto import telemetry_pb2 as tpb
from tests.unit.daemon.test_metrics import scrape_text, snapshot

STAGES = [tpb.LatencyStat(stage="decode", p50_ms=1.5, p99_ms=9.0, window_count=300),
          tpb.LatencyStat(stage="input_ring", p50_ms=0.5, p99_ms=2.0, window_count=300),
          tpb.LatencyStat(stage="model", p50_ms=10.0, p99_ms=40.0, window_count=300),
          tpb.LatencyStat(stage="output_ring", p50_ms=0.25, p99_ms=1.0, window_count=300),
          tpb.LatencyStat(stage="encode", p50_ms=6.0, p99_ms=12.0, window_count=300)]


def test_the_estimate_adds_server_p50s_half_the_rtt_jitter_buffer_and_decode() -> None:
    v = tpb.ViewerStat(id="v", age_s=0.5, rtt_ms=4.0, jitter_buffer_ms=20.0, decode_ms=3.0)
    assert glass_to_glass_ms(STAGES, v) == pytest.approx(18.25 + 2.0 + 20.0 + 3.0)


def test_a_browser_that_measures_its_render_time_has_it_added() -> None:
    v = tpb.ViewerStat(id="v", age_s=0.5, rtt_ms=4.0, jitter_buffer_ms=20.0, decode_ms=3.0,
                       render_ms=12.0)
    assert glass_to_glass_ms(STAGES, v) == pytest.approx(18.25 + 2.0 + 20.0 + 3.0 + 12.0)


def test_what_a_viewer_does_not_report_adds_nothing() -> None:
    v = tpb.ViewerStat(id="v", age_s=0.5, rtt_ms=1.0, rtt_source="rtcp")
    assert glass_to_glass_ms(STAGES, v) == pytest.approx(18.25 + 0.5)


def test_no_estimate_before_the_viewer_reports_or_has_a_round_trip() -> None:
    assert glass_to_glass_ms(STAGES, tpb.ViewerStat(id="v", age_s=-1.0)) is None


def test_each_connected_viewer_has_its_own_series() -> None:
    snap = snapshot()
    snap.session.viewer_stats.add(id="aa11", age_s=0.3, rtt_ms=2.0, jitter_buffer_ms=15.0,
                                  decode_ms=2.5, fps=29.5, frames_decoded=300,
                                  frames_dropped=1, freeze_count=0, rejected=4,
                                  glass_to_glass_ms=40.0)
    snap.session.viewer_stats.add(id="bb22", age_s=-1.0)  # joined, not reported yet
    text = scrape_text(MetricsState(), snap)
    samples = {(s.name, s.labels.get("viewer")): s.value
               for f in text_string_to_metric_families(text) for s in f.samples
               if s.name.startswith("reactor_viewer_")}
    assert samples[("reactor_viewer_glass_to_glass_seconds", "aa11")] == pytest.approx(0.040)
    assert samples[("reactor_viewer_jitter_buffer_seconds", "aa11")] == pytest.approx(0.015)
    assert samples[("reactor_viewer_round_trip_seconds", "aa11")] == pytest.approx(0.002)
    assert samples[("reactor_viewer_decode_seconds", "aa11")] == pytest.approx(0.0025)
    assert samples[("reactor_viewer_frames_per_second", "aa11")] == 29.5
    assert samples[("reactor_viewer_frames_decoded_total", "aa11")] == 300
    assert samples[("reactor_viewer_frames_dropped_total", "aa11")] == 1
    assert samples[("reactor_viewer_freezes_total", "aa11")] == 0
    assert samples[("reactor_viewer_reports_rejected_total", "aa11")] == 4
    assert samples[("reactor_viewer_report_age_seconds", "aa11")] == pytest.approx(0.3)
    # The silent viewer: only its rejected count, no invented figures.
    assert {name for name, viewer in samples if viewer == "bb22"} == {
        "reactor_viewer_reports_rejected_total"}


def test_no_session_no_viewer_series() -> None:
    snap = snapshot()
    snap.ClearField("session")
    text = scrape_text(MetricsState(), snap)
    assert not [s for f in text_string_to_metric_families(text) for s in f.samples
                if s.name.startswith("reactor_viewer_")]
