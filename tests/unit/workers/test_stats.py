"""Process figures read from /proc: current on every read, nothing kept for the dead."""

from __future__ import annotations

import os
import subprocess
import sys

from reactor.workers.stats import ProcessStats, proc_cpu_seconds


def _open_proc_files() -> set[str]:
    fds = f"/proc/{os.getpid()}/fd"
    out = set()
    for fd in os.listdir(fds):
        try:
            target = os.readlink(f"{fds}/{fd}")
        except OSError:
            continue
        if target.startswith("/proc/"):
            out.add(target)
    return out


def test_rss_follows_a_process_and_its_files_close_when_it_is_gone() -> None:
    code = ("import sys\nsys.stdin.readline()\nx = bytearray(64 << 20)\nx[::4096] = b'1' * "
            "len(x[::4096])\nprint('grown', flush=True)\nsys.stdin.readline()\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdin is not None and child.stdout is not None
        before = ProcessStats.rss_bytes(child.pid)
        assert before > 0
        assert proc_cpu_seconds(child.pid) is not None
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "grown"
        assert ProcessStats.rss_bytes(child.pid) - before >= 60 << 20  # read again, not kept
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(10)
        assert ProcessStats.rss_bytes(child.pid) == 0
        assert proc_cpu_seconds(child.pid) is None
        assert not any(f"/proc/{child.pid}/" in p for p in _open_proc_files())
    finally:
        child.kill()
        child.wait()
