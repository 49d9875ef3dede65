"""``RunOptions``: what ``reactor run`` tells its workers, typed and picklable."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest

from reactor.config import load_config
from reactor.daemon.headless import headless_plan, load_commands
from reactor.media.gpu import GpuPlan, gpu_plan
from reactor.run_options import RunOptions, TimedCommand

ROOT = Path(__file__).resolve().parents[3]


def test_a_file_run_plan_carries_its_files_and_commands_as_options() -> None:
    commands = (TimedCommand(at_frame=30, command="set_gain", args={"gain": 2.0}),)
    plan = headless_plan("in.mp4", "out.mp4", commands, lossless=True, duration_s=3.0)
    assert plan.options == RunOptions(input="in.mp4", output="out.mp4", duration_s=3.0,
                                      lossless=True, headless=True, commands=commands)
    assert plan.headless and plan.input_policy == "block"


def test_the_supervisors_gpu_plan_goes_along_and_survives_pickling() -> None:
    # The supervisor sets the plan on a copy before each spawn; the copy crosses to the
    # worker pickled (spawn), and the worker reads the same plan back.
    base = RunOptions(input="in.mp4", headless=True,
                      commands=(TimedCommand(10, "reset", {}),))
    gpu = GpuPlan("cuda", ring="cuda", index=0, encoder="h264_nvenc", reason="test")
    sent = pickle.loads(pickle.dumps(dataclasses.replace(base, gpu=gpu)))
    assert sent.gpu == gpu and sent.commands == base.commands
    assert gpu_plan(sent.gpu, "cuda") == gpu
    assert gpu_plan(RunOptions().gpu, "cpu") == GpuPlan("cpu")  # a worker a test started
    with pytest.raises(dataclasses.FrozenInstanceError):
        sent.input = "other.mp4"


def test_load_commands_gives_timed_commands_with_validated_args(tmp_path: Path) -> None:
    config = load_config(ROOT / "configs" / "brightness.yaml")
    path = tmp_path / "commands.jsonl"
    path.write_text(json.dumps({"at_frame": 30, "command": "set_gain", "args": {"gain": 2}})
                    + "\n# a comment\n"
                    + json.dumps({"at_frame": 5, "command": "set_invert",
                                  "args": {"invert": True}}) + "\n")
    assert load_commands(path, config) == (
        TimedCommand(at_frame=30, command="set_gain", args={"gain": 2.0}),
        TimedCommand(at_frame=5, command="set_invert", args={"invert": True}),
    )
