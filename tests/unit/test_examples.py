"""reactor.testing drives each example model."""

from __future__ import annotations

import numpy as np
import pytest

from reactor import CommandError
from reactor.examples.filters import Brightness, Identity, SolidColor
from reactor.examples.pattern import TestPattern
from reactor.testing import ModelRunner


def test_pattern_moves_counts_and_obeys_commands() -> None:
    runner = ModelRunner(TestPattern, width=320, height=180)
    frames = runner.run(frames=6, commands={3: ("set_speed", {"speed": 0.0})})
    assert len(frames) == 6 and frames[0].shape == (180, 320, 3)
    assert not np.array_equal(frames[0][100:], frames[1][100:])  # bars move
    assert np.array_equal(frames[4][100:], frames[5][100:])  # speed 0 stops them
    assert not np.array_equal(frames[4][:30], frames[5][:30])  # the counter still counts
    with pytest.raises(CommandError):
        runner.send_command("set_speed", speed=1000)


def test_pattern_text_command_changes_the_caption() -> None:
    runner = ModelRunner(TestPattern, width=320, height=180, args={"speed": 0})
    frames = runner.run(frames=3, commands={2: ("set_text", {"text": "HELLO"})})
    caption = slice(20, 40)
    assert not np.array_equal(frames[1][caption], frames[2][caption])


def test_brightness_gain_invert_mode() -> None:
    frame = np.full((4, 6, 3), 100, np.uint8)
    runner = ModelRunner(Brightness, width=6, height=4)
    out = runner.run(
        inputs=[frame] * 4,
        commands={1: ("set_gain", {"gain": 2.0}), 2: ("set_invert", {"invert": True}),
                  3: ("set_mode", {"mode": "red"})},
    )
    assert [int(f[0, 0, 0]) for f in out] == [100, 200, 55, 55]
    assert int(out[3][0, 0, 1]) == 0


def test_identity_and_solid_color() -> None:
    frame = np.random.default_rng(1).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    assert np.array_equal(ModelRunner(Identity, width=6, height=4).run(inputs=[frame])[0], frame)
    out = ModelRunner(SolidColor, width=6, height=4).run(
        frames=2, commands={1: ("set_color", {"r": 0, "g": 255, "b": 0})}
    )
    assert tuple(out[0][0, 0]) == (255, 0, 0) and tuple(out[1][0, 0]) == (0, 255, 0)


def test_torch_example_on_cpu() -> None:
    pytest.importorskip("torch")
    from reactor.examples.torch_model import TorchStylize

    frame = np.full((8, 8, 3), 128, np.uint8)
    runner = ModelRunner(TorchStylize, width=8, height=8, args={"device": "cpu"})
    out = runner.run(inputs=[frame] * 2, commands={1: ("set_strength", {"strength": 0.0})})
    assert out[0].shape == (8, 8, 3)
    assert np.array_equal(out[1], frame)  # strength 0 is the identity
    assert not np.array_equal(out[0][2:6, 2:6], frame[2:6, 2:6])
