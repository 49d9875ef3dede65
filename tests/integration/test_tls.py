"""HTTPS on loopback: a daemon with ``server.tls_cert``/``tls_key`` serves the page, the API,
WHIP and WHEP over TLS, and hands its ICE servers to clients as ``Link`` headers.

The certificate is made by the test (``netns.make_certificate``, subjectAltName
IP:127.0.0.1); the ICE servers are a real coturn on 127.0.0.1 (``netns.turn_server``,
relaying to 127.0.0.1 only), so nothing waits on an unanswered STUN request.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import VideoStreamTrack
from netns import TURNSERVER, TurnServer, make_certificate, turn_server

from reactor.client import Client
from reactor.config import IceServer
from reactor.errors import DaemonError
from reactor.media.links import format_ice_links, parse_ice_servers
from reactor.media.whip_client import WhipError

pytestmark = [pytest.mark.timeout(180)]

CHROMIUM = Path("/usr/bin/chromium")
# As tests/integration/browser/conftest.py: no WebRTC switches, a fake camera.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream"]
BRIGHTNESS = {"model": {"module": "reactor.examples.filters:Brightness"},
              "video": {"width": 1280, "height": 720, "fps": 30}}
# A STUN entry whose credentials need the quoting a Link header has. (Non-ASCII ones, sent
# as RFC 8187 values, are covered by tests/unit/media/test_links.py: Chromium's
# getConfiguration() hands them back as Latin-1 mojibake, so they cannot be compared here.)
ODD = {"username": 'us"er, one', "credential": 'p;a,s"s\\word'}
TOKEN = "tls-test-token"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate("127.0.0.1", tmp_path_factory.mktemp("tls"))


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[TurnServer]:
    if not TURNSERVER.exists():
        pytest.skip(f"{TURNSERVER} is missing (apt-get install coturn)")
    with turn_server(types.SimpleNamespace(outer_ip="127.0.0.1"),  # type: ignore[arg-type]
                     tmp_path / "turn") as server:
        yield server


def ice_servers_for(turn: TurnServer) -> list[dict[str, str]]:
    return [{"urls": f"stun:{turn.host}:{turn.port}", **ODD}, turn.ice_server()]


def tls_config(cert: tuple[Path, Path], ice: list[dict[str, str]],
               **server: Any) -> dict[str, Any]:
    return {**BRIGHTNESS, "server": {"tls_cert": str(cert[0]), "tls_key": str(cert[1]),
                                     "ice_servers": ice, **server}}


def expected_servers(ice: list[dict[str, str]]) -> list[dict[str, str]]:
    """What a client should end up with: one entry per URL, credentials as configured."""
    return [{"urls": s["urls"], **{k: s[k] for k in ("username", "credential") if k in s}}
            for s in ice]


def test_plain_http_to_the_tls_port_gets_no_page(start_daemon: Any,
                                                 certificate: tuple[Path, Path]) -> None:
    d = start_daemon(tls_config(certificate, []))
    assert d.url.startswith("https://127.0.0.1:"), d.url
    plain = d.url.replace("https://", "http://")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(plain + "healthz", timeout=10).read()
    ctx = ssl.create_default_context(cafile=str(certificate[0]))
    with urllib.request.urlopen(d.url + "healthz", timeout=10, context=ctx) as resp:
        assert resp.status == 200


def test_chromium_over_https_is_a_secure_context_plays_720p_and_sends_the_camera(
    start_daemon: Any, certificate: tuple[Path, Path], turn: TurnServer
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    ice = ice_servers_for(turn)
    d = start_daemon(tls_config(certificate, ice))
    assert d.url.startswith("https://127.0.0.1:"), d.url
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            # The test's certificate is in no trust store Chromium reads (NSS).
            ctx = browser.new_context(ignore_https_errors=True,
                                      viewport={"width": 1280, "height": 800})
            ctx.add_init_script("""(() => {
              const Orig = window.RTCPeerConnection; window.__pcs = [];
              function Tracked(...a) {
                const pc = new Orig(...a); window.__pcs.push(pc); return pc;
              }
              Tracked.prototype = Orig.prototype; window.RTCPeerConnection = Tracked;
            })();""")
            page = ctx.new_page()
            page.goto(d.url)
            assert page.evaluate("window.isSecureContext") is True
            assert page.evaluate("location.protocol") == "https:"
            page.wait_for_function("window.reactor.schemaLoaded && window.reactor.whepLocation",
                                   timeout=20000)
            assert page.evaluate("window.reactor.whepLocation").startswith(d.url + "whep/")
            want = expected_servers(ice)
            assert page.evaluate("window.reactor.iceServers") == want
            configured = """() => window.__pcs.map((pc) => pc.getConfiguration().iceServers
                .map((s) => ({urls: [].concat(s.urls)[0], username: s.username,
                              credential: s.credential})))"""
            got = page.evaluate(configured)
            assert len(got) == 1 and [{k: v for k, v in s.items() if v} for s in got[0]] == want

            page.locator("#send-btn").click()
            page.wait_for_function("window.reactor.sendState === 'connected'", timeout=20000)
            page.wait_for_function(
                "(() => { const r = window.reactor; return r.state === 'connected' && "
                "r.framesDecoded > 5 && r.fps > 0 && r.width === 1280 && r.height === 720; })()",
                timeout=30000)
            got = page.evaluate(configured)
            assert len(got) == 2 and [{k: v for k, v in s.items() if v} for s in got[1]] == want
            # The model's output is the camera's picture (Brightness at gain 1).
            page.wait_for_function("document.getElementById('preview').videoWidth > 0")
            means = page.evaluate("""() => ['video', 'preview'].map((id) => {
              const v = document.getElementById(id), c = document.createElement('canvas');
              c.width = v.videoWidth; c.height = v.videoHeight;
              const g = c.getContext('2d'); g.drawImage(v, 0, 0);
              const d = g.getImageData(0, 0, c.width, c.height).data;
              let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i+1] + d[i+2];
              return s / (d.length / 4 * 3);
            })""")
            print(f"output mean {means[0]:.0f}, camera mean {means[1]:.0f}")
            assert abs(means[0] - means[1]) < 30, means
            status = d.status()
            assert status["session"] is not None
            assert status["pipeline"]["fps_in"] > 0 and status["pipeline"]["fps_model"] > 0
        finally:
            browser.close()


def test_reactor_client_over_https_sends_and_watches_with_the_links(
    start_daemon: Any, certificate: tuple[Path, Path], turn: TurnServer
) -> None:
    ice = ice_servers_for(turn)
    d = start_daemon(tls_config(certificate, ice, token=TOKEN))
    trusted = ssl.create_default_context(cafile=str(certificate[0]))
    links = format_ice_links([IceServer(**s) for s in ice])  # type: ignore[arg-type]

    async def main() -> None:
        # Without the test CA the certificate is refused, with a message that says so.
        async with Client(d.url, token=TOKEN) as untrusting:
            with pytest.raises(DaemonError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.schema()
            with pytest.raises(WhipError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.watch()

        async with aiohttp.ClientSession() as http:
            # OPTIONS names the servers to a client with the token, not to one without it,
            # and never to a CORS preflight (which cannot carry a token).
            auth = {"Authorization": f"Bearer {TOKEN}"}
            for path in ("whep", "whip"):
                async with http.options(d.url + path, headers=auth, ssl=trusted) as resp:
                    assert resp.status == 204
                    assert resp.headers.getall("Link") == links
            async with http.options(d.url + "whep", ssl=trusted) as resp:
                assert resp.status == 401 and "Link" not in resp.headers
            async with http.options(d.url + "whep", ssl=trusted, headers={
                    "Origin": "https://elsewhere.example",
                    "Access-Control-Request-Method": "POST"}) as resp:
                assert resp.status == 204 and "Link" not in resp.headers
                assert "Link" in resp.headers["Access-Control-Expose-Headers"]
            # The 201 of a WHEP offer carries them too.
            pc = RTCPeerConnection()
            try:
                pc.addTransceiver("video", direction="recvonly")
                await pc.setLocalDescription(await pc.createOffer())
                async with http.post(d.url + "whep", data=pc.localDescription.sdp, ssl=trusted,
                                     headers={**auth, "Content-Type": "application/sdp"}) as resp:
                    assert resp.status == 201, await resp.text()
                    assert resp.headers.getall("Link") == links
                    assert [(s.url, s.username, s.credential)
                            for s in parse_ice_servers(resp.headers.getall("Link"))] == [
                        (s["urls"], s.get("username"), s.get("credential")) for s in ice]
                    location = resp.headers["Location"]
                    assert location.startswith("/whep/")  # relative: right behind a proxy
                async with http.delete(d.url + location.lstrip("/"), headers=auth,
                                       ssl=trusted) as resp:
                    assert resp.status == 200
            finally:
                await pc.close()

        async with Client(d.url, token=TOKEN, ssl=trusted) as client:
            assert (await client.schema())["model"] == "Brightness"
            track = VideoStreamTrack()
            async with await client.publish(track) as publisher:
                config = publisher.pc._RTCPeerConnection__configuration  # type: ignore[attr-defined]
                assert [(s.urls, s.username, s.credential) for s in config.iceServers] == [
                    (s["urls"], s.get("username"), s.get("credential")) for s in ice]
                assert publisher.resource.startswith(d.url + "whip/")
                async with await client.watch() as viewer:
                    deadline = time.monotonic() + 30
                    frames = 0
                    while frames < 10:
                        assert time.monotonic() < deadline, f"only {frames} frames in 30 s"
                        frame = await asyncio.wait_for(viewer.recv(), 10)
                        assert (frame.width, frame.height) == (1280, 720)
                        frames += 1
                    rgb = frame.to_ndarray(format="rgb24")
                    # aiortc's VideoStreamTrack sends green (0, 128, 0) frames; Brightness at
                    # gain 1 gives them back (scaled up to the pipeline's 1280x720).
                    mean = rgb.reshape(-1, 3).mean(axis=0)
                    assert np.allclose(mean, (0, 128, 0), atol=25), mean

    asyncio.run(main())
