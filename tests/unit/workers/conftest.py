from __future__ import annotations

from collections.abc import Iterator

import aioice.ice
import pytest


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # aioice gathers host candidates on every interface except 127.0.0.1; tests must bind
    # to loopback only, so gather there and nowhere else.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield
