"""WebRTC and codec building blocks for the ingress and egress workers.

Everything here is a library: no worker, socket or config lives in this package.

- :mod:`~reactor.media.dtls` lets aiortc's DTLS talk to peers with RSA certificates.
- :mod:`~reactor.media.jitter` completes received video frames on the RTP marker bit.
- :mod:`~reactor.media.convert` converts between ``av.VideoFrame`` and RGB numpy arrays.
- :mod:`~reactor.media.encoder` encodes RGB frames once (H.264 or VP8).
- :mod:`~reactor.media.tracks` fans pre-encoded packets out to many viewers.
- :mod:`~reactor.media.sdp` validates WHIP/WHEP offers before aiortc sees them.
- :mod:`~reactor.media.ice` patches aioice: the loopback policy, and Firefox's
  end-of-candidates.
- :mod:`~reactor.media.peer` makes the daemon's peer connections from the ``server``
  section (ICE servers, transport policy) and installs the patches.
- :mod:`~reactor.media.whip_client` is an asyncio WHIP/WHEP client.
"""

from __future__ import annotations
