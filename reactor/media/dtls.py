"""Let aiortc's DTLS handshake succeed with peers that present an RSA certificate.

aiortc (since PR aiortc/aiortc#1011) restricts its DTLS cipher list to ECDHE-ECDSA
suites. When aiortc answers an offer it takes the DTLS *client* role (``a=setup:active``),
so its ClientHello offers only ECDSA suites. GStreamer's ``webrtcbin`` (and other
RSA-based stacks) is then the DTLS server with an RSA certificate, and can pick none of
them: the handshake dies with "no shared cipher" on the GStreamer side, for WHIP and WHEP
alike. Upstream has declined to widen the list (aiortc/aiortc#1392, #1421), so we append
the ECDHE-RSA suites ourselves.

The patch is deliberately narrow: it wraps :meth:`aiortc.RTCCertificate._create_ssl_context`
and *appends* ECDHE-RSA suites to whatever list aiortc chose, so ECDSA suites keep their
preference and aiortc↔browser handshakes are unchanged. Our own certificate stays ECDSA;
an ECDHE-RSA suite can only be selected when the *server* holds an RSA certificate.
Only ECDHE (forward secret) AEAD/SHA suites are added; no static-RSA key exchange.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80, RTCCertificate
from OpenSSL import SSL

logger = logging.getLogger(__name__)

#: The suites appended to aiortc's list, in preference order (OpenSSL names).
RSA_CIPHER_SUITES: tuple[str, ...] = (
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-RSA-AES256-SHA",
)

# Marks our wrapper so enabling twice is a no-op and disabling finds the original.
_PATCH_ATTR = "__reactor_rsa_suites_original__"


def _cipher_names(ctx: SSL.Context) -> list[str]:
    # pyOpenSSL exposes the effective list only on a Connection, and a Context that has
    # made a Connection can no longer be changed, so only throwaway contexts come here.
    # TLS 1.3 suites ("TLS_...") are configured apart and do not apply to DTLS 1.2.
    return [n for n in SSL.Connection(ctx).get_cipher_list() if not n.startswith("TLS_")]


def _extended_cipher_list(original: Callable[..., SSL.Context]) -> bytes:
    # Read the list the installed aiortc chose from a probe context, so a future aiortc
    # that changes its suites keeps them (and their order), with ours appended.
    probe = original(RTCCertificate.generateCertificate(), [SRTP_AES128_CM_SHA1_80])
    current = _cipher_names(probe)
    extra = [name for name in RSA_CIPHER_SUITES if name not in current]
    return ":".join(current + extra).encode("ascii")


def _wrap(original: Callable[..., SSL.Context]) -> Callable[..., SSL.Context]:
    cipher_list = _extended_cipher_list(original)

    @functools.wraps(original)
    def _create_ssl_context(self: RTCCertificate, *args: Any, **kwargs: Any) -> SSL.Context:
        ctx = original(self, *args, **kwargs)
        ctx.set_cipher_list(cipher_list)
        return ctx

    setattr(_create_ssl_context, _PATCH_ATTR, original)
    return _create_ssl_context


def enable_rsa_cipher_suites() -> None:
    """Make every DTLS context aiortc creates from now on accept ECDHE-RSA suites.

    Idempotent; affects peer connections whose DTLS transport starts after the call.
    """
    current = RTCCertificate._create_ssl_context
    if hasattr(current, _PATCH_ATTR):
        return
    RTCCertificate._create_ssl_context = _wrap(current)  # type: ignore[method-assign]
    logger.debug("aiortc DTLS: ECDHE-RSA cipher suites enabled")


def disable_rsa_cipher_suites() -> None:
    """Undo :func:`enable_rsa_cipher_suites` (for tests and comparisons). Idempotent."""
    original = getattr(RTCCertificate._create_ssl_context, _PATCH_ATTR, None)
    if original is not None:
        RTCCertificate._create_ssl_context = original  # type: ignore[method-assign]


def rsa_cipher_suites_enabled() -> bool:
    """Whether :func:`enable_rsa_cipher_suites` is in effect."""
    return hasattr(RTCCertificate._create_ssl_context, _PATCH_ATTR)


def dtls_cipher_list(certificate: RTCCertificate | None = None) -> list[str]:
    """The cipher suites a DTLS context built by aiortc right now would offer."""
    cert = certificate or RTCCertificate.generateCertificate()
    return _cipher_names(cert._create_ssl_context(srtp_profiles=[SRTP_AES128_CM_SHA1_80]))
