"""The daemon's configuration: one YAML file validated once into one typed object.

Every section is a pydantic model with ``extra="forbid"``, so a misspelt key is an error
that names it, and every field has a default and a description (the configuration
reference in the docs is generated from them). :func:`load_config` is the only place a
config file is read; the resulting :class:`Config` flows down to every process.

Long module: it is the whole configuration schema (one section class per concern, with
their cross-field validators) that the docs' configuration reference is generated from, and
:func:`import_model`, the only place a model is imported; a reader finds every key here.
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import re
import ssl
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from reactor.errors import ConfigError, ModelLoadError, did_you_mean

if TYPE_CHECKING:
    from reactor.model import VideoModel

DEFAULT_MODEL = "reactor.examples.pattern:TestPattern"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Section):
    """Which model to run and what to pass to its ``load()``."""

    module: str = Field(
        DEFAULT_MODEL,
        description='The model class as "package.module:ClassName"; it must subclass '
        "reactor.VideoModel.",
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the model's load(config) as a dict."
    )
    load_timeout_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="How long each worker (the model's load() above all) may take to start "
        "before the daemon gives up.",
    )

    @field_validator("module")
    @classmethod
    def _module_form(cls, value: str) -> str:
        mod, sep, attr = value.partition(":")
        if not sep or not mod or not attr:
            raise ValueError(f'expected "package.module:ClassName", found {value!r}')
        return value


class VideoSection(_Section):
    """The size and rate of the frames the model emits and the stream carries."""

    width: int = Field(
        1280, ge=16, le=7680, multiple_of=2, description="Frame width in pixels (even)."
    )
    height: int = Field(
        720, ge=16, le=4320, multiple_of=2, description="Frame height in pixels (even)."
    )
    fps: int = Field(30, ge=1, le=240, description="Target frames per second.")


class AudioSection(_Section):
    """Sound: whether the model speaks and listens, and the format it works in.

    WebRTC carries Opus at 48 kHz; reactor resamples to and from ``sample_rate``.
    """

    output: bool = Field(
        False, description="The model emits audio; WHEP answers carry an audio track."
    )
    input: bool = Field(False, description="The model reads the audio WHIP clients send.")
    sample_rate: Literal[16000, 24000, 44100, 48000] = Field(
        48000, description="Sample rate in Hz the model works in: 16000, 24000, 44100 or 48000."
    )
    channels: Literal[1, 2] = Field(1, description="Audio channels the model works in: 1 or 2.")


class RingsSection(_Section):
    """Shared-memory frame rings between the workers."""

    input_slots: int = Field(
        4, ge=2, le=256, description="Slots in the input ring (ingress to inference)."
    )
    output_slots: int = Field(
        8, ge=2, le=256, description="Slots in the output ring (inference to egress)."
    )


#: The ICE server URL schemes (RFC 7064, RFC 7065) the daemon's peer connections use.
ICE_SCHEMES = ("stun", "turn", "turns")


class IceServer(_Section):
    """One STUN or TURN server, shaped like the W3C ``RTCIceServer`` dictionary."""

    urls: str | list[str] = Field(
        description='One URL or a list: "stun:HOST[:PORT]", "turn:HOST[:PORT][?transport=udp|tcp]" '
        'or "turns:HOST[:PORT]".'
    )
    username: str | None = Field(None, description="TURN long-term credential user name.")
    credential: str | None = Field(None, description="TURN long-term credential password.")

    @field_validator("urls")
    @classmethod
    def _url_forms(cls, value: str | list[str]) -> str | list[str]:
        urls = [value] if isinstance(value, str) else value
        if not urls:
            raise ValueError("expected at least one URL")
        for url in urls:
            _check_ice_url(url)
        return value

    @model_validator(mode="after")
    def _turn_needs_credentials(self) -> IceServer:
        turn = [u for u in self.url_list if u.partition(":")[0] in ("turn", "turns")]
        if turn and not (self.username and self.credential):
            raise ValueError(
                f"{turn[0]!r} is a TURN server: it needs username and credential "
                "(long-term credentials)"
            )
        return self

    @property
    def url_list(self) -> list[str]:
        return [self.urls] if isinstance(self.urls, str) else list(self.urls)


_ICE_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.%]*")


def _check_ice_url(url: str) -> None:
    scheme, sep, rest = url.partition(":")
    if not sep or scheme not in ICE_SCHEMES:
        raise ValueError(
            f"{url!r}: expected a URL whose scheme is one of {', '.join(ICE_SCHEMES)}"
        )
    hostport, _, query = rest.partition("?")
    if not hostport or hostport.startswith("//"):
        raise ValueError(f'{url!r}: expected "{scheme}:HOST[:PORT]" (no "//")')
    try:
        port = urlsplit(f"//{hostport}").port
    except ValueError:
        raise ValueError(f"{url!r}: the port is not a number from 1 to 65535") from None
    if port == 0:
        raise ValueError(f"{url!r}: the port is not a number from 1 to 65535")
    host = urlsplit(f"//{hostport}").hostname or ""
    if not _ICE_HOST.fullmatch(host):
        # The URL also travels to clients in a Link header, between <>: no room for spaces,
        # quotes, commas or other characters that no host name or IP address has.
        raise ValueError(f"{url!r}: the host is not a host name or an IP address")
    if query:
        if scheme == "stun":
            raise ValueError(f"{url!r}: a STUN URL takes no query")
        if query not in ("transport=udp", "transport=tcp"):
            raise ValueError(f"{url!r}: expected ?transport=udp or ?transport=tcp, found ?{query}")


def normalise_public_url(url: str) -> str:
    """``server.public_url`` checked and ending in ``/``: ``http`` or ``https``, a host,
    an optional port and path, no query, fragment or user name; ``ValueError`` says which
    part is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r}: not a URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f'{url!r}: expected an http:// or https:// URL such as '
                         '"https://gpu-3.lab.example:8443"')
    if not parts.hostname:
        raise ValueError(f"{url!r}: the URL has no host")
    if not _ICE_HOST.fullmatch(parts.hostname):
        raise ValueError(f"{url!r}: the host is not a host name or an IP address")
    if port == 0:
        raise ValueError(f"{url!r}: the port is not a number from 1 to 65535")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError(f"{url!r}: a public URL takes no query or fragment")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{url!r}: a public URL takes no user name or password")
    if any(c.isspace() or c in '"<>\\' for c in url):
        raise ValueError(f"{url!r}: a URL has no spaces, quotes, <, > or backslashes")
    return url if url.endswith("/") else url + "/"


