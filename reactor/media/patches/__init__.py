"""reactor's changes to aiortc/aioice internals, in one checked registry.

Where reactor must change how aiortc or aioice behave, the change is an entry of
:data:`~reactor.media.patches.registry.PATCHES`: its name, its targets (``"module:name"``
with what reactor expects of each: parameter names, instance attributes, source), the
versions it was checked against, the measured reason and ``apply``/``revert``. Internals
reactor only reads are :data:`~reactor.media.patches.registry.READINGS`. The patch code
itself lives in the module named after what it does (:mod:`reactor.media.dtls`,
:mod:`~reactor.media.jitter`, :mod:`~reactor.media.rate`, :mod:`~reactor.media.tracks`,
:mod:`~reactor.media.pacer`, :mod:`~reactor.media.bwe`, :mod:`~reactor.media.playout`,
:mod:`~reactor.media.clock`, :mod:`~reactor.media.ice`).

:func:`install` (what :func:`reactor.media.install` calls) checks *every* entry's targets
before it applies *any* patch: a target that is gone or changed raises
:class:`~reactor.errors.PatchError` naming the entry, the target and the installed
version, at start, not mid-stream inside aiortc's RTP task. Nothing patches on import or
in a constructor. The same list gives the install test its hooks, the architecture test
its allowed private names, and ``docs/guide/webrtc.md`` its patch table.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence

from reactor.errors import PatchError
from reactor.media.patches.registry import ENTRIES, PATCHES, READINGS, supported_versions
from reactor.media.patches.spec import Patch, Reading, Target, installed_version, problems

__all__ = ["ENTRIES", "PATCHES", "READINGS", "Patch", "PatchError", "Reading", "Target",
           "check", "install"]

logger = logging.getLogger(__name__)


def check(entries: Sequence[Reading] = ENTRIES) -> None:
    """Raise :class:`PatchError` for the first entry that cannot be applied, naming every
    problem of that entry; do nothing when all are as expected.

    An entry cannot be applied when its module does not import (it imports aiortc/aioice
    names beyond its targets: ``SRTP_AES128_CM_SHA1_80``, ``JitterFrame``,
    ``RtcpSrPacket``, ...) or when one of its targets is missing or not as it expects."""
    for entry in entries:
        try:
            importlib.import_module(entry.module)
        except (ImportError, AttributeError) as exc:
            raise PatchError(
                f"reactor's aiortc/aioice patch {entry.name!r} cannot be applied: its module "
                f"{entry.module} does not import ({type(exc).__name__}: {exc}). Installed: "
                f"{_installed(entry)}. {_ADVICE}",
                patch=entry.name, target=entry.module) from exc
        found = [(t, p) for t in entry.targets for p in problems(t)]
        if found:
            first = found[0][0]
            what = "; ".join(f"{t.dotted} {p}" for t, p in found)
            checked = "; ".join(f"{lib} {', '.join(v)}" for lib, v in entry.checked.items())
            raise PatchError(
                f"reactor's aiortc/aioice patch {entry.name!r} ({entry.module}) cannot "
                f"be applied: {what}. Installed: {_installed(entry)}; the patch was "
                f"checked against {checked or 'none'}. {_ADVICE}",
                patch=entry.name, target=first.dotted)
    _warn_unchecked(entries)


# What to do, for a checkout and an installed package alike: the versions are the pin's
# ends (test_patches checks that they are).
_ADVICE = (f"Install the versions reactor supports ({supported_versions()}), "
           "or update the patch in reactor.media.patches.registry.")


def _installed(entry: Reading) -> str:
    libraries = dict.fromkeys([*entry.checked, *(t.library for t in entry.targets)])
    return ", ".join(f"{lib} {installed_version(lib)}" for lib in libraries)


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
    ``loopback``, else revert them). Idempotent. See :func:`reactor.media.install`.

    When a patch's ``apply`` raises, the patches this call applied before it are reverted
    (latest first) and :class:`PatchError` names the one that failed: aiortc is left as
    it was, not half patched."""
    check(entries)
    applied: list[Patch] = []
    for entry in entries:
        if not isinstance(entry, Patch):
            continue
        if entry.loopback_only and not loopback:
            entry.revert()
            continue
        try:
            entry.apply()
        except Exception as exc:
            _revert_all(applied)
            raise PatchError(
                f"reactor's aiortc/aioice patch {entry.name!r} ({entry.module}) failed to "
                f"apply ({type(exc).__name__}: {exc}); the {len(applied)} patches applied "
                f"before it were reverted. Installed: {_installed(entry)}. {_ADVICE}",
                patch=entry.name) from exc
        applied.append(entry)
    logger.debug("aiortc/aioice patches installed (loopback=%s): %s", loopback,
                 ", ".join(e.name for e in entries if isinstance(e, Patch)))


def _revert_all(applied: list[Patch]) -> None:
    for patch in reversed(applied):
        try:
            patch.revert()
        except Exception:
            # Reverting the others matters more than this one; the log says which stayed.
            logger.exception("aiortc/aioice patch %r could not be reverted", patch.name)
