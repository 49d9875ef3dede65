"""Helpers shared by the tests and the benchmarks: one place, imported as ``tests.support``.

Nothing here is a test, and no test module imports another test module: what two of them
share lives here (and a ``conftest.py`` holds only fixtures). ``tools/bench*.py`` import the
same helpers, so a daemon is started, a synthetic camera drawn and an input video made the
same way in both.

``tests.support`` is imported by its full name, from the repository root: pytest puts the
root on ``sys.path`` (``pythonpath = ["."]`` in ``pyproject.toml``) and the tools insert it
themselves when run as ``python tools/bench.py``. ``tests`` has no ``__init__.py``, so it is a
namespace package and pytest keeps importing test modules by their own names.

* :mod:`tests.support.daemon`: run ``reactor`` commands, start/stop a real detached daemon,
  wait for a condition, list shared memory and child processes.
* :mod:`tests.support.http`: plain HTTP requests to a daemon.
* :mod:`tests.support.tracks`: synthetic aiortc cameras (a coloured square; numbered frames).
* :mod:`tests.support.video`: generated input files for ``reactor run`` and the benches.
* :mod:`tests.support.rtc`: loopback peer connections and tagged frames (media unit tests).
* :mod:`tests.support.ring`: child-process bodies for the ring tests (spawned by name).
* :mod:`tests.support.fakes`: a fake clock, process spawner and link for the supervisor's
  parts (unit tests).
* :mod:`tests.support.chromium`, :mod:`tests.support.firefox`: stock browsers, launched
  and read.
* :mod:`tests.support.netns`: network namespaces, a daemon inside one, a certificate.
* :mod:`tests.support.netlink`: shaping, loss and outages on a namespace's link, and an
  aiortc viewer across it that times every frame (the network tests and ``bench.py network``).
* :mod:`tests.support.turn`: a real TURN server (coturn) on one address.
* :mod:`tests.support.gst`: the GStreamer ``webrtcbin`` client's Python, and the probe that
  skips where it or an element it builds is missing.
* :mod:`tests.support.prometheus`: a real Prometheus server and ``promtool``.
* :mod:`tests.support.av`: sound against picture: beep onsets, flash frames, their offset
  (in a recorded file, and in Chromium with WebAudio and ``requestVideoFrameCallback``).

Test models that a daemon loads by name (``models:Counter``) stay in
``tests/integration/models.py``: :func:`tests.support.daemon.models_env` puts that folder on
the daemon's ``PYTHONPATH``.
"""
