"""Typed model commands: the ``@command`` decorator, validation and JSON Schema.

A command is a method of a ``VideoModel`` whose parameters carry type annotations and,
optionally, pydantic ``Field`` constraints as defaults. At class creation the parameters
become a pydantic model; every payload is validated against it before the handler runs,
so invalid arguments never reach model code, and the same model gives the JSON Schema
that clients see in ``/api/schema``.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from reactor.errors import CommandError, did_you_mean

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__reactor_command__"
# What `@command("name", description=...)` set, stored on the function.
_NAME = "__reactor_command_name__"
_DESCRIPTION = "__reactor_command_description__"
_COMMAND_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


@overload
def command(func: F, /) -> F: ...


@overload
def command(
    name: str | None = None, /, *, description: str | None = None
) -> Callable[[F], F]: ...


def command(
    func_or_name: Callable[..., Any] | str | None = None,
    /,
    *,
    description: str | None = None,
) -> Any:
    """Mark a ``VideoModel`` method as a command clients can call.

    Used bare (``@command``) or called: ``@command("name", description="...")``,
    ``@command(description="...")`` or ``@command()``. The command's name is ``name``,
    else the method's name; its description is ``description``, else the docstring.

    The method's annotated parameters define the payload; give a default, or a pydantic
    `Field(default, ge=..., le=..., ...)` for constraints, and `Literal[...]` for
    choices. Every payload is validated before the handler runs. The handler runs on the
    model's own thread between frames; what it returns (JSON-able) is the command's
    result.

    Raises `TypeError` when the name is not a usable command name (letters, digits, `_`,
    `-` and `.`, not starting with a digit), and at class creation when a parameter has no
    annotation or the method takes `*args` or `**kwargs`.
    """
    if description is not None and not isinstance(description, str):
        raise TypeError(f"@command: description must be a string, found {description!r}")
    if func_or_name is None or isinstance(func_or_name, str):
        name = func_or_name
        if name is not None and not _COMMAND_NAME.fullmatch(name):
            raise TypeError(
                f"@command: {name!r} is not a usable command name (letters, digits, '_', "
                "'-' and '.', not starting with a digit)"
            )

        def mark(func: F) -> F:
            if not callable(func):
                raise TypeError(f"@command({name!r}) decorates a method, found {func!r}")
            setattr(func, _MARK, True)
            setattr(func, _NAME, name)
            setattr(func, _DESCRIPTION, description)
            return func

        return mark
    if not callable(func_or_name):
        raise TypeError(f"@command decorates a method, found {func_or_name!r}")
    if description is not None:
        raise TypeError('@command: pass the description as @command(description="...")')
    setattr(func_or_name, _MARK, True)
    return func_or_name


def is_command(obj: object) -> bool:
    return callable(obj) and getattr(obj, _MARK, False) is True


@dataclass(frozen=True)
class CommandSpec:
    """One command of a model class: its name, description, the pydantic model of its
    arguments and its handler. `VideoModel.commands` maps names to these."""

    name: str
    description: str
    args_model: type[BaseModel]
    handler: Callable[..., Any]

    @classmethod
    def from_function(cls, func: Callable[..., Any], owner: str) -> CommandSpec:
        """Build the spec of a `@command` method of class `owner` from its signature."""
        name = getattr(func, _NAME, None) or func.__name__
        where = f"{owner}.{func.__name__}"
        try:
            hints = typing.get_type_hints(func, include_extras=True)
        except Exception as exc:
            raise TypeError(f"@command {where}: cannot resolve type annotations: {exc}") from exc
        fields: dict[str, Any] = {}
        params = list(inspect.signature(func).parameters.values())[1:]  # drop self
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"@command {where}: *args and **kwargs are not allowed ({p.name})")
            if p.name not in hints:
                raise TypeError(
                    f"@command {where}: parameter {p.name!r} needs a type annotation "
                    "(it defines what clients may send)"
                )
            default: Any = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (hints[p.name], default)
        args_model = create_model(
            f"{name}_args",
            # Strict: a payload must have the JSON types the published schema states
            # (an int is still a number); no silent coercion of "2" or false or 0.
            __config__=ConfigDict(extra="forbid", strict=True),
            **fields,
        )
        given = getattr(func, _DESCRIPTION, None)
        description = inspect.cleandoc(given if given is not None else func.__doc__ or "").strip()
        return cls(name=name, description=description, args_model=args_model, handler=func)

    def validate(self, args: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validate a payload; raise `CommandError` naming the field and the rule."""
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            raise CommandError(
                f"{self.name}: arguments must be a JSON object, found {type(args).__name__}"
            )
        try:
            model = self.args_model.model_validate(dict(args))
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or None
            known = list(self.args_model.model_fields)
            problems = "; ".join(_describe(e, known) for e in err.errors())
            raise CommandError(f"{self.name}: {problems}", field=field) from None
        return {k: getattr(model, k) for k in type(model).model_fields}

    def json_schema(self) -> dict[str, Any]:
        """`{"name", "description", "parameters"}`, parameters being a JSON Schema object
        that allows no other properties: one entry of `/api/schema`'s `commands`."""
        params = self.args_model.model_json_schema()
        params.pop("title", None)
        for prop in params.get("properties", {}).values():
            prop.pop("title", None)
        params.setdefault("properties", {})
        params["additionalProperties"] = False
        return {"name": self.name, "description": self.description, "parameters": params}


def _describe(e: Any, known: list[str]) -> str:
    loc = ".".join(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        takes = f"it takes {', '.join(known)}" if known else "it takes none"
        return f"{loc}: unknown argument ({takes}){did_you_mean(loc, known)}"
    if e["type"] == "missing":
        return f"{loc}: required argument is missing"
    return f"{loc}: {e['msg']} (found {e.get('input')!r})"


def collect_commands(cls: type) -> dict[str, CommandSpec]:
    """Every ``@command`` of a class and its bases, by command name.

    A subclass overrides by method name, as Python does: redefining the method (as a
    command, or as a plain method that stops being one) replaces the base's command. Two
    methods of the class that claim the same command name are an error naming both.
    """
    by_attr: dict[str, CommandSpec] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if is_command(value):
                by_attr[attr] = CommandSpec.from_function(value, cls.__name__)
            elif attr in by_attr:
                del by_attr[attr]  # overridden by a plain method
    specs: dict[str, CommandSpec] = {}
    owners: dict[str, str] = {}
    for attr, spec in by_attr.items():
        if spec.name in specs:
            raise TypeError(
                f"@command {cls.__name__}: methods {owners[spec.name]!r} and {attr!r} are both "
                f"named {spec.name!r}; give one of them another name"
            )
        specs[spec.name] = spec
        owners[spec.name] = attr
    return specs

