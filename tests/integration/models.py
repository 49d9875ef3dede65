"""Misbehaving models for the daemon's fault tests (imported by the daemon's workers)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from reactor import Field, Session, VideoModel, command


class FailOnStart(VideoModel):
    """start_session raises on the first session only, then works."""

    def load(self, config: dict[str, Any]) -> None:
        self.sessions = 0

    def start_session(self, session: Session) -> None:
        self.sessions += 1
        if self.sessions == 1:
            raise RuntimeError("boom in start_session")
        frame = np.zeros((session.height, session.width, 3), np.uint8)
        while not session.should_stop():
            session.emit(frame)


class FailOnLoad(VideoModel):
    def load(self, config: dict[str, Any]) -> None:
        raise RuntimeError("cannot find weights.bin")

    def start_session(self, session: Session) -> None:
        pass


class Stalls(VideoModel):
    """Emits a few frames, then hangs without emitting."""

    def start_session(self, session: Session) -> None:
        frame = np.zeros((session.height, session.width, 3), np.uint8)
        for _ in range(3):
            session.emit(frame)
        while not session.should_stop():
            time.sleep(0.05)


class Counter(VideoModel):
    """Emits frames whose first pixel counts; set_value jumps the count."""

    def load(self, config: dict[str, Any]) -> None:
        self.value = 0

    @command
    def set_value(self, value: int = Field(0, ge=0, le=255)) -> int:
        self.value = value
        return value

    def start_session(self, session: Session) -> None:
        frame = np.zeros((session.height, session.width, 3), np.uint8)
        while not session.should_stop():
            frame[:] = self.value % 256
            session.emit(frame)
            self.value += 1
