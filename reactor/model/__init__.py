"""The model API: what a researcher's code sees of reactor."""

from __future__ import annotations

from pydantic import Field

from reactor.model.base import VideoModel
from reactor.model.commands import CommandSpec, command
from reactor.model.session import PendingCommand, Session, SessionIO

__all__ = [
    "CommandSpec",
    "Field",
    "PendingCommand",
    "Session",
    "SessionIO",
    "VideoModel",
    "command",
]
