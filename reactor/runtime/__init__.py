"""What every process of the daemon shares, the supervisor's and the workers' alike.

One concept per module: :mod:`~reactor.runtime.logs` (a process's logging and the session
its records carry), :mod:`~reactor.runtime.gc` (the collector's tuning),
:mod:`~reactor.runtime.parent` (dying with the supervisor), :mod:`~reactor.runtime.stats`
(a process's CPU, memory and liveness, from ``/proc``) and
:mod:`~reactor.runtime.latency` (the latency windows a worker keeps and the histogram
bounds the supervisor adds them up with), :mod:`~reactor.runtime.throttle` (a repeating
failure logged once a period).

This is a low layer: it imports nothing of reactor but :mod:`reactor.proto`, so the
daemon, the workers and the rings may all import it (the layers contract of
``[tool.importlinter]`` in ``pyproject.toml`` holds it below every layer but proto).
"""
