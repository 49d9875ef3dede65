"""``tools/bench.py network``: viewers on real (shaped, lossy, cut) links, and what the
pacer and the estimate cost.

**Links.** A real daemon runs in a network namespace (:mod:`tests.support.netns`); its
side of the veth is shaped with ``tc tbf`` or made to drop UDP with ``nftables``
(:mod:`tests.support.netlink`, the same harness as ``tests/integration/test_network.py``).
A stock aiortc viewer (``reactor.client``, H.264, decoding every frame) in its own process
outside watches, one condition after another, each with a viewer of its own; the
namespace and the daemons go when the section ends, however it ends. Per condition:
frames per second after the first 3 s, freezes (gaps over 500 ms: how many, how long in
all), the time to recover after a step down (until every following 1 s window holds
25 fps) and after an outage (the first frame after the link returns), the bitrate that
crossed the link against its cap (bytes our end of the veth received), and egress's own
view near the end (its estimate of the viewer, the encoder's bitrate).

The packaged test pattern (under 1 Mbit/s at 720p) is what a new user tries first; the
film grain (``network_models:Grain``) wants about 4 Mbit/s, so a 1.5 Mbit/s link and a
step down from 6 Mbit/s bite only on it. Chromium is not among the clients here: the
Chromium figures on these links are in ``tests/integration/test_network.py`` and
docs/guide/webrtc.md; one browser's start-up and decode on this 2-core machine would take
more than the section's time.

**CPU.** One daemon on loopback with the grain at 4 Mbit/s (``start_bitrate_kbps: null``
so that the estimate starts, and stays, at the top: the light viewers send no REMB and
lose nothing), watched by :data:`CPU_VIEWERS` light viewers (``bench_rtc.RtpCounter``:
real peer connections that count frames from the RTP headers and send receiver reports);
egress's CPU from /proc with ``egress.adapt`` off and on, in alternating rounds.
``(on - off) / viewers`` is what a viewer's pacer and estimate cost. A breakdown beside
it: :class:`~reactor.media.pacer.Pacer` and
:class:`~reactor.media.bwe.BandwidthEstimate` alone, in this process's event loop, paced
as a 4 Mbit/s viewer's packets, against the same loop sending at once.
Beside them, the rendition ladder's cost: one 720p encode against full plus half size
(``tools/bench_ladder.py``).

Without root or ``ip`` the links part is skipped with the reason; the CPU part runs
anyway. ``--quick`` runs every condition for a few seconds (goals not judged).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_common import config_daemon, proc_sample

from tests.support.daemon import Daemon, models_env
from tests.support.netlink import (
    GRAIN,
    WARMUP_S,
    TimedViewer,
    drop_udp,
    fps_between,
    freezes,
    received_bytes,
    recovered_at,
    shape,
    tbf,
    undrop,
    unshape,
)
from tests.support.netns import Netns, NetnsUnavailable, RemoteDaemon, netns

PATTERN: dict[str, Any] = {"model": {"module": "reactor.examples.pattern:TestPattern"},
                           "video": {"width": 1280, "height": 720, "fps": 30}}
#: The daemons the links are watched on, by name. The step down starts its viewers at the
#: top (``start_bitrate_kbps: null``, 4 Mbit/s), so that the stream uses more than the
#: narrow link before the step: from the default 1 Mbit/s it climbs with aiortc's REMB,
#: too slowly to be above 1.5 Mbit/s within the section's time.
DAEMONS: dict[str, dict[str, Any]] = {
    "pattern": PATTERN, "grain": GRAIN,
    "grain from the top": {**GRAIN, "egress": {"start_bitrate_kbps": None}},
}
#: The goals of issue 26 (fps floors, recovery times, CPU per viewer).
GOALS = {"narrow_fps": 25.0, "loss5_fps": 27.0, "step_recovery_s": 3.0,
         "outage_recovery_s": 1.0, "pacer_cpu_percent_per_viewer": 2.0}
#: The rate a step down must get back to.
RECOVERED_FPS = 25.0
CPU_VIEWERS = 4


def _log(msg: str) -> None:
    print(f"bench: network {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Condition:
    """One link a viewer watches across for ``seconds``.

    ``cap_kbit``: a ``tbf`` rate with a 200 ms queue from the start (None: unshaped);
    ``loss_per_mille``: UDP the daemon sends dropped at random; ``step_to_kbit``: the
    rate replaced by this one ``event_s`` after the viewer starts; ``outage_s``: every
    packet dropped for this long from ``event_s``. ``daemon``: the daemon it is watched on
    (a key of :data:`DAEMONS`), when not the model's own.
    """

    key: str
    label: str
    model: str
    seconds: float
    daemon: str = ""
    cap_kbit: int | None = None
    loss_per_mille: int = 0
    step_to_kbit: int | None = None
    outage_s: float = 0.0
    event_s: float = 0.0


def conditions(quick: bool) -> list[Condition]:
    """The links, grouped by daemon. ``--quick``: a few seconds each."""
    if quick:
        return [
            Condition("clean", "clean", "pattern", 6),
            Condition("narrow_pattern", "1.5 Mbit/s, 200 ms", "pattern", 6, cap_kbit=1500),
            Condition("loss5", "5 % loss", "pattern", 6, loss_per_mille=50),
            Condition("loss10", "10 % loss", "pattern", 6, loss_per_mille=100),
            Condition("outage", "3 s outage", "pattern", 8, outage_s=1.5, event_s=4),
            Condition("narrow_grain", "1.5 Mbit/s, 200 ms", "grain", 6, cap_kbit=1500),
            Condition("step", "6 -> 1.5 Mbit/s", "grain", 8, cap_kbit=6000,
                      step_to_kbit=1500, event_s=4, daemon="grain from the top"),
        ]
    return [
        Condition("clean", "clean", "pattern", 10),
        Condition("narrow_pattern", "1.5 Mbit/s, 200 ms", "pattern", 15, cap_kbit=1500),
        Condition("loss5", "5 % loss", "pattern", 12, loss_per_mille=50),
        Condition("loss10", "10 % loss", "pattern", 10, loss_per_mille=100),
        Condition("outage", "3 s outage", "pattern", 14, outage_s=3.0, event_s=6),
        Condition("narrow_grain", "1.5 Mbit/s, 200 ms", "grain", 15, cap_kbit=1500),
        Condition("step", "6 -> 1.5 Mbit/s", "grain", 20, cap_kbit=6000,
                  step_to_kbit=1500, event_s=8, daemon="grain from the top"),
    ]


class _WireMeter:
    """Samples :func:`received_bytes` on a thread (a file read, no process started)."""

    def __init__(self, ns: Netns, interval: float = 0.25) -> None:
        self.ns = ns
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wire-meter", daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), received_bytes(self.ns)))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> _WireMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def kbps(self, a: float, b: float) -> float | None:
        """Mean kbit/s received between monotonic times ``a`` and ``b``."""
        inside = [s for s in self.samples if a <= s[0] <= b]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        (t0, b0), (t1, b1) = inside[0], inside[-1]
        return round((b1 - b0) * 8 / (t1 - t0) / 1000, 1)


def _egress_view(d: RemoteDaemon) -> dict[str, Any]:
    """Egress's view of the one viewer: its estimate, loss and the encoder's bitrate."""
    try:
        detail = (d.status().get("session") or {}).get("viewers_detail") or []
    except Exception as exc:  # the figures the viewer saw still count without it
        return {"error": f"{type(exc).__name__}: {exc}"}
    if not detail:
        return {}
    v = detail[-1]
    return {k: (round(v[k], 3) if isinstance(v.get(k), float) else v.get(k))
            for k in ("estimate_kbps", "bitrate_kbps", "loss", "remb_kbps", "max_kbps")}


def watch_condition(ns: Netns, d: RemoteDaemon, c: Condition) -> dict[str, Any]:
    """One viewer across ``c``'s link; the link is plain again afterwards."""
    event = down = up = None
    dropping = False
    viewer: TimedViewer | None = None
    try:
        if c.cap_kbit is not None:
            shape(ns, *tbf(c.cap_kbit))
        if c.loss_per_mille:
            drop_udp(ns, c.loss_per_mille)
            dropping = True
        with _WireMeter(ns) as wire:
            viewer = TimedViewer(d, c.seconds)
            if c.step_to_kbit is not None or c.outage_s:
                viewer.sleep_until(c.event_s)
                event = down = time.monotonic()
                if c.step_to_kbit is not None:
                    shape(ns, *tbf(c.step_to_kbit))
                else:
                    drop_udp(ns, 1000)
                    dropping = True
                    time.sleep(c.outage_s)
                    undrop(ns)
                    dropping = False
                    up = time.monotonic()
            # Egress's view, late but before the viewer leaves (the CLI is a process of
            # its own: asked once, near the end).
            viewer.sleep_until(c.seconds - 1.5)
            egress = _egress_view(d)
            seen = viewer.result()
    finally:
        if viewer is not None and viewer.proc.poll() is None:  # it failed half-way
            viewer.proc.kill()
            viewer.proc.wait()
        if dropping:
            undrop(ns)
        unshape(ns)
    assert viewer is not None
    times: list[float] = seen["times"]
    end = viewer.end
    judged_from = (times[0] if times else viewer.start) + WARMUP_S
    count, frozen_s, longest = freezes(times, judged_from, end)
    out: dict[str, Any] = {
        "label": c.label, "model": c.model, "seconds": c.seconds, "frames": len(times),
        "first_frame_s": round(times[0] - viewer.start, 2) if times else None,
        "fps": round(fps_between(times, judged_from, end), 1) if judged_from < end else None,
        "freezes": count, "frozen_s": round(frozen_s, 2), "max_gap_ms": round(longest * 1000),
        "cap_kbps": c.step_to_kbit or c.cap_kbit, "wire_kbps": wire.kbps(judged_from, end),
        "egress": egress, "states": seen["states"],
    }
    if event is not None and c.step_to_kbit is not None:
        # Judged on the narrow link only: from the step (plus start-up) to the end.
        out["wire_kbps"] = wire.kbps(event + WARMUP_S, end)
        out["wire_kbps_before"] = wire.kbps(judged_from, event)
        back = recovered_at(times, event, end, RECOVERED_FPS)
        out["recovery_s"] = None if back is None else round(back - event, 2)
        out["fps_after_step"] = round(fps_between(times, event, end), 1)
    if down is not None and up is not None:
        after = [t for t in times if t >= up]
        out["recovery_s"] = round(after[0] - up, 2) if after else None
        out["frames_during_outage"] = sum(down + 0.3 <= t < up for t in times)
    return out


