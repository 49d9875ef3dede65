"""``reactor fleet``: one daemon per GPU on one machine, with HAProxy in front.

A live session holds its GPU for as long as it lasts, so a machine with N GPUs runs N
daemons, and a new user must land on one that is free. Placing users is left to a stock
balancer: ``reactor fleet start`` starts the daemons (each with its own ``device``,
port, run directory and ``server.public_url``), writes an HAProxy config that knows
them, and starts HAProxy on the one port users open. HAProxy checks each daemon's
``/readyz`` (503 while it is busy, loading or draining), sends a new offer to one that is
ready, and when a daemon answers 503 after all (two offers raced for its last place), it
retries the offer on another. The daemon's own answers carry the session's absolute URLs
(``public_url``), so everything after the offer goes straight to the daemon that holds
the session, not through the balancer.

The fleet's directory (``--run-dir``, default the daemon's run directory with ``-fleet``
after it) holds ``fleet.json`` (what was started), ``haproxy.cfg``, HAProxy's log and
stats socket, and one run directory per daemon (``daemon-0`` ...), each what ``reactor
daemon`` commands take as ``--run-dir``.
"""

from __future__ import annotations

from reactor.fleet.balancer import balancer_states, haproxy_binary, haproxy_config, start_balancer
from reactor.fleet.plan import FLEET_FILE, Fleet, Member, fleet_dir, gpu_indexes, plan_members
from reactor.fleet.run import start_fleet, stop_fleet
from reactor.fleet.view import fleet_status, monitor_fleet, status_table

__all__ = ["FLEET_FILE", "Fleet", "Member", "balancer_states", "fleet_dir", "fleet_status",
           "gpu_indexes", "haproxy_binary", "haproxy_config", "monitor_fleet", "plan_members",
           "start_balancer", "start_fleet", "status_table", "stop_fleet"]