def ice_port_shortfall(port_range: tuple[int, int], max_viewers: int,
                       addresses: Sequence[str] = (), *, prefix: str = "") -> str | None:
    """Why ``port_range`` (``server.ice_port_range``) is too small, or ``None``. aioice binds
    one socket per host address it gathers on for each ICE transport, and a peer
    connection has one transport (BUNDLE with RTCP multiplexed: every browser, GStreamer's
    webrtcbin and reactor.client offer it), so the range needs one port per address for
    each of ``max_viewers`` viewers and a WHIP sender. ``addresses``: this machine's (none
    given: one, the floor on any machine); ``prefix`` goes before the key names."""
    low, high = port_range
    needed = (max_viewers + 1) * max(1, len(addresses))
    if high - low + 1 >= needed:
        return None
    per, need = ((f"on this machine each peer connection binds one per address it gathers "
                  f"on ({len(addresses)}: {', '.join(addresses)})", f"need {needed}")
                 if addresses else ("each peer connection binds one per address it gathers "
                                    "on", f"need at least {needed}"))
    return (f"{prefix}ice_port_range [{low}, {high}] holds {high - low + 1} ports, but {per}, "
            f"so {prefix}max_viewers {max_viewers} viewers and a WHIP sender {need}: "
            f"widen it to [{low}, {low + needed - 1}] or more, or lower {prefix}max_viewers")


