"""The seed's command line on a real daemon: ``reactor run --host --port --log-level`` and
``reactor daemon start`` with them, and a model whose commands use
``@command("name", description=...)``, reached by ``reactor send`` and the HTTP API."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import reactor
from reactor.client import Client
from reactor.control.rundir import RunDir
from reactor.runtime.stats import alive as pid_alive
from tests.support.daemon import Daemon, run_cli, shm_segments, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PROCESSES = ("supervisor", "ingress", "inference", "egress")

SEED_MODEL = '''
from __future__ import annotations

import numpy as np

from reactor import Field, Session, VideoModel, command


class SeedModel(VideoModel):
    def load(self, config: dict) -> None:
        self.speed = 1.0

    @command("set-speed", description="How fast the colour cycles.")
    def speed_handler(self, speed: float = Field(1.0, ge=0.0, le=8.0)) -> float:
        """Replaced by the description."""
        self.speed = speed
        return speed

    @command
    def reset(self) -> str:
        """Back to speed 1."""
        self.speed = 1.0
        return "reset"

    def start_session(self, session: Session) -> None:
        t = 0.0
        while not session.should_stop():
            level = int(t) % 256
            session.emit(np.full((session.height, session.width, 3), level, np.uint8))
            t += self.speed
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def healthz(port: int) -> bool:
    try:
        return http("GET", f"http://127.0.0.1:{port}/healthz")[0] == 200
    except OSError:
        return False


def log_lines(run_dir: Path, process: str) -> list[str]:
    path = run_dir / "logs" / f"{process}.log"
    return path.read_text(errors="replace").splitlines() if path.exists() else []


async def watch_frames(url: str, n: int) -> list[tuple[int, int]]:
    async with Client(url) as client, await client.watch() as viewer:
        return [((f := await asyncio.wait_for(viewer.recv(), 20)).width, f.height)
                for _ in range(n)]


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    path = Path(f"/tmp/reactor-test-{os.getpid()}-seed-{tmp_path.name[-12:]}")
    yield path
    pid = RunDir(path).read_pid()
    for seg in shm_segments(f"reactor-{pid}-") if pid else ():
        Path("/dev/shm", seg).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


def write_config(tmp_path: Path, **extra: Any) -> Path:
    # The file says port 8081; every test overrides it on the command line.
    cfg = {"video": {"width": 320, "height": 240, "fps": 15}, "device": "cpu",
           "server": {"host": "127.0.0.1", "port": 8081}, **extra}
    path = tmp_path / "reactor.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_seed_style_run_serves_on_the_given_port_and_logs_at_debug(
    tmp_path: Path, run_dir: Path,
) -> None:
    """`reactor run --host 127.0.0.1 --port PORT --log-level debug -c CONFIG` serves
    clients in the foreground until Ctrl+C, every process logs DEBUG lines, and aiortc's
    and aioice's own debug lines appear once a viewer connects."""
    config = write_config(tmp_path, log={"level": "warning"})  # the option wins over the file
    port = free_port()
    out = tmp_path / "run.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reactor.cli", "run", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "debug", "-c", str(config),
             "--run-dir", str(run_dir)],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_for(lambda: healthz(port) or proc.poll() is not None, 90, f"/healthz on {port}")
        assert proc.poll() is None, out.read_text()
        frames = asyncio.run(watch_frames(f"http://127.0.0.1:{port}", 3))
        assert frames == [(320, 240)] * 3
        for process in PROCESSES:
            debug = [ln for ln in log_lines(run_dir, process)
                     if re.search(rf"\bDEBUG\s+{process}\[\d+\] ", ln)]
            assert debug, f"no DEBUG line in {process}.log"
        egress = "\n".join(log_lines(run_dir, "egress"))
        assert re.search(r"DEBUG\s+egress\[\d+\] aioice\.", egress), "aioice is not at debug"
        assert re.search(r"DEBUG\s+egress\[\d+\] aiortc\.", egress), "aiortc is not at debug"
        # The supervisor also logs to the terminal in the foreground, at the same level.
        assert re.search(r"DEBUG\s+supervisor\[\d+\] .*log\.level debug", out.read_text())

        proc.send_signal(signal.SIGINT)  # Ctrl+C
        assert proc.wait(timeout=30) == 0, out.read_text()
        assert not healthz(port)
        assert RunDir(run_dir).live_pid() is None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_daemon_start_with_port_and_renamed_commands(tmp_path: Path, run_dir: Path) -> None:
    """`reactor daemon start --port P --log-level warning`: the daemon serves on P, logs
    nothing below WARNING, status names the distribution and version, and a command
    declared `@command("set-speed", description=...)` is reached by that name from
    `reactor send` and POST /api/commands/set-speed, never by its method's name."""
    (tmp_path / "seedmodel.py").write_text(SEED_MODEL)
    config = write_config(tmp_path, model={"module": "seedmodel:SeedModel"})
    port = free_port()
    env = {**os.environ}
    daemon = Daemon(run_dir, config, env)
    try:
        start = run_cli("daemon", "start", "-c", str(config), "--port", str(port),
                        "--log-level", "warning", "--run-dir", str(run_dir), timeout=120)
        assert start.returncode == 0, start.stdout + start.stderr
        daemon.pid = RunDir(run_dir).read_pid() or 0
        assert f"http://127.0.0.1:{port}/" in start.stdout

        status = daemon.status()
        assert status["distribution"] == "reactor-live"
        assert status["version"] == reactor.__version__
        assert status["url"] == f"http://127.0.0.1:{port}/"
        text = daemon.cli("daemon", "status")
        assert text.stdout.splitlines()[0] == f"reactor-live {reactor.__version__}"

        schema = http("GET", f"http://127.0.0.1:{port}/api/schema")[1]
        by_name = {c["name"]: c for c in schema["commands"]}
        assert set(by_name) == {"set-speed", "reset"}
        assert by_name["set-speed"]["description"] == "How fast the colour cycles."
        assert by_name["reset"]["description"] == "Back to speed 1."

        sent = daemon.cli("send", "set-speed", "speed=2.5")
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout) == {"command": "set-speed", "ok": True, "result": 2.5}
        code, body = http("POST", f"http://127.0.0.1:{port}/api/commands/set-speed",
                          {"speed": 3})
        assert (code, body["result"]) == (200, 3), body
        code, body = http("POST", f"http://127.0.0.1:{port}/api/commands/set-speed",
                          {"speed": 99})
        assert code == 422 and "less than or equal to 8" in json.dumps(body), body
        old = daemon.cli("send", "speed_handler", "speed=1")
        assert old.returncode == 1 and "set-speed" in old.stderr, old.stderr
        code, _ = http("POST", f"http://127.0.0.1:{port}/api/commands/speed_handler", {})
        assert code == 404

        for process in PROCESSES:
            lines = log_lines(run_dir, process)
            below = [ln for ln in lines if re.search(r"^\S+ \S+ (DEBUG|INFO) ", ln)]
            assert below == [], f"{process}.log has lines below WARNING: {below[:3]}"
    finally:
        daemon.stop()
    assert not pid_alive(daemon.pid)
    wait_for(lambda: not healthz(port), 10, f"port {port} closed")
