"""Misbehaving models for the daemon's fault tests (imported by the daemon's workers)."""

from __future__ import annotations

import time
from pathlib import Path
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


class Settable(VideoModel):
    """A ``value`` that starts at 0 and the ``set_value`` command that sets it."""

    def load(self, config: dict[str, Any]) -> None:
        self.value = 0

    @command
    def set_value(self, value: int = Field(0, ge=0, le=255)) -> int:
        self.value = value
        return value


class Counter(Settable):
    """Emits frames whose first pixel counts; set_value jumps the count."""

    def start_session(self, session: Session) -> None:
        frame = np.zeros((session.height, session.width, 3), np.uint8)
        while not session.should_stop():
            frame[:] = self.value % 256
            session.emit(frame)
            self.value += 1


class FailingCommand(Settable):
    """A generative model whose ``explode`` command raises; ``set_value`` works."""

    @command
    def explode(self, why: str = "kaboom") -> None:
        raise ValueError(f"handler exploded: {why}")

    def start_session(self, session: Session) -> None:
        frame = np.zeros((session.height, session.width, 3), np.uint8)
        while not session.should_stop():
            frame[:] = self.value
            session.emit(frame)


class IgnoresStop(VideoModel):
    """Emits a few frames, then spins in its own code forever: never checks stop."""

    def start_session(self, session: Session) -> None:
        frame = np.zeros((session.height, session.width, 3), np.uint8)
        for _ in range(3):
            session.emit(frame)
        while True:
            time.sleep(0.05)


class WrongShape(VideoModel):
    """Emits frames of the wrong size (``args.kind`` "shape") or type ("dtype")."""

    def load(self, config: dict[str, Any]) -> None:
        self.kind = config.get("kind", "shape")

    def start_session(self, session: Session) -> None:
        if self.kind == "dtype":
            frame: Any = np.zeros((session.height, session.width, 3), np.int64)
        else:
            frame = np.zeros((session.height // 2, session.width, 3), np.uint8)
        while not session.should_stop():
            session.emit(frame)


class MemoryHog(VideoModel):
    """Allocates ``args.mb_per_frame`` MiB more for every frame it emits, without bound.

    With ``args.keep`` the memory stays in the model after the session (only a restart
    releases it); without, it goes with the session. Only the first session ever (the
    file ``args.marker`` records it, across worker restarts) hogs; later ones stay small.
    """

    def load(self, config: dict[str, Any]) -> None:
        self.mb = int(config.get("mb_per_frame", 8))
        self.keep = bool(config.get("keep", False))
        self.marker = Path(config["marker"])
        self.hoard: list[np.ndarray] = []

    def start_session(self, session: Session) -> None:
        hog = not self.marker.exists()
        self.marker.touch()
        hoard: list[np.ndarray] = self.hoard if self.keep else []
        frame = np.zeros((session.height, session.width, 3), np.uint8)
        while not session.should_stop():
            if hog:
                hoard.append(np.ones(self.mb * 1024 * 1024, np.uint8))  # touched: resident
            session.emit(frame)


class Slow(VideoModel):
    """Takes ``args.frame_s`` (0.15) seconds a frame: 6.7 fps, whatever video.fps asks."""

    def load(self, config: dict[str, Any]) -> None:
        self.frame_s = float(config.get("frame_s", 0.15))

    def start_session(self, session: Session) -> None:
        frame = np.zeros((session.height, session.width, 3), np.uint8)
        while not session.should_stop():
            time.sleep(self.frame_s)
            session.emit(frame)
