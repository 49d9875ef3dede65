from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reactor.cli import build_parser, main, parse_assignments


def reactor(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reactor.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=60,
    )


def test_config_check_names_misspelt_key(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("video:\n  heigth: 720\n")
    r = reactor("config", "check", str(p))
    assert r.returncode != 0
    assert "heigth" in r.stderr and str(p) in r.stderr
    assert "Traceback" not in r.stderr


def test_config_check_ok() -> None:
    r = reactor("config", "check", "configs/pattern.yaml", cwd=Path(__file__).parents[2])
    assert r.returncode == 0 and "TestPattern" in r.stdout


def test_schema_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["model"] == "TestPattern"
    assert {c["name"] for c in schema["commands"]} >= {"set_speed", "set_text"}


def test_init_scaffolds_a_model_schema_accepts(tmp_path: Path) -> None:
    r = reactor("init", "cool_model", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    root = tmp_path / "cool_model"
    assert {p.name for p in root.iterdir()} >= {"model.py", "reactor.yaml", "README.md"}
    r = reactor("schema", "-c", str(root / "reactor.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model"] == "CoolModel"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(root / "test_model.py")], capture_output=True, text=True, cwd=root,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    again = reactor("init", "cool_model", cwd=tmp_path)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_every_level_has_help() -> None:
    for argv in (["--help"], ["daemon", "--help"], ["daemon", "start", "--help"],
                 ["daemon", "status", "--help"], ["run", "--help"], ["send", "--help"],
                 ["monitor", "--help"], ["config", "check", "--help"], ["init", "--help"]):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        assert exc.value.code == 0


def test_send_assignments_parse_json_else_string() -> None:
    assert parse_assignments(["gain=2", "on=true", "name=bob", "xs=[1,2]"]) == {
        "gain": 2, "on": True, "name": "bob", "xs": [1, 2]
    }
