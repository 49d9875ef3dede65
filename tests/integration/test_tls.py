"""HTTPS on loopback: a daemon with ``server.tls_cert``/``tls_key`` serves the page, the API,
WHIP and WHEP over TLS, and hands its ICE servers to clients as ``Link`` headers.

The certificate is made by the test (``netns.make_certificate``, subjectAltName
IP:127.0.0.1); the ICE servers are a real coturn on 127.0.0.1 (``tests.support.turn``,
relaying to 127.0.0.1 only), so nothing waits on an unanswered STUN request.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import VideoStreamTrack

from reactor.client import Client
from reactor.config import IceServer
from reactor.errors import DaemonError
from reactor.media.links import format_ice_links, parse_ice_servers
from reactor.media.whip_client import WhipError
from tests.support.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.support.netns import make_certificate
from tests.support.turn import TurnServer

pytestmark = [pytest.mark.timeout(180)]

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
    start_daemon: Any, certificate: tuple[Path, Path], coturn: TurnServer
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    ice = ice_servers_for(coturn)
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
    start_daemon: Any, certificate: tuple[Path, Path], coturn: TurnServer
) -> None:
    ice = ice_servers_for(coturn)
    d = start_daemon(tls_config(certificate, ice, token=TOKEN))
    trusted = ssl.create_default_context(cafile=str(certificate[0]))
    links = format_ice_links([IceServer(**s) for s in ice])

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


# --- behind nginx (docs/operations.md) ------------------------------------------------------

NGINX = os.environ.get("REACTOR_TEST_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _operations_nginx_server() -> str:
    """The nginx server block of docs/operations.md, as written there."""
    text = (Path(__file__).parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
    block = text.split("```nginx\n", 1)[1].split("```", 1)[0]
    return block


def test_behind_nginx_under_a_sub_path_as_the_operations_page_shows(
    start_daemon: Any, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    """nginx, configured with the Operations page's block (addresses swapped for the test's),
    terminates TLS and serves the daemon under /reactor/: the page, WHEP and WHIP with the
    Location rewritten, and the event stream unbuffered."""
    if not Path(NGINX).exists():
        pytest.skip(f"nginx is not installed (apt-get install nginx, or set "
                    f"REACTOR_TEST_NGINX to its binary); tried {NGINX}")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    d = start_daemon(BRIGHTNESS)
    upstream = d.url.removeprefix("http://").rstrip("/")
    port = _free_tcp_port()
    server = (_operations_nginx_server()
              .replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
              .replace("/etc/ssl/example.net.crt", str(certificate[0]))
              .replace("/etc/ssl/example.net.key", str(certificate[1]))
              .replace("192.0.2.2:8081", upstream))
    prefix = tmp_path / "nginx"
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
error_log {prefix}/logs/error.log info;
pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
{server}
}}
""")
    proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"https://127.0.0.1:{port}/reactor/"
    trusted = ssl.create_default_context(cafile=str(certificate[0]))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(base + "healthz", timeout=5, context=trusted) as r:
                    assert r.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read() if proc.stdout and proc.poll() is not None else ""
                    log = (prefix / "logs" / "error.log").read_text(errors="replace")
                    raise AssertionError(f"nginx did not serve {base}: {out}\n{log}") from None
                time.sleep(0.2)

        # The event stream, read through the proxy while the browser below starts a session.
        events = urllib.request.urlopen(base + "api/events", timeout=60, context=trusted)
        assert events.headers["Content-Type"].startswith("text/event-stream")
        assert events.readline() == b": connected\n"
        lines: list[bytes] = []

        def read_events() -> None:
            try:
                lines.extend(iter(events.readline, b""))
            except (OSError, ValueError, AttributeError):
                pass  # closed at the end of the test (http.client has no clean way out)

        threading.Thread(target=read_events, daemon=True).start()

        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(ignore_https_errors=True).new_page()
                page.goto(base)
                assert page.evaluate("window.isSecureContext") is True
                page.wait_for_function("window.reactor.schemaLoaded", timeout=20000)
                page.locator("#send-btn").click()
                page.wait_for_function("window.reactor.sendState === 'connected'",
                                       timeout=20000)
                page.wait_for_function(
                    "(() => { const r = window.reactor; return r.state === 'connected' && "
                    "r.framesDecoded > 5 && r.width === 1280 && r.height === 720; })()",
                    timeout=30000)
                # Location came back through proxy_redirect: under /reactor/, over https.
                assert page.evaluate("window.reactor.whepLocation").startswith(base + "whep/")
                assert page.evaluate("window.reactor.whipLocation").startswith(base + "whip/")
                # The session's start came through the proxy's event stream as it happened.
                wait = time.monotonic() + 10
                while not any(b'"type": "started"' in line or b'"type":"started"' in line
                              for line in lines):
                    assert time.monotonic() < wait, f"no started event through nginx: {lines}"
                    time.sleep(0.2)
                assert d.status()["session"]["sender"], d.status()["session"]
                page.locator("#send-btn").click()  # Stop camera: DELETE through the proxy
                wait = time.monotonic() + 10
                while d.status()["session"] and d.status()["session"].get("sender"):
                    assert time.monotonic() < wait, "the WHIP DELETE did not reach the daemon"
                    time.sleep(0.2)
            finally:
                browser.close()
    finally:
        if "events" in locals():
            events.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()


