"""open_recorder reads the config for the recorder, in its own module: the worker protocol
(reactor.workers.base), which every worker and the supervisor's spawn target import, loads
no recorder."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reactor.config import parse_config
from reactor.workers.recording import open_recorder


def test_the_worker_protocol_loads_no_recorder() -> None:
    code = ("import sys, reactor.workers.entry; "
            "print('reactor.media.recorder' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "False"


def test_open_recorder_needs_a_path_or_egress_record() -> None:
    with pytest.raises(ValueError, match="no path and no egress.record"):
        open_recorder(parse_config({"video": {"width": 64, "height": 48}}))
