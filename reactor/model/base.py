"""``VideoModel``: the one class a researcher writes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from reactor.errors import CommandError, did_you_mean
from reactor.model.commands import CommandSpec, collect_commands

if TYPE_CHECKING:
    from reactor.model.session import Session


class VideoModel:
    """Base class of every reactor model.

    Override `load` (once per worker start: load weights there) and `start_session`
    (once per client session: emit frames until the session stops), and optionally
    `end_session`. Methods decorated with `@command` become typed commands clients can
    call; they run on the model's thread between frames, so model code needs no locks.

    The daemon constructs the class with no arguments, then calls `load(config)`.
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
        """Load weights and set up state; called once per worker start.

        Args:
            config: The config's `model.args` mapping (empty when the config has none).

        An exception here fails the daemon's start with its message: a model that cannot
        load is not retried. The daemon waits `model.load_timeout_s` for it.
        """

    def start_session(self, session: Session) -> None:
        """Run one client session: emit frames until the session ends.

        A generative model loops `while not session.should_stop(): session.emit(frame)`;
        a video-to-video model loops `for frame in session.inputs(): session.emit(...)`.
        Returning ends the session; an exception ends it with an error event to clients.
        Must be overridden.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement start_session(session)")

    def end_session(self) -> None:
        """Clean up after a session (optional); called however the session ended."""

    @classmethod
    def validate_command(cls, name: str, args: dict[str, Any] | None) -> dict[str, Any]:
        """Validate a command's payload and return the arguments the handler gets.

        Raises `CommandError` with `status` 404 for an unknown command and 422 (naming
        the `field`) for invalid arguments: what the daemon answers over HTTP.
        """
        spec = cls.commands.get(name)
        if spec is None:
            known = ", ".join(sorted(cls.commands)) or "none"
            raise CommandError(
                f"unknown command {name!r} for model {cls.name} (commands: {known})"
                f"{did_you_mean(name, cls.commands)}", status=404
            )
        return spec.validate(args)

    @classmethod
    def schema(cls, width: int, height: int, fps: int) -> dict[str, Any]:
        """What clients see at `GET /api/schema`: the model's name, the video size and
        fps, and each command's name, description and JSON Schema of its parameters."""
        return {
            "model": cls.name,
            "video": {"width": width, "height": height, "fps": fps},
            "commands": [spec.json_schema() for spec in cls.commands.values()],
        }