class ServerSection(_Section):
    """The HTTP front door: web client, API, WHIP and WHEP."""

    host: str = Field(
        "127.0.0.1", description="Address to bind. Anything but loopback needs a token."
    )
    port: int = Field(8081, ge=0, le=65535, description="TCP port to bind (0 picks a free one).")
    token: str | None = Field(
        None,
        min_length=8,
        description='When set, the API and signalling need "Authorization: Bearer <token>".',
    )
    max_viewers: int = Field(32, ge=1, le=1024, description="WHEP viewers at once; 503 past it.")
    idle_timeout_s: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="Close a connection that has not sent a whole request (headers, or the "
        "body of an offer or command) for this long: slow or idle clients cannot hold "
        "connections open.",
    )

    ice_servers: list[IceServer] = Field(
        default_factory=list,
        description="STUN and TURN servers for the daemon's own peer connections (each "
        "{urls, username, credential}, as in the browser's RTCIceServer); sent to clients "
        'in the WHIP/WHEP answers as Link rel="ice-server" headers.',
    )
    ice_transport_policy: Literal["all", "relay"] = Field(
        "all",
        description="all: offer every candidate; relay: offer TURN relay candidates only "
        "(needs a TURN server in ice_servers).",
    )
    announced_addresses: list[str] = Field(
        default_factory=list,
        description="IP addresses written into the host candidates in place of the "
        "interface addresses (a cloud VM's public address under 1:1 NAT).",
    )
    tls_cert: str | None = Field(
        None,
        description="A PEM certificate (chain) file: serve everything over HTTPS. "
        "A relative path is read from the config file's folder.",
    )
    tls_key: str | None = Field(
        None, description="The PEM private key of tls_cert (required with it)."
    )
    # Fleet (issue 28): the URL that stays with this daemon, its media ports, and tokens
    # that any daemon sharing the secret accepts.
    public_url: str | None = Field(
        None,
        description="The URL at which clients reach this daemon directly, not through a "
        'balancer ("https://gpu-3.lab.example:8443", or with a path a proxy strips: '
        '"https://lab.example/gpu-3/"). When set, the WHIP/WHEP Location is absolute to '
        "it, and every later request of the session (commands, events, DELETE) goes to it: "
        "the web client and reactor.client read it from the Reactor-Public-URL header. "
        "null: every URL stays relative.",
    )
    ice_port_range: tuple[int, int] | None = Field(
        None,
        description="[min, max]: every UDP port the daemon's peer connections bind for "
        "their host candidates lies in this range (inclusive), for a firewall rule, a "
        "hostPort or a NodePort. It must hold one port per peer connection (max_viewers "
        "+ 1 for a WHIP sender) per address the daemon gathers on; daemon start counts "
        "this machine's addresses. null: ports the system picks.",
    )
    token_secret: str | None = Field(
        None,
        min_length=32,
        description="A shared secret (32 characters or more): accept short-lived signed "
        "tokens (JWT, HS256, with exp and a scope) that `reactor token` mints; every "
        "daemon with the same secret accepts them. Prefer token_secret_file.",
    )
    token_secret_file: str | None = Field(
        None,
        description="A file holding token_secret (a mounted Kubernetes Secret, for "
        "example); surrounding white space is dropped. A relative path is read from the "
        "config file's folder.",
    )

    @field_validator("announced_addresses")
    @classmethod
    def _announced_ips(cls, value: list[str]) -> list[str]:
        for address in value:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(
                    f"expected IP addresses such as 203.0.113.7, found {address!r}"
                ) from None
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url_form(cls, value: str | None) -> str | None:
        return None if value is None else normalise_public_url(value)

    @field_validator("ice_port_range", mode="before")
    @classmethod
    def _port_range_pair(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, list | tuple) or len(value) != 2):
            raise ValueError(f"expected [min, max], two port numbers, found {value!r}")
        return value

    @field_validator("ice_port_range")
    @classmethod
    def _port_range_form(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is None:
            return None
        low, high = value
        if not 1024 <= low <= high <= 65535:
            raise ValueError(
                f"expected [min, max] with 1024 <= min <= max <= 65535, found {list(value)}")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> ServerSection:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        if self.token_secret is not None and self.token_secret_file is not None:
            raise ValueError("token_secret and token_secret_file: set one, not both")
        if self.ice_port_range is not None:
            # The floor on any machine: one address. Daemon start checks again with the
            # addresses this machine really gathers on (launcher.check_port_range).
            problem = ice_port_shortfall(self.ice_port_range, self.max_viewers)
            if problem is not None:
                raise ValueError(problem)
        if self.ice_transport_policy == "relay" and not any(
            u.partition(":")[0] in ("turn", "turns")
            for server in self.ice_servers
            for u in server.url_list
        ):
            raise ValueError(
                "ice_transport_policy is relay but ice_servers has no turn: or turns: URL"
            )
        return self

    @property
    def scheme(self) -> str:
        """``https`` when TLS is configured, else ``http``."""
        return "https" if self.tls_cert else "http"

    def url(self, port: int | None = None) -> str:
        """The daemon's base URL, ``scheme://host:port/`` (``port`` in place of a 0)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port if port is None else port}/"

    @field_validator("host")
    @classmethod
    def _host_form(cls, value: str) -> str:
        if value in ("localhost", ""):
            return value or "127.0.0.1"
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(
                f"expected an IP address such as 127.0.0.1, found {value!r}"
            ) from None
        return value

    @property
    def is_loopback(self) -> bool:
        return self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback


class SessionSection(_Section):
    """When sessions end on their own."""

    orphan_timeout_s: float = Field(
        30.0, ge=0, le=86400, description="End a session this long after its last client left."
    )
    stall_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="End a session whose model emits nothing for this long."
    )
    stop_grace_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="A model still running its own code this long after its session was told "
        "to stop (it ignores stop) gets the inference worker restarted.",
    )
    max_rss_mb: int | None = Field(
        None,
        ge=64,
        description="End the session when the inference worker's resident memory passes "
        "this many MiB (null: no limit); if the memory is not released when the session "
        "ends, the worker is restarted.",
    )
    exclusive: bool = Field(
        False,
        description="A session belongs to the client that started it: while it runs, "
        "another client's WHIP or WHEP gets 503 with Retry-After (a balancer tries another "
        "daemon), and GET /readyz answers 503 (busy). One user per daemon: a fleet's setting.",
    )
    max_duration_s: float | None = Field(
        None,
        gt=0,
        le=7 * 86400,
        description="End a session this long after it started (GPU time is expensive); its "
        "clients get an ending event naming the reason first. null: no limit.",
    )
    drain_timeout_s: float | None = Field(
        None,
        ge=0,
        le=86400,
        description="Set: SIGTERM drains the daemon (no new session; the running one goes on "
        "until it ends or this many seconds pass, then the daemon stops) instead of stopping "
        "it at once, and it is the default limit of `reactor daemon drain`. null: SIGTERM "
        "stops at once, and a drain waits for the session however long it runs.",
    )


class SupervisorSection(_Section):
    """How the supervisor restarts workers that die."""

    max_crashes: int = Field(
        5,
        ge=1,
        le=10_000,
        description="Give up on a worker (the daemon's state becomes failed) once it died "
        "this many times within supervisor.crash_window_s.",
    )
    crash_window_s: float = Field(
        60.0,
        gt=0,
        le=86400,
        description="Only deaths this recent count towards supervisor.max_crashes and the "
        "restart backoff.",
    )


#: The most rungs ``egress.renditions`` may have (each one in use is one more encode).
MAX_RENDITIONS = 4


class RenditionSpec(_Section):
    """One rung of the rendition ladder: a size and the most bitrate it gets."""

    scale: float = Field(
        ..., gt=0, le=1,
        description="Its size as a share of video.width and video.height (each side "
        "rounded down to an even number of pixels).")
    bitrate_share: float = Field(
        ..., gt=0, le=1,
        description="The most its encoder gets, as a share of max_bitrate_kbps.")


class EgressSection(_Section):
    """Encoding and recording of the output stream."""

    @model_validator(mode="after")
    def _bitrates_in_order(self) -> EgressSection:
        top = self.max_bitrate_kbps or self.bitrate_kbps
        start = min(self.start_bitrate_kbps or top, top)
        if not self.min_bitrate_kbps <= start <= top:
            raise ValueError(
                f"egress bitrates must satisfy min_bitrate_kbps <= start_bitrate_kbps <= "
                f"max_bitrate_kbps, found {self.min_bitrate_kbps}, {start}, {top}")
        return self

    @model_validator(mode="after")
    def _ladder_in_order(self) -> EgressSection:
        rungs = self.renditions
        if not 1 <= len(rungs) <= MAX_RENDITIONS:
            raise ValueError(f"egress.renditions: 1 to {MAX_RENDITIONS} renditions, "
                             f"found {len(rungs)}")
        if (rungs[0].scale, rungs[0].bitrate_share) != (1.0, 1.0):
            raise ValueError(
                "egress.renditions[0] must be the full size at the top rate (scale: 1.0, "
                f"bitrate_share: 1.0), found scale {rungs[0].scale}, bitrate_share "
                f"{rungs[0].bitrate_share}")
        for i in range(1, len(rungs)):
            a, b = rungs[i - 1], rungs[i]
            if not (b.scale < a.scale and b.bitrate_share < a.bitrate_share):
                raise ValueError(
                    f"egress.renditions[{i}] must be smaller than renditions[{i - 1}] in "
                    f"both scale and bitrate_share (biggest first), found scale {b.scale} "
                    f"after {a.scale}, bitrate_share {b.bitrate_share} after "
                    f"{a.bitrate_share}")
        low = round(self.top_bitrate_kbps * rungs[-1].bitrate_share)
        if self.adapt and len(rungs) > 1 and low < self.min_bitrate_kbps:
            raise ValueError(
                f"egress.renditions[{len(rungs) - 1}].bitrate_share "
                f"{rungs[-1].bitrate_share} of max_bitrate_kbps {self.top_bitrate_kbps} is "
                f"{low} kbps, below min_bitrate_kbps {self.min_bitrate_kbps}: raise the "
                "share or lower min_bitrate_kbps")
        return self

    @property
    def ladder(self) -> list[tuple[float, float]]:
        """The renditions as (scale, bitrate_share), the full size first; the full size
        alone when egress.adapt is off."""
        if not self.adapt:
            return [(1.0, 1.0)]
        return [(r.scale, r.bitrate_share) for r in self.renditions]

    @property
    def top_bitrate_kbps(self) -> int:
        """max_bitrate_kbps, else bitrate_kbps."""
        return self.max_bitrate_kbps or self.bitrate_kbps

    codec: Literal["h264", "vp8"] = Field(
        "h264", description="Preferred codec; VP8 is used for a viewer that offers only VP8."
    )
    bitrate_kbps: int = Field(
        4000, ge=100, le=100_000,
        description="Target encoder bitrate; the default of max_bitrate_kbps.")
    max_bitrate_kbps: int | None = Field(
        None, ge=100, le=100_000,
        description="The most the encoder is given when it follows its viewers' bandwidth "
        "estimates; null: bitrate_kbps.")
    min_bitrate_kbps: int = Field(
        150, ge=30, le=100_000,
        description="The least the encoder is given, however narrow a viewer's link.")
    start_bitrate_kbps: int | None = Field(
        1000, ge=30, le=100_000,
        description="A new viewer's estimate before its feedback arrives (it grows about "
        "8 %/s while the viewer reports no loss, up to its REMB); null: max_bitrate_kbps. "
        "With several viewers the encoder follows the lowest estimate.")
    adapt: bool = Field(
        True,
        description="Follow each viewer's bandwidth estimate (REMB, receiver-report loss) "
        "and pace its packets; false: encode at bitrate_kbps whatever the link.")
    renditions: list[RenditionSpec] = Field(
        default_factory=lambda: [RenditionSpec(scale=1.0, bitrate_share=1.0)],
        description="The rendition ladder (with adapt), biggest first, at most 4: each is "
        "encoded once for all its viewers, and each viewer gets the biggest its estimate "
        "affords, switched on a keyframe. The first must be the full size at the top rate "
        "(recordings use it). The default, one entry, is no ladder; for viewers on links "
        "of very different widths, add the half size at a quarter of the rate: "
        "[{scale: 1.0, bitrate_share: 1.0}, {scale: 0.5, bitrate_share: 0.25}].")
    record: str | None = Field(
        None, description="A file path: record the output stream there (MP4)."
    )
    # Periodic intra refresh (issue 26): its own block, apart from the rate fields.
    intra_refresh: bool = Field(
        False,
        description="H.264 only (libx264, NVENC): refresh the picture with a column of intra "
        "blocks sweeping it once a GOP instead of an IDR keyframe at each GOP, so no "
        "frame is a keyframe-sized burst; a join or a keyframe request still gets an IDR. "
        "VP8 (libvpx) has no such mode and keeps its keyframes.")


#: The levels ``log.level`` and ``--log-level`` accept, quietest last.
LOG_LEVELS = ("debug", "info", "warning", "error")


class LogSection(_Section):
    """What every process of the daemon writes to its log."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info",
        description="The level of every process's log (debug also makes the WebRTC stack, "
        "aiortc and aioice, log its ICE and DTLS steps); --log-level overrides it.",
    )
    format: Literal["text", "json"] = Field(
        "text",
        description="text: one readable line per record; json: one JSON object a line "
        "(time, level, worker, pid, logger, session, message) for log shippers.",
    )


