"""A viewer on a narrow link: the daemon in a network namespace whose side of the veth
is shaped with ``tc tbf`` (1.5 Mbit/s, a 200 ms queue), an aiortc viewer or Chromium
outside. Without pacing and estimation (``egress.adapt: false``) both decoded no frame
of the film grain in 20 s.

The same link with loss or an outage instead: an ``nftables`` rule inside the namespace
drops a share of the UDP packets the daemon sends (``numgen random``), or all of them.

What is measured is what a user sees: frames arriving at the viewer, after the first 3 s
(start-up), their rate and the gaps between them; a gap over 500 ms is a freeze.
The namespace, and with it the qdisc and the rules, goes when the test ends, however it ends.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.chromium import TRACK_PCS_JS, chromium_args, launch_chromium
from tests.support.netlink import (
    GRAIN,
    NARROW,
    WARMUP_S,
    WIDE,
    TimedViewer,
    drop_udp,
    dropped,
    fps_between,
    last_json,
    link_stats,
    recovered_at,
    shape,
    undrop,
)
from tests.support.netns import Netns, RemoteDaemon

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

VIEWER = textwrap.dedent('''
    import asyncio, json, sys, time
    from reactor.client import Client

    url, token, seconds, warmup = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])

    async def main():
        out = {}
        async with Client(url, token=token) as client:
            viewer = await client.watch(codec="h264")
            try:
                t0 = time.monotonic()
                times = []
                while time.monotonic() - t0 < seconds:
                    try:
                        await asyncio.wait_for(viewer.recv(), seconds)
                    except asyncio.TimeoutError:
                        break
                    times.append(time.monotonic() - t0)
                late = [t for t in times if t >= warmup]
                gaps = [b - a for a, b in zip([warmup] + late, late + [seconds])]
                span = seconds - warmup
                out.update(frames=len(times), fps=round(len(late) / span, 2),
                           max_gap_ms=round(max(gaps) * 1000) if gaps else None,
                           freezes=sum(g > 0.5 for g in gaps),
                           frozen_s=round(sum(g for g in gaps if g > 0.5), 2))
            finally:
                await viewer.close()
        print(json.dumps(out), flush=True)

    asyncio.run(main())
''')


def watch(d: RemoteDaemon, seconds: float = 20.0) -> tuple[dict[str, Any], Any]:
    """One aiortc viewer (its own process) for ``seconds``: fps and freezes after 3 s,
    and egress's view of it (``viewers_detail``) near the end."""
    proc = subprocess.Popen([sys.executable, "-c", VIEWER, d.url, d.token, str(seconds),
                             str(WARMUP_S)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        time.sleep(seconds - 2)
        detail = (d.status().get("session") or {}).get("viewers_detail")
    finally:
        result = last_json(proc, seconds + 60)
    return result, detail


@pytest.mark.parametrize("model", ["pattern", "grain"])
def test_aiortc_viewer_plays_over_a_narrow_link(narrow_ns: Netns, tmp_path: Path,
                                                model: str) -> None:
    cfg = GRAIN if model == "grain" else {}
    with RemoteDaemon(narrow_ns, cfg, tmp_path / "daemon") as d:
        seen, detail = watch(d)
        report = (f"{model}: {seen}\nviewers: {detail}\n"
                  f"{link_stats(narrow_ns)}")
        print(report)
        if seen["fps"] < 25 or seen["freezes"]:
            print(d.logs(20000))
        assert seen["fps"] >= 25 and seen["freezes"] == 0, report


# Chromium's own count of what it decoded and froze on (inbound-rtp, video).
INBOUND_JS = """async () => {
  const out = {};
  for (const pc of window.__reactorPcs || []) {
    if (pc.connectionState === 'closed') continue;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        Object.assign(out, {frames: s.framesDecoded, freezes: s.freezeCount,
                            frozen_s: s.totalFreezesDuration, lost: s.packetsLost,
                            plis: s.pliCount});
      }
    });
  }
  return out;
}"""


@pytest.mark.browser
def test_chromium_plays_high_entropy_video_over_a_narrow_link(narrow_ns: Netns,
                                                             tmp_path: Path) -> None:
    with RemoteDaemon(narrow_ns, GRAIN, tmp_path / "daemon") as d, \
            launch_chromium(chromium_args(fake_camera_fps=30)) as browser:
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        ctx.add_init_script(TRACK_PCS_JS)
        page = ctx.new_page()
        t0 = time.monotonic()
        page.goto(f"{d.url}#token={d.token}")
        page.wait_for_function("(() => { const r = window.reactor; return !!r && "
                               "r.state === 'connected' && r.framesDecoded > 5; })()",
                               timeout=20_000)
        time.sleep(max(0.0, WARMUP_S - (time.monotonic() - t0)))
        first, t1 = page.evaluate(INBOUND_JS), time.monotonic()
        time.sleep(15)
        last, t2 = page.evaluate(INBOUND_JS), time.monotonic()
        fps = (last["frames"] - first["frames"]) / (t2 - t1)
        report = f"fps {fps:.1f}; after 3 s {first}; at the end {last}\n{link_stats(narrow_ns)}"
        print(report)
        # Chromium counts a freeze past max(3 frame intervals, 150 ms + mean interval),
        # shorter than ours: no more than 500 ms frozen in all means no freeze over 500 ms.
        assert fps >= 25 and last["frozen_s"] - first["frozen_s"] <= 0.5, report


# --- loss, an outage, a step down and back up -----------------------------------------------

@pytest.mark.parametrize(("model", "per_mille", "floor"), [
    ("pattern", 50, 27), ("grain", 50, 27), ("grain", 100, 25)])
def test_aiortc_viewer_plays_through_random_loss(plain_ns: Netns, tmp_path: Path, model: str,
                                                 per_mille: int, floor: float) -> None:
    """5 % of the daemon's UDP packets dropped at random: 27 fps or more after the first
    3 s, NACK recovering through the pacer (measured twice: the pattern 30.0 and 30.0 fps,
    the grain 29.7 and 29.9). 10 %: it keeps playing, held to 25 fps (measured: the grain
    30.1 and 29.6 fps). They guard NACK recovery through the pacer, not the adaptation:
    with ``egress.adapt: false`` the grain at 10 % played at 29.9 fps too (once)."""
    cfg = GRAIN if model == "grain" else {}
    drop_udp(plain_ns, per_mille)
    with RemoteDaemon(plain_ns, cfg, tmp_path / "daemon") as d:
        viewer = TimedViewer(d, 20.0)
        viewer.sleep_until(18.0)
        detail = (d.status().get("session") or {}).get("viewers_detail")
        seen = viewer.result()
    times = seen["times"]
    assert times, f"no frame at all\n{dropped(plain_ns)}"
    fps = fps_between(times, times[0] + WARMUP_S, viewer.start + viewer.seconds)
    report = (f"{model}, {per_mille / 10} % loss: {fps:.1f} fps, states {seen['states']}\n"
              f"viewers: {detail}\n{dropped(plain_ns)}")
    print(report)
    assert fps >= floor, report


@pytest.mark.parametrize("model", ["pattern", "grain"])
def test_aiortc_viewer_resumes_after_an_outage(plain_ns: Netns, tmp_path: Path,
                                               model: str) -> None:
    """Every packet of the daemon dropped for 3 s, then none: frames are back within 1 s
    of the link returning, on the same peer connection (no new WHEP), and it plays on.
    Before the pacer renumbered a cut-off viewer's packets (``media.pacer``) they came
    back after 2.1, 2.2 and 3.2 s: aiortc's jitter buffer waited for packets lost in the
    outage until 512 newer ones had come."""
    cfg = GRAIN if model == "grain" else {}
    with RemoteDaemon(plain_ns, cfg, tmp_path / "daemon") as d:
        viewer = TimedViewer(d, 16.0)
        viewer.sleep_until(6.0)
        drop_udp(plain_ns, 1000)
        down = time.monotonic()
        time.sleep(3.0)
        undrop(plain_ns)
        up = time.monotonic()
        seen = viewer.result()
    times = seen["times"]
    before = [t for t in times if t < down]
    during = [t for t in times if down + 0.3 <= t < up]  # 0.3 s: what was on the way
    after = [t for t in times if t >= up]
    back_s = after[0] - up if after else None
    report = (f"{model}: {len(before)} frames before, {len(during)} during, {len(after)} "
              f"after; back after {back_s} s; states {seen['states']}")
    print(report)
    assert before and not during, report
    assert back_s is not None and back_s <= 1.0, report
    assert "failed" not in seen["states"] and "disconnected" not in seen["states"], report
    # It keeps playing after it is back.
    assert fps_between(times, up + 1.0, viewer.start + viewer.seconds - 1.0) >= 25, report



# --- a step down and back up --------------------------------------------------------------

#: The grain from its most: the test is of the step, not of a viewer's start-up.
GRAIN_AT_MOST = {**GRAIN, "egress": {"start_bitrate_kbps": 4000}}


def encoder_kbps(d: RemoteDaemon) -> float | None:
    """The rate the encoder of the (one) viewer runs at, as status shows it."""
    detail = (d.status().get("session") or {}).get("viewers_detail") or []
    rate = detail[0].get("bitrate_kbps") if detail else None
    return float(rate) if rate is not None else None


def test_aiortc_viewer_plays_again_after_a_step_down(wide_ns: Netns, tmp_path: Path) -> None:
    """The grain at the encoder's most (4 Mbit/s) over a 6 Mbit/s link that steps down to
    1.5 Mbit/s (the narrow link, a 200 ms queue): on the same connection it plays at
    25 fps or more again, every second from 10 s after the step on. How soon is printed:
    the issue's goal, 25 fps within 3 s, is not met (`tools/bench.py network` judges it).

    Measured: frames stopped about 0.4 s after the step and were back for good 4.3-5.7 s
    after it (one run 8.1 s; two of nine played through). The estimate reaches 1.2 Mbit/s
    about 2 s after the step, and the 3-4 Mbit/s sent meanwhile overflows the queue (about
    300 packets dropped); aiortc's viewer NACKs a lost packet again only when a new gap
    shows, so once a retransmission is lost too it waits for 512 newer packets (3.4 s at
    1.5 Mbit/s) before it gives the gap up, which the sender cannot see."""
    with RemoteDaemon(wide_ns, GRAIN_AT_MOST, tmp_path / "daemon") as d:
        viewer = TimedViewer(d, 26.0)
        viewer.sleep_until(12.0)
        before = encoder_kbps(d)
        shape(wide_ns, *NARROW)
        step = time.monotonic()
        viewer.sleep_until(24.0)
        after = encoder_kbps(d)
        seen = viewer.result()
    times = seen["times"]
    end = viewer.start + 24.0
    back = recovered_at(times, step, end, 25.0)
    report = (f"encoder {before} kbps before the step, {after} after; 25 fps for good "
              f"{'never' if back is None else f'{back - step:.1f} s'} after the step; "
              f"states {seen['states']}\n{link_stats(wide_ns)}")
    print(report)
    assert before is not None and before > 3000, report  # the step is a real overload
    assert back is not None and back - step <= 10.0, report
    assert "failed" not in seen["states"], report


@pytest.mark.xfail(strict=True, reason=(
    "issue 26: the climb follows aiortc's REMB, 8 %/s; see the test's docstring"))
def test_the_bitrate_climbs_back_within_10_s_of_a_step_up(wide_ns: Netns,
                                                          tmp_path: Path) -> None:
    """6 Mbit/s, 1.5 for 6 s, 6 again: the encoder's rate (status' ``bitrate_kbps``) is
    back at 90 % of what it was before the step down within 10 s of the step up.

    Not met: the estimate is capped by the viewer's REMB, and aiortc's receiver-side
    estimator (``aiortc/rate.py``, libwebrtc's AIMD) grows it by 8 % a second whatever
    the sender does (it has no probe detection; Chromium's detects probes only before
    its first valid estimate or in the first 2 s of a stream, so probing mid-stream
    would not move its REMB either), and after an over-use it grows additively (about
    30 kbit/s a second) until the throughput passes its old average. Measured: from
    0.74 and 0.99 Mbit/s at the end of the step down, 1.29 and 1.51 after 9 s, 2.57 and
    3.42 after 24 s (4 Mbit/s before)."""
    with RemoteDaemon(wide_ns, GRAIN_AT_MOST, tmp_path / "daemon") as d:
        viewer = TimedViewer(d, 44.0)
        viewer.sleep_until(12.0)
        before = encoder_kbps(d)
        shape(wide_ns, *NARROW)
        viewer.sleep_until(18.0)
        low = encoder_kbps(d)
        shape(wide_ns, *WIDE)
        up = time.monotonic()
        rates: list[tuple[float, float | None]] = []
        while time.monotonic() - up < 24.0:
            time.sleep(0.5)
            rates.append((round(time.monotonic() - up, 1), encoder_kbps(d)))
        seen = viewer.result()
    assert before is not None and before > 3000, f"the encoder ran at {before} kbps"
    back = next((t for t, rate in rates if rate is not None and rate >= 0.9 * before), None)
    report = (f"encoder {before} kbps before the step down, {low} at its end; back at 90 % "
              f"after {back} s of the step up; {rates}; states {seen['states']}")
    print(report)
    assert back is not None and back <= 10.0, report
