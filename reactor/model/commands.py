"""Typed model commands: the ``@command`` decorator, validation and JSON Schema.

A command is a method of a ``VideoModel`` whose parameters carry type annotations and,
optionally, pydantic ``Field`` constraints as defaults. At class creation the parameters
become a pydantic model; every payload is validated against it before the handler runs,
so invalid arguments never reach model code, and the same model gives the JSON Schema
that clients see in ``/api/schema``.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from reactor.errors import CommandError

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__reactor_command__"


def command(func: F) -> F:
    """Mark a ``VideoModel`` method as a command clients can call.

    The method's annotated parameters define the payload; give a default, or a pydantic
    `Field(default, ge=..., le=..., ...)` for constraints, and `Literal[...]` for
    choices. The docstring becomes the command's description. Every payload is validated
    before the handler runs. The handler runs on the model's own thread between frames;
    what it returns (JSON-able) is the command's result.

    Raises `TypeError` at class creation when a parameter has no annotation or the
    method takes `*args` or `**kwargs`.
    """
    if not callable(func):
        raise TypeError("@command decorates a method")
    setattr(func, _MARK, True)
    return func


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
        name = func.__name__
        where = f"{owner}.{name}"
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
        description = inspect.cleandoc(func.__doc__ or "").strip()
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
            problems = "; ".join(_describe(e) for e in err.errors())
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


def _describe(e: Any) -> str:
    loc = ".".join(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        return f"{loc}: unknown argument"
    if e["type"] == "missing":
        return f"{loc}: required argument is missing"
    return f"{loc}: {e['msg']} (found {e.get('input')!r})"


def collect_commands(cls: type) -> dict[str, CommandSpec]:
    """Every ``@command`` of a class and its bases, by name (subclasses override)."""
    specs: dict[str, CommandSpec] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if is_command(value):
                specs[attr] = CommandSpec.from_function(value, cls.__name__)
            elif attr in specs and not is_command(value):
                del specs[attr]  # overridden by a plain method
    return specs