class MetricsSection(_Section):
    """GET /metrics: the daemon's telemetry for Prometheus."""

    public: bool = Field(
        False,
        description="Serve GET /metrics without server.token (for a scraper on a trusted "
        "network that cannot send a bearer token); false: it needs the token like the API.",
    )


#: The command-line option that overrides each field `Config.with_overrides` sets.
_OPTION = {"host": "--host", "port": "--port", "level": "--log-level",
           "public_url": "--public-url"}


class Config(_Section):
    """A whole reactor configuration file."""

    model: ModelSection = Field(default_factory=ModelSection)
    video: VideoSection = Field(default_factory=VideoSection)
    audio: AudioSection = Field(default_factory=AudioSection)
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    rings: RingsSection = Field(default_factory=RingsSection)
    server: ServerSection = Field(default_factory=ServerSection)
    session: SessionSection = Field(default_factory=SessionSection)
    supervisor: SupervisorSection = Field(default_factory=SupervisorSection)
    egress: EgressSection = Field(default_factory=EgressSection)
    log: LogSection = Field(default_factory=LogSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    source: str | None = Field(
        None, description="The file this config was read from (set by the loader, not in YAML)."
    )

    @model_validator(mode="after")
    def _rendition_sizes(self) -> Config:
        # Each side rounds down to even pixels; a rung that small is no picture.
        for i, r in enumerate(self.egress.renditions):
            w = int(self.video.width * r.scale) // 2 * 2
            h = int(self.video.height * r.scale) // 2 * 2
            if min(w, h) < 16:
                raise ValueError(
                    f"egress.renditions[{i}].scale {r.scale} of video "
                    f"{self.video.width}x{self.video.height} is {w}x{h}; each side must be "
                    "at least 16 pixels: raise the scale or drop the rendition")
        return self

    @model_validator(mode="after")
    def _tls_files(self) -> Config:
        # Relative certificate paths are read from the config file's folder, and the pair is
        # loaded here, once, so a wrong path or a key that does not match the certificate
        # stops `reactor config check` and the daemon before anything starts.
        server = self.server
        if server.tls_cert is None or server.tls_key is None:
            return self
        base = (
            Path(self.source).parent
            if self.source and not self.source.startswith("<")
            else Path.cwd()
        )
        cert = (base / server.tls_cert).resolve()
        key = (base / server.tls_key).resolve()
        for name, path in (("server.tls_cert", cert), ("server.tls_key", key)):
            if not path.is_file():
                raise ValueError(f"{name}: file not found: {path}")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(str(cert), str(key))
        except ssl.SSLError as exc:
            raise ValueError(
                f"server.tls_key: {key} does not hold the private key of the certificate "
                f"in server.tls_cert {cert}, or one of them is not PEM ({exc.reason or exc})"
            ) from None
        except OSError as exc:
            raise ValueError(f"server.tls_cert: cannot read {cert} or {key}: {exc}") from None
        # The section is frozen; the resolved paths replace the relative ones once, here.
        resolved = server.model_copy(update={"tls_cert": str(cert), "tls_key": str(key)})
        object.__setattr__(self, "server", resolved)
        return self

    @model_validator(mode="after")
    def _token_secret_file(self) -> Config:
        # Read once, here, like the TLS pair: a missing or short secret stops `reactor
        # config check` and the daemon before anything starts, and no process reads the
        # file behind the config's back.
        server = self.server
        if server.token_secret_file is None:
            return self
        base = (
            Path(self.source).parent
            if self.source and not self.source.startswith("<")
            else Path.cwd()
        )
        path = (base / server.token_secret_file).resolve()
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"server.token_secret_file: cannot read {path}: {exc}") from None
        if len(secret) < 32:
            raise ValueError(f"server.token_secret_file: {path} holds {len(secret)} "
                             "characters; a token secret needs 32 or more")
        # The secret takes the file's place, so that the config the supervisor is handed
        # (validated again there) reads no file and sets one of the two.
        resolved = server.model_copy(update={"token_secret_file": None,
                                             "token_secret": secret})
        object.__setattr__(self, "server", resolved)
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context, or ``None`` when it serves plain HTTP."""
        if self.server.tls_cert is None or self.server.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server.tls_cert, self.server.tls_key)
        return context

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda"):
            return value
        prefix, _, index = value.partition(":")
        if prefix == "cuda" and index.isdigit():
            return value
        raise ValueError(f"expected auto, cpu, cuda or cuda:N, found {value!r}")

    def with_overrides(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        log_level: str | None = None,
        public_url: str | None = None,
    ) -> Config:
        """This config with the command line's ``--host``, ``--port``, ``--log-level`` and
        ``--public-url`` in place of ``server.host``, ``server.port``, ``log.level`` and
        ``server.public_url``, validated by the same rules as the file; an error names the
        option."""
        server: dict[str, Any] = {}
        if host is not None:
            server["host"] = host
        if port is not None:
            server["port"] = port
        if public_url is not None:
            server["public_url"] = public_url
        updates: dict[str, Any] = {}
        for name, section, values in (
            ("server", self.server, server),
            ("log", self.log, {"level": log_level} if log_level is not None else {}),
        ):
            if not values:
                continue
            try:
                updates[name] = type(section).model_validate(
                    {**section.model_dump(), **values}
                )
            except ValidationError as err:
                problems = "; ".join(
                    f"{_OPTION.get(str(e['loc'][0]) if e['loc'] else '', name)}: "
                    + str(e["msg"]).removeprefix("Value error, ")
                    + (f" (found {e.get('input')!r})" if e["type"] != "value_error" else "")
                    for e in err.errors()
                )
                raise ConfigError(f"invalid command-line option: {problems}") from None
        return self.model_copy(update=updates) if updates else self

    def frame_shape(self) -> tuple[int, int, int]:
        """The pipeline's frame shape, ``(height, width, 3)`` RGB."""
        return (self.video.height, self.video.width, 3)

    def model_class(self) -> type[VideoModel]:
        """Import the configured model class (see :func:`import_model`).

        The config file's folder is searched first, so a model next to its config (as
        ``reactor init`` makes them) imports without installing anything; ``sys.path``
        is left as it was.
        """
        search_path: list[str] = []
        if self.source and not self.source.startswith("<"):
            search_path.append(str(Path(self.source).resolve().parent))
        return import_model(self.model.module, search_path=search_path)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            parent = ".".join(str(p) for p in e["loc"][:-1])
            where = f"in section '{parent}'" if parent else "at the top level"
            known = _known_keys(e["loc"][:-1])
            hint = f"; known keys: {', '.join(known)}" if known else ""
            lines.append(f"  {path}: unknown key {where}{hint}")
        elif e["type"] == "missing":
            lines.append(f"  {path}: required key is missing")
        elif e["type"] == "value_error":
            # Our own validators' messages already say what was found.
            message = str(e["msg"]).removeprefix("Value error, ")
            lines.append(f"  {path}: {message}" if e["loc"] else f"  {message}")
        else:
            found = e.get("input")
            lines.append(f"  {path}: {e['msg']} (found {found!r})")
    return "\n".join(lines)


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return [k for k in model.model_fields if k != "source"]


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate already-parsed YAML data; errors name ``source`` and the key path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of sections at the top level, "
            f"found {type(data).__name__}"
        )
    if "source" in data:
        raise ConfigError(f"{source}: source: unknown key at the top level")
    try:
        return Config.model_validate({**data, "source": source})
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


