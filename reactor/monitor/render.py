"""Rich renderables for the monitor, built from one telemetry ``Snapshot``.

Every panel is a pure function of the snapshot, so the same text comes out of the live
dashboard, ``reactor monitor --once`` and ``reactor daemon status``. Every line is built
``no_wrap`` with an ellipsis: a line that wrapped would push the dashboard past the
terminal's height, and the layout below counts lines to decide what fits.

Long module: a little past 500 lines, because the panels and the layout that fits them to
the terminal are one unit: the layout counts the lines each panel makes.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable, Sequence

from rich import box
from rich.align import Align
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from reactor.control.status import (
    FRAME_INTERVAL,
    daemon_state_name,
    drain_text,
    session_state_name,
    worker_state_name,
)
from reactor.monitor.gpu_panel import gpu_panels
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto.telemetry_pb2 import LatencyStat, SessionInfo, Snapshot, ViewerStat

__all__ = [
    "STAGES",
    "dashboard",
    "disconnected",
    "header",
    "logs_panel",
    "pipeline_panel",
    "plain_text",
    "rings_panel",
    "session_panel",
    "sparkline",
    "viewer_lines",
    "workers_table",
]

#: The pipeline's latency stages, in the order a frame passes through them.
STAGES = ("decode", "input_ring", "model", "output_ring", "encode")
#: Columns from which the dashboard lays out in two columns of boxed panels.
WIDE = 120
#: Width of ``plain_text``: wide enough for every column, narrow enough for a log file.
PLAIN_WIDTH = 100

_BLOCKS = "▁▂▃▄▅▆▇█"
_DAEMON_STYLES = {
    tpb.DAEMON_STATE_RUNNING: "bold green",
    tpb.DAEMON_STATE_STARTING: "bold yellow",
    tpb.DAEMON_STATE_DEGRADED: "bold yellow",
    tpb.DAEMON_STATE_STOPPING: "bold yellow",
    tpb.DAEMON_STATE_FAILED: "bold red",
}
_WORKER_STYLES = {
    tpb.WORKER_STATE_RUNNING: "green",
    tpb.WORKER_STATE_STARTING: "yellow",
    tpb.WORKER_STATE_RESTARTING: "bold yellow",
    tpb.WORKER_STATE_STOPPED: "bold red",
    tpb.WORKER_STATE_FAILED: "bold red",
}
_LEVEL_STYLES = {"WARNING": "yellow", "ERROR": "bold red", "CRITICAL": "bold red"}
_HEARTBEAT_LATE_S = 2.0
_HEARTBEAT_DEAD_S = 5.0


# --- formatting --------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def _bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "--:--:--"


def _bar(used: float, total: float, width: int) -> str:
    filled = 0 if total <= 0 else round(width * min(max(used / total, 0.0), 1.0))
    return "█" * filled + "░" * (width - filled)


def _line(*parts: str | tuple[str, str] | Text) -> Text:
    """One line that never wraps: long content ends in an ellipsis instead."""
    text = Text.assemble(*parts, no_wrap=True, overflow="ellipsis")
    return text


def _cell(text: str, style: str = "") -> Text:
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


def _grid() -> Table:
    """A borderless table whose columns are two spaces apart."""
    return Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False,
                 header_style="bold")


def sparkline(values: Sequence[float], width: int, top: float = 0.0) -> str:
    """``values`` (newest last) as block characters, scaled from zero to ``top``.

    A zero floor makes a dip in frame rate look like one; ``top`` (the target fps) keeps a
    steady stream at full height instead of exaggerating noise.
    """
    recent = list(values)[-width:] if width > 0 else []
    if not recent:
        return ""
    peak = max(top, *recent)
    if peak <= 0:
        return _BLOCKS[0] * len(recent)
    last = len(_BLOCKS) - 1
    return "".join(_BLOCKS[min(last, max(0, round(v / peak * last)))] for v in recent)


# --- panels ------------------------------------------------------------------------------


def header(snap: Snapshot) -> RenderableType:
    """The daemon's state, pid, uptime, model and URL; its config and run directory."""
    state = daemon_state_name(snap.state) or "unknown"
    lines = [
        _line(
            ("reactor ", "bold"),
            ("● " + state, _DAEMON_STYLES.get(snap.state, "bold")),
            f"  pid {snap.pid or '-'}  up {_duration(snap.uptime_s)}",
            ("  " + snap.url if snap.url else "", "underline"),
        ),
        _line(
            "model ", (snap.model or "-", "cyan"),
            f"  config {snap.config_path or '(packaged default)'}  run dir {snap.run_dir or '-'}",
        ),
    ]
    if snap.error:
        lines.append(_line(("error: " + snap.error, "bold red")))
    if snap.HasField("drain"):
        # Wrapped, not cut: the when matters as much as the why.
        lines.append(Text("draining: " + drain_text(snap.drain), style="bold yellow"))
    return Group(*lines)


