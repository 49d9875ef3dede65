"""GET /metrics scraped by a real Prometheus (Debian's package) from a live daemon that a
real WHEP viewer watches; promtool checks the page and the alerting rules."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from reactor.client import Client
from tests.support.daemon import Daemon
from tests.support.http import SMALL, post_json, request
from tests.support.prometheus import PROMETHEUS, PROMTOOL, Prometheus, prometheus
from tests.support.tracks import SquareTrack

pytestmark = pytest.mark.skipif(not Path(PROMETHEUS).exists(),
                                reason="Debian's prometheus package is not installed")

TOKEN = "metrics-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOCS = Path(__file__).parents[2] / "docs"
RULES = DOCS / "prometheus" / "reactor-rules.yml"
DASHBOARD = DOCS / "grafana" / "reactor-dashboard.json"


def scrape_config(d: Daemon, token: str | None) -> dict[str, object]:
    u = urlsplit(d.url)
    job: dict[str, object] = {"job_name": "reactor", "metrics_path": "/metrics",
                              "static_configs": [{"targets": [f"{u.hostname}:{u.port}"]}]}
    if token:
        job["authorization"] = {"type": "Bearer", "credentials": token}
    return job


async def poll(prom: Prometheus, expr: str, ok: Callable[[float], bool], timeout: float,
               what: str) -> float:
    deadline = time.monotonic() + timeout
    last: float | None = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(prom.value, expr)
        if last is not None and ok(last):
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what}: {expr} = {last} after {timeout} s\n"
                         f"{prom.log.read_text()[-2000:]}")


def test_prometheus_scrapes_a_watched_daemon(start_daemon, tmp_path: Path) -> None:
    d = start_daemon({**SMALL, "server": {"token": TOKEN},
                      "model": {"module": "reactor.examples.filters:Brightness"}})
    status, body = request(d, "GET", "/metrics")
    assert status == 401, body  # the token guards it like the API

    async def main() -> None:
        async with Client(d.url, token=TOKEN) as client:
            publisher = await client.publish(SquareTrack(320, 240, (200, 40, 40)))
            viewer = await client.watch()
            status, body = await asyncio.to_thread(post_json, d, "/api/commands/set_gain",
                                                   {"gain": 2}, headers=AUTH)
            assert status == 200, body
            status, body = await asyncio.to_thread(post_json, d, "/api/commands/set_gain",
                                                   {"gain": 9}, headers=AUTH)
            assert status == 422, body
            frames = 0

            async def watch() -> None:
                nonlocal frames
                while True:
                    await viewer.recv()
                    frames += 1

            watching = asyncio.create_task(watch())
            try:
                with prometheus(tmp_path / "prom", [scrape_config(d, TOKEN)],
                                rule_files=[str(RULES)]) as prom:
                    await check_series(prom)
                assert frames > 30
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await watching
                await viewer.close()
                await publisher.close()

    asyncio.run(main())

    status, page = request(d, "GET", "/metrics", headers=AUTH)
    assert status == 200
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=page, capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


async def check_series(prom: Prometheus) -> None:
    await poll(prom, 'up{job="reactor"}', lambda v: v == 1, 30, "the daemon is scraped")
    target = await poll(prom, "reactor_target_frames_per_second", lambda v: v > 0, 10,
                        "target fps")
    assert target == 30
    # The sender's 30 fps go through the model to the viewer: fps near the model's (a
    # loaded 2-core machine may lose a few frames).
    await poll(prom, 'reactor_frames_per_second{stage="in"}',
               lambda v: v >= 0.7 * target, 30, "fps in")
    await poll(prom, 'reactor_frames_per_second{stage="model"}',
               lambda v: v >= 0.7 * target, 30, "model fps")
    await poll(prom, 'reactor_frames_per_second{stage="out"}',
               lambda v: v >= 0.7 * target, 30, "fps out")
    sent_rate = await poll(prom, "rate(reactor_frames_sent_total[5s])",
                           lambda v: v >= 0.7 * target, 15, "frames sent per second")
    assert sent_rate <= 1.3 * target
    # Histogram counts rise between scrapes, for every stage.
    for stage in ("decode", "input_ring", "model", "output_ring", "encode"):
        expr = f'reactor_stage_latency_seconds_count{{stage="{stage}"}}'
        first = await poll(prom, expr, lambda v: v > 0, 15, f"{stage} latency samples")
        await poll(prom, expr, lambda v: v > first + 20, 15,  # noqa: B023 (awaited here)
                   f"{stage} latency samples rising")
    p50 = await poll(prom, 'histogram_quantile(0.5, rate(reactor_stage_latency_seconds_'
                     'bucket{stage="encode"}[5s]))', lambda v: v > 0, 15, "encode p50")
    assert p50 < 0.25  # a 320x240 frame encodes in well under 250 ms
    assert await asyncio.to_thread(prom.value, "reactor_viewers") == 1
    assert await asyncio.to_thread(prom.value, "reactor_publishers") == 1
    assert await asyncio.to_thread(prom.value, 'reactor_worker_up{worker="egress"}') == 1
    assert await asyncio.to_thread(prom.value, "reactor_sessions_started_total") == 1
    ok = await asyncio.to_thread(prom.value, 'reactor_commands_total{command="set_gain",'
                                 'result="ok"}')
    rejected = await asyncio.to_thread(prom.value, 'reactor_commands_total{command='
                                       '"set_gain",result="rejected"}')
    assert (ok, rejected) == (1, 1)
    # Ingress counts every request, Prometheus's own scrapes included.
    await poll(prom, 'reactor_http_requests_total{method="GET",route="/metrics",'
               'status="200"}', lambda v: v >= 2, 15, "scrapes counted")
    rss = await asyncio.to_thread(prom.value, 'reactor_process_resident_memory_bytes'
                                  '{process="inference"}')
    assert rss is not None and rss > 10e6
    info = await asyncio.to_thread(prom.query, "reactor_build_info")
    assert info and info[0]["metric"]["pyav"] and info[0]["metric"]["device"]
    # The alerting rules load and evaluate against these series without errors.
    rules = await asyncio.to_thread(prom.rules)
    assert rules and all(r["health"] == "ok" for r in rules), rules
    firing = [r["name"] for r in rules if r.get("state") == "firing"]
    assert firing == [], firing  # a healthy, watched daemon pages nobody
    # Every panel of the Grafana dashboard finds data, queried as Grafana would.
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        if panel["type"] == "row":  # a row heading (Fleet) has no query
            continue
        exprs = [t["expr"].replace("$instance", ".*").replace("$__rate_interval", "5s")
                 for t in panel["targets"]]
        found = [await asyncio.to_thread(prom.query, e) for e in exprs]
        assert any(found), (panel["title"], exprs)


def test_metrics_public_needs_no_token_but_the_api_still_does(start_daemon) -> None:
    d = start_daemon({**SMALL, "server": {"token": TOKEN}, "metrics": {"public": True}})
    status, page = request(d, "GET", "/metrics")
    assert status == 200 and b"reactor_build_info" in page
    assert request(d, "GET", "/api/status")[0] == 401


def test_promtool_accepts_the_alerting_rules() -> None:
    r = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
