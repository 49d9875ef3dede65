"""The aiortc/aioice patches are installed by ``reactor.media.install()`` and nothing else:
importing reactor's modules and making a ``reactor.client.Client`` leave aiortc and aioice
as they were. Checked in a fresh interpreter, whose aiortc nothing has touched yet."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import aioice.ice
    import aiortc.rtcpeerconnection
    import aiortc.rtcrtpreceiver
    import aiortc.rtp
    from aiortc import RTCCertificate, RTCRtpSender

    def hooks():
        return {
            "dtls": RTCCertificate._create_ssl_context,
            "jitter": aiortc.rtcrtpreceiver.JitterBuffer,
            "keyframe": RTCRtpSender._send_keyframe,
            "origin": RTCRtpSender._next_encoded_frame,
            "reports": RTCRtpSender._send_rtcp,
            "candidates": aioice.ice.Connection.add_remote_candidate,
            "checks": aioice.ice.Connection.request_received,
            "addresses": aioice.ice.get_host_addresses,
            "extmap": aiortc.rtcpeerconnection.find_common_header_extensions,
            "hdrext": aiortc.rtp.HeaderExtensionsMap.set,
        }

    stock = hooks()
    import reactor.client
    import reactor.media
    import reactor.media.peer
    import reactor.workers.egress
    import reactor.workers.ingress
    import reactor.workers.viewers

    client = reactor.client.Client("http://127.0.0.1:8081")
    assert hooks() == stock, [k for k, v in hooks().items() if v is not stock[k]]

    reactor.media.install()
    changed = sorted(k for k, v in hooks().items() if v is not stock[k])
    assert changed == ["candidates", "dtls", "extmap", "hdrext", "jitter", "keyframe", "origin",
                       "reports"], changed

    reactor.media.install(loopback=True)
    reactor.media.install(loopback=True)  # idempotent
    changed = sorted(k for k, v in hooks().items() if v is not stock[k])
    assert changed == ["addresses", "candidates", "checks", "dtls", "extmap", "hdrext",
                       "jitter", "keyframe", "origin", "reports"], changed

    reactor.media.install(loopback=False)  # the loopback policy is off again
    changed = sorted(k for k, v in hooks().items() if v is not stock[k])
    assert changed == ["candidates", "dtls", "extmap", "hdrext", "jitter", "keyframe", "origin",
                       "reports"], changed
    print("ok")
""")


def test_only_install_changes_aiortc_and_aioice() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