def workers_table(snap: Snapshot, *, frames: bool = False) -> RenderableType:
    """One row per worker; a worker that is not running, or is late to beat, is coloured."""
    table = _grid()
    table.add_column("worker", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for name in ("pid", "uptime", "restarts", "cpu %", "rss", "heartbeat"):
        table.add_column(name, justify="right", no_wrap=True)
    if frames:
        table.add_column("frames in", justify="right", no_wrap=True)
        table.add_column("frames out", justify="right", no_wrap=True)
    errors: list[Text] = []
    for w in snap.workers:
        age = w.heartbeat_age_s
        age_style = ("bold red" if age > _HEARTBEAT_DEAD_S
                     else "yellow" if age > _HEARTBEAT_LATE_S else "")
        # A worker with no process has no heartbeat; "0.0s" would read as a fresh one.
        beat = "-" if not w.pid and age <= 0 else f"{age:.1f}s"
        row: list[RenderableType] = [
            w.name,
            Text(worker_state_name(w.state) or "-", style=_WORKER_STYLES.get(w.state, "")),
            str(w.pid) if w.pid else "-",
            _duration(w.uptime_s) if w.pid else "-",
            Text(str(w.restarts), style="yellow" if w.restarts else ""),
            f"{w.cpu_percent:.1f}",
            _bytes(w.rss_bytes) if w.rss_bytes else "-",
            Text(beat, style=age_style),
        ]
        if frames:
            row += [f"{w.frames_in:,}", f"{w.frames_out:,}"]
        table.add_row(*row)
        if w.last_error:
            errors.append(_line((f"{w.name}: {w.last_error}", "red")))
    if not snap.workers:
        table.add_row(Text("no workers yet", style="dim"))
    return Group(table, *errors) if errors else table


def _latency(stats: Iterable[LatencyStat]) -> Table:
    by_stage = {s.stage: s for s in stats if s.stage != FRAME_INTERVAL}
    stages = list(STAGES) + [name for name in by_stage if name not in STAGES]
    table = _grid()
    table.add_column("latency", no_wrap=True)
    for name in stages:
        table.add_column(name, justify="right", no_wrap=True)

    def cells(pick: str) -> list[str]:
        out = []
        for name in stages:
            stat = by_stage.get(name)
            out.append("-" if stat is None else f"{getattr(stat, pick):.1f}")
        return out

    table.add_row("p50 ms", *cells("p50_ms"))
    table.add_row("p99 ms", *cells("p99_ms"))
    return table


def _fps_style(fps: float, target: float) -> str:
    if target <= 0:
        return ""
    return "green" if fps >= 0.9 * target else "yellow" if fps >= 0.5 * target else "bold red"


def pipeline_panel(snap: Snapshot, *, spark_width: int = 20) -> RenderableType:
    """Frame rates against the target, a sparkline of recent output fps, stage latency."""
    p = snap.pipeline
    target = p.target_fps
    fps = _line(
        ("fps", "bold"),
        "  in ", (f"{p.fps_in:.1f}", _fps_style(p.fps_in, target)),
        "  model ", (f"{p.fps_model:.1f}", _fps_style(p.fps_model, target)),
        "  out ", (f"{p.fps_out:.1f}", _fps_style(p.fps_out, target)),
        f" / {target:g}" if target else "",
        ("  " + spark if (spark := sparkline(p.fps_history, spark_width, target)) else "",
         "cyan"),
        f"  encoders {p.encoders_active}",
    )
    lines: list[RenderableType] = [fps]
    # What runs slow for a few seconds now (reactor.daemon.health), before anything else.
    lines += [_line(("! ", "bold yellow"), (w, "yellow")) for w in p.warnings]
    # Percentiles over the last 10 s; a stage idle that long has none to show.
    recent = [s for s in p.latency if s.window_count]
    interval = next((s for s in recent if s.stage == FRAME_INTERVAL), None)
    if interval is not None:  # egress's smoothness: late frames show as a long p99
        late = bool(target) and interval.p99_ms > 1.2 * 1000 / target
        lines.append(_line(("frame interval", "bold"), f"  p50 {interval.p50_ms:.1f}",
                           ("  p99 ", ""), (f"{interval.p99_ms:.1f}", "yellow" if late else ""),
                           " ms"))
    a = p.audio
    if not (a.input or a.output):
        return Group(*lines, _latency(recent))
    sound = _line(
        ("audio", "bold"),
        f"  in {a.rate_in_hz / 1000:.1f} kHz" if a.input else "",
        f"  out {a.rate_out_hz / 1000:.1f} kHz" if a.output else "",
        ("  dropped ", ""), (f"{a.dropped}", "yellow" if a.dropped else ""),
        ("  a/v ", ""),
        (f"{a.av_offset_ms:+.0f} ms", _offset_style(a.av_offset_ms))
        if a.av_offset_known else ("-", "dim"),
    )
    return Group(*lines, sound, _latency(recent))


def _offset_style(ms: float) -> str:
    """Green inside what viewers perceive as in sync (about 45 ms), red beyond twice that."""
    return "green" if abs(ms) <= 45 else "yellow" if abs(ms) <= 90 else "bold red"


def rings_panel(snap: Snapshot, *, bar_width: int = 16) -> RenderableType:
    """Slots in use as a bar, frames dropped, and the ring's policy."""
    table = _grid()
    table.add_column("ring", no_wrap=True)
    table.add_column("used", no_wrap=True)
    table.add_column("", justify="right", no_wrap=True)
    table.add_column("dropped", justify="right", no_wrap=True)
    table.add_column("policy", no_wrap=True)
    for r in snap.pipeline.rings:
        full = r.slots > 0 and r.used >= r.slots
        table.add_row(
            r.name,
            Text(_bar(r.used, r.slots, bar_width), style="yellow" if full else "cyan"),
            f"{r.used}/{r.slots}",
            Text(f"{r.dropped:,}", style="yellow" if r.dropped else ""),
            r.policy or "-",
        )
    if not snap.pipeline.rings:
        table.add_row(Text("no rings yet", style="dim"))
    return table


#: Viewers the session panel lists, one line each (the rest are counted on one more line).
VIEWER_ROWS = 4


#: A loss at which a viewer's line is coloured: where its estimate starts to fall
#: (reactor.media.bwe cuts it above 10 %).
HIGH_LOSS = 0.1


def _rows(n: int) -> int:
    return min(n, VIEWER_ROWS) + (1 if n > VIEWER_ROWS else 0)


def viewer_lines(snap: Snapshot) -> int:
    """How many lines the session panel's viewer lists take (what each sees, then the
    path egress measured to each viewer it estimates)."""
    if not snap.HasField("session"):
        return 0
    stats = snap.session.viewer_stats
    return _rows(len(stats)) + _rows(sum(v.HasField("estimate_kbps") for v in stats))


def _ms(v: ViewerStat, name: str) -> str:
    return f"{getattr(v, name):.0f}" if v.HasField(name) else "?"


def _viewers(s: SessionInfo) -> Table:
    """One line a viewer: what it sees (size@fps), its estimated glass-to-glass latency
    and the parts the viewer reported (ms), frames dropped / freezes."""
    table = _grid()
    for name in ("id", "codec", "size", "g2g", "parts", "drops"):
        table.add_column(name, no_wrap=True)
    table.show_header = False
    for v in list(s.viewer_stats)[:VIEWER_ROWS]:
        size = (f"{v.width}x{v.height}@{v.fps:.0f}"
                if v.HasField("width") and v.HasField("fps") else "-")
        if v.HasField("glass_to_glass_ms"):
            g2g = Text(f"~{v.glass_to_glass_ms:.0f} ms", style="bold")
        else:
            g2g = Text("no report", style="dim")
        stale = v.age_s < 0 or v.age_s > 5
        parts = Text(f"rtt {_ms(v, 'rtt_ms')} jb {_ms(v, 'jitter_buffer_ms')} "
                     f"dec {_ms(v, 'decode_ms')} ren {_ms(v, 'render_ms')}",
                     style="dim" if stale else "")
        drops = (f"drop {v.frames_dropped}/{v.freeze_count}"
                 if v.HasField("frames_dropped") and v.HasField("freeze_count") else "")
        table.add_row(_cell(v.id[:8]), v.codec or "-", size, g2g, parts,
                      _cell(drops, "yellow" if v.frames_dropped or v.freeze_count else ""))
    more = len(s.viewer_stats) - VIEWER_ROWS
    if more > 0:
        table.add_row(Text(f"+{more} more", style="dim"))
    return table


def _kbps(v: ViewerStat, name: str) -> str:
    return f"{getattr(v, name):.0f}" if v.HasField(name) else "?"


def _paths(s: SessionInfo) -> Table | None:
    """One line a viewer egress estimates (``egress.adapt``): its estimate, loss and round
    trip, and the rate its encoder runs at against the most it may, and the size it is
    sent where there is a ladder; yellow when the loss
    is high or the estimate holds it below that most."""
    measured = [v for v in s.viewer_stats if v.HasField("estimate_kbps")]
    if not measured:
        return None
    table = _grid()
    for name in ("id", "codec", "estimate", "loss", "rtt", "rate"):
        table.add_column(name, no_wrap=True)
    table.show_header = False
    for v in measured[:VIEWER_ROWS]:
        loss = f"loss {v.loss * 100:.1f}%" if v.HasField("loss") else "loss ?"
        rate = f"rate {_kbps(v, 'bitrate_kbps')}"
        rate += f"/{v.max_kbps:.0f} kbps" if v.HasField("max_kbps") else " kbps"
        if v.HasField("sent_height"):  # its rung of the ladder (egress.renditions)
            rate += f" {v.sent_width}x{v.sent_height}"
        narrow = ((v.HasField("loss") and v.loss >= HIGH_LOSS)
                  or (v.HasField("max_kbps") and v.estimate_kbps < v.max_kbps))
        table.add_row(_cell(v.id[:8]), v.codec or "-", f"est {v.estimate_kbps:.0f} kbps",
                      loss, f"rtt {_ms(v, 'rtt_ms')} ms", rate,
                      style="yellow" if narrow else "")
    if len(measured) > VIEWER_ROWS:
        table.add_row(Text(f"+{len(measured) - VIEWER_ROWS} more", style="dim"))
    return table


def session_panel(snap: Snapshot, *, commands: int = 3, split: bool = False) -> RenderableType:
    """The session's id, state, duration, viewers and sender; each viewer (up to
    :data:`VIEWER_ROWS`) with what it sees and its estimated glass-to-glass latency, then
    each one egress estimates with its estimate, loss, round trip and rate; the last
    ``commands``.

    ``split`` puts viewers, sender and frames on a line of their own, for a narrow column
    that would otherwise cut them off.
    """
    if not snap.HasField("session"):
        return _line(("session", "bold"), "  ", ("no session", "dim"))
    s = snap.session
    who = (f"viewers {s.viewers}  sender {'yes' if s.sender else 'no'}"
           f"  frames {s.frames_emitted:,}")
    first = _line(
        ("session", "bold"), f" {s.id}  ",
        (session_state_name(s.state) or "-",
         "green" if s.state == tpb.SESSION_STATE_LIVE else "yellow"),
        f"  {_duration(s.duration_s)}",
    )
    head: RenderableType = Group(first, _line(who)) if split else first.append("  " + who)
    if s.viewer_stats:
        head = Group(head, _indent(_viewers(s)))
    paths = _paths(s)
    if paths is not None:
        head = Group(head, _indent(paths))
    shown = list(s.commands)[-commands:] if commands > 0 else []
    if not shown:
        return head
    # Only the free-text columns may shrink (Rich collapses wrappable columns first); their
    # cells are no_wrap themselves, so they end in an ellipsis instead of wrapping.
    table = _grid()
    table.add_column("time", no_wrap=True)
    table.add_column("command")
    table.add_column("", no_wrap=True)
    table.add_column("result")
    for c in shown:
        table.add_row(
            _clock(c.ts),
            _cell(f"{c.name} {_compact_json(c.args_json)}".rstrip()),
            Text("ok", style="green") if c.ok else Text("error", style="bold red"),
            _cell(c.result or "-", "" if c.ok else "red"),
        )
    table.show_header = False
    return Group(head, _indent(table))


def _compact_json(text: str) -> str:
    if not text or text == "{}":
        return ""
    try:
        return json.dumps(json.loads(text), separators=(",", ":"))
    except ValueError:
        return text


def _indent(renderable: RenderableType) -> RenderableType:
    grid = Table.grid()
    grid.add_column(width=2)
    grid.add_column(ratio=1)
    grid.add_row("", renderable)
    return grid


def logs_panel(snap: Snapshot, *, lines: int = 5) -> RenderableType:
    """The newest ``lines`` warnings and errors the daemon's processes logged."""
    shown = list(snap.logs)[-lines:] if lines > 0 else []
    if not shown:
        return _line(("no warnings or errors", "dim"))
    table = _grid()
    table.show_header = False
    table.add_column("time", no_wrap=True)
    table.add_column("level", no_wrap=True)
    table.add_column("process", no_wrap=True)
    table.add_column("message")
    for line in shown:
        level = line.level.upper()
        table.add_row(_clock(line.ts), Text(level, style=_LEVEL_STYLES.get(level, "")),
                      line.process, _cell(line.message))
    return table


# --- layout ------------------------------------------------------------------------------


def _height(renderable: RenderableType, width: int) -> int:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    return len(console.render_lines(renderable, console.options, pad=False))


def dashboard(snap: Snapshot, width: int, height: int) -> RenderableType:
    """Every panel, laid out to fit ``width`` x ``height`` (80x24 at least).

    At ``WIDE`` columns the panels are boxed in two columns; below, one borderless column.
    Lines left over after the fixed panels go, in order, to the last two commands and three
    log lines, then to blank lines between the panels, then to more commands and logs.
    """
    if width >= WIDE:
        return _wide(snap, width, height)
    return _narrow(snap, width, height)


def _narrow(snap: Snapshot, width: int, height: int) -> RenderableType:
    fixed: list[RenderableType] = [
        header(snap),
        workers_table(snap),
        pipeline_panel(snap, spark_width=max(8, min(30, width - 60))),
        rings_panel(snap), *gpu_panels(snap),
    ]
    used = sum(_height(r, width) for r in fixed) + 1  # + the session's own line
    used += viewer_lines(snap)
    n_cmds, n_logs, gaps = _budget(snap, height - used, gaps_needed=len(fixed) + 1)
    sections = [*fixed, session_panel(snap, commands=n_cmds), logs_panel(snap, lines=n_logs)]
    if not gaps:
        return Group(*sections)
    spaced: list[RenderableType] = []
    for section in sections:
        if spaced:
            spaced.append(Text(""))
        spaced.append(section)
    return Group(*spaced)


def _budget(snap: Snapshot, spare: int, *, gaps_needed: int) -> tuple[int, int, bool]:
    """How many commands and log lines fit in ``spare`` lines, and whether blank lines do."""
    have_cmds = len(snap.session.commands) if snap.HasField("session") else 0
    have_logs = len(snap.logs)
    logs = min(have_logs, 1)
    spare -= 1  # the logs panel's first line, or its "no warnings or errors"

    def take(want: int) -> int:
        nonlocal spare
        got = max(0, min(want, spare))
        spare -= got
        return got

    cmds = take(min(have_cmds, 2))
    logs += take(min(have_logs - logs, 2))
    gaps = spare >= gaps_needed
    if gaps:
        spare -= gaps_needed
    cmds += take(min(have_cmds - cmds, 3))
    logs += take(min(have_logs - logs, 20))
    return cmds, logs, gaps


def _wide(snap: Snapshot, width: int, height: int) -> RenderableType:
    def boxed(title: str, body: RenderableType) -> Panel:
        return Panel(body, title=title, title_align="left", box=box.ROUNDED)

    # The pipeline's latency table is the widest thing on the left; the right column
    # (session, logs) is all free text and takes whatever is left.
    left_width = max(70, width // 2)
    top: list[RenderableType] = [header(snap), boxed("workers", workers_table(snap, frames=True))]
    left = Group(
        boxed("pipeline", pipeline_panel(snap, spark_width=left_width - 56)),
        boxed("rings", rings_panel(snap, bar_width=24)),
        *(boxed("gpu", panel) for panel in gpu_panels(snap)),
    )
    spare = height - sum(_height(r, width) for r in top)
    spare -= 2 + 2 + 2  # the session box and its own two lines, the logs box
    spare -= viewer_lines(snap)
    have_cmds = len(snap.session.commands) if snap.HasField("session") else 0
    cmds = min(have_cmds, 5, max(spare // 2, 0))
    right = Group(
        boxed("session", session_panel(snap, commands=cmds, split=True)),
        boxed("warnings and errors", logs_panel(snap, lines=max(spare - cmds, 1))),
    )
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=left_width)
    grid.add_column(ratio=1)
    grid.add_row(left, right)
    return Group(*top, grid)


def disconnected(message: str) -> RenderableType:
    """A boxed, centred ``message`` for when there is no daemon, or it stopped answering."""
    body = Text(message, justify="center")
    body.append("\n\npress q to quit", style="dim")
    return Align.center(Panel(body, title="reactor monitor", padding=(1, 4), expand=False),
                        vertical="middle")


def plain_text(snap: Snapshot) -> str:
    """The dashboard as colourless text ``PLAIN_WIDTH`` columns wide, every line shown."""
    console = Console(width=PLAIN_WIDTH, file=io.StringIO(), color_system=None,
                      force_terminal=False, no_color=True, legacy_windows=False)
    with console.capture() as capture:
        console.print(dashboard(snap, PLAIN_WIDTH, 1000))
    return "\n".join(line.rstrip() for line in capture.get().splitlines())
