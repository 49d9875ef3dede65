"""tools/low_pins.py: the low end of every runtime pin, which `make test-proto-range`
installs and checks."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "low_pins.py"


def low_pins(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_every_runtime_dependency_has_a_low_end() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    r = low_pins()
    assert r.returncode == 0, r.stderr
    pins = dict(p.split("==") for p in r.stdout.split())
    # Each dependency gets its pin: one left without a low end would go untested there.
    assert sorted(pins) == sorted(d.split(">")[0].split("=")[0].strip() for d in deps)
    assert pins["numpy"] == "1.26" and pins["aiortc"] == "1.16.0"
    assert "protobuf" not in low_pins("--except", "protobuf").stdout


def test_check_names_each_dependency_that_is_not_at_its_low_end(tmp_path: Path) -> None:
    numpy, yaml = importlib.metadata.version("numpy"), importlib.metadata.version("PyYAML")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f'[project]\ndependencies = ["numpy>=99,<100", "PyYAML>={yaml},<99"]\n')
    r = low_pins("--check", "--pyproject", str(pyproject))
    assert r.returncode == 1
    assert r.stderr == f"low_pins: numpy: {numpy} installed, the low end is 99\n"
    pyproject.write_text(f'[project]\ndependencies = ["PyYAML>={yaml}"]\n')
    r = low_pins("--check", "--pyproject", str(pyproject))
    assert r.returncode == 0 and r.stdout == "low_pins: 1 dependency at their low end\n"
