"""Every ZeroMQ socket reactor opens is made here, with explicit linger and timeouts."""

from __future__ import annotations

from typing import Any

import zmq

#: How long a closing socket may keep unsent messages (ms). Never block shutdown on them.
LINGER_MS = 0
#: The biggest control message we accept; anything larger is hostile or a bug.
MAX_MSG_BYTES = 4 * 1024 * 1024


def make_socket(
    ctx: zmq.Context[zmq.Socket[Any]],
    kind: int,
    *,
    bind: str | None = None,
    connect: str | None = None,
    identity: bytes | None = None,
    rcvtimeo_ms: int | None = None,
    sndtimeo_ms: int | None = None,
    hwm: int = 1000,
) -> zmq.Socket[Any]:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MSG_BYTES)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    if kind == zmq.ROUTER:
        # A restarted worker reconnects with the same identity: let it take over the old
        # route instead of being silently ignored. Unroutable replies raise, not vanish.
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if rcvtimeo_ms is not None:
        sock.setsockopt(zmq.RCVTIMEO, rcvtimeo_ms)
    if sndtimeo_ms is not None:
        sock.setsockopt(zmq.SNDTIMEO, sndtimeo_ms)
    if bind:
        sock.bind(bind)
    if connect:
        sock.connect(connect)
    return sock
