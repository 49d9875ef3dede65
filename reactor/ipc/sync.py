"""Low-level synchronisation for the rings: a full memory fence and futexes.

Everything here is Linux-specific, like the rings themselves (they live in ``/dev/shm``).

* :func:`fence` is a full (store-load) barrier. CPython exposes no atomics, but an
  uncontended ``threading.Lock`` acquire/release runs glibc ``sem_trywait``/``sem_post``,
  which are ``lock cmpxchg`` instructions; on x86-64 every locked instruction orders all
  earlier loads and stores (non-temporal ones included) before all later ones. It costs
  about 80 ns. On weakly ordered CPUs (aarch64) those are only acquire/release operations,
  so the ring's Dekker-style handshakes are verified on x86-64 only.
* :func:`futex_wait` / :func:`futex_wake` park on a 32-bit word inside the shared segment.
  The kernel keys a non-private futex on the backing page, so every process mapping the
  segment shares it, and nothing needs to be created, named or cleaned up. The wait compares
  the word with the value the caller saw, atomically with going to sleep, which is what
  makes the check-then-park sequence free of lost wake-ups.
"""

from __future__ import annotations

import ctypes
import platform
import threading
import time

_SYS_FUTEX = {"x86_64": 202, "AMD64": 202, "aarch64": 98, "arm64": 98}.get(platform.machine())
_FUTEX_WAIT = 0  # not FUTEX_PRIVATE_FLAG: waiters live in other processes
_FUTEX_WAKE = 1
_MADV_POPULATE_WRITE = 23  # Linux 5.14+; older kernels answer EINVAL and we skip it

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_madvise = _libc.madvise
_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_madvise.restype = ctypes.c_int

_fence_lock = threading.Lock()


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def fence() -> None:
    """Full memory barrier (see the module docstring for why a lock is one)."""
    _fence_lock.acquire()
    _fence_lock.release()


def futex_wait(addr: int, expected: int, timeout_s: float) -> None:
    """Sleep while the u32 at ``addr`` equals ``expected``, at most ``timeout_s`` seconds.

    Returns on a wake-up, a value mismatch, a signal or the timeout alike: callers always
    re-check their condition, so the reason does not matter.
    """
    if _SYS_FUTEX is None:  # unknown architecture: degrade to a short sleep
        time.sleep(min(timeout_s, 0.0005))
        return
    timeout_s = max(timeout_s, 0.0)
    sec = int(timeout_s)
    ts = _Timespec(sec, int((timeout_s - sec) * 1e9))
    _syscall(
        ctypes.c_long(_SYS_FUTEX),
        ctypes.c_void_p(addr),
        ctypes.c_int(_FUTEX_WAIT),
        ctypes.c_uint32(expected & 0xFFFFFFFF),
        ctypes.byref(ts),
        ctypes.c_void_p(0),
        ctypes.c_int(0),
    )


def futex_wake(addr: int) -> None:
    """Wake every process parked on the u32 at ``addr``."""
    if _SYS_FUTEX is None:
        return
    _syscall(
        ctypes.c_long(_SYS_FUTEX),
        ctypes.c_void_p(addr),
        ctypes.c_int(_FUTEX_WAKE),
        ctypes.c_int(0x7FFFFFFF),
        ctypes.c_void_p(0),
        ctypes.c_void_p(0),
        ctypes.c_int(0),
    )


def populate(addr: int, length: int) -> None:
    """Pre-fault a mapping so the first frame through each slot pays no page faults."""
    if length > 0:
        _madvise(ctypes.c_void_p(addr), ctypes.c_size_t(length), ctypes.c_int(_MADV_POPULATE_WRITE))
