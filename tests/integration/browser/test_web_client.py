"""The web client in a real Chromium against a real daemon: watch, send a camera, control.

Each test starts its own daemon (``server: {port: 0}``) and stops it in teardown.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.support.chromium import sample_rgb, selected_pairs, wait_playing, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

SOLID = {"model": {"module": "reactor.examples.filters:SolidColor"},
         "video": {"width": 640, "height": 360, "fps": 30}}
BRIGHTNESS = {"model": {"module": "reactor.examples.filters:Brightness"},
              "video": {"width": 640, "height": 480, "fps": 30}}
CODEC_TOLERANCE = 40


def near(rgb: tuple[float, ...] | None, want: tuple[int, int, int],
         tol: float = CODEC_TOLERANCE) -> bool:
    return rgb is not None and all(abs(a - b) <= tol for a, b in zip(rgb, want, strict=True))


def control(page: Any, command: str, param: str, kind: str = "") -> Any:
    sel = f"[data-command='{command}'][data-param='{param}']"
    return page.locator(f"input[type='{kind}']{sel}" if kind else sel)


def apply(page: Any, command: str) -> None:
    page.locator(f"button[type='submit'][data-command='{command}']").click()


def fps_samples(page: Any, seconds: float) -> list[float]:
    out = []
    for _ in range(int(seconds)):
        time.sleep(1.0)
        out.append(float(page.evaluate("window.reactor.fps")))
    return out


def test_default_model_plays_720p30_with_controls(reactor_daemon: Any, open_page: Any) -> None:
    d = reactor_daemon()
    page = open_page(d.url)
    wait_playing(page, width=1280, height=720)

    samples = fps_samples(page, 5)
    assert statistics.median(samples) >= 25, f"window.reactor.fps over 5 s: {samples}"
    r = page.evaluate("window.reactor")
    assert (r["width"], r["height"], r["model"]) == (1280, 720, "TestPattern")
    assert page.evaluate("document.getElementById('video').videoWidth") == 1280

    speed = control(page, "set_speed", "speed", "range")
    assert speed.is_visible()
    assert (speed.get_attribute("min"), speed.get_attribute("max")) == ("-64", "64")
    assert control(page, "set_speed", "speed", "number").is_visible()
    text = control(page, "set_text", "text", "text")
    assert text.is_visible() and text.get_attribute("maxlength") == "40"
    assert control(page, "pause", "paused", "checkbox").count() == 1
    assert "TestPattern" in page.locator("#model-name").inner_text()
    assert "1280\u00d7720" in page.locator("#status").inner_text()


def test_set_color_through_the_page_changes_decoded_pixels(
        reactor_daemon: Any, open_page: Any) -> None:
    d = reactor_daemon(SOLID)
    page = open_page(d.url)
    wait_playing(page, width=640, height=360)
    wait_until(lambda: near(sample_rgb(page), (255, 0, 0)), 5, "red frames")

    for param, value in (("r", "0"), ("g", "255"), ("b", "0")):
        control(page, "set_color", param, "number").fill(value)
    apply(page, "set_color")
    page.locator(".ok[data-command='set_color']").wait_for(state="visible", timeout=3000)
    wait_until(lambda: near(sample_rgb(page), (0, 255, 0)), 3, "green frames after set_color")
    assert page.locator(".error[data-command='set_color']").is_hidden()


def brightness(rgb: tuple[float, ...] | None) -> float:
    assert rgb is not None, "no decoded video to sample"
    return sum(rgb) / 3


def test_send_camera_is_processed_and_invert_applies(reactor_daemon: Any, open_page: Any) -> None:
    d = reactor_daemon(BRIGHTNESS)
    page = open_page(d.url)
    page.wait_for_function("window.reactor.schemaLoaded && window.reactor.whepLocation")
    page.locator("#send-btn").click()
    page.wait_for_function("window.reactor.sendState === 'connected'", timeout=15000)
    wait_playing(page, width=640, height=480)
    page.wait_for_function("document.getElementById('preview').videoWidth > 0")

    def output_vs_input() -> tuple[float, float]:
        # Whole-frame means: the fake camera's pattern moves, its overall level does not.
        return (brightness(sample_rgb(page, 0.9)), brightness(sample_rgb(page, 0.9, "preview")))

    out, src = output_vs_input()
    print(f"before invert: output {out:.0f}, camera {src:.0f}")
    assert abs(out - src) < 30, f"output {out:.0f} should follow the camera {src:.0f}"
    assert abs(src - 127.5) > 20, f"camera mean {src:.0f} too grey to tell inversion apart"

    invert = control(page, "set_invert", "invert", "checkbox")
    invert.check()  # a toggle sends on change
    page.locator(".ok[data-command='set_invert']").wait_for(state="visible", timeout=3000)

    def inverted() -> tuple[float, float] | None:
        o, s = output_vs_input()
        return (o, s) if abs(o - (255 - s)) < 30 else None

    o, s = wait_until(inverted, 3, "inverted output")
    print(f"after invert: output {o:.0f}, camera {s:.0f}")
    assert abs(o - out) > 30, f"inversion should change the brightness ({out:.0f} -> {o:.0f})"


def test_bad_command_value_shows_the_validation_error(reactor_daemon: Any, open_page: Any) -> None:
    d = reactor_daemon()
    page = open_page(d.url)
    box = control(page, "set_speed", "speed", "number")
    box.fill("999")
    apply(page, "set_speed")
    err = page.locator(".error[data-command='set_speed']")
    err.wait_for(state="visible", timeout=5000)
    text = err.inner_text()
    assert "speed" in text and "less than or equal to 64" in text, text
    assert box.get_attribute("aria-invalid") == "true"
    last = page.evaluate("window.reactor.lastError")
    assert "speed" in last and "less than or equal to 64" in last, last


def test_closing_the_tab_ends_the_session_after_the_orphan_timeout(
        reactor_daemon: Any, open_page: Any) -> None:
    d = reactor_daemon({"session": {"orphan_timeout_s": 1}})
    page = open_page(d.url)
    wait_playing(page)
    assert d.status()["session"] is not None
    page.close()

    t0 = time.monotonic()
    wait_until(lambda: d.status()["session"] is None, 10, "the session to end", 0.25)
    print(f"session ended {time.monotonic() - t0:.1f} s after the tab closed")

    again = open_page(d.url)
    wait_playing(again)


def test_token_from_the_url_fragment(reactor_daemon: Any, open_page: Any) -> None:
    token = "sekret-token-123"
    d = reactor_daemon({"server": {"token": token}})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(d.url + "api/schema", timeout=5)
    assert exc.value.code == 401

    page = open_page(f"{d.url}#token={token}")
    wait_playing(page, width=1280, height=720)
    assert control(page, "set_speed", "speed", "range").is_visible()
    assert page.locator("#token-form").is_hidden()
    assert "token" not in page.url  # the fragment is dropped once stored
    control(page, "set_text", "text", "text").fill("HELLO")
    apply(page, "set_text")
    page.locator(".ok[data-command='set_text']").wait_for(state="visible", timeout=3000)


def test_token_prompt_when_missing(reactor_daemon: Any, open_page: Any) -> None:
    d = reactor_daemon({"server": {"token": "sekret-token-123"}})
    page = open_page(d.url)
    page.locator("#token-form").wait_for(state="visible", timeout=5000)
    page.locator("#token-input").fill("sekret-token-123")
    page.locator("#token-form button[type='submit']").click()
    wait_playing(page)
    assert page.locator("#token-form").is_hidden()


def test_media_stays_on_this_machine(reactor_daemon: Any, open_page: Any) -> None:
    from reactor.media.ice import own_addresses

    d = reactor_daemon()
    page = open_page(d.url)
    wait_playing(page)
    pairs = selected_pairs(page)
    print(f"selected ICE pairs: {pairs}")
    assert pairs, "no selected candidate pair"
    for p in pairs:
        # The daemon's end: loopback or this machine's own interface address (a loopback
        # daemon offers both and answers only this machine's own addresses).
        assert p["remote"] in own_addresses(), pairs
        assert p["local"] in own_addresses(), pairs  # the browser's end is this machine


def test_viewer_reconnects_when_egress_restarts(reactor_daemon: Any, open_page: Any) -> None:
    d = reactor_daemon()
    page = open_page(d.url)
    wait_playing(page)
    first = page.evaluate("window.reactor.whepLocation")
    r = subprocess.run([sys.executable, "-m", "reactor.cli", "daemon", "restart", "egress",
                        "--run-dir", str(d.run_dir)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    page.wait_for_function(
        f"window.reactor.whepLocation && window.reactor.whepLocation !== {first!r}",
        timeout=30000)
    wait_playing(page, timeout_s=30)


def test_second_camera_shows_the_refusal_reason(reactor_daemon: Any, open_page: Any) -> None:
    d = reactor_daemon(BRIGHTNESS)
    first = open_page(d.url)
    first.wait_for_function("window.reactor.schemaLoaded")
    first.locator("#send-btn").click()
    first.wait_for_function("window.reactor.sendState === 'connected'", timeout=15000)
    second = open_page(d.url)
    second.wait_for_function("window.reactor.schemaLoaded")
    second.locator("#send-btn").click()
    err = second.locator("#send-error")
    err.wait_for(state="visible", timeout=10000)
    assert "another client is already sending" in err.inner_text()
    assert second.locator("#send-btn").inner_text() == "Send camera"


def test_the_page_shows_the_models_state_not_the_defaults(reactor_daemon: Any,
                                                         open_page: Any) -> None:
    """A command sent from the CLI before the page opened, and one sent while it is open:
    the page's controls show what the model was last told, from the schema's ``current``
    and then each ``command`` event; status lists it too."""
    from tests.integration.browser.conftest import reactor_cli

    d = reactor_daemon(BRIGHTNESS)
    rd = ("--run-dir", str(d.run_dir))
    r = reactor_cli("send", "set_mode", "mode=gray", *rd)
    assert r.returncode == 0, r.stderr
    page = open_page(d.url)
    mode = page.locator("select[data-command='set_mode'][data-param='mode']")
    mode.wait_for(timeout=20_000)
    wait_until(lambda: mode.evaluate("s => s.options[s.selectedIndex].text") == "gray", 5,
               "the page to show mode gray (the schema's default is rgb)")
    r = reactor_cli("send", "set_gain", "gain=2.5", *rd)
    assert r.returncode == 0, r.stderr
    gain = control(page, "set_gain", "gain", "number")
    wait_until(lambda: gain.input_value() == "2.5", 5, "the page to follow the command event")
    # The slider moves in hundredths of its range (0.04 here): as near as it can show.
    assert abs(float(control(page, "set_gain", "gain", "range").input_value()) - 2.5) <= 0.04
    applied = d.status()["commands_applied"]
    assert applied == {"set_mode": {"mode": "gray"}, "set_gain": {"gain": 2.5}}, applied
