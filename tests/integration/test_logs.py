"""``log.format: json`` on a real daemon: every process writes one JSON object a line, and
the lines written while a session runs name it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from reactor.client import Client
from tests.support.daemon import Daemon, wait_for

PROCESSES = ("supervisor", "ingress", "inference", "egress")
KEYS = {"time", "level", "worker", "pid", "logger", "session", "message"}


async def _watch(url: str, frames: int) -> None:
    async with Client(url) as client, await client.watch() as viewer:
        for _ in range(frames):
            await asyncio.wait_for(viewer.recv(), 20)


def _records(d: Daemon, process: str) -> list[dict[str, Any]]:
    lines = (d.run_dir / "logs" / f"{process}.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_json_logs_are_one_object_a_line_naming_worker_level_and_session(
        start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon({"video": {"width": 160, "height": 120, "fps": 15}, "device": "cpu",
                      "log": {"format": "json"}})
    asyncio.run(_watch(d.url, 3))
    sid = wait_for(lambda: (d.status().get("session") or {}).get("id"), 10, "a session")
    wait_for(lambda: any(r["message"] == f"session start {sid}"
                         for r in _records(d, "inference")), 10, "the session's start logged")
    for process in PROCESSES:
        records = _records(d, process)  # each line parses as JSON, or this raises
        assert records, f"{process}.log is empty"
        for r in records:
            assert set(r) >= KEYS, r
            assert r["worker"] == process, r
            assert r["level"] in {"debug", "info", "warning", "error", "critical"}, r
            assert r["time"].endswith("Z") and "T" in r["time"], r
    start = next(r for r in _records(d, "inference") if r["message"] == f"session start {sid}")
    assert start["session"] == sid and start["level"] == "info"
    ready = next(r for r in _records(d, "inference") if r["message"].startswith("ready:"))
    assert ready["session"] is None  # logged before any session began
    sup = next(r for r in _records(d, "supervisor") if r["message"] == f"session start {sid}")
    assert sup["session"] == sid
