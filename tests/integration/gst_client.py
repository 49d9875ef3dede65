#!/usr/bin/python3
"""A WHIP sender or WHEP viewer built on GStreamer's ``webrtcbin``: a second WebRTC stack.

Run with Debian's ``/usr/bin/python3`` (it has ``gi``; reactor's venv does not)::

    /usr/bin/python3 tests/integration/gst_client.py --mode whep --url http://127.0.0.1:8081 \
        --seconds 5 --codec h264 [--audio --pcm sound.f32]

It makes one non-trickle offer (every candidate in the SDP), POSTs it (RFC 9725), applies
the answer, runs for ``--seconds``, DELETEs the resource and prints one JSON line: frames,
fps, size and centre colour received (WHEP), packets sent (WHIP), and the ICE and DTLS
states seen. With ``--audio`` the WHEP offer also receives Opus: decoded, converted to mono
float32 at 48 kHz and written to ``--pcm`` (raw samples; ``audio_samples`` counts them).
Exit status 0 when media flowed, 1 otherwise (an HTTP error included: the JSON then
carries ``http_status``).

Handshake notes (GStreamer 1.22, libnice 0.1.21, against aiortc):

- ICE: the client is stock (no added local addresses, ICE-TCP left on). libnice gathers
  host candidates on every interface *except* loopback; a daemon bound to 127.0.0.1 also
  offers this machine's interface addresses and answers checks from this machine's own
  addresses (``reactor.media.ice``), so libnice pairs its interface address with ours and
  the packets stay on this machine.
- DTLS: webrtcbin holds an RSA certificate; the daemon accepts ECDHE-RSA suites
  (``reactor.media.dtls``), otherwise the handshake ends in "no shared cipher".
- H.264: the daemon answers H.264 only with packetization-mode=1 and a (constrained)
  baseline profile, so the encoder output and the receive caps say exactly that.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

H264_RTP_CAPS = ("application/x-rtp,media=video,encoding-name=H264,payload=96,"
                 "clock-rate=90000,packetization-mode=(string)1,"
                 "profile-level-id=(string)42e01f")
VP8_RTP_CAPS = "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000"
OPUS_RTP_CAPS = ("application/x-rtp,media=audio,encoding-name=OPUS,payload=111,"
                 "clock-rate=48000,encoding-params=(string)2")
AUDIO_RATE = 48000


class HttpError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status
        self.body = body


def http(method: str, url: str, token: str | None, body: bytes | None = None,
         timeout: float = 15.0) -> tuple[int, dict[str, str], str]:
    headers = {"Content-Type": "application/sdp"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise HttpError(exc.code, exc.read().decode("utf-8", "replace")) from None


class GstClient:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.endpoint = args.url.rstrip("/") + ("/whip" if args.mode == "whip" else "/whep")
        self.loop = GLib.MainLoop()
        self.result: dict[str, Any] = {"mode": args.mode, "codec": args.codec}
        self.result["frames" if args.mode == "whep" else "frames_sent"] = 0
        self.errors: list[str] = []
        self.resource: str | None = None
        self.answered_at: float | None = None
        self.frame_times: list[float] = []
        self.pcm = bytearray()  # --audio: mono float32 at AUDIO_RATE
        self.ice_states: list[str] = []
        self.conn_states: list[str] = []
        self.lock = threading.Lock()
        self.pipeline = self._build()

    # -- pipeline ---------------------------------------------------------------------------

    def _build(self) -> Gst.Pipeline:
        a = self.args
        if a.mode == "whip":
            if a.codec == "h264":
                enc = (f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={a.fps} "
                       "bitrate=4000 ! video/x-h264,profile=constrained-baseline ! "
                       "rtph264pay name=pay config-interval=-1 aggregate-mode=zero-latency ! "
                       "application/x-rtp,media=video,encoding-name=H264,payload=96")
            else:
                enc = (f"vp8enc deadline=1 keyframe-max-dist={a.fps} target-bitrate=4000000 ! "
                       f"rtpvp8pay name=pay ! {VP8_RTP_CAPS}")
            desc = (f"videotestsrc is-live=true pattern={a.pattern} "
                    f"foreground-color={a.color} ! "
                    f"video/x-raw,width={a.width},height={a.height},framerate={a.fps}/1 ! "
                    f"videoconvert ! queue ! {enc} ! "
                    "webrtcbin name=webrtc")
            pipeline = Gst.parse_launch(desc)
        else:
            # Decoding elements are added next to webrtcbin as its pads appear, so it must
            # sit directly in the pipeline (parse_launch of one element gives no pipeline).
            pipeline = Gst.Pipeline.new("client")
            pipeline.add(Gst.ElementFactory.make("webrtcbin", "webrtc"))
        self.webrtc = pipeline.get_by_name("webrtc")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        if a.mode == "whip":
            pay = pipeline.get_by_name("pay")
            pay.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, self._on_encoded)
            for t in self._transceivers():
                t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        else:
            caps = Gst.Caps.from_string(H264_RTP_CAPS if a.codec == "h264" else VP8_RTP_CAPS)
            self.webrtc.emit("add-transceiver",
                             GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, caps)
            if a.audio:
                self.webrtc.emit("add-transceiver",
                                 GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
                                 Gst.Caps.from_string(OPUS_RTP_CAPS))
            self.webrtc.connect("pad-added", self._on_pad_added)
        self.webrtc.connect("on-negotiation-needed", self._on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering)
        self.webrtc.connect("notify::ice-connection-state", self._on_state)
        self.webrtc.connect("notify::connection-state", self._on_state)
        bus = pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self._on_error)
        return pipeline

    def _transceivers(self) -> list[GstWebRTC.WebRTCRTPTransceiver]:
        out = []
        i = 0
        while (t := self.webrtc.emit("get-transceiver", i)) is not None:
            out.append(t)
            i += 1
        return out

    def _on_pad_added(self, _webrtc: Gst.Element, pad: Gst.Pad) -> None:
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        queue = Gst.ElementFactory.make("queue")
        dec = Gst.ElementFactory.make("decodebin")
        for element in (queue, dec):
            self.pipeline.add(element)

        def on_decoded_pad(_dec: Gst.Element, dpad: Gst.Pad) -> None:
            # decodebin exposes its output pad once it has seen the stream's caps.
            caps = dpad.get_current_caps() or dpad.query_caps(None)
            kind = caps.get_structure(0).get_name()
            if kind.startswith("video/"):
                tail = Gst.parse_bin_from_description(
                    "videoconvert ! video/x-raw,format=RGB ! "
                    "appsink name=sink emit-signals=true sync=false max-buffers=2 drop=true",
                    True)
                tail.get_by_name("sink").connect("new-sample", self._on_sample)
            elif kind.startswith("audio/"):
                tail = Gst.parse_bin_from_description(
                    "audioconvert ! audioresample ! "
                    f"audio/x-raw,format=F32LE,rate={AUDIO_RATE},channels=1,layout=interleaved"
                    " ! appsink name=sink emit-signals=true sync=false", True)
                tail.get_by_name("sink").connect("new-sample", self._on_audio_sample)
            else:
                return
            self.pipeline.add(tail)
            tail.sync_state_with_parent()
            dpad.link(tail.get_static_pad("sink"))

        dec.connect("pad-added", on_decoded_pad)
        queue.link(dec)
        for element in (dec, queue):
            element.sync_state_with_parent()
        if pad.link(queue.get_static_pad("sink")) != Gst.PadLinkReturn.OK:
            self._fail(f"cannot link webrtcbin's {pad.get_name()} to a decoder")

    def _on_encoded(self, _pad: Gst.Pad, _info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        # One buffer into the payloader is one encoded frame; count those sent once
        # connected (before that webrtcbin drops them).
        if self.answered_at is not None:
            with self.lock:
                self.result["frames_sent"] = self.result.get("frames_sent", 0) + 1
        return Gst.PadProbeReturn.OK

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        now = time.monotonic()
        s = sample.get_caps().get_structure(0)
        w, h = s.get_value("width"), s.get_value("height")
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        if ok:
            try:
                stride = (w * 3 + 3) & ~3  # GStreamer pads RGB rows to 4 bytes
                off = (h // 2) * stride + (w // 2) * 3
                rgb = list(info.data[off : off + 3])
            finally:
                buf.unmap(info)
        else:
            rgb = None
        with self.lock:
            self.frame_times.append(now)
            self.result.update(width=w, height=h, centre_rgb=rgb)
        return Gst.FlowReturn.OK

    def _on_audio_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        buf = sink.emit("pull-sample").get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        if ok:
            try:
                with self.lock:
                    self.pcm.extend(info.data)
            finally:
                buf.unmap(info)
        return Gst.FlowReturn.OK

    # -- signalling -------------------------------------------------------------------------

    def _on_negotiation_needed(self, _webrtc: Gst.Element) -> None:
        if "offer_sent" in self.result:
            return
        self.result["offer_sent"] = False
        promise = Gst.Promise.new_with_change_func(self._on_offer_created, None)
        self.webrtc.emit("create-offer", None, promise)

    def _on_offer_created(self, promise: Gst.Promise, _data: object) -> None:
        promise.wait()
        # Hold the reply while its offer is in use: the offer is borrowed from it, and a
        # temporary reply wrapper frees the structure (and the offer's SDP) with it.
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def _on_gathering(self, webrtc: Gst.Element, _pspec: object) -> None:
        state = webrtc.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and not self.result["offer_sent"]:
            self.result["offer_sent"] = True
            # Non-trickle: the local description now carries every gathered candidate.
            sdp = webrtc.get_property("local-description").sdp.as_text()
            self.result["offer_candidates"] = sdp.count("a=candidate:")
            threading.Thread(target=self._post_offer, args=(sdp,), daemon=True).start()

    def _post_offer(self, sdp: str) -> None:
        try:
            status, headers, answer = http("POST", self.endpoint, self.args.token,
                                           sdp.encode())
        except HttpError as exc:
            self.result["http_status"] = exc.status
            self._fail(f"POST {self.endpoint}: {exc}")
            return
        except OSError as exc:
            self._fail(f"POST {self.endpoint}: {exc}")
            return
        self.result["http_status"] = status
        location = headers.get("Location") or headers.get("location")
        if location:
            self.resource = urllib.parse.urljoin(self.endpoint, location)
        if status != 201:
            self._fail(f"POST {self.endpoint}: expected 201, got {status}")
            return
        GLib.idle_add(self._apply_answer, answer)

    def _apply_answer(self, answer: str) -> bool:
        self.result["answer_candidates"] = answer.count("a=candidate:")
        res, msg = GstSdp.SDPMessage.new_from_text(answer)
        if res != GstSdp.SDPResult.OK:
            self._fail(f"cannot parse the answer SDP ({res})")
            return False
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        # webrtcbin adds the a=candidate lines of a remote description itself.
        self.webrtc.emit("set-remote-description", desc, Gst.Promise.new())
        self.answered_at = time.monotonic()
        GLib.timeout_add(int(self.args.seconds * 1000), self._finish)
        return False

    def _on_state(self, webrtc: Gst.Element, pspec: Any) -> None:
        value = webrtc.get_property(pspec.name)
        name = value.value_nick
        states = self.ice_states if pspec.name == "ice-connection-state" else self.conn_states
        if not states or states[-1] != name:
            states.append(name)
        if name == "failed":
            GLib.idle_add(self._fail, f"{pspec.name} failed")

    def _on_error(self, _bus: Gst.Bus, msg: Gst.Message) -> None:
        err, debug = msg.parse_error()
        self._fail(f"{msg.src.get_name()}: {err.message} ({debug})")

    def _fail(self, why: str) -> bool:
        self.errors.append(why)
        GLib.idle_add(self.loop.quit)
        return False

    # -- results ----------------------------------------------------------------------------

    def _dtls_state(self) -> str | None:
        for t in self._transceivers():
            part = t.get_property("sender" if self.args.mode == "whip" else "receiver")
            transport = part.get_property("transport") if part else None
            if transport is not None:
                return str(transport.get_property("state").value_nick)
        return None

    def _stats(self) -> dict[str, Any]:
        promise = Gst.Promise.new()
        self.webrtc.emit("get-stats", None, promise)
        if promise.wait() != Gst.PromiseResult.REPLIED:
            return {}
        out: dict[str, Any] = {}

        def each(_field: int, value: Any, _data: object) -> bool:
            if isinstance(value, Gst.Structure):
                name = value.get_name()
                if name == "outbound-rtp" and self.args.mode == "whip":
                    out["packets_sent"] = value.get_value("packets-sent")
                    out["bytes_sent"] = value.get_value("bytes-sent")
                elif name == "inbound-rtp" and self.args.mode == "whep":
                    out["packets_received"] = value.get_value("packets-received")
            return True

        promise.get_reply().foreach(each, None)
        return out

    def _finish(self) -> bool:
        self.result["dtls_state"] = self._dtls_state()
        self.result.update(self._stats())
        self.loop.quit()
        return False

    def run(self) -> int:
        self.pipeline.set_state(Gst.State.PLAYING)
        # A hard stop, whatever happens in signalling or ICE.
        GLib.timeout_add(int((self.args.seconds + self.args.setup_timeout) * 1000),
                         self._fail, "timed out")
        self.loop.run()
        if "dtls_state" not in self.result:
            self.result["dtls_state"] = self._dtls_state()
        self.pipeline.set_state(Gst.State.NULL)
        if self.resource:
            try:
                self.result["delete_status"] = http("DELETE", self.resource, self.args.token)[0]
            except (HttpError, OSError) as exc:
                self.errors.append(f"DELETE {self.resource}: {exc}")
        with self.lock:
            times = list(self.frame_times)
        if self.args.mode == "whep":
            self.result["frames"] = len(times)
        if self.args.audio:
            with self.lock:
                pcm = bytes(self.pcm)
            self.result.update(audio_samples=len(pcm) // 4, audio_rate=AUDIO_RATE)
            if self.args.pcm:
                with open(self.args.pcm, "wb") as f:
                    f.write(pcm)
        if len(times) > 1:
            self.result["fps"] = round((len(times) - 1) / (times[-1] - times[0]), 2)
        if times and self.answered_at is not None:
            self.result["first_frame_s"] = round(times[0] - self.answered_at, 3)
            if self.args.frame_times:
                self.result["frame_times"] = [round(t - self.answered_at, 4) for t in times]
        self.result["ice_states"] = self.ice_states
        self.result["connection_states"] = self.conn_states
        if self.answered_at is not None and "connected" not in self.conn_states:
            self.errors.append(f"never connected (ICE {self.ice_states}, DTLS "
                               f"{self.result['dtls_state']})")
        self.result["errors"] = self.errors
        ok = not self.errors
        ok = ok and (self.result["frames"] > 0 if self.args.mode == "whep"
                     else self.result.get("packets_sent", 0) > 0)
        self.result["ok"] = ok
        print(json.dumps(self.result), flush=True)
        return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("whip", "whep"), required=True)
    p.add_argument("--url", required=True, help="the daemon's base URL")
    p.add_argument("--seconds", type=float, default=5.0, help="how long to stream")
    p.add_argument("--codec", choices=("h264", "vp8"), default="h264")
    p.add_argument("--token", default=None, help="bearer token for the daemon")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--pattern", default="solid-color", help="videotestsrc pattern (WHIP)")
    p.add_argument("--color", default="0xff00ff00",
                   help="videotestsrc foreground-color, 0xAARRGGBB (WHIP)")
    p.add_argument("--audio", action="store_true",
                   help="WHEP: receive the audio track too (Opus)")
    p.add_argument("--pcm", default=None,
                   help="with --audio: write the decoded sound here (mono float32 48 kHz)")
    p.add_argument("--frame-times", action="store_true",
                   help="WHEP: list when each frame was decoded (s after the answer)")
    p.add_argument("--setup-timeout", type=float, default=20.0,
                   help="seconds allowed for signalling and ICE on top of --seconds")
    args = p.parse_args(argv)
    Gst.init(None)
    return GstClient(args).run()


if __name__ == "__main__":
    sys.exit(main())
