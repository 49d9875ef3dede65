"""Answering a WHIP or WHEP offer: which failures are the offer's, and which are ours.

:func:`reactor.media.sdp.validate_offer` refuses what it can see is wrong. aiortc then
parses and applies the offer and writes the answer, and on an offer it cannot use it fails
in assorted ways: besides its own refusals (``ValueError`` and its W3C errors), offers
that pass the check but are malformed made ``setRemoteDescription`` raise
``AttributeError``, ``AssertionError``, ``IndexError``, ``KeyError``, ``TypeError`` and
``RuntimeError``, and the answer ``ValueError`` and ``AttributeError`` (1,200 mutated
aiortc offers, aiortc 1.16). So a failure in the two steps that read the client's SDP,
:func:`apply_offer` and :func:`answer_offer`, is the offer's: :class:`SdpError`, a 400
naming aiortc's message; one that is not among aiortc's refusals is logged with its
traceback too, so that a bug behind it still shows. Any other failure while answering, in
our own code around these steps, is a server error: the caller lets it become a 500 with
its traceback in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError

from reactor.errors import SdpError
from reactor.media.sdp import announce_host_candidates, answer_sdp_for

log = logging.getLogger(__name__)

#: What aiortc raises to refuse an offer it understood: no traceback needed.
REFUSALS: tuple[type[Exception], ...] = (
    ValueError, InvalidAccessError, InvalidStateError, OperationError)


def _refused(step: str, exc: Exception) -> SdpError:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, REFUSALS):
        log.warning("aiortc failed to %s an offer (%s: %s); answered 400", step,
                    type(exc).__name__, text, exc_info=exc)
    return SdpError(f"cannot answer the offer: {text}")


async def apply_offer(pc: RTCPeerConnection, sdp: str) -> None:
    """``setRemoteDescription``; raise :class:`SdpError` if aiortc cannot apply ``sdp``."""
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
    except Exception as exc:
        raise _refused("apply", exc) from exc


async def answer_offer(pc: RTCPeerConnection, announced: Sequence[str] = ()) -> str:
    """:func:`reactor.media.sdp.answer_sdp_for` with its failures sorted: one while aiortc
    writes the answer to the offer applied is the offer's (:class:`SdpError`); announcing
    ``server.announced_addresses`` in our answer is ours, so its failure is raised as it
    is (a 500)."""
    try:
        sdp = await answer_sdp_for(pc)
    except Exception as exc:
        raise _refused("answer", exc) from exc
    return announce_host_candidates(sdp, announced) if announced else sdp


async def close_quietly(pc: RTCPeerConnection, who: str) -> None:
    """Close a connection whose offer failed. aiortc's close can fail on a half-applied
    offer (its SCTP transport never started: AttributeError); that must not replace the
    error the client is owed, so it is logged and dropped."""
    try:
        await pc.close()
    except Exception as exc:
        log.debug("%s: closing the connection of a failed offer: %r", who, exc)