def run_links(quick: bool) -> dict[str, Any]:
    """Every condition in one namespace, on a daemon per entry of :data:`DAEMONS` used,
    one after another."""
    results: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="reactor-bench-network-"))
    try:
        with netns() as ns:
            by_daemon: dict[str, list[Condition]] = {}
            for c in conditions(quick):
                by_daemon.setdefault(c.daemon or c.model, []).append(c)
            for i, (name, conds) in enumerate(by_daemon.items()):
                with RemoteDaemon(ns, DAEMONS[name], tmp / f"daemon{i}",
                                  token="bench-network") as d:
                    for c in conds:
                        _log(f"{c.key} ({c.label}, {c.model}, {c.seconds:g} s) ...")
                        try:
                            results[c.key] = watch_condition(ns, d, c)
                        except Exception as exc:  # one link failing still reports the rest
                            results[c.key] = {"label": c.label, "model": c.model,
                                              "error": f"{type(exc).__name__}: {exc}"}
                        _log(f"{c.key}: {results[c.key]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


# -- CPU ------------------------------------------------------------------------------------

def _loopback_daemon(config: dict[str, Any]) -> contextlib.AbstractContextManager[Daemon]:
    """A detached daemon of ``config`` on a free loopback port (on the CPU), the test
    models importable; always stopped afterwards."""
    return config_daemon({**config, "device": "cpu",
                          "server": {"host": "127.0.0.1", "port": 0, "max_viewers": 64}},
                         env=models_env())


async def _egress_window(d: Daemon, viewers: int, warm: float,
                         window: float) -> dict[str, Any]:
    from bench_rtc import RtpCounter, _leave, _watch

    from reactor.media.ice import restrict_ice_to_loopback

    restrict_ice_to_loopback()
    egress = d.worker_pids()["egress"]
    registry: list[RtpCounter] = []
    watching: list[Any] = []
    try:
        for _ in range(viewers):
            watching.append(await _watch(d.url, registry))
        await asyncio.sleep(warm)
        s0, t0 = proc_sample(egress), time.monotonic()
        packets0 = sum(c.packets for c in registry)
        await asyncio.sleep(window)
        s1, t1 = proc_sample(egress), time.monotonic()
        packets1 = sum(c.packets for c in registry)
    finally:
        await asyncio.gather(*(_leave(v) for v in watching), return_exceptions=True)
    if s0 is None or s1 is None:
        raise RuntimeError("the egress worker went away during the measurement")
    fps = [c.count(t0, t1) / (t1 - t0) for c in registry]
    if not fps or min(fps) == 0:
        raise RuntimeError(f"a viewer received no frame in the window (fps {fps})")
    return {"egress_cpu_percent": round((s1[0] - s0[0]) / (t1 - t0) * 100, 1),
            "min_fps": round(min(fps), 1),
            "kbps_per_viewer": round((packets1 - packets0) * 1200 * 8 / (t1 - t0)
                                     / 1000 / viewers),
            "packets_per_s_per_viewer": round((packets1 - packets0) / (t1 - t0) / viewers)}


def egress_cpu_side_by_side(configs: dict[str, dict[str, Any]], viewers: int, rounds: int,
                            warm: float, window: float) -> dict[str, Any]:
    """Egress's CPU under each of ``configs`` (label -> daemon config), ``viewers`` light
    viewers each, in ``rounds`` alternating rounds of one run, so the machine's noise
    hits all alike. Returns every round and the mean per label."""
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in configs}
    with _counting():
        for i in range(rounds):
            for label, cfg in configs.items():
                with _loopback_daemon(cfg) as d:
                    res = asyncio.run(_egress_window(d, viewers, warm, window))
                runs[label].append(res)
                _log(f"cpu round {i} {label}: {res}")
    mean = {label: round(sum(r["egress_cpu_percent"] for r in rs) / len(rs), 1)
            for label, rs in runs.items()}
    return {"viewers": viewers, "rounds": rounds, "window_s": window, "runs": runs,
            "egress_cpu_percent": mean}


