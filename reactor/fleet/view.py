"""The fleet at a glance: ``reactor fleet status`` and ``reactor monitor --fleet``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from reactor.control.client import ControlClient
from reactor.control.rundir import RunDir
from reactor.control.status import daemon_state_name, session_state_name
from reactor.errors import ReactorError
from reactor.fleet.balancer import balancer_states
from reactor.fleet.plan import Fleet, addr, connect_host
from reactor.runtime.stats import alive


def fleet_status(directory: Path) -> dict[str, Any]:
    """Every daemon's state, session, fps and readiness (its ``/readyz``, as HAProxy asks
    it), and HAProxy's view of each."""
    fleet = Fleet.load(directory)
    seen = balancer_states(fleet)
    balancer_up = fleet.haproxy_pid is not None and alive(fleet.haproxy_pid)
    rows = []
    for m in fleet.members:
        row: dict[str, Any] = {"index": m.index, "device": m.device, "url": m.public_url,
                               "run_dir": m.run_dir, "balancer": seen.get(f"daemon-{m.index}",
                                                                          "-")}
        rd = RunDir(Path(m.run_dir))
        pid = rd.live_pid()
        if pid is None:
            rows.append({**row, "pid": None, "state": "stopped", "session": None, "fps": None,
                         "viewers": 0, "ready": "stopped: not running"})
            continue
        try:
            with ControlClient(rd.path, timeout_s=2.0) as client:
                snap = client.status()
        except ReactorError as e:
            rows.append({**row, "pid": pid, "state": "unreachable", "session": None,
                         "fps": None, "viewers": 0, "ready": f"unreachable: {e}"})
            continue
        session, viewers = None, 0
        if snap.HasField("session"):
            session = {"id": snap.session.id,
                       "state": session_state_name(snap.session.state)}
            viewers = snap.session.viewers
        rows.append({**row, "pid": pid, "state": daemon_state_name(snap.state),
                     "session": session, "fps": round(snap.pipeline.fps_out, 1),
                     "viewers": viewers,
                     "ready": _readyz(m.host or connect_host(fleet.bind_host), m.port)})
    return {"url": fleet.url, "config": fleet.config, "directory": fleet.directory,
            "balancer": {"pid": fleet.haproxy_pid, "running": balancer_up,
                         "config": str(fleet.haproxy_cfg)},
            "daemons": rows}


def _readyz(host: str, port: int) -> str:
    """``ready``, or the reason the daemon's ``/readyz`` gives for its 503."""
    import urllib.error
    import urllib.request

    url = f"http://{addr(host)}:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        body = e.read()
    except OSError as e:
        return f"unreachable: {e}"
    try:
        answer = json.loads(body)
    except ValueError:
        return f"unreadable: {body[:80]!r}"
    return "ready" if answer.get("ready") else str(answer.get("reason", "not ready"))


def status_table(status: dict[str, Any]) -> Any:
    """The fleet as a rich table: one row per daemon."""
    from rich.table import Table

    bal = status["balancer"]
    title = (f"reactor fleet at {status['url']}: balancer "
             f"{'running (pid ' + str(bal['pid']) + ')' if bal['running'] else 'NOT running'}")
    table = Table(title=title, title_justify="left")
    for name in ("#", "device", "url", "state", "session", "viewers", "fps", "ready",
                 "balancer"):
        table.add_column(name, no_wrap=name == "url", overflow="fold")
    for r in status["daemons"]:
        s = r["session"]
        table.add_row(str(r["index"]), r["device"], r["url"], r["state"],
                      "-" if s is None else f"{s['id']} ({s['state']})", str(r["viewers"]),
                      "-" if r["fps"] is None else f"{r['fps']:.1f}", r["ready"],
                      r["balancer"])
    return table


def monitor_fleet(directory: Path, *, interval_s: float = 1.0) -> int:
    """``reactor monitor --fleet``: the status table, live, until Ctrl+C."""
    from rich.console import Console
    from rich.live import Live

    console = Console()
    try:
        with Live(status_table(fleet_status(directory)), console=console,
                  refresh_per_second=4) as live:
            while True:
                time.sleep(interval_s)
                live.update(status_table(fleet_status(directory)))
    except KeyboardInterrupt:
        return 0
