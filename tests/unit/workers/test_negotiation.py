"""Answering WHIP and WHEP offers: an offer aiortc cannot use is a 400 naming why; a bug
of ours while answering is a 500 with its traceback in the log (never a 400, never a
dead process)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiortc import RTCPeerConnection

from reactor.config import Config, parse_config
from reactor.errors import SdpError
from reactor.media.tracks import Broadcaster
from reactor.proto import control_pb2 as cpb
from reactor.workers import ingress as ingress_module
from reactor.workers import viewers as viewers_module
from reactor.workers.admission import Admission
from reactor.workers.http import Api, EventFeed, build_app
from reactor.workers.ingress import Ingress
from reactor.workers.viewers import ViewerHub


def config() -> Config:
    return parse_config({"video": {"width": 320, "height": 240}, "egress": {"codec": "vp8"}})


async def offer(direction: str) -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction=direction)
    await pc.setLocalDescription(await pc.createOffer())
    await pc.close()
    return str(pc.localDescription.sdp)


def without(sdp: str, prefix: str) -> str:
    """``sdp`` less its lines starting with ``prefix``: still passes validate_offer."""
    return "\r\n".join(line for line in sdp.split("\r\n") if not line.startswith(prefix))


# --- WHIP: the ingress worker, through its HTTP API --------------------------------------


def whip(sdp_of: Any) -> tuple[int, dict[str, Any]]:
    cfg = config()
    ing = Ingress.__new__(Ingress)  # what whip_offer reads, without rings or a link
    ing.config, ing.sender, ing.audio_in, ing._whip_claimed = cfg, None, None, False
    ing.admission = Admission(exclusive=False)
    out: list[tuple[int, dict[str, Any]]] = []

    async def main() -> None:
        sdp = sdp_of(await offer("sendonly"))
        app = build_app(Api(ing, EventFeed(), cfg.server, None))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            resp = await client.post("/whip", data=sdp,
                                     headers={"Content-Type": "application/sdp"})
            out.append((resp.status, await resp.json()))

    asyncio.run(main())
    return out[0]


def test_whip_a_bug_while_answering_is_a_500_with_its_traceback_logged(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(sdp: str) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(ingress_module, "with_start_bitrate", broken)
    status, body = whip(lambda sdp: sdp)
    assert (status, body) == (500, {"error": "internal error; see `reactor daemon logs ingress`"})
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.getMessage() == "POST /whip failed"
    assert "RuntimeError: boom" in caplog.text


def test_whip_an_sdp_error_in_our_own_answer_is_ours(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # with_start_bitrate edits our answer: what it cannot read is a bug of ours, not a 400.
    def unreadable(sdp: str) -> str:
        raise SdpError("malformed media line: 'm=video'")

    monkeypatch.setattr(ingress_module, "with_start_bitrate", unreadable)
    status, body = whip(lambda sdp: sdp)
    assert (status, body) == (500, {"error": "internal error; see `reactor daemon logs ingress`"})
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.getMessage() == "POST /whip failed"
    assert "SdpError" in caplog.text and "malformed media line" in caplog.text


def test_whip_an_offer_aiortc_refuses_is_a_400_naming_why(
        caplog: pytest.LogCaptureFixture) -> None:
    status, body = whip(lambda sdp: without(sdp, "a=ice-ufrag"))
    assert status == 400
    assert body["error"] == ("cannot answer the offer: ICE username fragment or password is "
                             "missing")
    assert not [r for r in caplog.records if r.exc_info]  # a refusal, not a bug


def test_whip_an_offer_aiortc_fails_on_is_a_400_and_its_traceback_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    # No a=setup: aiortc's setRemoteDescription fails with an AttributeError.
    with caplog.at_level(logging.WARNING, logger="reactor.workers.negotiation"):
        status, body = whip(lambda sdp: without(sdp, "a=setup"))
    assert status == 400 and body["error"].startswith("cannot answer the offer: "), body
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.getMessage().startswith("aiortc failed to apply an offer (AttributeError")


# --- WHEP: the egress worker's viewer hub ------------------------------------------------


def whep(sdp_of: Any) -> cpb.Reply:
    out: list[cpb.Reply] = []

    async def main() -> None:
        broadcaster = Broadcaster(320, 240, fps=30)
        hub = ViewerHub(broadcaster, config(), on_count=lambda n: None)
        try:
            sdp = sdp_of(await offer("recvonly"))
            out.append(await hub.handle(cpb.WhepRequest(resource_id="v1", sdp=sdp)))
            assert hub.count == 0 and broadcaster.encoders_active == 0  # nothing left over
        finally:
            await hub.close()
            broadcaster.close()

    asyncio.run(main())
    return out[0]


def test_whep_a_bug_while_answering_is_a_500_with_its_traceback_logged(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(pc: RTCPeerConnection, track: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(viewers_module, "add_encoded_track", broken)
    reply = whep(lambda sdp: sdp)
    assert (reply.error.status, reply.error.message) == (
        500, "internal error answering the offer; see `reactor daemon logs egress`")
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.getMessage() == "viewer v1: answering the WHEP offer failed"
    assert "RuntimeError: boom" in caplog.text


def test_whep_an_offer_aiortc_refuses_is_a_400_naming_why() -> None:
    reply = whep(lambda sdp: without(sdp, "a=rtcp-mux"))
    assert (reply.error.status, reply.error.message) == (
        400, "cannot answer the offer: RTCP mux is not enabled")