@contextlib.contextmanager
def _counting() -> Iterator[None]:
    # Light viewers decode nothing; any stock receiver among them only counts.
    from bench_rtc import counting_decoders

    with counting_decoders():
        yield


def pacer_cost(quick: bool) -> dict[str, Any]:
    """``egress.adapt`` off against on, with the grain at 4 Mbit/s: egress CPU per viewer."""
    base: dict[str, Any] = {**GRAIN, "egress": {"bitrate_kbps": 4000,
                                                 "start_bitrate_kbps": None}}
    off = {**base, "egress": {**base["egress"], "adapt": False}}
    on = {**base, "egress": {**base["egress"], "adapt": True}}
    viewers = 2 if quick else CPU_VIEWERS
    result = egress_cpu_side_by_side({"adapt off": off, "adapt on": on}, viewers,
                                     1 if quick else 2, 2.0 if quick else 3.0,
                                     3.0 if quick else 8.0)
    mean = result["egress_cpu_percent"]
    result["per_viewer_percent"] = round((mean["adapt on"] - mean["adapt off"]) / viewers, 2)
    return result


def _ladder(quick: bool) -> dict[str, Any]:
    """The rendition ladder against one encode (tools/bench_ladder.py): the CPU of one
    720p encode, and of full plus half size (one conversion, one scale, two encodes)."""
    from bench_ladder import bench_ladder

    return bench_ladder(seconds=3.0 if quick else 10.0)


