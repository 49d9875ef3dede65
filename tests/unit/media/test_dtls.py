from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCPeerConnection, RTCRtpTransceiver
from aiortc.rtcdtlstransport import RTCCertificate, generate_certificate
from cryptography.hazmat.primitives.asymmetric import rsa

from reactor.media import dtls
from tests.support.rtc import QueueVideoTrack, connect, new_pc


@pytest.fixture(autouse=True)
def restore_dtls() -> object:
    was = dtls.rsa_cipher_suites_enabled()
    yield
    if was:
        dtls.enable_rsa_cipher_suites()
    else:
        dtls.disable_rsa_cipher_suites()


def _rsa_certificate() -> RTCCertificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return RTCCertificate(key=key, cert=generate_certificate(key))  # type: ignore[arg-type]


def test_cipher_list_gains_ecdhe_rsa_and_keeps_ecdsa_first() -> None:
    dtls.disable_rsa_cipher_suites()
    stock = dtls.dtls_cipher_list()
    assert stock and all("ECDSA" in name for name in stock)
    dtls.enable_rsa_cipher_suites()
    dtls.enable_rsa_cipher_suites()  # idempotent
    patched = dtls.dtls_cipher_list()
    assert patched[: len(stock)] == stock
    assert "ECDHE-RSA-AES128-GCM-SHA256" in patched
    assert set(patched) - set(stock) <= set(dtls.RSA_CIPHER_SUITES)
    assert not any(name.startswith(("RSA-", "AES")) for name in patched)  # no static RSA


async def _handshake(rsa_offerer: bool) -> tuple[str, str]:
    """Connect two aiortc peers; the offerer (the DTLS server, as GStreamer is when aiortc
    answers) optionally presents an RSA certificate. Return both DTLS states."""
    offerer, answerer = new_pc(), new_pc()
    if rsa_offerer:
        offerer._RTCPeerConnection__certificates = [_rsa_certificate()]  # type: ignore[attr-defined]
    offerer.addTrack(QueueVideoTrack())
    try:
        await connect(offerer, answerer)
        for _ in range(100):
            states = (_dtls_state(offerer), _dtls_state(answerer))
            if all(s in ("connected", "failed", "closed") for s in states):
                break
            await asyncio.sleep(0.05)
        return _dtls_state(offerer), _dtls_state(answerer)
    finally:
        await offerer.close()
        await answerer.close()


def _dtls_state(pc: RTCPeerConnection) -> str:
    transceiver: RTCRtpTransceiver = pc.getTransceivers()[0]
    return str(transceiver.sender.transport.state)


@pytest.mark.timeout(30)
def test_aiortc_to_aiortc_still_connects_with_patch() -> None:
    dtls.enable_rsa_cipher_suites()
    assert asyncio.run(_handshake(rsa_offerer=False)) == ("connected", "connected")


@pytest.mark.timeout(30)
def test_rsa_certificate_peer_needs_the_patch() -> None:
    dtls.disable_rsa_cipher_suites()
    assert "connected" not in asyncio.run(_handshake(rsa_offerer=True))
    dtls.enable_rsa_cipher_suites()
    assert asyncio.run(_handshake(rsa_offerer=True)) == ("connected", "connected")
