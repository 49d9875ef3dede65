"""The monitor's panels, rendered into a fixed-width colourless console, compared exactly."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import pytest
from rich.console import Console, RenderableType

from reactor.monitor import render
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto.telemetry_pb2 import LogLine, Snapshot, WorkerStat

MakeSnapshot = Callable[..., Snapshot]


def text_of(renderable: RenderableType, width: int = 80, height: int = 24) -> str:
    console = Console(file=io.StringIO(), width=width, height=height, color_system=None,
                      force_terminal=False, legacy_windows=False)
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in out.splitlines())


def block(text: str) -> str:
    """An expected block written as an indented triple-quoted string in the test."""
    lines = [line[4:].rstrip() for line in text.splitlines()]
    return "\n".join(lines).strip("\n")


def test_header(make_snapshot: MakeSnapshot) -> None:
    assert text_of(render.header(make_snapshot())) == block("""
    reactor ● degraded  pid 4242  up 1h 02m  http://127.0.0.1:8081
    model reactor.examples.pattern:TestPattern  config configs/pattern.yaml  run di…
    error: egress restarting after a crash
    """)


def test_header_of_a_starting_daemon() -> None:
    assert text_of(render.header(Snapshot(state=tpb.DAEMON_STATE_STARTING))) == block("""
    reactor ● starting  pid -  up 0s
    model -  config (packaged default)  run dir -
    """)


def test_header_of_a_draining_daemon_says_why_and_until_when() -> None:
    snap = Snapshot(state=tpb.DAEMON_STATE_RUNNING,
                    drain=tpb.DrainStat(since_s=3, timeout_s=60, left_s=57, why="SIGTERM"))
    assert text_of(render.header(snap), width=96) == block("""
    reactor ● running  pid -  up 0s
    model -  config (packaged default)  run dir -
    draining: the daemon takes no new session (SIGTERM); it stops when the session ends, in 57 s at
    most
    """)


def test_workers_table(make_snapshot: MakeSnapshot) -> None:
    assert text_of(render.workers_table(make_snapshot())) == block("""
    worker     state        pid  uptime  restarts  cpu %       rss  heartbeat
    ingress    running     4243  1h 02m         0    3.1  85.2 MiB       0.1s
    inference  running     4244  1h 02m         0   97.0   1.2 GiB       0.2s
    egress     restarting     -       -         2    0.0         -       6.5s
    egress: RuntimeError: encoder died
    """)


def test_a_worker_in_trouble_stands_out_in_colour(make_snapshot: MakeSnapshot) -> None:
    snap = make_snapshot()
    snap.workers.append(WorkerStat(name="spare", state=tpb.WORKER_STATE_FAILED,
                                   heartbeat_age_s=0.1))
    console = Console(file=io.StringIO(), width=80, color_system="standard", force_terminal=True)
    console.print(render.workers_table(snap))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    # A cell's padding shares its style, so match the escape, the padding and the word.
    assert "\x1b[32mrunning" in out
    assert "\x1b[1;33mrestarting" in out
    assert "\x1b[1;31mfailed" in out
    assert re.search(r"\x1b\[1;31m +6\.5s", out)  # a heartbeat this late is red too
    assert "\x1b[32m0.1s" not in out  # a timely one is not coloured at all


def test_pipeline_panel(make_snapshot: MakeSnapshot) -> None:
    assert text_of(render.pipeline_panel(make_snapshot())) == block("""
    fps  in 29.9  model 29.8  out 14.2 / 30  █████▆▅▃▄▄  encoders 1
    latency  decode  input_ring  model  output_ring  encode
    p50 ms      2.1         0.1   12.3          0.1     6.0
    p99 ms      4.0         0.3   20.1          0.2     9.8
    """)


def test_pipeline_panel_shows_egress_frame_interval_on_its_own_line(
        make_snapshot: MakeSnapshot) -> None:
    snap = make_snapshot()
    snap.pipeline.latency.add(stage="frame_interval", p50_ms=33.3, p99_ms=38.0,
                              window_count=300)
    assert text_of(render.pipeline_panel(snap)) == block("""
    fps  in 29.9  model 29.8  out 14.2 / 30  █████▆▅▃▄▄  encoders 1
    frame interval  p50 33.3  p99 38.0 ms
    latency  decode  input_ring  model  output_ring  encode
    p50 ms      2.1         0.1   12.3          0.1     6.0
    p99 ms      4.0         0.3   20.1          0.2     9.8
    """)


def test_pipeline_panel_shows_audio_rates_drops_and_offset_when_sound_is_on(
        make_snapshot: MakeSnapshot) -> None:
    snap = make_snapshot()
    a = snap.pipeline.audio
    a.input, a.output, a.rate_in_hz, a.rate_out_hz, a.dropped = True, True, 16000.0, 48000.0, 2
    a.av_offset_ms, a.av_offset_known = -12.4, True
    assert text_of(render.pipeline_panel(snap)).splitlines()[1] == (
        "audio  in 16.0 kHz  out 48.0 kHz  dropped 2  a/v -12 ms")


def test_pipeline_panel_before_any_frame() -> None:
    assert text_of(render.pipeline_panel(Snapshot())) == block("""
    fps  in 0.0  model 0.0  out 0.0  encoders 0
    latency  decode  input_ring  model  output_ring  encode
    p50 ms        -           -      -            -       -
    p99 ms        -           -      -            -       -
    """)


@pytest.mark.parametrize(
    ("values", "width", "top", "expected"),
    [
        ([], 10, 30.0, ""),
        ([0, 10, 20, 30], 10, 30.0, "▁▃▆█"),
        ([30, 30, 15, 0], 10, 30.0, "██▅▁"),
        ([1, 2, 3, 4, 5, 6], 3, 0.0, "▆▇█"),  # the newest `width`, scaled to their peak
        ([0, 0], 5, 0.0, "▁▁"),
    ],
)
def test_sparkline(values: list[float], width: int, top: float, expected: str) -> None:
    assert render.sparkline(values, width, top) == expected


def test_rings_panel(make_snapshot: MakeSnapshot) -> None:
    assert text_of(render.rings_panel(make_snapshot())) == block("""
    ring    used                   dropped  policy
    input   ████░░░░░░░░░░░░  1/4       12  latest
    output  ████████████████  8/8        0  block
    """)


def test_session_panel(make_snapshot: MakeSnapshot) -> None:
    assert text_of(render.session_panel(make_snapshot())) == block("""
    session 3f2a9c1d  live  1m 05s  viewers 2  sender yes  frames 1,950
      22:13:30  set_gain {"gain":2.0}  ok     null
      22:13:40  set_gain {"gain":9.0}  error  gain: Input should be less than or eq…
      22:13:50  reset                  ok     {"frames": 1200}
    """)


def test_session_panel_shows_the_last_commands(make_snapshot: MakeSnapshot) -> None:
    assert text_of(render.session_panel(make_snapshot(), commands=1)) == block("""
    session 3f2a9c1d  live  1m 05s  viewers 2  sender yes  frames 1,950
      22:13:50  reset  ok  {"frames": 1200}
    """)


def test_no_session(make_snapshot: MakeSnapshot) -> None:
    assert text_of(render.session_panel(make_snapshot(session=False))) == "session  no session"


def test_logs_panel_shows_the_newest(make_snapshot: MakeSnapshot) -> None:
    assert text_of(render.logs_panel(make_snapshot(), lines=2)) == block("""
    22:14:10  ERROR    egress      RuntimeError: encoder died
    22:14:12  WARNING  supervisor  restarting egress in 2.0 s (attempt 2)
    """)
    assert text_of(render.logs_panel(Snapshot())) == "no warnings or errors"


def test_disconnected() -> None:
    assert text_of(render.disconnected("no daemon running at /tmp/r; waiting…"), 60) == block("""
          ╭────────────── reactor monitor ──────────────╮
          │                                             │
          │    no daemon running at /tmp/r; waiting…    │
          │                                             │
          │               press q to quit               │
          │                                             │
          ╰─────────────────────────────────────────────╯
    """)


def test_dashboard_at_80x24(make_snapshot: MakeSnapshot) -> None:
    assert text_of(render.dashboard(make_snapshot(), 80, 24)) == block("""
    reactor ● degraded  pid 4242  up 1h 02m  http://127.0.0.1:8081
    model reactor.examples.pattern:TestPattern  config configs/pattern.yaml  run di…
    error: egress restarting after a crash
    worker     state        pid  uptime  restarts  cpu %       rss  heartbeat
    ingress    running     4243  1h 02m         0    3.1  85.2 MiB       0.1s
    inference  running     4244  1h 02m         0   97.0   1.2 GiB       0.2s
    egress     restarting     -       -         2    0.0         -       6.5s
    egress: RuntimeError: encoder died
    fps  in 29.9  model 29.8  out 14.2 / 30  █████▆▅▃▄▄  encoders 1
    latency  decode  input_ring  model  output_ring  encode
    p50 ms      2.1         0.1   12.3          0.1     6.0
    p99 ms      4.0         0.3   20.1          0.2     9.8
    ring    used                   dropped  policy
    input   ████░░░░░░░░░░░░  1/4       12  latest
    output  ████████████████  8/8        0  block
    session 3f2a9c1d  live  1m 05s  viewers 2  sender yes  frames 1,950
      22:13:30  set_gain {"gain":2.0}  ok     null
      22:13:40  set_gain {"gain":9.0}  error  gain: Input should be less than or eq…
      22:13:50  reset                  ok     {"frames": 1200}
    22:13:21  WARNING  ingress     slow client
    22:14:10  ERROR    egress      RuntimeError: encoder died
    22:14:12  WARNING  supervisor  restarting egress in 2.0 s (attempt 2)
    """)


def _busy(make_snapshot: MakeSnapshot) -> Snapshot:
    snap = make_snapshot()
    for i in range(30):
        snap.logs.append(LogLine(ts=1_700_000_100 + i, process="ingress", level="WARNING",
                                 message=f"client {i} is slow " + "x" * 100))
    snap.session.commands.extend(list(snap.session.commands) * 5)
    return snap


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (120, 24), (160, 48), (200, 60)])
@pytest.mark.parametrize("kind", ["full", "busy", "empty", "no session"])
def test_dashboard_fits(make_snapshot: MakeSnapshot, size: tuple[int, int], kind: str) -> None:
    width, height = size
    snap = {"full": make_snapshot, "busy": lambda: _busy(make_snapshot), "empty": Snapshot,
            "no session": lambda: make_snapshot(session=False)}[kind]()
    lines = text_of(render.dashboard(snap, width, height), width, height).splitlines()
    assert len(lines) <= height
    assert max(len(line) for line in lines) <= width


def test_dashboard_uses_the_room_it_has(make_snapshot: MakeSnapshot) -> None:
    snap = _busy(make_snapshot)
    short = text_of(render.dashboard(snap, 80, 24))
    tall = text_of(render.dashboard(snap, 80, 50), 80, 50)
    assert short.count("client ") < tall.count("client ")
    assert "\n\n" not in short and "\n\n" in tall  # blank lines between panels when tall
    wide = text_of(render.dashboard(snap, 140, 30), 140, 30)
    assert "╭─ workers" in wide and "frames in" in wide  # boxed, with more columns
    assert any("╭─ pipeline" in line and "╭─ session" in line for line in wide.splitlines())


def test_plain_text(make_snapshot: MakeSnapshot) -> None:
    assert render.plain_text(make_snapshot()) == block("""
    reactor ● degraded  pid 4242  up 1h 02m  http://127.0.0.1:8081
    model reactor.examples.pattern:TestPattern  config configs/pattern.yaml  run dir /run/reactor
    error: egress restarting after a crash

    worker     state        pid  uptime  restarts  cpu %       rss  heartbeat
    ingress    running     4243  1h 02m         0    3.1  85.2 MiB       0.1s
    inference  running     4244  1h 02m         0   97.0   1.2 GiB       0.2s
    egress     restarting     -       -         2    0.0         -       6.5s
    egress: RuntimeError: encoder died

    fps  in 29.9  model 29.8  out 14.2 / 30  █████▆▅▃▄▄  encoders 1
    latency  decode  input_ring  model  output_ring  encode
    p50 ms      2.1         0.1   12.3          0.1     6.0
    p99 ms      4.0         0.3   20.1          0.2     9.8

    ring    used                   dropped  policy
    input   ████░░░░░░░░░░░░  1/4       12  latest
    output  ████████████████  8/8        0  block

    session 3f2a9c1d  live  1m 05s  viewers 2  sender yes  frames 1,950
      22:13:30  set_gain {"gain":2.0}  ok     null
      22:13:40  set_gain {"gain":9.0}  error  gain: Input should be less than or equal to 4
      22:13:50  reset                  ok     {"frames": 1200}

    22:13:21  WARNING  ingress     slow client
    22:14:10  ERROR    egress      RuntimeError: encoder died
    22:14:12  WARNING  supervisor  restarting egress in 2.0 s (attempt 2)
    """)
    assert "\x1b" not in render.plain_text(make_snapshot())


def _with_viewers(snap: Snapshot, n: int) -> Snapshot:
    snap.session.viewer_stats.add(
        id="a1b2c3d4e5f6", codec="h264", age_s=0.4, agent="browser", jitter_buffer_ms=18.4,
        rtt_ms=1.2, decode_ms=2.6, render_ms=11.2, width=1280, height=720, fps=29.6,
        frames_dropped=0, freeze_count=0, glass_to_glass_ms=43.2)
    snap.session.viewer_stats.add(
        id="0f9e8d7c6b5a", codec="vp8", age_s=7.0, agent="reactor.client", rtt_ms=0.8,
        width=320, height=240, fps=30.0, frames_dropped=3, freeze_count=1,
        glass_to_glass_ms=9.6)
    for i in range(n - 2):
        snap.session.viewer_stats.add(id=f"{i:012x}", codec="h264", age_s=-1.0)
    return snap


def test_session_panel_lists_viewers_with_their_estimate(make_snapshot: MakeSnapshot) -> None:
    snap = _with_viewers(make_snapshot(), 3)
    assert text_of(render.session_panel(snap, commands=0)) == block("""
    session 3f2a9c1d  live  1m 05s  viewers 2  sender yes  frames 1,950
      a1b2c3d4  h264  1280x720@30  ~43 ms     rtt 1 jb 18 dec 3 ren 11  drop 0/0
      0f9e8d7c  vp8   320x240@30   ~10 ms     rtt 1 jb ? dec ? ren ?    drop 3/1
      00000000  h264  -            no report  rtt ? jb ? dec ? ren ?
    """)


def test_session_panel_counts_viewers_past_the_rows_it_shows(
        make_snapshot: MakeSnapshot) -> None:
    snap = _with_viewers(make_snapshot(), render.VIEWER_ROWS + 3)
    lines = text_of(render.session_panel(snap, commands=0)).splitlines()
    assert len(lines) == 1 + render.VIEWER_ROWS + 1 == 1 + render.viewer_lines(snap)
    assert lines[-1].strip() == "+3 more"


def test_dashboard_with_viewers_still_fits_the_terminal(make_snapshot: MakeSnapshot) -> None:
    snap = _with_viewers(make_snapshot(), 6)
    for width, height in ((80, 24), (100, 30), (160, 40)):
        out = text_of(render.dashboard(snap, width, height), width, height)
        assert len(out.splitlines()) <= height, (width, height)
        assert "~43 ms" in out


def _with_paths(snap: Snapshot, n: int = 3) -> Snapshot:
    _with_viewers(snap, n)
    wide, narrow = snap.session.viewer_stats[:2]
    wide.estimate_kbps, wide.loss, wide.bitrate_kbps, wide.max_kbps = 4000, 0.0, 900, 4000
    narrow.estimate_kbps, narrow.bitrate_kbps, narrow.max_kbps = 900, 900, 4000
    narrow.loss, narrow.rtt_ms = 0.125, 182.4
    return snap


def test_session_panel_shows_each_estimated_viewer_s_path(make_snapshot: MakeSnapshot) -> None:
    snap = _with_paths(make_snapshot())
    assert text_of(render.session_panel(snap, commands=0)) == block("""
    session 3f2a9c1d  live  1m 05s  viewers 2  sender yes  frames 1,950
      a1b2c3d4  h264  1280x720@30  ~43 ms     rtt 1 jb 18 dec 3 ren 11  drop 0/0
      0f9e8d7c  vp8   320x240@30   ~10 ms     rtt 182 jb ? dec ? ren ?  drop 3/1
      00000000  h264  -            no report  rtt ? jb ? dec ? ren ?
      a1b2c3d4  h264  est 4000 kbps  loss 0.0%   rtt 1 ms    rate 900/4000 kbps
      0f9e8d7c  vp8   est 900 kbps   loss 12.5%  rtt 182 ms  rate 900/4000 kbps
    """)
    assert render.viewer_lines(snap) == 5


def _path_lines_in_colour(snap: Snapshot) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=100, color_system="standard", force_terminal=True,
                      legacy_windows=False)
    console.print(render.session_panel(snap, commands=0))
    return out.getvalue().splitlines()[-2:]


def test_a_narrow_or_lossy_viewer_is_yellow(make_snapshot: MakeSnapshot) -> None:
    snap = _with_paths(make_snapshot())
    wide, narrow = _path_lines_in_colour(snap)  # the narrow one: 900 of 4000 kbps
    assert "\x1b[33m" not in wide and "\x1b[33m" in narrow
    snap.session.viewer_stats[1].estimate_kbps = 4000  # at the most, but losing 12.5 %
    snap.session.viewer_stats[0].loss = 0.02
    wide, narrow = _path_lines_in_colour(snap)
    assert "\x1b[33m" not in wide and "\x1b[33m" in narrow


def test_viewer_paths_past_the_rows_are_counted(make_snapshot: MakeSnapshot) -> None:
    snap = _with_viewers(make_snapshot(), render.VIEWER_ROWS + 2)
    for v in snap.session.viewer_stats:
        v.estimate_kbps = 1000
    lines = text_of(render.session_panel(snap, commands=0)).splitlines()
    assert len(lines) == 1 + 2 * (render.VIEWER_ROWS + 1) == 1 + render.viewer_lines(snap)
    assert lines[-1].strip() == "+2 more"
    assert lines[-2].strip() == "00000000  h264  est 1000 kbps  loss ?  rtt ? ms  rate ? kbps"


def test_dashboard_with_viewer_paths_still_fits_the_terminal(
        make_snapshot: MakeSnapshot) -> None:
    snap = _with_paths(make_snapshot(), 6)
    for width, height in ((80, 24), (100, 30), (160, 40)):
        out = text_of(render.dashboard(snap, width, height), width, height)
        assert len(out.splitlines()) <= height, (width, height)
        assert "est 900 kbps" in out