async def _pace_loop(seconds: float, paced: bool, bitrate_bps: float = 4e6,
                     fps: int = 30, packet: int = 1200) -> float:
    """CPU seconds per second of sending one viewer's ``bitrate_bps`` of 1200-byte
    packets a frame at a time, each through :meth:`Pacer.pace` (``paced``) or straight
    on; a receiver report (loss) and a REMB into the estimate once a second, as a viewer
    sends them."""
    from reactor.media.bwe import BandwidthEstimate
    from reactor.media.pacer import PACING_FACTOR, Pacer

    estimate = BandwidthEstimate(bitrate_bps, 150e3, bitrate_bps)
    pacer = Pacer(PACING_FACTOR * bitrate_bps, video_types=frozenset({102}))
    estimate.pacer = pacer
    per_frame = max(1, round(bitrate_bps / 8 / fps / packet))
    seq = 0
    cpu0, start = time.process_time(), time.monotonic()
    frame = 0
    while (now := time.monotonic()) - start < seconds:
        for _ in range(per_frame):
            data = bytes((0x80, 102)) + seq.to_bytes(2, "big") + bytes(packet - 4)
            seq = (seq + 1) & 0xFFFF
            if paced:
                await pacer.pace(data)
        if paced and frame % fps == 0:
            estimate.on_loss(0.0)
            estimate.on_remb(bitrate_bps * 1.2)
        frame += 1
        await asyncio.sleep(max(0.0, start + frame / fps - time.monotonic()))
    return (time.process_time() - cpu0) / (now - start)


