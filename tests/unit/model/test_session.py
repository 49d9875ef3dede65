from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from reactor import CommandError, Field, FrameError, Session, VideoModel, command
from reactor.model.session import PendingCommand
from reactor.testing import ModelRunner


class Recorder(VideoModel):
    """Emits its current value as every pixel; logs when commands ran."""

    def load(self, config: dict[str, Any]) -> None:
        self.value = 0
        self.log: list[tuple[str, int]] = []

    @command
    def set_value(self, value: int = Field(0, ge=0, le=255)) -> int:
        self.log.append(("set", value))
        self.value = value
        return value

    @command
    def explode(self) -> None:
        raise RuntimeError("handler failed")

    def start_session(self, session: Session) -> None:
        while not session.should_stop():
            session.emit(np.full((session.height, session.width, 3), self.value, np.uint8))
            self.log.append(("frame", self.value))


def test_commands_apply_between_frames_in_order() -> None:
    runner = ModelRunner(Recorder, width=4, height=2)
    frames = runner.run(
        frames=6,
        commands={
            2: [("set_value", {"value": 10}), ("set_value", {"value": 20})],
            4: ("set_value", {"value": 30}),
        },
    )
    assert [int(f[0, 0, 0]) for f in frames] == [0, 0, 20, 20, 30, 30]
    model = runner.model
    assert isinstance(model, Recorder)
    # Both commands at frame 2 ran, in order, after frame 1 and before frame 2.
    i = model.log.index(("set", 10))
    assert model.log[i - 1] == ("frame", 0) and model.log[i + 1] == ("set", 20)
    assert model.log[i + 2] == ("frame", 20)
    assert runner.results == [("set_value", 10), ("set_value", 20), ("set_value", 30)]


def test_invalid_command_never_reaches_the_handler() -> None:
    runner = ModelRunner(Recorder, width=4, height=2)
    with pytest.raises(CommandError) as err:
        runner.send_command("set_value", value=999)
    assert err.value.field == "value"
    runner.apply_pending()
    assert runner.model.log == []  # type: ignore[attr-defined]


class ScriptedIO:
    """A session's IO in memory: hands over the commands queued for each output frame,
    stops after ``frames`` outputs. It has no sound."""

    start_ns = 0
    realtime = False

    def __init__(self, frames: int, commands: dict[int, list[PendingCommand]]) -> None:
        self.frames = frames
        self.commands = commands
        self.outputs: list[np.ndarray] = []

    def read_input(self, timeout: float) -> np.ndarray | None:
        return None

    def input_pts(self) -> int | None:
        return None

    def clock_ns(self) -> int:
        return len(self.outputs) * 1_000_000_000 // 30

    def write_output(self, frames: np.ndarray) -> int:
        first = self.clock_ns()
        self.outputs.extend(frames)
        return first

    def write_audio(self, pcm: np.ndarray, pts_ns: int) -> None:
        raise AssertionError("this session has no sound")

    def read_audio(self, timeout: float) -> tuple[np.ndarray, int] | None:
        raise AssertionError("this session has no sound")

    def poll_commands(self) -> list[PendingCommand]:
        return self.commands.pop(len(self.outputs), [])

    def stopping(self) -> bool:
        return len(self.outputs) >= self.frames

    def send(self, message: Any) -> None:
        pass


def test_handler_error_is_reported_not_fatal_to_the_session() -> None:
    outcomes: list[tuple[str, Any, BaseException | None]] = []

    def done(name: str) -> Any:
        return lambda result, error: outcomes.append((name, result, error))

    model = Recorder()
    model.load({})
    io = ScriptedIO(5, {2: [PendingCommand("explode", {}, done("explode")),
                            PendingCommand("set_value", {"value": 7}, done("set_value"))]})
    model.start_session(Session(model, io, id="s", width=4, height=2, fps=30))
    # The session went on to its last frame, the next command in the same batch ran, and
    # the failure went back to whoever sent the command, as a 500 naming the handler.
    assert [int(f[0, 0, 0]) for f in io.outputs] == [0, 0, 7, 7, 7]
    (name, _, error), (next_name, result, next_error) = outcomes
    assert name == "explode" and isinstance(error, CommandError) and error.status == 500
    assert str(error) == "explode raised RuntimeError: handler failed"
    assert (next_name, result, next_error) == ("set_value", 7, None)


def test_model_runner_raises_a_handler_error_for_the_test_to_see() -> None:
    runner = ModelRunner(Recorder, width=4, height=2)
    with pytest.raises(CommandError, match="explode raised RuntimeError: handler failed"):
        runner.run(frames=3, commands={1: ("explode", {})})


class WrongShape(VideoModel):
    def start_session(self, session: Session) -> None:
        session.emit(np.zeros((10, 10, 3), np.uint8))


def test_wrong_shape_emit_raises_frame_error() -> None:
    with pytest.raises(FrameError, match=r"\(2, 4, 3\)"):
        ModelRunner(WrongShape, width=4, height=2).run(frames=1)


class NeverChecks(VideoModel):
    def start_session(self, session: Session) -> None:
        while True:  # ignores should_stop(): emit() ends it
            session.emit(np.zeros((2, 4, 3), np.uint8))


def test_emit_after_stop_ends_a_model_that_never_checks() -> None:
    assert len(ModelRunner(NeverChecks, width=4, height=2).run(frames=5)) == 5


class Chatty(VideoModel):
    def start_session(self, session: Session) -> None:
        session.send({"hello": session.id})
        with pytest.raises(Exception, match="JSON-serialisable"):
            session.send(object())
        session.emit(np.zeros((2, 4, 3), np.uint8))


def test_send_delivers_json_messages() -> None:
    runner = ModelRunner(Chatty, width=4, height=2)
    runner.run(frames=1)
    assert runner.messages == [{"hello": "test-1"}]


class Reads(VideoModel):
    def start_session(self, session: Session) -> None:
        for frame in session.inputs():
            session.emit(frame)


def test_runner_says_when_a_filter_gets_no_inputs() -> None:
    with pytest.raises(ValueError, match=r"Reads reads input frames .*run\(inputs="):
        ModelRunner(Reads, width=4, height=2).run(frames=3)
