"""The errors a ring raises; all are :class:`reactor.errors.ReactorError`."""

from __future__ import annotations

from reactor.errors import ReactorError


class RingError(ReactorError):
    """A shared-memory ring could not be created, attached or used."""


class RingTimeout(RingError, TimeoutError):
    """A ``block`` producer found no free slot before its timeout."""


class RingClosedError(RingError):
    """The ring was closed by its owner or its producer; no more frames will come."""


class ProducerGoneError(RingClosedError):
    """The ring's producer process died."""


class RingSpaceError(RingError):
    """``/dev/shm`` has too little free space for the ring."""
