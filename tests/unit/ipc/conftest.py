"""Fixtures of the ring tests."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from reactor.ipc import ShmRing

_names = itertools.count()


@pytest.fixture
def name() -> Iterator[str]:
    """A fresh segment name; the test fails if it leaves the segment behind."""
    ring_name = f"reactor-test-{os.getpid()}-{next(_names)}"
    yield ring_name
    assert not ShmRing.unlink_name(ring_name), "the test left its segment behind"
