"""``reactor run --input/--output``: the worker pipeline with a file source and sink."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from tests.support.video import make_ramp_video

W, H = 320, 240


def read_video(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def reactor_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reactor.cli", "run", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def brightness_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "brightness.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"module": "reactor.examples.filters:Brightness"},
        "video": {"width": W, "height": H, "fps": 30},
    }))
    return cfg


def test_lossless_run_keeps_every_frame_and_applies_timed_commands(
    tmp_path: Path, brightness_config: Path
) -> None:
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_ramp_video(src, 90)
    commands = tmp_path / "commands.jsonl"
    commands.write_text(
        json.dumps({"at_frame": 30, "command": "set_gain", "args": {"gain": 2}}) + "\n"
        + json.dumps({"at_frame": 60, "command": "set_invert", "args": {"invert": True}}) + "\n"
    )
    r = reactor_run("-c", str(brightness_config), "--input", str(src), "--output", str(out),
                    "--commands", str(commands), "--lossless")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "90 input frames: 90 processed, 0 dropped; 90 frames written" in r.stdout
    frames = read_video(out)
    assert len(frames) == 90
    # Column 295 turns 200 at input frame 99, so it is 100 in every input frame here.
    values = [int(f[H // 2, 295, 0]) for f in frames]
    assert all(abs(v - 100) <= 6 for v in values[:30]), values[:30]
    assert all(abs(v - 200) <= 6 for v in values[30:60]), values[30:60]  # gain 2 from 30
    assert all(abs(v - 55) <= 6 for v in values[60:]), values[60:]  # then inverted


def test_realtime_run_accounts_for_every_frame(tmp_path: Path, brightness_config: Path) -> None:
    src = tmp_path / "in.mp4"
    make_ramp_video(src, 45)
    r = reactor_run("-c", str(brightness_config), "--input", str(src))
    assert r.returncode == 0, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if "input frames" in x)
    words = line.replace(",", "").replace(";", "").split()
    read, processed, dropped = int(words[2]), int(words[5]), int(words[7])
    assert read == 45 and processed + dropped == 45


def test_bad_inputs_are_clear_errors(tmp_path: Path, brightness_config: Path) -> None:
    missing = reactor_run("-c", str(brightness_config), "--input", str(tmp_path / "nope.mp4"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(4096))
    r = reactor_run("-c", str(brightness_config), "--input", str(corrupt))
    assert r.returncode == 1 and "cannot read input video" in r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"at_frame": 3, "command": "set_gain", "args": {"gain": 9}}\n')
    src = tmp_path / "in.mp4"
    make_ramp_video(src, 5)
    r = reactor_run("-c", str(brightness_config), "--input", str(src), "--commands", str(bad))
    assert r.returncode == 1
    assert f"{bad}:1" in r.stderr and "gain" in r.stderr and "less than or equal to 4" in r.stderr


def test_truncated_input_ends_early_but_cleanly(tmp_path: Path, brightness_config: Path) -> None:
    # MPEG-TS: readable up to the cut (an MP4 keeps its index at the end: see below).
    src = tmp_path / "in.ts"
    make_ramp_video(src, 60)
    data = src.read_bytes()
    truncated = tmp_path / "truncated.ts"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "out.mp4"
    r = reactor_run("-c", str(brightness_config), "--input", str(truncated), "--lossless",
                    "--output", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"(\d+) input frames: (\d+) processed, 0 dropped; (\d+) frames written",
                  r.stdout)
    assert m, r.stdout
    read, processed, written = map(int, m.groups())
    assert 0 < read < 60 and processed == read and written == read, r.stdout
    assert len(read_video(out)) == written


def test_truncated_mp4_is_a_clear_error(tmp_path: Path, brightness_config: Path) -> None:
    src = tmp_path / "in.mp4"
    make_ramp_video(src, 60)
    data = src.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) * 2 // 3])  # its index (moov) is at the end
    r = reactor_run("-c", str(brightness_config), "--input", str(truncated), "--lossless")
    assert r.returncode == 1
    assert f"cannot read input video {truncated}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr.split("--- last lines of")[0]
