"""The aiortc/aioice patches are installed by ``reactor.media.install()`` and nothing else:
importing reactor's modules and making a ``reactor.client.Client`` or a track leave aiortc
and aioice as they were; ``install()`` changes exactly the targets the registry
(``reactor.media.patches``) says it replaces, and nothing else of theirs. Checked in a
fresh interpreter, whose aiortc nothing has touched yet."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import pkgutil
    import sys

    import aioice.ice
    import aiortc.rtcpeerconnection
    import aiortc.rtcrtpreceiver
    import aiortc.rtp
    import aiortc.rate
    from reactor.media.patches import PATCHES

    def replaced(loopback):
        return sorted({t.path for p in PATCHES if loopback or not p.loopback_only
                       for t in p.targets if t.replaced})

    HOOKS = replaced(True)

    def hooks():
        return {path: pkgutil.resolve_name(path) for path in HOOKS}

    def everything():
        # Every module- and class-level name of aiortc and aioice, by identity: what
        # install() changes beyond the registry's own list shows up here.
        seen = {}
        for name, mod in list(sys.modules.items()):
            if name.partition(".")[0] not in ("aiortc", "aioice"):
                continue
            for key, value in list(vars(mod).items()):
                seen[f"{name}:{key}"] = value
                if isinstance(value, type) and value.__module__ == name:
                    for attr, member in list(vars(value).items()):
                        seen[f"{name}:{key}.{attr}"] = member
        return seen

    stock = hooks()
    before = everything()
    import reactor.client
    import reactor.media
    import reactor.media.peer
    import reactor.media.tracks
    import reactor.workers.egress
    import reactor.workers.ingress
    import reactor.workers.viewers

    client = reactor.client.Client("http://127.0.0.1:8081")
    track = reactor.media.tracks.EncodedVideoTrack("h264")  # a constructor patches nothing
    assert hooks() == stock, [k for k, v in hooks().items() if v is not stock[k]]

    def changed():
        return sorted(k for k, v in hooks().items() if v is not stock[k])

    reactor.media.install()
    assert changed() == replaced(False), (changed(), replaced(False))

    reactor.media.install(loopback=True)
    reactor.media.install(loopback=True)  # idempotent
    assert changed() == replaced(True), (changed(), replaced(True))
    after = everything()
    undeclared = sorted(k for k, v in after.items()
                        if k in before and before[k] is not v and k not in HOOKS)
    assert not undeclared, f"changed but not in the registry: {undeclared}"

    reactor.media.install(loopback=False)  # the loopback policy is off again
    assert changed() == replaced(False), (changed(), replaced(False))
    print("ok")
""")


def test_only_install_changes_aiortc_and_aioice() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_hooks_include_every_patched_attribute() -> None:
    """The four the old hand-written list missed are in the registry's replaced targets."""
    from reactor.media.patches import PATCHES

    replaced = {t.path for p in PATCHES for t in p.targets if t.replaced}
    assert {"aioice.ice:Connection.close", "aioice.ice:StunProtocol.datagram_received",
            "aiortc.rtp:HeaderExtensionsMap.configure",
            "aiortc.rate:RemoteBitrateEstimator.__init__"} <= replaced
