"""Process figures and liveness read from /proc: current on every read, nothing kept for
the dead, a zombie or a recycled pid taken for dead."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from reactor.runtime.stats import alive, cpu_seconds, rss_bytes, start_time


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
        before = rss_bytes(child.pid)
        assert before > 0
        assert cpu_seconds(child.pid) is not None
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "grown"
        assert rss_bytes(child.pid) - before >= 60 << 20  # read again, not kept
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(10)
        assert rss_bytes(child.pid) == 0
        assert cpu_seconds(child.pid) is None
        assert not any(f"/proc/{child.pid}/" in p for p in _open_proc_files())
    finally:
        child.kill()
        child.wait()


def test_a_process_is_alive_until_it_exits_and_a_zombie_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                             stdin=subprocess.PIPE)
    try:
        started = start_time(child.pid)
        assert started > 0 and started == start_time(child.pid)
        assert alive(child.pid) and alive(child.pid, started)
        assert child.stdin is not None
        child.stdin.close()  # it exits; not reaped yet, it is a zombie
        deadline = time.monotonic() + 10
        while alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert child.poll() is not None or not alive(child.pid)
        assert not alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not alive(child.pid)
    assert start_time(child.pid) == 0


def test_a_pid_with_another_start_time_is_another_process() -> None:
    me = os.getpid()
    assert alive(me) and alive(me, start_time(me))
    assert not alive(me, start_time(me) + 1)  # the pid was recycled: not the one we knew
    assert not alive(0) and not alive(-1)
