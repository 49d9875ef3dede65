// The browser section's canvas echo (tools/bench_browser.py): a 1280x720 canvas numbered
// frame by frame is sent over WHIP and watched back over WHEP; every frame the <video>
// shows is read back in requestVideoFrameCallback. One clock: this page's performance.now().
//
//   await echo.start(base, {draw, capture, codec, minKbps})
//     draw: "raf" (requestAnimationFrame) or "timer" (setInterval); capture: "request"
//     (captureStream(0) + requestFrame() after each draw), "auto" (captureStream()) or
//     "fps" (captureStream(30)); codec: "h264", "vp8" or "" (the browser's order)  connect both peer connections
//   await echo.mark(seconds)                        start the measured window (stats snapshot)
//   await echo.finish()                             the window's samples and stats deltas
//
// The number: two rows of 16 blocks of 64x48 px (the number, then its complement), as
// tests/support/tracks.py draws it for aiortc senders: it survives H.264 and VP8.
"use strict";
(() => {
  const W = 1280, H = 720, BW = 64, BH = 48, BITS = 16, FPS = 30;
  const S = {
    sent: new Map(),   // number -> performance.now() just after the canvas was drawn
    shown: [],         // [number, rVFC now, expectedDisplayTime, presentationTime, receiveTime]
    unreadable: 0,
    drawn: 0,
    drawTimes: [],     // performance.now() of every draw (for the draw rate)
    missed: [],        // [performance.now(), ticks] where the page skipped ticks
    log: [],
  };

  // A scrolling texture of random 16 px blocks under the number: motion for the encoder.
  const tex = document.createElement("canvas");
  tex.width = W * 2; tex.height = H;
  {
    const g = tex.getContext("2d");
    let seed = 11;
    const rnd = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff; };
    for (let y = 0; y < H; y += 16) {
      for (let x = 0; x < W; x += 16) {
        const v = 40 + Math.floor(rnd() * 176);
        g.fillStyle = `rgb(${v},${v},${v})`;
        g.fillRect(x, y, 16, 16);
      }
    }
    g.drawImage(tex, 0, 0, W, H, W, 0, W, H);  // the second half repeats the first
  }

  const canvas = document.createElement("canvas");
  canvas.width = W; canvas.height = H;
  canvas.style.width = "320px";
  const g = canvas.getContext("2d");

  function draw(n) {
    g.drawImage(tex, (4 * n) % W, 0, W, H, 0, 0, W, H);
    const values = [n & 0xffff, ~n & 0xffff];
    for (let row = 0; row < 2; row++) {
      for (let bit = 0; bit < BITS; bit++) {
        const on = (values[row] >> (BITS - 1 - bit)) & 1;
        g.fillStyle = on ? "#ebebeb" : "#101010";
        g.fillRect(bit * BW, row * BH, BW, BH);
      }
    }
  }

  const reader = document.createElement("canvas");
  reader.width = BITS * BW; reader.height = 2 * BH;
  const rg = reader.getContext("2d", { willReadFrequently: true });

  function readNumber(video) {
    rg.drawImage(video, 0, 0, BITS * BW, 2 * BH, 0, 0, BITS * BW, 2 * BH);
    const d = rg.getImageData(0, 0, BITS * BW, 2 * BH).data;
    const rows = [];
    for (let row = 0; row < 2; row++) {
      let v = 0;
      const cy = row * BH + BH / 2;
      for (let bit = 0; bit < BITS; bit++) {
        const cx = bit * BW + BW / 2;
        let sum = 0;
        for (let dy = -4; dy < 4; dy += 2) {
          for (let dx = -4; dx < 4; dx += 2) sum += d[((cy + dy) * BITS * BW + cx + dx) * 4];
        }
        v = (v << 1) | (sum / 16 > 128 ? 1 : 0);
      }
      rows.push(v);
    }
    return rows[0] === (~rows[1] & 0xffff) ? rows[0] : null;
  }

  let stopDrawing = false;
  function startDrawing(mode, track) {
    const t0 = performance.now();
    let n = 0;
    const tick = () => {
      if (stopDrawing) return;
      const now = performance.now();
      // Draw the frame of the current 1/30 s tick once it has come; ticks the page missed
      // (a stalled main thread) are skipped and counted, never drawn late in a burst.
      const due = Math.floor(((now - t0) * FPS) / 1000);
      if (due >= n) {
        if (due > n) S.missed.push([now, due - n]);
        n = due;
        draw(n);
        const t = performance.now();
        S.sent.set(n & 0xffff, t);
        S.drawTimes.push(t);
        S.drawn++;
        n++;
        if (track && track.requestFrame) track.requestFrame();
      }
      if (mode === "raf") requestAnimationFrame(tick);
    };
    if (mode === "raf") requestAnimationFrame(tick);
    else S.timer = setInterval(tick, 1000 / FPS / 4);
  }

  async function gathered(pc) {
    if (pc.iceGatheringState === "complete") return;
    await new Promise((resolve) => {
      const t = setTimeout(resolve, 5000);  // send what we have after 5 s
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(t); resolve(); }
      });
    });
  }

  function preferCodec(transceiver, kind, codec) {
    if (!codec || !RTCRtpSender.getCapabilities) return;
    const caps = (kind === "send" ? RTCRtpSender : RTCRtpReceiver).getCapabilities("video");
    if (!caps) return;
    const want = caps.codecs.filter((c) => c.mimeType.toLowerCase() === `video/${codec}`);
    const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== `video/${codec}`);
    if (!want.length) throw new Error(`this browser has no ${codec} ${kind}er`);
    transceiver.setCodecPreferences([...want, ...rest]);
  }

  // A floor under the sender's bandwidth estimate (x-google-min/start-bitrate on the video
  // codecs of the answer), for a server whose own estimate would throttle the sender.
  function withMinBitrate(sdp, kbps) {
    const lines = sdp.split("\r\n");
    const pts = lines.map((l) => /^a=rtpmap:(\d+) (VP8|VP9|H264|AV1)\//i.exec(l))
      .filter(Boolean).map((m) => m[1]);
    const extra = `x-google-min-bitrate=${kbps};x-google-start-bitrate=${kbps}`;
    const out = [];
    for (const l of lines) {
      const m = /^a=fmtp:(\d+) /.exec(l);
      out.push(m && pts.includes(m[1]) ? `${l};${extra}` : l);
      const r = /^a=rtpmap:(\d+) /.exec(l);
      if (r && pts.includes(r[1]) && !lines.some((x) => x.startsWith(`a=fmtp:${r[1]} `))) {
        out.push(`a=fmtp:${r[1]} ${extra}`);
      }
    }
    return out.join("\r\n");
  }

  async function negotiate(pc, endpoint, minKbps) {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const res = await fetch(endpoint, {
      method: "POST", headers: { "Content-Type": "application/sdp" },
      body: pc.localDescription.sdp,
    });
    if (res.status !== 201) throw new Error(`${endpoint}: HTTP ${res.status} ${await res.text()}`);
    let answer = await res.text();
    if (minKbps) answer = withMinBitrate(answer, minKbps);
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    const loc = res.headers.get("Location");
    return loc ? new URL(loc, endpoint).href : null;
  }

  function connected(pc, what) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (pc.connectionState === "connected") resolve();
        if (pc.connectionState === "failed") reject(new Error(`${what}: ICE/DTLS failed`));
      };
      pc.addEventListener("connectionstatechange", check);
      check();
      setTimeout(() => reject(new Error(`${what}: not connected after 20 s`)), 20000);
    });
  }

  async function stats(pc) {
    const out = { in: null, out: null, source: null, rtt: null, codec: null };
    const st = await pc.getStats();
    const byId = new Map();
    st.forEach((s) => byId.set(s.id, s));
    st.forEach((s) => {
      if (s.kind !== "video" && s.type !== "transport" && s.type !== "candidate-pair") return;
      if (s.type === "inbound-rtp") out.in = s;
      if (s.type === "outbound-rtp") out.out = s;
      if (s.type === "media-source") out.source = s;
      if (s.type === "transport" && s.selectedCandidatePairId) {
        const p = byId.get(s.selectedCandidatePairId);
        if (p) out.rtt = p.currentRoundTripTime;
      }
    });
    if (out.rtt == null) {  // Firefox: no transport stats; the selected pair itself
      st.forEach((s) => {
        if (s.type === "candidate-pair" && (s.selected || s.nominated) && s.state === "succeeded"
            && s.currentRoundTripTime != null) out.rtt = s.currentRoundTripTime;
      });
    }
    const rtp = out.in || out.out;
    if (rtp && rtp.codecId && byId.get(rtp.codecId)) out.codec = byId.get(rtp.codecId).mimeType;
    return JSON.parse(JSON.stringify(out));
  }

  window.echo = {
    async start(base, opts) {
      opts = opts || {};
      document.body.appendChild(canvas);
      const video = document.createElement("video");
      video.id = "video";
      video.muted = true; video.autoplay = true; video.playsInline = true;
      video.width = 640; video.height = 360;
      document.body.appendChild(video);

      const capture = opts.capture || "fps";
      const stream = capture === "auto" ? canvas.captureStream()
        : canvas.captureStream(capture === "request" ? 0 : FPS);
      const track = stream.getVideoTracks()[0];
      draw(0);
      startDrawing(opts.draw || "raf", capture === "request" ? track : null);

      const send = new RTCPeerConnection();
      const tx = send.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      preferCodec(tx, "send", opts.codec);
      S.sendResource = await negotiate(send, `${base}/whip`, opts.minKbps);
      await connected(send, "WHIP");

      const recv = new RTCPeerConnection();
      const rx = recv.addTransceiver("video", { direction: "recvonly" });
      preferCodec(rx, "receiv", opts.codec);
      recv.addEventListener("track", (ev) => { video.srcObject = new MediaStream([ev.track]); });
      S.recvResource = await negotiate(recv, `${base}/whep`);
      await connected(recv, "WHEP");

      const onFrame = (now, md) => {
        if (video.videoWidth >= BITS * BW) {
          const n = readNumber(video);
          if (n === null) S.unreadable++;
          else if (S.shown.length < 100000) {
            S.shown.push([n, now, md.expectedDisplayTime, md.presentationTime,
                          md.receiveTime == null ? null : md.receiveTime]);
          }
        }
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
      Object.assign(S, { send, recv, video, track });
      return { sender: await stats(send), receiver: await stats(recv) };
    },

    // Until the <video> shows full-size frames (a sender's bandwidth estimate starts low
    // and it scales the canvas down until it has grown), or timeoutS; returns the size.
    async waitSize(timeoutS) {
      const end = performance.now() + timeoutS * 1000;
      let sent = null;
      while (performance.now() < end) {
        const out = (await stats(S.send)).out;
        sent = out ? [out.frameWidth, out.frameHeight] : null;
        if (S.video.videoWidth === W && S.video.videoHeight === H && sent
            && sent[0] === W && sent[1] === H) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      return { shown: [S.video.videoWidth, S.video.videoHeight], sent };
    },

    async mark(seconds) {
      S.t0 = performance.now();
      S.t1 = S.t0 + seconds * 1000;
      S.unreadable0 = S.unreadable;
      S.before = { sender: await stats(S.send), receiver: await stats(S.recv) };
      await new Promise((r) => setTimeout(r, Math.max(0, S.t1 - performance.now())));
      S.after = { sender: await stats(S.send), receiver: await stats(S.recv) };
      S.unreadable1 = S.unreadable;
      S.t1 = Math.min(S.t1, performance.now());
      return true;
    },

    // After mark() and a short grace for the window's last frames to come back.
    finish() {
      const { t0, t1 } = S;
      const drawn = [];
      for (const [n, t] of S.sent) if (t >= t0 && t < t1) drawn.push([n, t]);
      const shown = S.shown.filter(([n]) => {
        const t = S.sent.get(n);
        return t !== undefined && t >= t0 && t < t1;
      });
      const shownInWindow = S.shown.filter(([, now]) => now >= t0 && now < t1).length;
      const draws = S.drawTimes.filter((t) => t >= t0 && t < t1).length;
      const missed = S.missed.filter(([t]) => t >= t0 && t < t1).reduce((a, [, k]) => a + k, 0);
      return {
        t0, t1, drawn, draws, missed, shown_in_window: shownInWindow,
        shown: shown.map(([n, now, edt, pt, rt]) => [n, S.sent.get(n), now, edt, pt, rt]),
        unreadable: S.unreadable1 - S.unreadable0,
        before: S.before, after: S.after,
      };
    },

    async stop() {
      stopDrawing = true;
      if (S.timer) clearInterval(S.timer);
      for (const [pc, res] of [[S.recv, S.recvResource], [S.send, S.sendResource]]) {
        if (res) { try { await fetch(res, { method: "DELETE" }); } catch (e) { /* gone */ } }
        if (pc) pc.close();
      }
      return true;
    },
  };
})();
