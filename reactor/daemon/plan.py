"""Which workers a pipeline runs, by role, and which requests each role answers.

Every pipeline has three roles: the ``FRONT`` feeds the input ring (ingress, or a file
source), the ``MODEL`` runs the model (inference), the ``BACK`` reads the output ring
(egress, or a file sink). The supervisor, the request router and the session manager
speak of roles; only a :class:`Plan` knows which worker fills each.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from reactor.ipc import Policy
from reactor.run_options import RunOptions


class Role(enum.Enum):
    FRONT = "front"
    MODEL = "model"
    BACK = "back"


ROLES = (Role.FRONT, Role.MODEL, Role.BACK)


def _daemon_routes() -> dict[str, Role]:
    return {"command": Role.MODEL, "whep": Role.BACK}


@dataclass(frozen=True)
class Plan:
    """The workers (front, model, back), the input ring's policy, what the workers are told
    beyond the config (:class:`RunOptions`), and the request table.

    The daemon's plan is ingress/inference/egress; ``reactor run --input`` uses a file
    source and a file sink around the same inference worker, answers only commands, and
    stops once every input frame is accounted for.
    """

    workers: tuple[str, str, str] = ("ingress", "inference", "egress")
    input_policy: Policy = "latest"
    options: RunOptions = field(default_factory=RunOptions)
    # request kind (a ``Request.body`` field) -> the role whose worker answers it
    routes: Mapping[str, Role] = field(default_factory=_daemon_routes)

    @property
    def headless(self) -> bool:
        """A file run (``reactor run``): no clients, done when the input is."""
        return self.options.headless

    def worker(self, role: Role) -> str:
        """The name of the worker that fills ``role``."""
        return self.workers[ROLES.index(role)]

    def role(self, worker: str) -> Role:
        """The role ``worker`` fills; ``KeyError`` naming it when it is not in the plan."""
        try:
            return ROLES[self.workers.index(worker)]
        except ValueError:
            raise KeyError(f"{worker!r} is not one of {', '.join(self.workers)}") from None

    def route_table(self) -> dict[str, str]:
        """Request kind -> the worker that answers it."""
        return {kind: self.worker(role) for kind, role in self.routes.items()}