def test_firefox_over_https_uses_the_link_ice_servers_and_sends_its_camera(
    start_daemon: Any, certificate: tuple[Path, Path], coturn: TurnServer,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same page in Firefox ESR: a secure context, both peer connections made with the
    servers of the OPTIONS Link headers, its camera through the model at 1280x720."""
    from tests.support.firefox import DRIVER_DIR, FIREFOX, FirefoxPage

    if not FIREFOX.exists():
        pytest.skip(f"{FIREFOX} is missing (apt-get install firefox-esr)")
    if shutil.which("node") is None or not (DRIVER_DIR / "node_modules").is_dir():
        pytest.skip(f"the Firefox driver is not installed: run `npm ci` in {DRIVER_DIR}")
    ice = ice_servers_for(coturn)
    d = start_daemon(tls_config(certificate, ice))
    monkeypatch.setenv("REACTOR_FIREFOX_ACCEPT_INSECURE_CERTS", "1")  # the test's own CA
    page = FirefoxPage(d.url, tmp_path / "firefox.log")
    try:
        assert page.evaluate("window.isSecureContext") is True
        want = expected_servers(ice)
        configured = """JSON.stringify(window.__reactorPcs.map((pc) =>
            pc.getConfiguration().iceServers.map((s) => ({urls: [].concat(s.urls)[0],
              username: s.username, credential: s.credential}))))"""
        deadline = time.monotonic() + 20
        while page.evaluate("window.reactor.whepLocation") is None:
            assert time.monotonic() < deadline, page.log_tail()
            time.sleep(0.2)
        assert page.evaluate("JSON.stringify(window.reactor.iceServers)") == json.dumps(
            want, separators=(",", ":"))
        page.click("#send-btn")
        deadline = time.monotonic() + 40
        state: dict[str, Any] = {}
        while not (state.get("send") == "connected" and state.get("w") == 1280
                   and state.get("h") == 720 and state.get("f", 0) > 30):
            assert time.monotonic() < deadline, f"{state}\n{page.log_tail()}"
            time.sleep(0.5)
            state = json.loads(page.evaluate(
                "JSON.stringify({send: window.reactor.sendState, w: window.reactor.width, "
                "h: window.reactor.height, f: window.reactor.framesDecoded})"))
        pcs = json.loads(page.evaluate(configured))
        assert len(pcs) == 2
        for servers in pcs:
            assert [{k: v for k, v in s.items() if v} for s in servers] == want
        assert d.status()["pipeline"]["fps_in"] > 0
    finally:
        page.close()
