"""``VideoModel``: the one class a researcher writes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from reactor.errors import CommandError
from reactor.model.commands import CommandSpec, collect_commands

if TYPE_CHECKING:
    from reactor.model.session import Session


class VideoModel:
    """Base class of every reactor model.

    Override :meth:`load` (once per worker start: load weights there) and
    :meth:`start_session` (once per client session: emit frames until the session stops),
    and optionally :meth:`end_session`. Methods decorated with ``@command`` become typed
    commands clients can call; they run on the model's thread between frames.
    """

    #: The name clients see; defaults to the class name.
    name: ClassVar[str] = ""
    #: Every ``@command`` of the class by name, collected when the class is created.
    commands: ClassVar[dict[str, CommandSpec]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.commands = collect_commands(cls)
        if not cls.__dict__.get("name"):
            cls.name = cls.__name__

    def load(self, config: dict[str, Any]) -> None:
        """Load weights and set up state. ``config`` is the YAML's ``model.args``."""

    def start_session(self, session: Session) -> None:
        """Run one session: emit frames until ``session.should_stop()``."""
        raise NotImplementedError(f"{type(self).__name__} must implement start_session(session)")

    def end_session(self) -> None:
        """Clean up after a session (optional)."""

    @classmethod
    def validate_command(cls, name: str, args: dict[str, Any] | None) -> dict[str, Any]:
        """Validate a command's payload; raise :class:`CommandError` (404 or 422)."""
        spec = cls.commands.get(name)
        if spec is None:
            known = ", ".join(sorted(cls.commands)) or "none"
            raise CommandError(
                f"unknown command {name!r} for model {cls.name} (commands: {known})", status=404
            )
        return spec.validate(args)

    @classmethod
    def schema(cls, width: int, height: int, fps: int) -> dict[str, Any]:
        """The model's name, video size and fps, and each command's JSON Schema."""
        return {
            "model": cls.name,
            "video": {"width": width, "height": height, "fps": fps},
            "commands": [spec.json_schema() for spec in cls.commands.values()],
        }
