"""A process's CPU time, resident memory and liveness, read from ``/proc``.

The one place that reads ``/proc/<pid>``: the workers' heartbeats (their own CPU and
memory), the supervisor's status and ``/metrics`` (every worker's), the rings (whether a
reader or the producer still runs) and the run directory (whether a daemon still runs).

Why ``/proc`` and not psutil: ``status`` reads every worker's memory on every request, and
a read through a descriptor kept open (:class:`_ProcFiles`) takes about 1.2 µs for
``statm`` and 2.9 µs for ``stat``, where psutil, which opens the file each time, took
7.8 µs (``memory_info``) and 11 µs (``cpu_times``) on the same machine. And the rings
store a process's start time in clock ticks since boot next to its pid (so that a recycled
pid is not taken for the process), which psutil only offers as a float of seconds since
the epoch, derived from a boot time that the kernel reports to the second and that can
move by one when the clock is adjusted.
"""

from __future__ import annotations

import os
import threading
import time

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")
# stat(5) fields, counted from the state (field 3), the first after "(comm)": the command
# name may hold spaces and parentheses, so the line is split after its last ")".
_STATE, _UTIME, _STIME, _START = 0, 11, 12, 19


class _ProcFiles:
    """Reads ``/proc/<pid>/<name>`` through a descriptor kept open per pid.

    Opening a /proc file costs a path walk each time; ``pread`` on an open one returns
    the kernel's figures as of now, at a fraction of the cost (``status`` reads every
    worker's memory on every request). A descriptor of a process that has gone fails
    with ESRCH: it is closed and dropped then, and the others are checked whenever a new
    one is opened, so the dead never pile up. A descriptor stays bound to the process it
    was opened for, so a pid reused by another process fails too and is opened again.
    Keyed by the real pid (never ``self``), so a forked child does not read its parent's
    files.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def read(self, pid: int) -> bytes | None:
        # Under the lock throughout: another thread may close a descriptor (its process
        # died), and the number could be reused before an unlocked read of it.
        with self._lock:
            fd = self._fds.get(pid)
            if fd is not None:
                try:
                    return os.pread(fd, 1024, 0)
                except OSError:
                    self._close(pid)  # the process has gone (or its pid is another's now)
            try:
                fd = os.open(f"/proc/{pid}/{self.name}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            for other in list(self._fds):
                try:
                    os.pread(self._fds[other], 1, 0)
                except OSError:
                    self._close(other)
            self._fds[pid] = fd
            try:
                return os.pread(fd, 1024, 0)
            except OSError:
                return None

    def _close(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None:
            os.close(fd)


_STATM = _ProcFiles("statm")
_STAT = _ProcFiles("stat")


def _stat_fields(pid: int) -> list[bytes] | None:
    """``/proc/<pid>/stat`` from the state on (see ``_STATE``); None if unreadable."""
    data = _STAT.read(pid)
    if not data:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    return fields if len(fields) > _START else None


def rss_bytes(pid: int | None = None) -> int:
    """Resident memory of ``pid`` (this process by default) now; 0 if it is gone."""
    data = _STATM.read(pid or os.getpid())
    try:
        return int(data.split()[1]) * _PAGE if data else 0
    except (ValueError, IndexError):
        return 0


def cpu_seconds(pid: int) -> float | None:
    """Total CPU seconds (user and system) of a process; None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    try:
        return (int(fields[_UTIME]) + int(fields[_STIME])) / _TICKS
    except ValueError:
        return None


def start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (0 when unknown).

    Stored next to a pid so that a recycled pid is not mistaken for the original process.
    """
    fields = _stat_fields(pid)
    try:
        return int(fields[_START]) if fields is not None else 0
    except ValueError:
        return 0


def alive(pid: int, started: int = 0) -> bool:
    """Whether process ``pid`` (started at ``started`` ticks, 0 = don't check) still runs.

    A zombie counts as dead: a killed child stays a zombie until its parent reaps it, and
    neither a ring nor ``reactor daemon stop`` must wait for that.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    fields = _stat_fields(pid)
    if fields is None:
        return True  # no /proc (or it went this instant): trust kill(0)
    if fields[_STATE] in (b"Z", b"X"):
        return False
    try:
        return not (started and int(fields[_START]) != started)
    except ValueError:
        return True


class ProcessStats:
    """CPU % since the previous call, and resident memory, of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = (time.monotonic(), self._cpu_s())

    @staticmethod
    def _cpu_s() -> float:
        t = os.times()
        return t.user + t.system

    def cpu_percent(self) -> float:
        with self._lock:
            now, cpu = time.monotonic(), self._cpu_s()
            t0, c0 = self._last
            self._last = (now, cpu)
        return 100.0 * (cpu - c0) / (now - t0) if now > t0 else 0.0

    @staticmethod
    def rss_bytes() -> int:
        """Resident memory of this process now."""
        return rss_bytes()
