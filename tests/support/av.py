"""Sound against picture: beep onsets in PCM, flashes in frames, and the offset between them.

The beeping TestPattern (``configs/pattern-audio.yaml``) flashes its counter and the square
in its top right corner (:func:`reactor.examples.pattern.flash_box`) on one frame a second,
and a 1 kHz beep of 100 ms starts with that frame's first sample. A viewer that notes when
each beep starts and when each flash is shown, on one clock, measures how far sound and
picture are apart: ``offset = beep - flash`` (positive: the sound is late).

* :class:`OnsetDetector`: beep onsets in a stream of PCM blocks (the first sample above a
  threshold after a stretch of silence) and the tone's frequency from its zero crossings.
* :class:`FlashDetector`: the frames where the square turns white.
* :func:`pair_offsets`, :func:`offset_stats`: each beep against the nearest flash; p50/p99
  signed and absolute, and the drift (slope of the offset over time).
* :func:`file_av`: all of it for a recorded file (``reactor run --output x.mp4``): flash
  frame pts against beep onset sample.
* :data:`WATCH_JS`, :func:`start_watch`, :func:`read_watch`: the same in Chromium, on a page
  at the daemon's origin that does WHEP itself: an ``AudioWorklet`` on the remote audio
  finds the onsets (WebAudio time mapped to ``performance.now()`` with
  ``getOutputTimestamp()``), ``requestVideoFrameCallback`` reads the square of every frame
  shown (``expectedDisplayTime``, on ``performance.now()`` too). :func:`listen` puts the
  same ears on another page's media element (the web client's ``<video>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reactor.examples.pattern import flash_box

#: A beep starts at the first sample above this (of full scale; the beep peaks at 0.5) ...
THRESHOLD = 0.1
#: ... after at least this long below it (the beep lasts 100 ms, a second apart).
QUIET_S = 0.3
#: The tone's frequency is counted over this much of the beep from its onset.
TONE_WINDOW_S = 0.05
#: A flash is the square's mean level (0-255) crossing this upwards.
FLASH_LEVEL = 128.0


@dataclass
class Beep:
    t: float  # seconds on the caller's clock
    hz: float  # from zero crossings over TONE_WINDOW_S
    peak: float


@dataclass
class OnsetDetector:
    """Beep onsets in mono PCM fed block by block (``feed(samples, t0)``, ``t0`` = the time of
    the block's first sample). Blocks need not be contiguous: each carries its own time."""

    rate: int
    threshold: float = THRESHOLD
    quiet_s: float = QUIET_S
    beeps: list[Beep] = field(default_factory=list)
    _run: int = 0  # samples below the threshold so far (0 at the start: a stream that
    # opens inside a beep is not an onset)
    _pending: tuple[float, list[np.ndarray]] | None = None

    def feed(self, samples: np.ndarray, t0: float) -> list[Beep]:
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        found: list[Beep] = []
        quiet = int(self.quiet_s * self.rate)
        window = int(TONE_WINDOW_S * self.rate)
        if self._pending is not None:  # a beep that began at the end of the last block
            t_on, parts = self._pending
            parts.append(x)
            if sum(len(p) for p in parts) >= window:
                found.append(self._beep(t_on, np.concatenate(parts)[:window]))
                self._pending = None
        last = -1
        for i in np.flatnonzero(np.abs(x) > self.threshold).tolist():
            gap = self._run + i if last < 0 else i - last - 1
            if gap >= quiet and self._pending is None:
                t_on = t0 + i / self.rate
                if len(x) - i >= window:
                    found.append(self._beep(t_on, x[i : i + window]))
                else:
                    self._pending = (t_on, [x[i:]])
            last = i
        self._run = self._run + len(x) if last < 0 else len(x) - last - 1
        self.beeps.extend(found)
        return found

    def _beep(self, t: float, x: np.ndarray) -> Beep:
        crossings = int(np.count_nonzero(np.signbit(x[1:]) != np.signbit(x[:-1])))
        return Beep(t, crossings / 2 / (len(x) / self.rate), float(np.abs(x).max()))


def flash_level(gray: np.ndarray) -> float:
    """Mean level (0-255) of the middle of the pattern's flash square in a grey frame."""
    h, w = gray.shape[:2]
    rows, cols = flash_box(h, w)
    side = rows.stop - rows.start
    q = max(1, side // 4)
    return float(gray[rows.start + q : rows.stop - q, cols.start + q : cols.stop - q].mean())


@dataclass
class FlashDetector:
    """Times at which the square turns white (``feed(t, level)`` per frame, in order)."""

    level: float = FLASH_LEVEL
    flashes: list[float] = field(default_factory=list)
    frames: int = 0
    _white: bool = True  # a stream that opens on a flash frame is not an onset

    def feed(self, t: float, level: float) -> bool:
        self.frames += 1
        white = level > self.level
        onset = white and not self._white
        if onset:
            self.flashes.append(t)
        self._white = white
        return onset


def pair_offsets(beeps: list[float], flashes: list[float],
                 within_s: float = 0.4) -> list[tuple[float, float]]:
    """``(flash time, beep - flash in ms)`` for each beep with a flash within ``within_s``
    (the nearest one; beeps and flashes are a second apart, so the pairing is unambiguous)."""
    if not flashes:
        return []
    f = np.asarray(sorted(flashes))
    out: list[tuple[float, float]] = []
    for b in beeps:
        j = int(np.searchsorted(f, b))
        near = min((f[k] for k in (j - 1, j) if 0 <= k < len(f)), key=lambda x: abs(x - b))
        if abs(near - b) <= within_s:
            out.append((float(near), (b - float(near)) * 1000.0))
    return out


def offset_stats(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    """Signed and absolute offset percentiles (ms) and the drift: the least-squares slope of
    the offset over time (ms per minute) and what it adds up to over the span measured."""
    if not pairs:
        return {"n": 0}
    t = np.asarray([p[0] for p in pairs])
    off = np.asarray([p[1] for p in pairs])
    a = np.abs(off)
    out: dict[str, Any] = {
        "n": len(pairs),
        "span_s": round(float(t[-1] - t[0]), 1),
        "p1_ms": round(float(np.percentile(off, 1)), 1),
        "p50_ms": round(float(np.percentile(off, 50)), 1),
        "p99_ms": round(float(np.percentile(off, 99)), 1),
        "mean_ms": round(float(off.mean()), 1),
        "min_ms": round(float(off.min()), 1),
        "max_ms": round(float(off.max()), 1),
        "abs_p50_ms": round(float(np.percentile(a, 50)), 1),
        "abs_p99_ms": round(float(np.percentile(a, 99)), 1),
        "drift_ms_per_min": None, "drift_ms": None,
    }
    if len(pairs) >= 3 and t[-1] > t[0]:
        slope = float(np.polyfit(t - t[0], off, 1)[0]) * 60.0
        out["drift_ms_per_min"] = round(slope, 2)
        out["drift_ms"] = round(slope * float(t[-1] - t[0]) / 60.0, 1)
    return out


# -- files ------------------------------------------------------------------------------

def _mono(frame: Any) -> np.ndarray:
    """A decoded ``av.AudioFrame`` as mono float in [-1, 1] (the first channel)."""
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels)
    x = arr[0] if frame.format.is_planar else arr.reshape(-1)[::channels]
    if x.dtype == np.int16:
        return x.astype(np.float32) / 32768.0
    if x.dtype == np.int32:
        return x.astype(np.float32) / 2**31
    return x.astype(np.float32)


def file_av(path: Path) -> dict[str, Any]:
    """Decode a recorded file: beep onsets (audio pts + sample index) and flash frames (video
    pts), on the file's own timeline, paired; plus what the file holds."""
    import av

    with av.open(str(path)) as c:
        if not c.streams.video or not c.streams.audio:
            kinds = [s.type for s in c.streams]
            raise AssertionError(f"{path}: expected a video and an audio stream, found {kinds}")
        vs, aus = c.streams.video[0], c.streams.audio[0]
        onsets = OnsetDetector(aus.codec_context.sample_rate or 48000)
        flashes = FlashDetector()
        samples = 0
        for packet in c.demux(vs, aus):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame) and frame.time is not None:
                    flashes.feed(float(frame.time), flash_level(frame.to_ndarray(format="gray")))
                elif isinstance(frame, av.AudioFrame) and frame.time is not None:
                    x = _mono(frame)
                    samples += len(x)
                    onsets.feed(x, float(frame.time))
        info = {"video_codec": vs.codec_context.name, "audio_codec": aus.codec_context.name,
                "sample_rate": aus.codec_context.sample_rate, "frames": flashes.frames,
                "audio_s": round(samples / (aus.codec_context.sample_rate or 48000), 2)}
    beeps = [b.t for b in onsets.beeps]
    pairs = pair_offsets(beeps, flashes.flashes)
    return {**info, "beeps": len(beeps), "flashes": len(flashes.flashes),
            "beep_hz": round(float(np.median([b.hz for b in onsets.beeps])), 1)
            if onsets.beeps else None,
            "pairs": pairs, "offset": offset_stats(pairs)}


# -- Chromium -----------------------------------------------------------------------------

_LISTEN_FN = r"""
  // Beeps: an AudioWorklet on the stream's audio, onsets mapped to performance.now() with
  // getOutputTimestamp() (when that sample reaches the output). Chrome feeds WebRTC audio to
  // WebAudio only while the stream also plays in a media element.
  const avListen = (stream, av, {threshold, quietS, windowS}) => {
    const worklet = `
      class Onset extends AudioWorkletProcessor {
        constructor(o) {
          super();
          const p = o.processorOptions;
          this.thr = p.threshold; this.quiet = Math.round(p.quietS * sampleRate);
          this.window = Math.round(p.windowS * sampleRate);
          this.run = 0; this.count = -1; this.beat = 0; this.sq = 0; this.n = 0;
        }
        process(inputs) {
          const ch = inputs[0] && inputs[0][0];
          if (!ch) return true;
          for (let i = 0; i < ch.length; i++) {
            const x = ch[i], a = Math.abs(x);
            this.sq += x * x; this.n++;
            if (this.count >= 0) {
              if ((x < 0) !== (this.prev < 0)) this.zc++;
              this.prev = x; this.peak = Math.max(this.peak, a);
              if (++this.count >= this.window) {
                this.port.postMessage({frame: this.onset, crossings: this.zc, peak: this.peak,
                                       seconds: this.window / sampleRate});
                this.count = -1;
              }
            }
            if (a > this.thr) {
              if (this.run >= this.quiet && this.count < 0) {
                this.onset = currentFrame + i; this.count = 1; this.zc = 0; this.prev = x;
                this.peak = a;
              }
              this.run = 0;
            } else this.run++;
          }
          if (this.n >= sampleRate) {
            this.port.postMessage({heartbeat: true, rms: Math.sqrt(this.sq / this.n)});
            this.sq = 0; this.n = 0;
          }
          return true;
        }
      }
      registerProcessor('onset', Onset);`;
    const ctx = window.avCtx = new AudioContext({latencyHint: 'interactive'});
    const url = URL.createObjectURL(new Blob([worklet], {type: 'application/javascript'}));
    return ctx.audioWorklet.addModule(url).then(() => {
      const node = new AudioWorkletNode(ctx, 'onset', {
        processorOptions: {threshold, quietS, windowS}});
      node.port.onmessage = (e) => {
        const m = e.data;
        if (m.heartbeat) { av.heartbeats++; av.rms = m.rms; return; }
        const ts = ctx.getOutputTimestamp();  // where the output is now, on both clocks
        if (!ts.performanceTime) { av.errors.push('no output timestamp yet'); return; }
        av.beeps.push({t: ts.performanceTime + (m.frame / ctx.sampleRate - ts.contextTime) * 1000,
                       hz: m.crossings / 2 / m.seconds, peak: m.peak});
      };
      ctx.createMediaStreamSource(stream).connect(node);
      node.connect(ctx.destination);  // pulled by the graph; it outputs silence
      av.audio = {state: ctx.state, rate: ctx.sampleRate, baseLatency: ctx.baseLatency,
                  outputLatency: ctx.outputLatency};
    }).catch((e) => av.errors.push(`worklet: ${e}`));
  };
"""

#: Runs on a page at the daemon's origin (``/healthz`` will do): WHEP with video and audio
#: (``fetch('/whep')``), the stream in a muted ``<video>``, flashes read on every frame shown,
#: and a button (``#av-start``) whose click (a user gesture, for autoplay) unmutes the video
#: and starts the AudioContext and its onset worklet. Everything lands in ``window.av``.
WATCH_JS = r"""
async ({lowLatency, threshold, quietS, windowS, flashLevel}) => {
""" + _LISTEN_FN + r"""
  document.documentElement.innerHTML = '<head></head><body></body>';  // whatever was shown
  const av = window.av = {state: 'new', beeps: [], flashes: [], frames: 0, skipped: 0,
                          audio: null, heartbeats: 0, rms: 0, errors: []};
  const pc = window.avPc = new RTCPeerConnection();
  const low = (r) => { if (lowLatency && 'jitterBufferTarget' in r) r.jitterBufferTarget = 0; };
  low(pc.addTransceiver('video', {direction: 'recvonly'}).receiver);
  low(pc.addTransceiver('audio', {direction: 'recvonly'}).receiver);
  const stream = new MediaStream();
  pc.ontrack = (e) => { stream.addTrack(e.track); };
  pc.onconnectionstatechange = () => { av.state = pc.connectionState; };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {  // non-trickle: every candidate in the offer
    if (pc.iceGatheringState === 'complete') return resolve();
    const timer = setTimeout(resolve, 3000);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); }
    });
  });
  const res = await fetch('/whep', {method: 'POST', body: pc.localDescription.sdp,
                                    headers: {'Content-Type': 'application/sdp'}});
  const answer = await res.text();
  if (res.status !== 201) throw new Error(`POST /whep answered ${res.status}: ${answer}`);
  av.resource = new URL(res.headers.get('Location'), location.href).href;
  const audioSection = answer.split(/\r?\n(?=m=)/).find((m) => m.startsWith('m=audio')) || '';
  av.answerHasAudio = /^a=(sendonly|sendrecv)/m.test(audioSection);  // the daemon sends sound
  await pc.setRemoteDescription({type: 'answer', sdp: answer});

  const video = window.avVideo = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true;
  video.srcObject = stream;
  document.body.appendChild(video);
  video.play().catch((e) => av.errors.push(`play: ${e}`));

  // Flashes: the middle of the top-right square (reactor.examples.pattern.flash_box) of
  // each frame shown, on performance.now() via expectedDisplayTime.
  const canvas = document.createElement('canvas');
  const g = canvas.getContext('2d', {willReadFrequently: true});
  let white = true, lastPresented = null;
  const onFrame = (now, meta) => {
    const w = video.videoWidth, h = video.videoHeight;
    if (w && h) {
      const side = Math.max(8, Math.floor(h / 6));
      const margin = 2 * Math.max(2, Math.floor(h / 120));
      const q = Math.max(1, Math.floor(side / 4)), s = side - 2 * q;
      if (canvas.width !== s) { canvas.width = s; canvas.height = s; }
      g.drawImage(video, w - margin - side + q, margin + q, s, s, 0, 0, s, s);
      const d = g.getImageData(0, 0, s, s).data;
      let sum = 0;
      for (let i = 0; i < d.length; i += 4)
        sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
      const level = sum / (d.length / 4);
      const isWhite = level > flashLevel;
      if (isWhite && !white) av.flashes.push(meta.expectedDisplayTime);
      white = isWhite;
      av.frames++;
      if (lastPresented !== null && meta.presentedFrames > lastPresented + 1)
        av.skipped += meta.presentedFrames - lastPresented - 1;
      lastPresented = meta.presentedFrames;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);

  const button = document.createElement('button');
  button.id = 'av-start'; button.textContent = 'start audio';
  document.body.prepend(button);
  button.onclick = () => {  // a user gesture: sound may play
    video.muted = false;
    video.play().catch((e) => av.errors.push(`play unmuted: ${e}`));
    avListen(stream, av, {threshold, quietS, windowS});
  };
  return av.answerHasAudio;
}
"""


#: Listens to what a page's media element (``element``: its id) plays, into ``window.av``
#: (beeps on ``performance.now()``, a heartbeat with the RMS level every second).
LISTEN_JS = r"""
({element, threshold, quietS, windowS}) => {
""" + _LISTEN_FN + r"""
  const av = window.av = {beeps: [], audio: null, heartbeats: 0, rms: 0, errors: []};
  const el = document.getElementById(element);
  avListen(el.srcObject, av, {threshold, quietS, windowS});
}
"""


def listen(page: Any, element: str = "video", timeout_s: float = 20) -> None:
    """Start WebAudio listening to the stream element ``element`` of ``page`` plays, once
    the page has had a user gesture (autoplay policy), and wait until it runs."""
    page.evaluate(LISTEN_JS, {"element": element, "threshold": THRESHOLD, "quietS": QUIET_S,
                              "windowS": TONE_WINDOW_S})
    page.wait_for_function("window.av.heartbeats > 0 || window.av.errors.length > 0",
                           timeout=timeout_s * 1000)


def start_watch(page: Any, *, low_latency: bool = True, timeout_s: float = 30) -> bool:
    """Run :data:`WATCH_JS` on ``page`` (already at the daemon's origin), wait until it is
    connected and showing frames, click its button and wait until WebAudio runs. Returns
    whether the daemon's answer carried audio."""
    has_audio = bool(page.evaluate(WATCH_JS, {
        "lowLatency": low_latency, "threshold": THRESHOLD, "quietS": QUIET_S,
        "windowS": TONE_WINDOW_S, "flashLevel": FLASH_LEVEL}))
    page.wait_for_function("window.av.state === 'connected' && window.av.frames > 5",
                           timeout=timeout_s * 1000)
    page.click("#av-start")
    page.wait_for_function("window.av.heartbeats > 0 || window.av.errors.length > 0",
                           timeout=timeout_s * 1000)
    return has_audio


def read_watch(page: Any) -> dict[str, Any]:
    """What the page has seen so far (times in ms on its ``performance.now()``)."""
    got: dict[str, Any] = page.evaluate(
        "() => ({...window.av, now: performance.now(), video: window.avVideo ? "
        "{w: window.avVideo.videoWidth, h: window.avVideo.videoHeight} : null})")
    return got


def receive_stats(page: Any) -> dict[str, Any]:
    """The page's inbound-rtp figures per kind (from ``getStats``): the mean jitter-buffer
    delay (ms, what Chromium held each sample or frame before playing it) and its target,
    losses, for audio the share of concealed samples, and ``playout_audio_late_ms``:
    Chromium's own view of the offset now, from each receiver's
    ``estimatedPlayoutTimestamp`` (sender-report time of what it plays)."""
    got: dict[str, Any] = page.evaluate("""async () => {
      const out = {};
      (await window.avPc.getStats()).forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        const n = s.jitterBufferEmittedCount || 0;
        out[s.kind] = {
          jitter_buffer_ms: n ? Math.round(s.jitterBufferDelay / n * 10000) / 10 : null,
          jitter_buffer_target_ms: n && s.jitterBufferTargetDelay !== undefined
            ? Math.round(s.jitterBufferTargetDelay / n * 10000) / 10 : null,
          packets_lost: s.packetsLost, packets: s.packetsReceived,
          concealed: s.kind === 'audio' && s.totalSamplesReceived
            ? Math.round(s.concealedSamples / s.totalSamplesReceived * 10000) / 10000 : undefined,
          frames_dropped: s.framesDropped,
          playout_ntp_ms: s.estimatedPlayoutTimestamp,
        };
      });
      return out;
    }""")
    a, v = got.get("audio", {}), got.get("video", {})
    if a.get("playout_ntp_ms") and v.get("playout_ntp_ms"):
        # What each receiver plays now, as NTP time of its sender: video's minus audio's is
        # how late Chromium itself thinks the sound is (positive: late).
        got["playout_audio_late_ms"] = round(v["playout_ntp_ms"] - a["playout_ntp_ms"], 1)
    return got


def watch_offsets(seen: dict[str, Any], skip_s: float = 0.0) -> list[tuple[float, float]]:
    """``(flash time s, offset ms)`` pairs from :func:`read_watch`'s result, leaving out the
    first ``skip_s`` seconds from the first beep (Chromium's lip sync still settling)."""
    beeps = [b["t"] / 1000.0 for b in seen["beeps"]]
    start = beeps[0] + skip_s if beeps else 0.0
    return pair_offsets([b for b in beeps if b >= start], [t / 1000.0 for t in seen["flashes"]])