#: Where the example configs shipped in the wheel lie (``-c pattern``, ``reactor init
#: --list``); a checkout's ``configs/`` is a link to it.
EXAMPLE_CONFIGS = Path(__file__).parent / "examples" / "configs"


def example_configs() -> dict[str, Path]:
    """The packaged example configs by name (``brightness``: ``.../brightness.yaml``)."""
    return {p.stem: p for p in sorted(EXAMPLE_CONFIGS.glob("*.yaml"), key=lambda p: p.stem)}


def resolve_config(path: str | Path) -> Path:
    """The file ``-c path`` means: the path when it exists (a path always wins), else
    the packaged example of that name (``pattern``, ``brightness.yaml``)."""
    p = Path(path)
    if p.is_file() or p.parent != Path("."):
        return p
    return example_configs().get(p.name.removesuffix(".yaml"), p)


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a YAML config file (or a packaged example, by name:
    :func:`resolve_config`); ``None`` gives the packaged default."""
    if path is None:
        return Config.model_validate({})
    p = resolve_config(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        names = list(example_configs())
        hint = did_you_mean(p.stem, names) if p.parent == Path(".") else ""
        raise ConfigError(f"{p}: config file not found, nor a packaged example of that name "
                          f"(they are: {', '.join(names)}){hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(data, str(p))


@contextlib.contextmanager
def _searched_first(folders: Sequence[str]) -> Iterator[None]:
    """``folders`` at the front of ``sys.path`` for the duration, then taken out again
    (only the entries added here: a folder already on the path stays where it was).

    A scoped insertion rather than a finder of our own, so the model module's own
    imports of its neighbours (``import helpers`` next to it) work while it is imported,
    exactly as they would for a script in that folder.
    """
    added = [f for f in folders if f not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for folder in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


def _modules_in(folders: Sequence[str]) -> list[str]:
    """The importable module names at the top of ``folders``."""
    names = set()
    for folder in folders:
        for path in Path(folder).iterdir() if Path(folder).is_dir() else ():
            if path.suffix == ".py" or (path / "__init__.py").is_file():
                names.add(path.stem)
    return sorted(names)


def import_model(spec: str, search_path: Sequence[str] = ()) -> type[VideoModel]:
    """Import ``"package.module:ClassName"`` and check that it is a ``VideoModel``.

    ``search_path`` folders are searched before ``sys.path`` while the module is imported
    (``sys.path`` is the same afterwards). The error says whether the module or the
    attribute is missing, so a typo is easy to find; an exception raised while importing
    the module is reported with its cause.
    """
    from reactor.model import VideoModel

    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise ModelLoadError(f'model.module: expected "package.module:ClassName", found {spec!r}')
    try:
        with _searched_first(search_path):
            module = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        if exc.name and (mod_name == exc.name or mod_name.startswith(exc.name + ".")):
            where = (f"a {mod_name.split('.')[0]}.py or package in {', '.join(search_path)} "
                     "(the config's folder), an installed package, or on PYTHONPATH"
                     if search_path else "an installed package, or on PYTHONPATH")
            close = did_you_mean(mod_name, _modules_in(search_path))
            raise ModelLoadError(
                f"model.module: module {mod_name!r} not found: looked for {where}{close}"
            ) from None
        raise ModelLoadError(
            f"model.module: importing {mod_name!r} failed: {exc}"
        ) from exc
    except Exception as exc:
        raise ModelLoadError(
            f"model.module: importing {mod_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            models = sorted(name for name, value in vars(module).items()
                            if isinstance(value, type) and issubclass(value, VideoModel)
                            and value is not VideoModel)
            found = (f"; its VideoModel classes: {', '.join(models)}{did_you_mean(attr, models)}"
                     if models else "; it defines no VideoModel class")
            raise ModelLoadError(
                f"model.module: module {mod_name!r} has no attribute {attr!r}{found}"
            ) from None
    if not (isinstance(obj, type) and issubclass(obj, VideoModel)):
        raise ModelLoadError(
            f"model.module: {spec!r} is not a subclass of reactor.VideoModel "
            f"(found {type(obj).__name__} {obj!r})"
        )
    return obj
