"""``reactor monitor``: the daemon's telemetry as a terminal dashboard.

:mod:`reactor.monitor.render` turns a telemetry ``Snapshot`` into Rich renderables (and
plain text for ``--once`` and ``reactor daemon status``); :mod:`reactor.monitor.app`
subscribes to the daemon's telemetry socket and drives the live view.
"""
