"""WebRTC and codec building blocks for the ingress and egress workers.

Everything here is a library: no worker, socket or config lives in this package.

- :mod:`~reactor.media.dtls` lets aiortc's DTLS talk to peers with RSA certificates.
- :mod:`~reactor.media.jitter` completes received video frames on the RTP marker bit.
- :mod:`~reactor.media.rate` lets a WHIP sender start at a camera's bitrate.
- :mod:`~reactor.media.convert` converts between ``av.VideoFrame`` and RGB numpy arrays.
- :mod:`~reactor.media.encoder` encodes RGB frames once (H.264 or VP8).
- :mod:`~reactor.media.tracks` fans pre-encoded packets out to many viewers.
- :mod:`~reactor.media.audio` encodes the model's sound once (Opus) and fans it out.
- :mod:`~reactor.media.clock` is the session clock of RTP timestamps and sender reports.
- :mod:`~reactor.media.playout` asks browsers to render the daemon's video at once.
- :mod:`~reactor.media.sdp` validates WHIP/WHEP offers before aiortc sees them.
- :mod:`~reactor.media.ice` patches aioice: the loopback policy, and Firefox's
  end-of-candidates.
- :mod:`~reactor.media.peer` makes the daemon's peer connections from plain values (the
  ICE servers, the transport policy and the host the workers read from the ``server``
  section) and installs the patches.
- :mod:`~reactor.media.whip_client` is an asyncio WHIP/WHEP client.
- :mod:`~reactor.media.patches` is the registry of every aiortc/aioice patch: targets,
  the versions checked, why, and apply/revert.

Importing any of these changes nothing outside it. The aiortc/aioice patches are
installed only by :func:`install`: the ingress and egress workers call it at start
(:func:`reactor.media.peer.install_patches`), and a program that uses
:mod:`reactor.client` may call it to get the same behaviour (opt-in).
"""

from __future__ import annotations

__all__ = ["install"]


def install(*, loopback: bool = False) -> None:
    """Install reactor's aiortc/aioice patches in this process; idempotent.

    They apply to peer connections created after the call, process-wide:

    - DTLS accepts ECDHE-RSA cipher suites too (:mod:`reactor.media.dtls`): GStreamer and
      other peers with an RSA certificate can then connect;
    - received video frames are complete on their RTP marker bit, one frame interval
      sooner (:mod:`reactor.media.jitter`);
    - a sender hears a useful bandwidth estimate (REMB) from its first packets, so a
      browser's camera reaches 720p in seconds, not half a minute (:mod:`reactor.media.rate`);
    - a keyframe request from a viewer of a pre-encoded track reaches its encoder
      (:mod:`reactor.media.tracks`);
    - a pre-encoded video track's viewer has a bandwidth estimate fed by its REMB and
      receiver reports (:mod:`reactor.media.bwe`), and its packets leave paced at 2.5x
      that estimate, never as one burst a frame (:mod:`reactor.media.pacer`);
    - a video viewer that offers the ``playout-delay`` RTP header extension gets it, with
      min = max = 0 on every packet, so a browser renders frames as soon as they are
      decoded (:mod:`reactor.media.playout`);
    - RTCP sender reports of egress's tracks map RTP time to NTP by the session clock, so
      receivers line sound up with picture (:mod:`reactor.media.clock`);
    - an end-of-candidates that leaves no usable remote candidate is held back for a
      while, which is what Firefox needs (:mod:`reactor.media.ice`);
    - ``loopback=True``: ICE offers loopback and this machine's interface addresses and
      talks to this machine only (:mod:`reactor.media.ice`); ``False`` turns that off.

    Every patch is an entry of :mod:`reactor.media.patches`; before applying any, this
    checks that every target is still as the registry expects and raises
    :class:`~reactor.errors.PatchError` (naming the patch, the target and the installed
    aiortc/aioice version) when one is not.
    """
    # Imported here, not above: the package's light modules (convert, encoder, recorder)
    # must not pull aiortc, aioice and OpenSSL into a process that needs none of them.
    from reactor.media import patches

    patches.install(loopback=loopback)
