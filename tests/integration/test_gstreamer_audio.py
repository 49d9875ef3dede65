"""GStreamer's ``webrtcbin`` (a stock WHEP viewer, a second WebRTC stack) hears the daemon.

The beeping TestPattern (``configs/pattern-audio.yaml``) is watched by ``gst_client.py
--audio``, run with Debian's ``/usr/bin/python3``: its offer receives video and Opus, and it
writes what ``opusdec`` decoded (mono float32, 48 kHz) to a file that the test reads: a 1 kHz
beep must start once a second.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.support.av import OnsetDetector
from tests.support.daemon import ROOT, Daemon
from tests.support.gst import CLIENT, SYSTEM_PYTHON, require_gstreamer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SECONDS = 8.0

@pytest.fixture(scope="module", autouse=True)
def gstreamer() -> None:
    # Everything gst_client.py --audio builds to watch and hear.
    require_gstreamer("webrtcbin", "nicesrc", "nicesink", "dtlssrtpenc", "decodebin",
                      "avdec_h264", "rtpopusdepay", "opusdec", "audioconvert",
                      "audioresample", "videoconvert", "appsink")


def watch_with_audio(url: str, pcm: Path) -> dict[str, Any]:
    """Run gst_client.py --audio for SECONDS; its JSON line (killed if it hangs)."""
    args = [SYSTEM_PYTHON, str(CLIENT), "--mode", "whep", "--url", url, "--audio",
            "--pcm", str(pcm), "--seconds", str(SECONDS), "--setup-timeout", "20"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=SECONDS + 60)
    lines = r.stdout.strip().splitlines()
    assert lines, f"gst_client.py printed nothing (exit {r.returncode}):\n{r.stderr[-3000:]}"
    res: dict[str, Any] = json.loads(lines[-1])
    assert r.returncode == 0, f"{res}\n{r.stderr[-3000:]}"
    return res


def test_gstreamer_hears_a_1khz_beep_once_a_second(start_daemon, tmp_path: Path) -> None:
    cfg = yaml.safe_load((ROOT / "configs" / "pattern-audio.yaml").read_text())
    d: Daemon = start_daemon({**cfg, "server": {"host": "127.0.0.1", "port": 0}})
    pcm = tmp_path / "sound.f32"
    res = watch_with_audio(d.url, pcm)
    assert res["errors"] == [] and res["dtls_state"] == "connected", res
    assert res["frames"] > 0, res  # the picture came too
    sound = np.fromfile(pcm, dtype="<f4")
    assert res["audio_samples"] == len(sound), res
    # The sound starts once the connection is up: most of SECONDS of it, at 48 kHz.
    assert len(sound) >= (SECONDS - 4) * 48000, (res, len(sound))
    onsets = OnsetDetector(48000)
    onsets.feed(sound, 0.0)
    beeps = onsets.beeps
    assert len(beeps) >= SECONDS - 5, f"beeps at {[round(b.t, 3) for b in beeps]}"
    gaps = np.diff([b.t for b in beeps])
    # Opus carries sample-exact timing; a gap differs from 1 s only by what the decoder's
    # jitter buffer concealed (a lost or late packet), a few 20 ms frames at most.
    assert np.all(np.abs(gaps - 1.0) < 0.06), f"beeps {[round(b.t, 3) for b in beeps]}"
    for b in beeps:
        assert abs(b.hz - 1000) < 50 and 0.3 < b.peak < 0.8, b
    # And between the beeps, silence: the energy is in the beeps.
    quiet = np.concatenate([sound[int((b.t + 0.3) * 48000) : int((b.t + 0.8) * 48000)]
                            for b in beeps])
    assert np.sqrt(np.mean(quiet**2)) < 0.01
