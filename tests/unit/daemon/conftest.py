"""Fixtures of the daemon's unit tests: the fakes of :mod:`tests.support.fakes`."""

from __future__ import annotations

import pytest

from tests.support.fakes import FakeClock, Spawner, Wire


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spawner() -> Spawner:
    return Spawner()


@pytest.fixture
def wire() -> Wire:
    return Wire()
