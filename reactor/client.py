"""`reactor.client`: use a running daemon from Python — watch and listen, send video and
sound, commands.

```python
import asyncio
import numpy as np
import reactor.media
from reactor.client import Client, PcmTrack

async def main():
    async with Client("http://127.0.0.1:8081") as client:
        print(await client.schema())
        async with await client.watch() as viewer:      # WHEP
            frame = await viewer.recv()                  # an av.VideoFrame
            print(frame.width, frame.height)
        await client.command("set_speed", speed=8)
        # A model that speaks (audio.output): the viewer hears it too.
        async with await client.watch(audio=True) as viewer:
            sound = await viewer.recv_audio()            # an av.AudioFrame, 48 kHz
        # A model that listens (audio.input): send sound, with or without video.
        tone = np.sin(2 * np.pi * 440 * np.arange(48000 * 5) / 48000) * 0.3
        async with await client.publish(audio=PcmTrack(tone, 48000)):
            await asyncio.sleep(5)

reactor.media.install(loopback=True)   # optional: the daemon's own aiortc behaviour
asyncio.run(main())
```

Built on aiortc and aiohttp. Neither importing this module nor making a `Client`
changes aiortc or aioice for the rest of the process. `reactor.media.install()` is
opt-in: call it once, before watching or sending, to get what the daemon's workers use:
frames decoded as soon as their last packet arrives (one frame interval sooner), DTLS
with RSA-certificate peers, and, with ``loopback=True`` for a daemon on this machine, ICE
kept to this machine as the daemon keeps it (loopback and this machine's own interface
addresses only, ``reactor.media.ice``). It applies process-wide, to every aiortc peer
connection made after it. Watching and sending use the STUN and
TURN servers the daemon names (``server.ice_servers``, read from the ``Link`` headers of
an ``OPTIONS`` request before the offer). For an ``https://`` daemon whose certificate
the system does not trust, pass ``ssl=ssl.create_default_context(cafile="cert.pem")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import deque
from collections.abc import AsyncGenerator
from ssl import SSLContext
from types import TracebackType
from typing import Any

import aiohttp
import av
from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection

from reactor.errors import CommandError, DaemonError, SessionError
from reactor.media.encoder import Codec
from reactor.media.frame_track import FrameTrack, file_track
from reactor.media.pcm_track import PcmTrack
from reactor.media.whip_client import (
    WhipError,
    delete_resource,
    received_audio,
    whep_watch,
    whip_publish,
)

__all__ = ["Client", "FrameTrack", "PcmTrack", "Publisher", "SessionError", "Viewer",
           "WhipError", "file_track"]

#: How often a viewer reports what it sees to the daemon (over its data channel).
REPORT_PERIOD_S = 1.0
#: How long after its session failed or ended a viewer waits for a new one (a worker's
#: restart is told within milliseconds) before `Viewer.recv` raises `SessionError`.
SESSION_GRACE_S = 1.0


class Viewer:
    """A WHEP session (watching): `await recv()` returns decoded `av.VideoFrame`s, and,
    when the model speaks and `Client.watch()` asked for sound, `await recv_audio()`
    returns its decoded `av.AudioFrame`s.

    Made by `Client.watch()`; use it as an async context manager, or call `close()`.
    aiortc queues every decoded frame until it is read: read both tracks you asked for.

    With a data channel (`Client.watch(report=True)`, the default) it tells the daemon
    once a second what it sees, as the web client does: frames read by `recv()`, their
    size and rate (`report()`). The daemon shows it in its status and metrics, with the
    round trip it measures itself from RTCP (aiortc's receiver knows no jitter-buffer or
    decode times, so those stay unreported).
    """

    def __init__(self, pc: RTCPeerConnection, track: MediaStreamTrack, resource: str,
                 token: str | None, ssl: SSLContext | bool = True,
                 audio_track: MediaStreamTrack | None = None,
                 channel: RTCDataChannel | None = None, asked_at: float | None = None,
                 early: list[object] | None = None) -> None:
        self.pc = pc
        self.track = track
        self.audio_track = audio_track
        """The received audio track; ``None`` when there is no sound."""
        self.resource = resource
        self.channel = channel
        """The ``events`` data channel: session events in, stats reports out."""
        self._token = token
        self._ssl = ssl
        self.frames = 0
        self._size = (0, 0)
        self._recent: deque[float] = deque(maxlen=240)  # monotonic() of recent frames
        self._reporter: asyncio.Task[None] | None = None
        # The watched session's end, from the daemon's events (see recv()).
        self._ended = asyncio.Event()
        self._end_reason = ""
        self._end_timer: asyncio.TimerHandle | None = None
        self._restarting = False
        # When the offer was sent (time.time(), the daemon's events' clock): events before
        # it are an earlier session's.
        self._joined = time.time() if asked_at is None else asked_at
        if channel is not None:
            self._reporter = asyncio.ensure_future(self._report_loop(channel))
            channel.on("message", self._on_event)
            if early is not None:  # what came while the connection was being set up
                channel.remove_listener("message", early.append)
                for text in early:
                    self._on_event(text)

    def _on_event(self, text: object) -> None:
        """One session event from the daemon (the data channel's JSON, as the page gets)."""
        try:
            ev = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            return
        if not isinstance(ev, dict) or (ev.get("ts") or self._joined) < self._joined - 1:
            return  # not an event, or one from before this viewer joined
        kind, reason, sid = ev.get("type"), ev.get("reason") or "", ev.get("session_id")
        raw = ev.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if kind == "started":
            self._restarting = False
            self._end_reason = ""
            self._ended.clear()
            if self._end_timer is not None:
                self._end_timer.cancel()
        elif kind == "worker" and data.get("state") == "restarting":
            self._restarting = True
        elif kind == "worker" and data.get("state") == "failed":
            self._end(f"the daemon gave up on its {data.get('worker', 'a')} worker: {reason}")
        elif kind in ("error", "ended"):
            what = "failed" if kind == "error" else "ended"
            self._end_reason = f"session {sid or '?'} {what}: {reason or 'no reason given'}"
            if self._end_timer is None or self._end_timer.cancelled():
                self._end_timer = asyncio.get_running_loop().call_later(
                    SESSION_GRACE_S, self._grace_over)

    def _grace_over(self) -> None:
        self._end_timer = None
        if self._end_reason and not self._restarting:
            self._ended.set()

    def _end(self, reason: str) -> None:
        self._end_reason = reason
        self._ended.set()

    async def recv(self) -> av.VideoFrame:
        """The next decoded frame of the model's output.

        Raises `SessionError` with the daemon's message once the session this viewer
        watches failed (the model raised) or ended and no other took its place within
        :data:`SESSION_GRACE_S` (a worker that restarts brings a new session, and its
        frames come to the same viewer); it needs the ``events`` data channel
        (``watch(report=True)``, the default). Raises aiortc's `MediaStreamError` once the
        stream has ended."""
        if self._ended.is_set():
            raise SessionError(self._end_reason)
        frame_wait = asyncio.ensure_future(self.track.recv())
        end_wait = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait((frame_wait, end_wait), return_when=asyncio.FIRST_COMPLETED)
        finally:
            end_wait.cancel()
            if not frame_wait.done():
                frame_wait.cancel()
        if not frame_wait.done() or frame_wait.cancelled():
            raise SessionError(self._end_reason)
        frame = frame_wait.result()
        assert isinstance(frame, av.VideoFrame)
        self.frames += 1
        self._size = (frame.width, frame.height)
        self._recent.append(time.monotonic())
        return frame

    def report(self) -> dict[str, Any]:
        """The stats report this viewer sends: frames read, their size, and the rate
        over the last second."""
        now = time.monotonic()
        fps = float(sum(1 for t in self._recent if now - t <= 1.0))
        msg: dict[str, Any] = {"type": "stats", "agent": "reactor.client",
                               "frames_decoded": self.frames, "fps": fps}
        if self.frames:
            msg["width"], msg["height"] = self._size
        return msg

    async def _report_loop(self, channel: RTCDataChannel) -> None:
        while channel.readyState != "closed":
            await asyncio.sleep(REPORT_PERIOD_S)
            if channel.readyState == "open":
                channel.send(json.dumps(self.report()))

    async def recv_audio(self) -> av.AudioFrame:
        """The next 20 ms of the model's sound: an `av.AudioFrame` as aiortc's Opus decoder
        gives it (s16, stereo, 48 kHz; ``frame.to_ndarray()`` is ``(1, 1920)``,
        interleaved). Raises `DaemonError` when this viewer has no sound (the model does
        not speak, or `watch(audio=False)`), aiortc's `MediaStreamError` once the stream
        has ended."""
        if self.audio_track is None:
            raise DaemonError("this viewer has no audio track: the daemon's model does not "
                              "speak (audio.output is off), or watch() was asked audio=False")
        frame = await self.audio_track.recv()
        assert isinstance(frame, av.AudioFrame)
        return frame

    async def close(self) -> None:
        """Leave: ``DELETE`` the resource and close the peer connection."""
        if self._reporter is not None:
            self._reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reporter
        try:
            await delete_resource(self.resource, self._token, ssl=self._ssl)
        finally:
            await self.pc.close()

    async def __aenter__(self) -> Viewer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Publisher:
    """A WHIP session sending a video track, a sound track, or both, to the model
    (`Client.publish()`).

    Use it as an async context manager, or call `close()` to stop sending.
    """

    def __init__(self, pc: RTCPeerConnection, resource: str, token: str | None,
                 ssl: SSLContext | bool = True) -> None:
        self.pc = pc
        self.resource = resource
        self._token = token
        self._ssl = ssl

    async def close(self) -> None:
        """Stop sending: `DELETE` the resource and close the peer connection."""
        try:
            await delete_resource(self.resource, self._token, ssl=self._ssl)
        finally:
            await self.pc.close()

    async def __aenter__(self) -> Publisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Client:
    """The daemon's HTTP API, WHIP and WHEP, from asyncio code.

    Args:
        url: The daemon's base URL, as `reactor daemon start` prints it.
        token: The daemon's `server.token`, when it has one (sent as a bearer token).
        ssl: For an ``https://`` URL: an `ssl.SSLContext` that trusts the daemon's
            certificate, ``True`` (the system's trust store, the default) or ``False``
            (no verification: only for a test certificate on a network you trust).

    Errors from the daemon raise `DaemonError`, or `CommandError` for a refused command.
    Use it as an async context manager, or call `close()`.

    Behind a balancer (a fleet of daemons with ``server.public_url``), the first `watch()`
    or `publish()` is placed on one daemon, whose answer names its own URL: from then on
    `url` is that daemon's, so every later request (commands, events, status, more
    viewers, DELETE) reaches the daemon that holds the session. A signed token
    (``reactor token``) works on every daemon of the fleet.

    Making a `Client` installs nothing process-wide; for the daemon's own aiortc/aioice
    behaviour (marker-bit frame completion; ICE kept to this machine for a loopback
    daemon) call `reactor.media.install()` once first (see the module docstring).
    """

    def __init__(self, url: str = "http://127.0.0.1:8081", token: str | None = None,
                 ssl: SSLContext | bool = True) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.ssl = ssl
        #: Sent with every WHIP and WHEP offer (``?key=``): with ``session.exclusive`` the
        #: session this client starts is held with it, so its own later offers join.
        self.session_key = secrets.token_urlsafe(18)
        self._http: aiohttp.ClientSession | None = None

    def _placed(self, public_url: str) -> None:
        # The daemon that took our offer; the balancer is not asked again.
        self.url = public_url.rstrip("/")

    def _endpoint(self, path: str) -> str:
        return f"{self.url}{path}?key={self.session_key}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (viewers and publishers close on their own)."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def http(self) -> aiohttp.ClientSession:
        """The `aiohttp` session used for API requests, made on first use."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self._http

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        try:
            async with self.http.request(method, self.url + path, json=body,
                                         headers=self._headers(), ssl=self.ssl) as resp:
                data = await resp.json(content_type=None)
                if resp.status == 200:
                    return data
                message = data.get("error", "") if isinstance(data, dict) else str(data)
                if resp.status in (404, 422) and path.startswith("/api/commands/"):
                    raise CommandError(message, field=data.get("field"), status=resp.status)
                raise DaemonError(f"{method} {path}: {resp.status} {message}")
        except aiohttp.ClientError as exc:
            raise DaemonError(f"{method} {self.url}{path} failed: {exc}") from exc

    async def schema(self) -> dict[str, Any]:
        """The model's name, video size, audio (``{"output", "input", "sample_rate",
        "channels"}``: whether it speaks and listens) and commands (``GET /api/schema``)."""
        result: dict[str, Any] = await self._json("GET", "/api/schema")
        return result

    async def status(self) -> dict[str, Any]:
        """The daemon's status object (``GET /api/status``)."""
        result: dict[str, Any] = await self._json("GET", "/api/status")
        return result

    async def command(self, name: str, **args: Any) -> Any:
        """Run a model command and return its result.

        Raises `CommandError` (with `field` and `status`) for an unknown command (404) or
        invalid arguments (422).
        """
        reply = await self._json("POST", f"/api/commands/{name}", args)
        return reply.get("result")

    async def watch(self, codec: Codec | None = None, *, audio: bool | None = None,
                    report: bool = True) -> Viewer:
        """Start watching the model's output (WHEP); `codec` asks for H.264 or VP8.

        `report`: open the ``events`` data channel and tell the daemon once a second what
        this viewer sees (see `Viewer`); ``False`` offers no data channel.

        `audio`: also receive the model's sound (`Viewer.recv_audio()`). ``None`` (the
        default) offers to receive it and gets it when the model speaks (``audio.output``:
        the daemon answers the offer's audio section ``inactive`` otherwise); ``False``
        never asks.
        """
        asked = audio is not False
        channels: list[RTCDataChannel] = []

        early: list[object] = []  # events that arrive before the Viewer exists

        def open_channel(pc: RTCPeerConnection) -> None:
            channel = pc.createDataChannel("events")
            channel.on("message", early.append)
            channels.append(channel)

        asked_at = time.time()
        pc, track, resource = await whep_watch(self._endpoint("/whep"), self.token, codec=codec,
                                               audio=asked, ssl=self.ssl,
                                               prepare=open_channel if report else None,
                                               placed=self._placed)
        return Viewer(pc, track, resource, self.token, self.ssl,
                      audio_track=received_audio(pc) if asked else None,
                      channel=channels[0] if channels else None, asked_at=asked_at,
                      early=early)

    async def publish(self, track: MediaStreamTrack | None = None, codec: Codec | None = None,
                      *, audio: MediaStreamTrack | None = None) -> Publisher:
        """Send a video track and/or a sound track (WHIP).

        The model's ``session.inputs()`` receives the video; ``session.audio_inputs()``
        the sound, when the daemon's config has ``audio.input: true`` (otherwise the daemon
        ignores it). `audio` is any aiortc audio track: a `PcmTrack` playing numpy
        samples, or a file's sound (``aiortc.contrib.media.MediaPlayer(path).audio``).
        """
        pc, resource = await whip_publish(self._endpoint("/whip"), track, self.token, codec=codec,
                                          audio=audio, ssl=self.ssl, placed=self._placed)
        return Publisher(pc, resource, self.token, self.ssl)

    async def events(self) -> AsyncGenerator[dict[str, Any], None]:
        """Session events and model messages as they arrive (``GET /api/events``)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            async with http.get(self.url + "/api/events", headers=self._headers(),
                                ssl=self.ssl) as resp:
                if resp.status != 200:
                    raise DaemonError(f"GET /api/events: {resp.status}")
                async for raw in resp.content:
                    line = raw.decode("utf-8", "replace").strip()
                    if line.startswith("data:"):
                        yield json.loads(line[5:])