def pacer_micro(quick: bool) -> dict[str, Any]:
    """The pacer and the estimate alone in an event loop, at 4 Mbit/s, against the same
    loop without them, alternating."""
    seconds = 1.5 if quick else 3.0
    runs: dict[str, list[float]] = {"paced": [], "at once": []}
    for _ in range(1 if quick else 2):
        for key in runs:
            runs[key].append(asyncio.run(_pace_loop(seconds, key == "paced")) * 100)
    mean = {k: round(sum(v) / len(v), 2) for k, v in runs.items()}
    return {"bitrate_kbps": 4000, "cpu_percent": mean,
            "pacer_estimate_percent": round(mean["paced"] - mean["at once"], 2)}


# -- the section ------------------------------------------------------------------------

def run(quick: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"quick": quick}
    t0 = time.monotonic()
    try:
        result["links"] = run_links(quick)
        result["links_available"] = True
    except NetnsUnavailable as exc:
        result["links_available"] = False
        result["links_skipped"] = f"network namespaces unavailable: {exc}"
        _log(f"links skipped: {exc}")
    result["links_seconds"] = round(time.monotonic() - t0, 1)
    parts: dict[str, Callable[[bool], dict[str, Any]]] = {"pacer_cpu": pacer_cost,
                                                           "pacer_micro": pacer_micro}
    for key, call in parts.items():
        _log(f"{key} ...")
        try:
            result[key] = call(quick)
        except Exception as exc:  # one part failing still reports the others
            result[key] = {"error": f"{type(exc).__name__}: {exc}"}
            _log(f"{key} failed: {exc}")
    try:
        result["ladder_cpu"] = _ladder(quick)
    except Exception as exc:
        result["ladder_cpu"] = {"error": f"{type(exc).__name__}: {exc}"}
        _log(f"ladder_cpu failed: {exc}")
    result["goals"] = goals(result, quick)
    return result


