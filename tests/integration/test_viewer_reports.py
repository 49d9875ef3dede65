"""What viewers see, against a real daemon: reactor.client reports its receive stats over
the data channel and they show in ``status --json`` and ``/metrics``; a viewer that floods
the channel with nonsense is ignored (counted, logged once) and egress carries on."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiortc import RTCDataChannel, RTCPeerConnection

from reactor.client import Client
from reactor.media.whip_client import delete_resource, whep_watch
from tests.support.daemon import Daemon, wait_for_async
from tests.support.http import SMALL, request

pytestmark = pytest.mark.timeout(120)


async def detail(client: Client, viewer_id: str) -> dict[str, Any] | None:
    session = (await client.status())["session"]
    for v in (session or {}).get("viewers_detail", []):
        if v["id"] == viewer_id:
            return dict(v)
    return None


def resource_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


async def read_frames(viewer: Any, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await viewer.recv()


def test_a_reactor_client_viewer_shows_in_status_with_its_stats(start_daemon) -> None:
    d: Daemon = start_daemon(SMALL)

    async def main() -> None:
        async with Client(d.url) as client, await client.watch() as viewer:
            stop = asyncio.Event()
            reader = asyncio.ensure_future(read_frames(viewer, stop))
            vid = resource_id(viewer.resource)

            async def reported() -> dict[str, Any] | None:
                v = await detail(client, vid)
                ok = v and v["reports"] >= 2 and v["rtt_ms"] is not None
                return v if ok else None

            v = await wait_for_async(reported, 15, "the viewer's reports in status")
            stop.set()
            await reader
            assert v["agent"] == "reactor.client" and v["rejected"] == 0
            assert (v["width"], v["height"]) == (320, 240)
            assert v["frames_decoded"] > 10 and 15 <= v["fps"] <= 40
            assert 0 <= v["report_age_s"] < 3
            # aiortc's receiver measures no round trip: egress's RTCP does.
            assert v["rtt_source"] == "rtcp" and 0 < v["rtt_ms"] < 100
            assert v["jitter_buffer_ms"] is None and v["decode_ms"] is None
            status = await client.status()
            stages = status["pipeline"]["latency_ms"]
            server = sum(s["p50"] for s in stages.values())
            assert v["glass_to_glass_ms"] == pytest.approx(server + v["rtt_ms"] / 2, abs=10)
            _, page = await asyncio.to_thread(request, d, "GET", "/metrics")
            text = page.decode()
            assert f'reactor_viewer_frames_per_second{{viewer="{vid}"}}' in text
            assert f'reactor_viewer_round_trip_seconds{{viewer="{vid}"}}' in text

    asyncio.run(main())


NONSENSE: list[str] = [
    "hello",
    "[]",
    json.dumps({"type": "stats", "jitter_buffer_ms": -5}),
    json.dumps({"type": "stats", "rtt_ms": 1e12}),
    json.dumps({"type": "stats", "fps": "fast"}),
    json.dumps({"type": "stats", "width": 10**400}),
    '{"type": "stats", "decode_ms": NaN}',
    json.dumps({"type": "command", "name": "stop"}),
    json.dumps({"type": "stats", "__proto__": {"x": 1}}),
    "{" * 5000,
    json.dumps({"type": "stats", "agent": "x" * 60_000}),
]


def test_a_viewer_flooding_nonsense_is_ignored_and_egress_stays_up(start_daemon) -> None:
    d: Daemon = start_daemon(SMALL)
    egress_pid = d.worker_pids()["egress"]

    async def main() -> None:
        channels: list[RTCDataChannel] = []

        def open_channel(pc: RTCPeerConnection) -> None:
            channels.append(pc.createDataChannel("events"))

        pc, track, resource = await whep_watch(d.url.rstrip("/") + "/whep",
                                               prepare=open_channel)
        ch = channels[0]
        async with Client(d.url) as client, await client.watch() as good:
            try:
                await wait_for_async(lambda: asyncio.sleep(0, ch.readyState == "open"), 10,
                                     "the flooder's data channel to open")
                stop = asyncio.Event()
                readers = [asyncio.ensure_future(read_frames(good, stop))]

                async def drain() -> None:
                    while not stop.is_set():
                        await track.recv()
                readers.append(asyncio.ensure_future(drain()))
                t_end = time.monotonic() + 4
                sent = 0
                while time.monotonic() < t_end:
                    for text in NONSENSE:
                        ch.send(text)
                        sent += 1
                    ch.send(b"\x00\xff" * 100)  # binary
                    sent += 1
                    await asyncio.sleep(0.01)
                bad_id, good_id = resource_id(resource), resource_id(good.resource)

                async def counted() -> dict[str, Any] | None:
                    v = await detail(client, bad_id)
                    return v if v and v["rejected"] > 100 else None

                bad = await wait_for_async(counted, 20, "the flood counted as rejected")
                # Nothing the flooder sent became a figure.
                assert bad["reports"] == 0 and bad["report_age_s"] is None
                assert bad["jitter_buffer_ms"] is None and bad["fps"] is None
                assert bad["agent"] is None and bad["frames_decoded"] is None
                # Its round trip and estimate come from egress's own RTCP, not from it.
                assert bad["rtt_source"] == "rtcp" and bad["glass_to_glass_ms"] < 100

                # The honest viewer next to it still reports, and frames still flow.
                async def good_reports() -> dict[str, Any] | None:
                    v = await detail(client, good_id)
                    return v if v and v["reports"] >= 3 and v["fps"] > 10 else None

                await wait_for_async(good_reports, 15, "the good viewer's reports")
                assert pc.connectionState == "connected"
                stop.set()
                for r in readers:
                    r.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
                print(f"\nflooder sent {sent} messages; egress rejected {bad['rejected']}")
            finally:
                await delete_resource(resource, None)
                await pc.close()

    asyncio.run(main())
    egress = next(w for w in d.status()["workers"] if w["name"] == "egress")
    assert (egress["pid"], egress["restarts"], egress["state"]) == (egress_pid, 0, "running")
    log = (d.run_dir / "logs" / "egress.log").read_text()
    ignored = [line for line in log.splitlines() if "stats report ignored" in line]
    assert len(ignored) == 1, ignored  # once for the flooder, none for the good viewer
