"""The patch registry (``reactor.media.patches``): every target is checked before any patch
is applied, a missing or changed one fails install() with a message naming the patch, the
target and the installed version, and the versions it declares are the pin's."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from reactor.errors import PatchError, ReactorError
from reactor.media import patches
from reactor.media.patches import ENTRIES, PATCHES, Patch, Target
from reactor.media.patches.spec import installed_version, problems

ROOT = Path(__file__).parents[3]


def test_every_target_of_the_installed_aiortc_and_aioice_is_as_expected() -> None:
    for entry in ENTRIES:
        for target in entry.targets:
            assert problems(target) == [], f"{entry.name}: {target.dotted}"


def test_names_are_unique_and_every_entry_says_why() -> None:
    names = [e.name for e in ENTRIES]
    assert len(names) == len(set(names))
    for entry in ENTRIES:
        assert entry.why and entry.targets and entry.checked, entry.name


def _fake(name: str, target: Target, applied: list[str]) -> Patch:
    return Patch(name=name, module="reactor.media.patches", targets=(target,),
                 checked={"aiortc": ("1.16.0",)}, why="test",
                 apply=lambda: applied.append(name), revert=lambda: applied.append("-" + name))


def test_a_missing_target_fails_install_before_any_patch_is_applied() -> None:
    applied: list[str] = []
    good = _fake("good", Target("aiortc.rtcrtpsender:RTCRtpSender._send_keyframe"), applied)
    gone = _fake("gone", Target("aiortc.rtcrtpsender:RTCRtpSender._no_such_method"), applied)
    with pytest.raises(PatchError) as info:
        patches.install(entries=(good, gone))
    message = str(info.value)
    assert "'gone'" in message
    assert "aiortc.rtcrtpsender.RTCRtpSender._no_such_method" in message
    assert f"aiortc {installed_version('aiortc')}" in message
    assert "checked against aiortc 1.16.0" in message
    assert "Install the versions reactor supports (aiortc 1.16.0 and aioice " in message
    assert isinstance(info.value, ReactorError)
    assert (info.value.patch, info.value.target) == (
        "gone", "aiortc.rtcrtpsender.RTCRtpSender._no_such_method")
    assert applied == []  # "good" comes first and was checked, not applied


def test_every_problem_of_the_failing_entry_is_named() -> None:
    applied: list[str] = []
    two = Patch(name="two", module="reactor.media.patches", checked={}, why="test",
                targets=(Target("aiortc.rtcrtpsender:RTCRtpSender._gone_a"),
                         Target("aiortc.rtcrtpsender:RTCRtpSender._gone_b")),
                apply=lambda: applied.append("two"), revert=lambda: None)
    with pytest.raises(PatchError, match=r"_gone_a not found.*; .*_gone_b not found"):
        patches.install(entries=(two,))


def test_a_module_that_no_longer_imports_fails_install_before_any_patch_is_applied(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A feature module imports aiortc names beyond its targets; one gone after an upgrade
    # must fail the check, not the apply after earlier patches were applied.
    import aiortc.rtp
    monkeypatch.delattr(aiortc.rtp, "RtcpSrPacket")
    monkeypatch.delitem(sys.modules, "reactor.media.clock", raising=False)
    applied: list[str] = []
    good = _fake("good", Target("aiortc.rtcrtpsender:RTCRtpSender._send_keyframe"), applied)
    clock = Patch(name="clock", module="reactor.media.clock", checked={}, why="test",
                  targets=(Target("aiortc.rtcrtpsender:RTCRtpSender._send_rtcp"),),
                  apply=lambda: applied.append("clock"), revert=lambda: None)
    with pytest.raises(PatchError) as info:
        patches.install(entries=(good, clock))
    assert applied == []
    assert info.value.patch == "clock"
    assert "its module reactor.media.clock does not import (ImportError" in str(info.value)
    assert "RtcpSrPacket" in str(info.value)


def test_a_failing_apply_reverts_the_patches_applied_before_it() -> None:
    applied: list[str] = []
    target = Target("aiortc.rtcrtpsender:RTCRtpSender._send_keyframe")
    first, second = _fake("first", target, applied), _fake("second", target, applied)

    def broken() -> None:
        raise RuntimeError("boom")

    bad = Patch(name="bad", module="reactor.media.patches", targets=(target,), checked={},
                why="test", apply=broken, revert=lambda: applied.append("-bad"))
    with pytest.raises(PatchError, match=r"'bad'.*RuntimeError: boom.*2 patches") as info:
        patches.install(entries=(first, second, bad))
    assert applied == ["first", "second", "-second", "-first"]
    assert info.value.patch == "bad"
    assert isinstance(info.value.__cause__, RuntimeError)


def test_a_changed_signature_is_named() -> None:
    target = Target("aiortc.rtcrtpsender:RTCRtpSender._send_keyframe",
                    params=(("self", "force"),))
    assert problems(target) == ["takes (self), expected (self, force)"]


def test_a_lost_instance_attribute_and_source_are_named() -> None:
    target = Target("aiortc.rtcrtpsender:RTCRtpSender",
                    attrs=("_RTCRtpSender__rtp_timestamp", "_RTCRtpSender__gone"),
                    source=(r"prefetch=99",))
    assert problems(target) == ["no longer sets self._RTCRtpSender__gone",
                                "source no longer matches 'prefetch=99'"]


def test_loopback_only_patches_are_reverted_without_loopback() -> None:
    applied: list[str] = []
    target = Target("aioice.ice:get_host_addresses")
    loop = Patch(name="loop", module="reactor.media.patches", targets=(target,), checked={},
                 why="test", apply=lambda: applied.append("loop"),
                 revert=lambda: applied.append("-loop"), loopback_only=True)
    patches.install(entries=(loop,), loopback=False)
    patches.install(entries=(loop,), loopback=True)
    assert applied == ["-loop", "loop"]


def _entry(name: str) -> Patch:
    return next(p for p in PATCHES if p.name == name)


# Stand-ins for aiortc methods an upgrade might rewrite: the names and signatures stay,
# the behaviour a patch relies on does not. Never called; check() reads their source.
async def _remote_description_with_own_extensions(self: Any, description: Any) -> None:
    local: list[Any] = []  # a copy, not HEADER_EXTENSIONS[media.kind] itself
    find_common_header_extensions(local, description)  # type: ignore[name-defined] # noqa: F821


async def _rtcp_that_sends_before_lsr(self: Any) -> None:
    packets = [RtcpSrPacket(ssrc=self._ssrc)]  # type: ignore[name-defined] # noqa: F821
    await self._send_rtcp(packets)
    self.__lsr = 0
    self.__lsr_time = 0.0


async def _rtp_that_prefetches(self: Any, codec: Any) -> None:
    nxt = await self._next_encoded_frame(codec)
    while True:
        enc_frame, nxt = nxt, self._next_encoded_frame(codec)
        timestamp = uint32_add(timestamp_origin, enc_frame.timestamp)  # type: ignore[name-defined] # noqa: F821
        for _, payload in enumerate(enc_frame.payloads):
            packet = RtpPacket(timestamp=timestamp, payload=payload)  # type: ignore[name-defined] # noqa: F821
            self.__rtp_timestamp = packet.timestamp


@pytest.mark.parametrize(("patch", "where", "stand_in"), [
    ("playout-delay", "aiortc.rtcpeerconnection:RTCPeerConnection.setRemoteDescription",
     _remote_description_with_own_extensions),
    ("session-clock-reports", "aiortc.rtcrtpsender:RTCRtpSender._run_rtcp",
     _rtcp_that_sends_before_lsr),
    ("session-clock-reports", "aiortc.rtcrtpsender:RTCRtpSender._run_rtp",
     _rtp_that_prefetches),
])
def test_behaviour_a_patch_relies_on_is_checked_in_the_source(
        monkeypatch: pytest.MonkeyPatch, patch: str, where: str, stand_in: object) -> None:
    module, _, qualname = where.partition(":")
    owner, _, method = qualname.partition(".")
    monkeypatch.setattr(getattr(importlib.import_module(module), owner), method, stand_in)
    with pytest.raises(PatchError, match=rf"{re.escape(where.replace(':', '.'))} source no "
                       "longer matches") as info:
        patches.check((_entry(patch),))
    assert info.value.patch == patch


# A renamed aiortc method, as an upgrade would bring: the daemon's workers call install()
# at start, so this is what their log shows, and aiortc is left untouched.
RENAMED = textwrap.dedent("""
    from aiortc import RTCCertificate
    from aiortc.rtcrtpsender import RTCRtpSender
    import reactor.media
    from reactor.errors import PatchError

    del RTCRtpSender._send_keyframe
    stock = RTCCertificate._create_ssl_context
    try:
        reactor.media.install()
    except PatchError as exc:
        print(exc)
    assert RTCCertificate._create_ssl_context is stock, "a patch was applied"