def goals(result: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """Issue 26's goals: judged (True/False), or None under ``--quick`` or where the
    links could not be measured at all (no namespaces)."""
    links = result.get("links") or {}
    available = result.get("links_available", False)

    def judge(ok: bool) -> bool | None:
        return None if quick else ok

    def link_goal(target: str, keys: tuple[str, ...], ok: Any, figure: Any) -> dict[str, Any]:
        rows = [links.get(k, {}) for k in keys]
        if not available:
            return {"target": target, "figure": "skipped (no network namespaces)",
                    "met": None}
        if any("error" in r or not r for r in rows):
            return {"target": target, "figure": "not measured: " + "; ".join(
                r.get("error", "missing") for r in rows if "error" in r or not r),
                "met": judge(False)}
        return {"target": target, "figure": figure(rows), "met": judge(ok(rows))}

    g = GOALS
    out = [
        link_goal(f"1.5 Mbit/s, 200 ms: >= {g['narrow_fps']:g} fps and no freeze over "
                  "500 ms after 3 s (pattern and grain)", ("narrow_pattern", "narrow_grain"),
                  lambda rs: all(r["fps"] is not None and r["fps"] >= g["narrow_fps"]
                                 and r["freezes"] == 0 for r in rs),
                  lambda rs: ", ".join(f"{r['model']} {r['fps']} fps, {r['freezes']} "
                                       f"freezes" for r in rs)),
        link_goal(f"5 % loss: >= {g['loss5_fps']:g} fps", ("loss5",),
                  lambda rs: rs[0]["fps"] is not None and rs[0]["fps"] >= g["loss5_fps"],
                  lambda rs: f"{rs[0]['fps']} fps"),
        link_goal(f"step 6 -> 1.5 Mbit/s: back to >= {RECOVERED_FPS:g} fps within "
                  f"{g['step_recovery_s']:g} s", ("step",),
                  lambda rs: rs[0]["recovery_s"] is not None
                  and rs[0]["recovery_s"] <= g["step_recovery_s"],
                  lambda rs: f"{rs[0]['recovery_s']} s"),
        link_goal(f"3 s outage: frames back within {g['outage_recovery_s']:g} s of the "
                  "link returning", ("outage",),
                  lambda rs: rs[0]["recovery_s"] is not None
                  and rs[0]["recovery_s"] <= g["outage_recovery_s"],
                  lambda rs: f"{rs[0]['recovery_s']} s"),
    ]
    cpu = result.get("pacer_cpu", {})
    per_viewer = cpu.get("per_viewer_percent")
    out.append({"target": f"pacer + estimate <= {g['pacer_cpu_percent_per_viewer']:g} % "
                          "of a core per viewer",
                "figure": (f"{per_viewer} %" if per_viewer is not None
                           else f"not measured: {cpu.get('error')}"),
                "met": judge(per_viewer is not None
                             and per_viewer <= g["pacer_cpu_percent_per_viewer"])})
    return out


def _fmt(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{v}{unit}"


def render(result: dict[str, Any]) -> str:
    lines: list[str] = []
    if not result.get("links_available"):
        lines.append(f"  links skipped: {result.get('links_skipped')}")
    else:
        lines.append(f"  {'link':<20} {'model':<8} {'client':<7} {'fps':>5} "
                     f"{'freezes':>8} {'frozen':>7} {'recovery':>9} {'kbit/s':>7} "
                     f"{'cap':>6} {'estimate':>9} {'encoder':>8}")
        # In the conditions' order (a JSON round trip sorts the keys).
        order = [c.key for c in conditions(bool(result.get("quick")))]
        for key in sorted(result["links"], key=lambda k: order.index(k) if k in order
                          else len(order)):
            r = result["links"][key]
            if "error" in r:
                lines.append(f"  {r['label']:<20} {r['model']:<8} aiortc  FAILED: "
                             f"{r['error']}")
                continue
            e = r.get("egress") or {}
            est = e.get("estimate_kbps")
            enc = e.get("bitrate_kbps")
            lines.append(
                f"  {r['label']:<20} {r['model']:<8} {'aiortc':<7} {_fmt(r['fps']):>5} "
                f"{r['freezes']:>8} {r['frozen_s']:>6}s "
                f"{_fmt(r.get('recovery_s'), 's') if key in ('step', 'outage') else '':>9} "
                f"{_fmt(r['wire_kbps']):>7} {_fmt(r['cap_kbps']):>6} "
                f"{_fmt(None if est is None else round(est)):>9} "
                f"{_fmt(None if enc is None else round(enc)):>8}")
        step = result["links"].get("step", {})
        if "recovery_s" in step:
            lines.append(f"  step: {_fmt(step.get('wire_kbps_before'))} kbit/s crossed before "
                         f"the step, {_fmt(step['wire_kbps'])} after it; "
                         f"{step['fps_after_step']} fps from the step on")
        outage = result["links"].get("outage", {})
        if "frames_during_outage" in outage:
            lines.append(f"  outage: {outage['frames_during_outage']} frames during it, "
                         f"connection states {outage['states']}")
        lines.append("  (fps and freezes after the first 3 s; recovery: step to >= 25 fps "
                     "for good, outage to the first frame; kbit/s: what crossed the link; "
                     "estimate and encoder: egress's, near the end)")
    cpu = result.get("pacer_cpu", {})
    if "error" in cpu:
        lines.append(f"  pacer CPU: FAILED: {cpu['error']}")
    elif cpu:
        mean = cpu["egress_cpu_percent"]
        lines.append(f"  {'egress CPU, grain 4 Mbit/s':<30} adapt off {mean['adapt off']} %, "
                     f"on {mean['adapt on']} % of a core with {cpu['viewers']} viewers: "
                     f"{cpu['per_viewer_percent']} % per viewer "
                     f"({cpu['rounds']} x {cpu['window_s']:g} s each, alternating)")
    micro = result.get("pacer_micro", {})
    if "error" in micro:
        lines.append(f"  pacer micro: FAILED: {micro['error']}")
    elif micro:
        lines.append(f"  {'Pacer + estimate alone':<30} {micro['pacer_estimate_percent']} % "
                     f"of a core at {micro['bitrate_kbps']} kbit/s (paced "
                     f"{micro['cpu_percent']['paced']} %, at once "
                     f"{micro['cpu_percent']['at once']} %)")
    ladder = result.get("ladder_cpu", {})
    if "error" in ladder:
        lines.append(f"  ladder CPU: FAILED: {ladder['error']}")
    elif "one_encode" in ladder:
        lines.append(f"  {'ladder CPU (720p, h264)':<30} one encode "
                     f"{ladder['one_encode']['core_pct']} % of a core, full + half "
                     f"{ladder['full_plus_half']['core_pct']} %: "
                     f"{ladder['extra_core_pct']:+} %")
    for g in result["goals"]:
        mark = {True: "met", False: "NOT MET", None: "not judged"}[g["met"]]
        lines.append(f"  goal: {g['target']}: {g['figure']} ({mark})")
    return "\n".join(lines)


__all__ = ["conditions", "egress_cpu_side_by_side", "goals", "render", "run"]
