"""The alerting rules of docs/prometheus/reactor-rules.yml, evaluated by promtool over
made-up series (reactor_rules_test.yml): each alert fires when it should, and not before."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def test_alerts_fire_on_down_restarts_low_fps_errors_and_failure() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    r = subprocess.run([promtool, "test", "rules", "reactor_rules_test.yml"], cwd=HERE,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
