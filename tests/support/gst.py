"""GStreamer clients in tests: Debian's ``/usr/bin/python3`` (it has ``gi``; the venv does
not) runs ``tests/integration/gst_client.py``. :func:`require_gstreamer` skips a test module
where that Python, its GStreamer bindings or one of the elements the client builds is
missing (a missing element would otherwise fail inside the client, less helpfully)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
CLIENT = Path(__file__).resolve().parents[1] / "integration" / "gst_client.py"

_PROBE = """
import sys
import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import Gst, GstWebRTC, GstSdp
Gst.init(None)
missing = [n for n in sys.argv[1:] if Gst.ElementFactory.find(n) is None]
print("missing GStreamer elements: " + ", ".join(missing) if missing else "ok")
"""


def require_gstreamer(*elements: str) -> None:
    """Skip unless the system Python can build ``webrtcbin`` clients with ``elements``
    (factory names; plugins: base, good, bad, ugly, nice, libav)."""
    try:
        r = subprocess.run([SYSTEM_PYTHON, "-c", _PROBE, *elements], capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{SYSTEM_PYTHON} with GStreamer unavailable: {exc}")
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"{SYSTEM_PYTHON} cannot import gi Gst/GstWebRTC (apt install "
                    f"python3-gi gir1.2-gst-plugins-bad-1.0): {last}")
    if r.stdout.strip() != "ok":
        pytest.skip(f"{r.stdout.strip()} (apt install gstreamer1.0-plugins-base -good -bad "
                    "-ugly gstreamer1.0-nice gstreamer1.0-libav)")