""")


def test_install_fails_at_start_when_aiortc_renamed_a_target() -> None:
    done = subprocess.run([sys.executable, "-c", RENAMED], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "'keyframe-requests'" in out
    assert "aiortc.rtcrtpsender.RTCRtpSender._send_keyframe not found" in out
    assert f"Installed: aiortc {installed_version('aiortc')}" in out


def _pin(name: str) -> SpecifierSet:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        m = re.match(rf"{name}\s*([<>=!~].*)$", dep)
        if m:
            return SpecifierSet(m.group(1))
    raise AssertionError(f"pyproject.toml does not pin {name}")


@pytest.mark.parametrize("library", ["aiortc", "aioice"])
def test_the_checked_versions_are_the_ends_of_the_pin(library: str) -> None:
    # The pin admits only versions the tests ran against: its ends are the lowest and the
    # highest checked version (make test-media-range runs the low end, make test the high).
    pin = _pin(library)
    checked = sorted({v for e in ENTRIES for v in e.checked.get(library, ())}, key=Version)
    assert checked and all(v in pin for v in checked), (library, pin, checked)
    low = [s.version for s in pin if s.operator in (">=", "==")]
    high = [s.version for s in pin if s.operator in ("<=", "==")]
    assert low == [checked[0]], f"{library} {pin}: the low end is not {checked[0]}"
    assert high == [checked[-1]], f"{library} {pin}: the high end is not {checked[-1]}"
    assert installed_version(library) in pin


def test_the_media_range_target_runs_the_low_end() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for library, name in (("aiortc", "AIORTC_LOW"), ("aioice", "AIOICE_LOW")):
        low = min((v for e in ENTRIES for v in e.checked.get(library, ())), key=Version)
        assert re.search(rf"^{name} \?= {re.escape(low)}$", makefile, re.M), name


def test_every_patch_has_a_replaced_target() -> None:
    for patch in PATCHES:
        assert any(t.replaced for t in patch.targets), patch.name


def test_the_webrtc_guide_patch_table_is_the_registry() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    import docs_gen

    page = docs_gen.WEBRTC_GUIDE.read_text(encoding="utf-8")
    assert page == docs_gen.webrtc_guide(), "docs/guide/webrtc.md: run `make docs-gen`"
    for entry in ENTRIES:
        assert f"| `{entry.name}`" in page
    # What a patch only reads is shown too: an upgrade that changes it breaks the patch.
    for shown in ("`aiortc.codecs.HEADER_EXTENSIONS`", "`_capacity`", "`_RTCRtpSender__lsr`",
                  "`aiortc.rtcrtpsender.RTCRtpSender._run_rtcp` (its source)", "`_data`"):
        assert shown in page, shown
