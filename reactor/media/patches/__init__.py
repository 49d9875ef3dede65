"""reactor's changes to aiortc/aioice internals, in one checked registry.

Where reactor must change how aiortc or aioice behave, the change is an entry of
:data:`~reactor.media.patches.registry.PATCHES`: its name, its targets (``"module:name"``
with what reactor expects of each: parameter names, instance attributes, source), the
versions it was checked against, the measured reason and ``apply``/``revert``. Internals
reactor only reads are :data:`~reactor.media.patches.registry.READINGS`. The patch code
itself lives in the module named after what it does (:mod:`reactor.media.dtls`,
:mod:`~reactor.media.jitter`, :mod:`~reactor.media.rate`, :mod:`~reactor.media.tracks`,
:mod:`~reactor.media.playout`, :mod:`~reactor.media.clock`, :mod:`~reactor.media.ice`).

:func:`install` (what :func:`reactor.media.install` calls) checks *every* entry's targets
before it applies *any* patch: a target that is gone or changed raises
:class:`~reactor.errors.PatchError` naming the entry, the target and the installed
version, at start, not mid-stream inside aiortc's RTP task. Nothing patches on import or
in a constructor. The same list gives the install test its hooks, the architecture test
its allowed private names, and ``docs/guide/webrtc.md`` its patch table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from reactor.errors import PatchError
from reactor.media.patches.registry import ENTRIES, PATCHES, READINGS
from reactor.media.patches.spec import Patch, Reading, Target, installed_version, problems

__all__ = ["ENTRIES", "PATCHES", "READINGS", "Patch", "PatchError", "Reading", "Target",
           "check", "install"]

logger = logging.getLogger(__name__)


def check(entries: Sequence[Reading] = ENTRIES) -> None:
    """Raise :class:`PatchError` for the first entry whose targets are not as it expects,
    naming every problem of that entry; do nothing when all are as expected."""
    for entry in entries:
        for target in entry.targets:
            found = problems(target)
            if found:
                version = installed_version(target.library)
                checked = ", ".join(entry.checked.get(target.library, ())) or "none"
                raise PatchError(
                    f"reactor's aiortc/aioice patch {entry.name!r} ({entry.module}) cannot "
                    f"be applied: {target.dotted} {'; '.join(found)}. Installed: "
                    f"{target.library} {version}; the patch was checked against "
                    f"{target.library} {checked}. Install a version pyproject.toml "
                    f"admits (pip install -e .), or update the patch.",
                    patch=entry.name, target=target.dotted)
    _warn_unchecked(entries)


def _warn_unchecked(entries: Sequence[Reading]) -> None:
    # Every target is as expected, so the patches can apply; a version outside the checked
    # ones still deserves a line in the log, as its behaviour around them is untested.
    seen: set[str] = set()
    for entry in entries:
        for library, versions in entry.checked.items():
            version = installed_version(library)
            if library not in seen and version not in versions:
                seen.add(library)
                logger.warning("%s %s: reactor's patches were checked against %s only; "
                               "their targets are all present", library, version,
                               ", ".join(versions))


def install(*, loopback: bool = False, entries: Sequence[Reading] = ENTRIES) -> None:
    """Check every entry, then apply every patch (``loopback_only`` ones only with
    ``loopback``, else revert them). Idempotent. See :func:`reactor.media.install`."""
    check(entries)
    for entry in entries:
        if not isinstance(entry, Patch):
            continue
        if entry.loopback_only and not loopback:
            entry.revert()
        else:
            entry.apply()
    logger.debug("aiortc/aioice patches installed (loopback=%s): %s", loopback,
                 ", ".join(e.name for e in entries if isinstance(e, Patch)))
