"""What a registry entry declares, and how a declaration is checked against the installed
aiortc/aioice.

A :class:`Target` names one object of aiortc or aioice by ``"module:qualified.name"``
(the form :func:`pkgutil.resolve_name` reads) and says what reactor expects of it:

- ``params``: it is callable with one of these parameter-name lists (``self`` included
  for a function looked up on its class), read by :func:`inspect.signature`, which follows
  ``functools.wraps`` to the original, so a target reactor has already wrapped checks
  the same as a stock one;
- ``attrs``: it is a class whose source assigns ``self.<attr>`` for each of these
  (private names as Python mangles them, ``_RTCRtpSender__rtp_timestamp`` for
  ``self.__rtp_timestamp`` in ``RTCRtpSender``): the instance attributes reactor reads or
  writes;
- ``source``: its source matches each of these regular expressions (a value reactor
  relies on, such as the audio jitter buffer's ``prefetch``);
- ``replaced``: the patch assigns a new object to it (the others are read or relied on);
- ``named``: false for a target reactor's code never names, whose behaviour it relies on
  (the architecture test then allows no private name for it).

A :class:`Reading` declares targets reactor only reads; a :class:`Patch` also has
``apply`` and ``revert``. :func:`problems` lists what is wrong with one target, as text
fit for a :class:`~reactor.errors.PatchError`.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import inspect
import pkgutil
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

#: The libraries the registry's targets belong to.
LIBRARIES = ("aiortc", "aioice")

# A private name as Python mangles it: _Class__name.
_MANGLED = re.compile(r"^_([A-Za-z]\w*?)__(\w+)$")


@dataclass(frozen=True)
class Target:
    """One aiortc/aioice object reactor patches or reads, and what it expects of it."""

    path: str
    """``"module:qualified.name"``, e.g. ``"aiortc.rtcrtpsender:RTCRtpSender._send_keyframe"``."""
    params: tuple[tuple[str, ...], ...] = ()
    """The parameter-name lists accepted (any one of them); empty: not checked."""
    attrs: tuple[str, ...] = ()
    """Instance attributes (mangled) the class's source must assign on ``self``."""
    source: tuple[str, ...] = ()
    """Regular expressions the target's source must match."""
    replaced: bool = False
    """Whether the patch replaces the target (else it only reads or relies on it)."""
    named: bool = True
    """Whether reactor's code names the target (reads, calls or replaces it); false for
    one whose behaviour it only relies on, which ``source`` checks."""

    @property
    def library(self) -> str:
        """``aiortc`` or ``aioice``: the distribution the target lives in."""
        return self.path.partition(".")[0].partition(":")[0]

    @property
    def dotted(self) -> str:
        """The target as one dotted name, for messages and the docs."""
        return self.path.replace(":", ".")

    def private_names(self) -> set[str]:
        """The private names reactor's code uses to reach this target: the underscored
        parts of its qualified name and its ``attrs``."""
        qualname = self.path.partition(":")[2] if self.named else ""
        names = {part for part in qualname.split(".") if _is_private(part)}
        return names | {a for a in self.attrs if _is_private(a)}


@dataclass(frozen=True)
class Reading:
    """Internals of aiortc/aioice that reactor reads (or hangs its own state on) without
    replacing anything."""

    name: str
    """Short and unique: the entry's name in errors, logs and the docs."""
    module: str
    """The reactor module whose code touches the targets."""
    targets: tuple[Target, ...]
    checked: dict[str, tuple[str, ...]]
    """Library -> the versions the entry was checked against (the ends of the pin)."""
    why: str
    """The measured reason, one or two sentences (the module docstring has the rest)."""
    upstream: str = ""
    """The upstream issue or pull request, if there is one."""
    names: tuple[str, ...] = ()
    """Other private names of aiortc/aioice objects the entry's module uses: attributes
    reactor hangs on them (``setattr``), or ones aiortc sets outside the class that has
    them (``RtpPacket._data``, set by the receiver). The architecture test allows the
    module these and its targets' private names, and no others."""

    def private_names(self) -> set[str]:
        """Every private name of a third-party object the entry's module may use."""
        names = {n for t in self.targets for n in t.private_names()}
        return names | {n for n in self.names if _is_private(n)}


@dataclass(frozen=True)
class Patch(Reading):
    """A change to aiortc/aioice: :attr:`apply` installs it, :attr:`revert` undoes it,
    both idempotent. ``loopback_only`` patches are applied by ``install(loopback=True)``
    and reverted by ``install(loopback=False)``."""

    apply: Callable[[], None] = field(kw_only=True)
    revert: Callable[[], None] = field(kw_only=True)
    loopback_only: bool = field(default=False, kw_only=True)


def installed_version(library: str) -> str:
    """The installed version of ``library`` (``"missing"`` when it is not installed)."""
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def problems(target: Target) -> list[str]:
    """What is wrong with ``target`` in the installed library: empty when it is as the
    registry expects."""
    try:
        obj = pkgutil.resolve_name(target.path)
    except (ImportError, AttributeError, ValueError) as exc:
        return [f"not found ({type(exc).__name__}: {exc})"]
    found: list[str] = []
    if target.params:
        found += _signature_problems(obj, target.params)
    if target.attrs:
        found += _attr_problems(obj, target.attrs)
    if target.source:
        found += _source_problems(obj, target.source)
    return found


def _signature_problems(obj: object, accepted: tuple[tuple[str, ...], ...]) -> list[str]:
    if not callable(obj):
        return [f"is not callable (a {type(obj).__name__})"]
    try:
        names = tuple(inspect.signature(obj).parameters)
    except (TypeError, ValueError) as exc:
        return [f"has no readable signature ({exc})"]
    if names in accepted:
        return []
    want = " or ".join(f"({', '.join(a)})" for a in accepted)
    return [f"takes ({', '.join(names)}), expected {want}"]


def _attr_problems(obj: object, attrs: tuple[str, ...]) -> list[str]:
    if not isinstance(obj, type):
        return [f"is not a class, so it has no instance attributes {', '.join(attrs)}"]
    assigned = _assigned_attrs(obj)
    if assigned is None:
        return ["has no readable source to find its instance attributes in"]
    missing = [a for a in attrs if a not in assigned]
    return [f"no longer sets self.{a}" for a in missing]


def _source_problems(obj: object, patterns: tuple[str, ...]) -> list[str]:
    text = _source(obj)
    if text is None:
        return ["has no readable source"]
    return [f"source no longer matches {p!r}" for p in patterns if not re.search(p, text)]


def _source(obj: object) -> str | None:
    try:
        return textwrap.dedent(inspect.getsource(obj))  # type: ignore[arg-type]
    except (OSError, TypeError):
        return None


@functools.cache
def _assigned_attrs(cls: type) -> frozenset[str] | None:
    """The attributes any method in ``cls``'s own source assigns on ``self``, mangled."""
    text = _source(cls)
    if text is None:
        return None
    prefix = "_" + cls.__name__.lstrip("_")
    names: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name) and node.value.id == "self"):
            attr = node.attr
            if attr.startswith("__") and not attr.endswith("__"):
                attr = prefix + attr
            names.add(attr)
    return frozenset(names)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_mangled(name: str) -> bool:
    """Whether ``name`` looks like a private name as Python mangles it (``_Cls__name``)."""
    return _MANGLED.match(name) is not None
