"""``remove_rings``: a ring that fails to close is still unlinked, and each failure is
logged with the ring's and the segment's name."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from reactor.daemon.rings import Ring, remove_rings
from reactor.ipc import ShmRing


def _segment(name: str) -> Path:
    return Path("/dev/shm") / name


def test_a_ring_that_fails_to_close_is_still_unlinked_and_the_failure_logged(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    names = [f"reactor-test-{os.getpid()}-{k}" for k in ("input", "output")]
    rings: dict[str, Ring] = {k: ShmRing.create(n, slots=2, shape=(4,))
                              for k, n in zip(("input", "output"), names, strict=True)}
    assert all(_segment(n).exists() for n in names)

    def broken_close() -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(rings["input"], "close", broken_close)
    try:
        with caplog.at_level(logging.ERROR, logger="reactor.daemon.rings"):
            remove_rings(rings)
        assert not any(_segment(n).exists() for n in names)  # the broken one too
        failed = [r for r in caplog.records if r.exc_info]
        assert [r.getMessage() for r in failed] == [
            f"ring input: closing segment {names[0]} failed"]
    finally:
        for n in names:
            ShmRing.unlink_name(n)


def test_a_failed_unlink_is_logged_naming_the_segment_and_the_rest_go(
        caplog: pytest.LogCaptureFixture) -> None:
    class Stuck:
        name = "reactor-test-stuck"

        def close(self) -> None:
            pass

        def unlink(self) -> None:
            raise PermissionError(13, "Permission denied")

    name = f"reactor-test-{os.getpid()}-after"
    after = ShmRing.create(name, slots=2, shape=(4,))
    try:
        with caplog.at_level(logging.ERROR, logger="reactor.daemon.rings"):
            remove_rings({"input": Stuck(), "output": after})  # type: ignore[dict-item]
        assert not _segment(name).exists()
        (record,) = [r for r in caplog.records if r.exc_info]
        assert "ring input: unlinking segment reactor-test-stuck failed" in record.getMessage()
        assert "/dev/shm/reactor-test-stuck" in record.getMessage()
    finally:
        ShmRing.unlink_name(name)
