"""Fixtures for driving the web client in a real Chromium against a real daemon.

The browser is Debian's Chromium (``apt-get install chromium``) driven by Playwright's
Python package; Playwright's own browser downloads are never used. Without
``/usr/bin/chromium`` every test here skips with the reason.

Loopback WebRTC: the daemon, bound to 127.0.0.1, offers 127.0.0.1 and this machine's
interface addresses as host candidates and answers checks from this machine's own addresses
only. Chromium runs with no WebRTC switches, as a user's does: it gathers no loopback
candidates and hides its own behind mDNS names, and connects by checking the daemon's
candidates from its LAN address, which the daemon accepts because it is this machine's own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chromium import TRACK_PCS_JS, launch_chromium

VIEWPORT = {"width": 1280, "height": 800}
DAEMON_START_TIMEOUT_S = 90


def reactor_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reactor.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@dataclass
class RunningDaemon:
    run_dir: Path
    config_path: Path
    url: str = ""

    def status(self) -> dict[str, Any]:
        r = reactor_cli("daemon", "status", "--json", "--run-dir", str(self.run_dir))
        return json.loads(r.stdout)

    def stop(self) -> subprocess.CompletedProcess[str]:
        return reactor_cli("daemon", "stop", "--run-dir", str(self.run_dir), timeout=60)

    def logs(self) -> str:
        out = []
        for log in sorted((self.run_dir / "logs").glob("*.log")):
            out.append(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)


@pytest.fixture
def reactor_daemon(tmp_path: Path) -> Iterator[Callable[..., RunningDaemon]]:
    """``reactor_daemon(config_dict)`` starts a real detached daemon on a free port.

    Every daemon started is stopped in teardown, whatever the test did."""
    started: list[RunningDaemon] = []

    def start(config: dict[str, Any] | None = None) -> RunningDaemon:
        cfg: dict[str, Any] = dict(config or {})
        cfg["server"] = {"port": 0, **cfg.get("server", {})}
        path = tmp_path / f"reactor-{len(started)}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        # A short path of our own: ipc:// socket paths have a length limit.
        run_dir = Path(tempfile.mkdtemp(prefix="reactor-browser-"))
        d = RunningDaemon(run_dir, path)
        started.append(d)
        r = subprocess.run(
            [sys.executable, "-m", "reactor.cli", "daemon", "start",
             "--run-dir", str(run_dir), "-c", str(path)],
            capture_output=True, text=True, timeout=DAEMON_START_TIMEOUT_S)
        assert r.returncode == 0, f"daemon failed to start:\n{r.stdout}\n{r.stderr}\n{d.logs()}"
        d.url = d.status()["url"]
        assert d.url.startswith("http://127.0.0.1:"), d.url
        return d

    yield start
    for d in started:
        r = d.stop()
        if r.returncode != 0:
            print(f"reactor daemon stop --run-dir {d.run_dir} failed: {r.stdout}{r.stderr}")
        shutil.rmtree(d.run_dir, ignore_errors=True)


# Module scope: Playwright's sync API keeps an event loop running in this thread while the
# browser is open, which would break asyncio.run() in the other integration tests.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_chromium() as b:
        yield b


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    # Keep each phase's report on the item, so fixtures can tell whether the test failed.
    outcome: Any = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


class PageLog:
    """Console messages and page errors, kept for failure reports."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S')} {line}")


@pytest.fixture
def open_page(browser: Any, request: pytest.FixtureRequest,
              tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``open_page(url)``: a fresh browser context and page at ``url``.

    Each page is screenshotted into the test's tmp dir at the end; on failure the path
    and the page's console are printed."""
    contexts: list[tuple[Any, Any, PageLog]] = []

    def open_(url: str) -> Any:
        ctx = browser.new_context(viewport=VIEWPORT)
        ctx.add_init_script(TRACK_PCS_JS)
        page = ctx.new_page()
        log = PageLog()
        page.on("console", lambda m: log.add(f"console.{m.type}: {m.text}"))
        page.on("pageerror", lambda e: log.add(f"pageerror: {e}"))
        contexts.append((ctx, page, log))
        page.goto(url)
        return page

    yield open_
    rep = getattr(request.node, "rep_call", None)
    failed = rep is not None and rep.failed
    for n, (ctx, page, log) in enumerate(contexts):
        shot = tmp_path / f"page-{n}.png"
        if not page.is_closed():
            try:
                page.screenshot(path=str(shot))
            except Exception as exc:  # a crashed page still lets the others report
                print(f"screenshot failed: {exc}")
                shot = None  # type: ignore[assignment]
            try:
                if failed:
                    print(f"window.reactor = {page.evaluate('JSON.stringify(window.reactor)')}")
            except Exception:
                pass
        else:
            shot = None  # type: ignore[assignment]
        if failed:
            print(f"page {n}: screenshot {shot}")
            print("\n".join(log.lines[-40:]))
        ctx.close()
