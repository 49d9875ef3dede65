"""Who can reach and control a daemon: bind address, bearer token, run directory modes,
and what a request can (not) reach: no module imports, no files outside the web client."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from reactor.errors import CommandError
from tests.support.daemon import Daemon
from tests.support.http import SMALL, post_json, request

TOKEN = "sekret-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) with a listener on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # LISTEN
                found.add(addr)
    return found


def port_of(d: Daemon) -> int:
    return urlsplit(d.url).port or 0


def test_binds_loopback_by_default_and_warns_when_public_without_token(start_daemon) -> None:
    d = start_daemon(SMALL)
    assert listening_addresses(port_of(d)) == {"0100007F"}  # 127.0.0.1 only
    log = (d.run_dir / "logs" / "supervisor.log").read_text()
    assert "SECURITY" not in log

    public = start_daemon({**SMALL, "server": {"host": "0.0.0.0"}})
    start = public.extra["start"]
    assert "SECURITY" in start.stderr and "server.token" in start.stderr
    log = (public.run_dir / "logs" / "supervisor.log").read_text()
    assert "WARNING" in log and "SECURITY: server.host is 0.0.0.0" in log
    public.stop()

    guarded = start_daemon({**SMALL, "server": {"host": "0.0.0.0", "token": TOKEN}})
    assert "SECURITY" not in guarded.extra["start"].stderr
    assert "SECURITY" not in (guarded.run_dir / "logs" / "supervisor.log").read_text()


def test_token_guards_api_signalling_and_events(start_daemon) -> None:
    d = start_daemon({**SMALL, "server": {"token": TOKEN}})
    guarded = [
        ("GET", "/api/schema"), ("GET", "/api/status"), ("GET", "/api/openapi.json"),
        ("GET", "/api/events"), ("POST", "/api/commands/set_speed"),
        ("POST", "/whip"), ("DELETE", "/whip/abc"), ("PATCH", "/whip/abc"),
        ("POST", "/whep"), ("DELETE", "/whep/abc"), ("PATCH", "/whep/abc"),
    ]
    for method, path in guarded:
        for headers in ({}, {"Authorization": "Bearer wrong-token-1"},
                        {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}x"},
                        {"Authorization": f"Bearer {TOKEN[:-1]}"},
                        {"Authorization": f"Bearer {TOKEN[:-1]}4"},  # same length, last differs
                        {"Authorization": f"bearer{TOKEN}"}):
            status, body = request(d, method, path, b"{}", headers)
            assert status == 401, (method, path, headers, status, body)
            assert "bearer token" in body["error"]
    # ?token= is for EventSource (which cannot set headers) and works there only.
    status, _ = request(d, "GET", f"/api/status?token={TOKEN}")
    assert status == 401
    status, _ = request(d, "GET", "/api/events?token=wrong-token-1")
    assert status == 401
    u = urlsplit(d.url)
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        s.sendall(f"GET /api/events?token={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
    # With the token everything answers; the web client and health check need none.
    assert request(d, "GET", "/api/schema", headers=AUTH)[0] == 200
    status, body = post_json(d, "/api/commands/set_speed", {"speed": 2}, headers=AUTH)
    assert status == 200, body
    status, body = request(d, "DELETE", "/whep/abc", headers=AUTH)
    assert status == 404  # authorised, and there is no such viewer
    for path in ("/", "/index.html", "/app.js", "/style.css", "/healthz"):
        assert request(d, "GET", path)[0] == 200, path


def test_run_directory_and_sockets_are_owner_only(start_daemon) -> None:
    d = start_daemon(SMALL)
    assert stat.S_IMODE(d.run_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((d.run_dir / "logs").stat().st_mode) == 0o700
    socks = sorted(p.name for p in d.run_dir.glob("*.sock"))
    assert socks == ["control.sock", "telemetry.sock", "workers.sock"]
    for name in socks:
        assert stat.S_IMODE((d.run_dir / name).stat().st_mode) == 0o600, name
    if os.getuid() != 0:
        return
    # Another local user cannot even reach the control socket.
    probe = (f"import socket; s = socket.socket(socket.AF_UNIX); "
             f"s.connect({str(d.run_dir / 'control.sock')!r})")
    r = subprocess.run(["/usr/bin/python3", "-c", probe], user=65534, group=65534,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "PermissionError" in r.stderr, r.stderr
    assert d.status()["state"] == "running"


def test_requests_cannot_name_modules_or_non_commands(start_daemon) -> None:
    d = start_daemon(SMALL)
    for name in ("load", "start_session", "end_session", "__init__", "__class__",
                 "validate_command", "schema", "os:system", "reactor.examples.pattern:TestPattern",
                 "models:FailOnLoad", "..%2f..%2fetc%2fpasswd"):
        status, body = post_json(d, f"/api/commands/{name}", {})
        assert status == 404, (name, status, body)
    # (That only the config imports a module by name is a rule of tests/unit/test_architecture.)
    # A worker name is never taken from a request either: restart names are checked.
    with d.client() as c, pytest.raises(CommandError, match="unknown worker 'os'"):
        c.restart_worker("os")


@pytest.mark.parametrize("path", [
    "/../../../../etc/passwd",
    "/..%2f..%2f..%2fetc%2fpasswd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/app.js/../../../../etc/passwd",
    "/app.js/..%2f..%2f..%2fetc%2fpasswd",
    "//etc/passwd",
    "/index.html%00.js",
    "/__init__.py",
    "/web/__init__.py",
    "/reactor/config.py",
    "/static/../config.py",
    "/%2e%2e%2f%2e%2e%2fconfig.py",
    "/..\\..\\etc\\passwd",
    "/app.js%2f..%2f__init__.py",
])
def test_no_path_reaches_the_filesystem(start_daemon_shared, path: str) -> None:
    d = start_daemon_shared
    u = urlsplit(d.url)
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        # Raw bytes: no client normalises the path on our behalf.
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    assert status == 404, (path, data[:300])
    assert b"root:" not in data and b"import" not in data and b"pydantic" not in data


@pytest.fixture(scope="module")
def start_daemon_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the many path checks (each a single request)."""
    import yaml

    from tests.support.daemon import models_env

    tmp = tmp_path_factory.mktemp("paths")
    cfg = tmp / "reactor.yaml"
    cfg.write_text(yaml.safe_dump({**SMALL, "server": {"port": 0}}))
    run_dir = Path(f"/tmp/reactor-test-{os.getpid()}-paths")
    d = Daemon(run_dir, cfg, models_env())
    try:
        r = d.start()
        assert r.returncode == 0, r.stderr
        yield d
    finally:
        d.stop()
        d.remove_leftovers()
        shutil.rmtree(run_dir, ignore_errors=True)
