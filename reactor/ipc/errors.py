"""The errors a ring raises, defined in :mod:`reactor.errors` (where the whole
:class:`~reactor.errors.ReactorError` tree is) and exported here under their old path."""

from __future__ import annotations

from reactor.errors import (
    ProducerGoneError,
    RingClosedError,
    RingError,
    RingSpaceError,
    RingTimeout,
)

__all__ = ["ProducerGoneError", "RingClosedError", "RingError", "RingSpaceError", "RingTimeout"]
