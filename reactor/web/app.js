// reactor web client: watch (WHEP), send a camera (WHIP), controls built from /api/schema.
// Sound follows the schema's `audio`: with `output` the viewer also receives the model's
// audio (played by the same <video>, muted until allowed: autoplay policy), with `input`
// the camera is sent with the microphone.
// Plain script, no build step, no external URLs. State for tests lives in window.reactor.
// Every URL is relative to the page, so a reverse proxy may serve it under a sub-path.
"use strict";

(() => {
  const ICE_GATHER_CAP_MS = 2000;
  const STATS_PERIOD_MS = 1000;
  const SEND_DEBOUNCE_MS = 100;
  const RECONNECT_MIN_MS = 1000;
  const RECONNECT_MAX_MS = 5000;
  const LOG_MAX = 50;
  const TOKEN_KEY = "reactor.token";

  const $ = (id) => document.getElementById(id);
  const els = {
    video: $("video"), preview: $("preview"), overlay: $("overlay"),
    status: $("status"), model: $("model-name"), controls: $("controls"), log: $("log"),
    watchBtn: $("watch-btn"), sendBtn: $("send-btn"), sendError: $("send-error"),
    soundBtn: $("sound-btn"),
    tokenForm: $("token-form"), tokenInput: $("token-input"), tokenError: $("token-error"),
  };

  // What tests (and curious users in the console) read.
  const reactor = (window.reactor = {
    state: "new",        // the viewer's (WHEP) peer connection state
    sendState: "off",    // the sender's (WHIP) peer connection state, "off" when not sending
    fps: 0, width: 0, height: 0,
    framesDecoded: 0,
    model: null, video: null, commands: [],
    audio: null,         // the schema's audio object: {output, input, sample_rate, channels}
    audioTrack: false,   // the viewer receives the model's sound
    muted: true,         // the page plays that sound muted (autoplay policy) until unmuted
    audioSamples: 0,     // samples of the model's sound received (inbound-rtp audio)
    audioLevel: 0,       // its level, 0..1, as the browser reports it
    micSending: false,   // the sender includes the microphone
    lastError: null,
    sessionId: null,
    schemaLoaded: false,
    whepLocation: null, whipLocation: null,
    daemonUrl: null,     // the daemon that placed us (Reactor-Public-URL), null: this page's
    iceServers: [],      // what the last OPTIONS on /whep or /whip named (RFC 9725 §4.6)
  });

  // --- token ----------------------------------------------------------------------------

  let token = null;
  {
    // #token=... wins over what this tab stored; drop it from the address bar afterwards.
    const m = location.hash.match(/(?:^#|&)token=([^&]*)/);
    if (m) {
      token = decodeURIComponent(m[1]);
      try { sessionStorage.setItem(TOKEN_KEY, token); } catch (_) { /* storage off */ }
      history.replaceState(null, "", location.pathname + location.search);
    } else {
      try { token = sessionStorage.getItem(TOKEN_KEY); } catch (_) { token = null; }
    }
  }

  // --- the daemon that holds our session ---------------------------------------------

  // Behind a balancer, a fleet's daemons answer an offer with their own server.public_url
  // (Reactor-Public-URL): from then on every request of this page (events, commands,
  // status, the other of WHIP/WHEP, DELETE) goes to that daemon, cross-origin when the
  // balancer served the page; null: the page's own origin, relative URLs as before.
  let daemonBase = null;
  // The exclusive session's key (Reactor-Session-Key): a cookie does not travel to another
  // origin, the header does.
  let sessionKey = null;
  function at(path) {
    return daemonBase ? new URL(path, daemonBase).href : path;
  }
  function placed(res) {
    const key = res.headers.get("Reactor-Session-Key");
    if (key) sessionKey = key;
    const url = res.headers.get("Reactor-Public-URL");
    if (!url || url === daemonBase) return;
    daemonBase = url;
    reactor.daemonUrl = url;
    logLine(`placed on ${url}`);
    subscribeEvents();  // this daemon's events, not the balancer's pick
  }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (token) h.Authorization = "Bearer " + token;
    if (sessionKey) h["Reactor-Session-Key"] = sessionKey;
    return h;
  }

  class HttpError extends Error {
    constructor(status, message, field) {
      super(message);
      this.status = status;
      this.field = field || null;
    }
  }

  // Turn a non-2xx response into an HttpError carrying the server's {"error", "field"}.
  async function failure(res, what) {
    let message = `${what}: HTTP ${res.status}`;
    let field = null;
    try {
      const text = await res.text();
      try {
        const body = JSON.parse(text);
        if (body && body.error) { message = body.error; field = body.field || null; }
      } catch (_) {
        if (text.trim()) message = `${what}: ${text.trim().slice(0, 200)}`;
      }
    } catch (_) { /* no body */ }
    return new HttpError(res.status, message, field);
  }

  function needToken(message) {
    els.tokenForm.hidden = false;
    if (token) els.tokenInput.value = token;
    if (message) { els.tokenError.textContent = message; els.tokenError.hidden = false; }
    els.tokenInput.focus();
  }

  els.tokenForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = els.tokenInput.value.trim() || null;
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage off */ }
    els.tokenError.hidden = true;
    start();
  });

  // --- status line and log --------------------------------------------------------------

  function setError(message) {
    reactor.lastError = message;
    renderStatus();
  }

  function renderStatus() {
    const parts = [`viewer: ${reactor.state}`];
    parts.push(`camera: ${reactor.sendState}`);
    if (reactor.width && reactor.height) {
      parts.push(`${reactor.width}×${reactor.height} @ ${reactor.fps.toFixed(1)} fps`);
    } else {
      parts.push("no video");
    }
    if (speaks()) parts.push(reactor.audioTrack ? `sound ${reactor.muted ? "muted" : "on"}` : "no sound");
    if (reactor.sessionId) parts.push(`session ${reactor.sessionId}`);
    els.status.textContent = parts.join(" · ");
    els.status.classList.toggle("bad", ["failed", "disconnected"].includes(reactor.state));
    if (reactor.lastError) {
      const err = document.createElement("span");
      err.className = "last-error";
      err.textContent = ` · last error: ${reactor.lastError}`;
      els.status.appendChild(err);
    }
    els.model.textContent = reactor.model
      ? `${reactor.model}${reactor.video ? ` (${reactor.video.width}×${reactor.video.height}@${reactor.video.fps})` : ""}`
      : "—";
    const playing = reactor.state === "connected" && reactor.framesDecoded > 0;
    els.overlay.hidden = playing;
    if (!playing) {
      els.overlay.textContent = watching ? (reactor.state === "connected" ? "waiting for frames…"
        : `connecting… (${reactor.state})`) : "not watching";
    }
  }

  const seen = new Map();  // events arrive twice (SSE and data channel): show each once

  function logLine(text, kind) {
    const li = document.createElement("li");
    li.className = kind || "";
    const time = document.createElement("time");
    time.textContent = new Date().toLocaleTimeString();
    li.append(time, " ", text);
    els.log.prepend(li);
    while (els.log.children.length > LOG_MAX) els.log.lastElementChild.remove();
  }

  function describe(ev) {
    const d = ev.data;
    const data = d === null || d === undefined ? "" : typeof d === "string" ? d : JSON.stringify(d);
    const sid = ev.session_id ? ` ${ev.session_id}` : "";
    switch (ev.type) {
      case "started": return `session${sid} started`;
      case "ended": return `session${sid} ended${ev.reason ? `: ${ev.reason}` : ""}`;
      case "message": return `model: ${data}`;
      case "error": return `error: ${ev.reason || data}`;
      case "client": return `clients: ${data}`;
      case "worker": return `worker: ${ev.reason || data}`;
      case "viewer": return `viewers: ${ev.reason || data}`;
      case "warning": return `warning: ${ev.reason || data}`;
      case "draining": return `draining: ${ev.reason || data}`;
      case "ending": return `session${sid} ending: ${ev.reason || data}`;
      case "command": return `command ${ev.reason}: ${JSON.stringify((ev.data || {}).args || {})}`;
      default: return `${ev.type}: ${data}`;
    }
  }

  function onEvent(ev) {
    if (!ev || typeof ev !== "object") return;
    const key = JSON.stringify([ev.type, ev.session_id, ev.reason, ev.ts, ev.data]);
    if (seen.has(key)) return;
    seen.set(key, Date.now());
    if (seen.size > 200) seen.delete(seen.keys().next().value);

    if (ev.type === "started") reactor.sessionId = ev.session_id || reactor.sessionId;
    if (ev.type === "ended" && (!ev.session_id || ev.session_id === reactor.sessionId)) {
      reactor.sessionId = null;
    }
    if (ev.type === "error") setError(ev.reason || String(ev.data));
    if (ev.type === "command" && ev.data && commandViews.has(ev.data.name)) {
      commandViews.get(ev.data.name)(ev.data.args, false);
    }
    if (ev.type !== "client") logLine(describe(ev), ev.type);  // client counts are noise
    renderStatus();

    // A session that ended badly leaves our viewer attached to nothing: join the next one.
    const failed = (ev.type === "error" && ev.session_id) ||
      (ev.type === "ended" && isErrorReason(ev.reason));
    if (failed && watching) scheduleReconnect("the session ended with an error", true);
  }

  function isErrorReason(reason) {
    return !!reason && /error|fail|crash|died|stall|exception|restart/i.test(reason);
  }

  function parseEvent(text) {
    try { return JSON.parse(text); } catch (_) { return null; }
  }

  let events = null;
  function subscribeEvents() {
    if (events) events.close();
    const url = at("api/events") + (token ? `?token=${encodeURIComponent(token)}` : "");
    events = new EventSource(url);
    events.onmessage = (e) => onEvent(parseEvent(e.data));
    // EventSource reconnects by itself; nothing to do on error but let it.
  }

  // --- WebRTC helpers -------------------------------------------------------------------

  // The STUN/TURN servers an endpoint names, as RTCIceServer dictionaries. RFC 9725 §4.6
  // sends them as Link headers on the 201, but a peer connection gathers its candidates
  // when the offer is made, before the 201 arrives, and our signalling is not trickle:
  // servers learnt afterwards (setConfiguration) would give candidates nobody hears of.
  // So, like other WHIP/WHEP clients, ask first with OPTIONS (it carries the same Link
  // headers), then make the peer connection with them. Works the same in every browser.
  async function iceServersFor(endpoint) {
    let res;
    try {
      res = await fetch(endpoint, { method: "OPTIONS", headers: headers() });
    } catch (_) {
      return [];  // the POST will say what is wrong
    }
    if (!res.ok) return [];
    try {
      return parseIceLinks(res.headers.get("Link"));
    } catch (err) {
      logLine(err.message, "warn");
      return [];
    }
  }

  // RFC 8288 Link values (fetch joins repeated headers with ", "); quoted-string values
  // may hold commas, semicolons and \-escaped quotes; name*=UTF-8''%xx is RFC 8187.
  function parseIceLinks(text) {
    const servers = [];
    if (!text) return servers;
    let i = 0;
    const n = text.length;
    const fail = (what) => new Error(`Link header: ${what} at character ${i}`);
    const space = () => { while (i < n && (text[i] === " " || text[i] === "\t")) i++; };
    const isToken = (c) => /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(c);
    const token = () => {
      const start = i;
      while (i < n && isToken(text[i])) i++;
      if (start === i) throw fail("expected a name or value");
      return text.slice(start, i);
    };
    const quoted = () => {
      i++;
      let out = "";
      while (i < n) {
        let c = text[i++];
        if (c === '"') return out;
        if (c === "\\" && i < n) c = text[i++];
        out += c;
      }
      throw fail("unterminated quoted string");
    };
    const extended = (raw) => {
      const m = /^(utf-8|iso-8859-1)'[^']*'(.*)$/i.exec(raw);
      if (!m) throw fail(`expected UTF-8''... (RFC 8187), found ${raw}`);
      if (m[1].toLowerCase() === "utf-8") return decodeURIComponent(m[2]);
      return m[2].replace(/%([0-9a-f]{2})/gi, (_, h) => String.fromCharCode(parseInt(h, 16)));
    };
    for (;;) {
      space();
      if (i >= n) break;
      if (text[i] === ",") { i++; continue; }
      if (text[i] !== "<") throw fail("expected '<'");
      const end = text.indexOf(">", i);
      if (end < 0) throw fail("'<' without '>'");
      const url = text.slice(i + 1, end);
      i = end + 1;
      const params = Object.create(null);
      const ext = Object.create(null);
      for (;;) {
        space();
        if (text[i] !== ";") break;
        i++;
        space();
        const name = token().toLowerCase();
        space();
        let value = "";
        if (text[i] === "=") {
          i++;
          space();
          value = text[i] === '"' ? quoted() : token();
        }
        if (name.endsWith("*")) {
          const key = name.slice(0, -1);
          if (!(key in ext)) ext[key] = extended(value);
        } else if (!(name in params)) {
          params[name] = value;
        }
      }
      Object.assign(params, ext);
      space();
      if (i < n && text[i] !== ",") throw fail("expected ',' or ';'");
      if ((params.rel || "").toLowerCase().split(/\s+/).includes("ice-server")) {
        const server = { urls: url };
        if (params.username !== undefined) server.username = params.username;
        if (params.credential !== undefined) server.credential = params.credential;
        servers.push(server);
      }
    }
    return servers;
  }

  // A peer connection with the endpoint's ICE servers; one the browser refuses (a URL
  // scheme it does not know) is left out, with a line in the log saying so.
  async function peerConnection(endpoint) {
    const iceServers = await iceServersFor(endpoint);
    reactor.iceServers = iceServers;
    try {
      return new RTCPeerConnection({ iceServers });
    } catch (err) {
      logLine(`the browser refused the ICE servers (${err.message}); using none`, "warn");
      return new RTCPeerConnection({ iceServers: [] });
    }
  }

  // Non-trickle WHIP/WHEP: wait for every candidate before sending the offer.
  function iceGathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      };
      const check = () => { if (pc.iceGatheringState === "complete") done(); };
      const timer = setTimeout(done, ICE_GATHER_CAP_MS);
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  async function negotiate(pc, endpoint) {
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc);
    const res = await fetch(endpoint, {
      method: "POST",
      headers: headers({ "Content-Type": "application/sdp" }),
      body: pc.localDescription.sdp,
    });
    if (res.status !== 201) throw await failure(res, endpoint);
    placed(res);
    const where = res.headers.get("Location");
    const answer = await res.text();
    const resource = where ? new URL(where, new URL(endpoint, location.href)).href : null;
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    return resource;
  }

  function release(resource, keepalive) {
    if (!resource) return;
    fetch(resource, { method: "DELETE", headers: headers(), keepalive: !!keepalive })
      .catch(() => { /* the server may already have dropped it */ });
  }

  // --- watch (WHEP) ---------------------------------------------------------------------

  let watching = false;
  let viewer = null;         // {pc, resource}
  let reconnectTimer = null;
  let backoff = RECONNECT_MIN_MS;
  let statsTimer = null;
  let lastStats = null;

  function lowLatency(receiver) {
    // The daemon is latency-critical: ask Chromium for no playout buffering of its own.
    try { if ("jitterBufferTarget" in receiver) receiver.jitterBufferTarget = 0; } catch (_) { }
    try { if ("playoutDelayHint" in receiver) receiver.playoutDelayHint = 0; } catch (_) { }
  }

  async function watch() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    stopViewer(false);
    watching = true;
    updateButtons();
    const me = { pc: null, resource: null };
    viewer = me;
    const pc = await peerConnection(at("whep"));
    me.pc = pc;
    if (viewer !== me) { pc.close(); return; }  // left while asking
    const tr = pc.addTransceiver("video", { direction: "recvonly" });
    lowLatency(tr.receiver);
    // One stream for picture and sound, played by one element, so they stay in sync.
    const stream = new MediaStream();
    if (speaks()) lowLatency(pc.addTransceiver("audio", { direction: "recvonly" }).receiver);
    const channel = pc.createDataChannel("events");
    channel.onmessage = (e) => onEvent(parseEvent(e.data));
    me.channel = channel;  // our stats reports go back on it, once a second

    pc.ontrack = (e) => {
      if (viewer !== me) return;
      lowLatency(e.receiver);
      stream.addTrack(e.track);
      if (e.track.kind === "audio") {
        reactor.audioTrack = true;
        renderSound();
      }
      if (els.video.srcObject !== stream) els.video.srcObject = stream;
      els.video.play().catch(() => { /* autoplay is muted; a refusal retries on frames */ });
    };
    pc.onconnectionstatechange = () => {
      if (viewer !== me) return;
      reactor.state = pc.connectionState;
      renderStatus();
      if (pc.connectionState === "connected") {
        refreshSession();
      } else if (pc.connectionState === "failed" || pc.connectionState === "disconnected") {
        scheduleReconnect(`viewer ${pc.connectionState}`);
      }
    };

    reactor.state = "connecting";
    renderStatus();
    try {
      me.resource = await negotiate(pc, at("whep"));
      if (viewer !== me) { release(me.resource); return; }  // left while negotiating
      reactor.whepLocation = me.resource;
    } catch (err) {
      if (viewer !== me) return;
      if (err.status === 401) { needToken(err.message); stopViewer(false); return; }
      setError(`watch: ${err.message}`);
      logLine(`watch failed: ${err.message}`, "error");
      reactor.state = "failed";
      renderStatus();
      scheduleReconnect("watch failed");
      return;
    }
    startStats();
  }

  function stopViewer(userLeft) {
    const v = viewer;
    viewer = null;
    if (userLeft) {
      watching = false;
      clearTimeout(reconnectTimer);
      reconnectTimer = null;
    }
    if (v) {
      release(v.resource);
      if (v.pc) v.pc.close();
    }
    reactor.whepLocation = null;
    reactor.audioTrack = false;
    stopStats();
    if (userLeft) {
      els.video.srcObject = null;
      reactor.state = "closed";
    }
    renderSound();
    updateButtons();
    renderStatus();
  }

  // force: a new WHEP connection even if the current one looks healthy by then.
  function scheduleReconnect(why, force) {
    if (!watching || reconnectTimer) return;
    const delay = backoff;
    backoff = Math.min(backoff * 2, RECONNECT_MAX_MS);
    logLine(`${why}; reconnecting in ${(delay / 1000).toFixed(0)} s`, "warn");
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      // A "disconnected" blip that healed by itself needs no new connection.
      if (!force && viewer && viewer.pc && viewer.pc.connectionState === "connected") return;
      if (watching) watch();
    }, delay);
  }

  function startStats() {
    stopStats();
    lastStats = null;
    statsTimer = setInterval(pollStats, STATS_PERIOD_MS);
    watchShown();
  }

  // When each frame is shown against when its last packet arrived (both on this page's
  // clock), from requestVideoFrameCallback where the browser has it: summed until the
  // next stats report, which sends the mean as the render part (decoded to shown).
  let shown = { n: 0, sumMs: 0 };
  let shownWatching = false;
  function watchShown() {
    shown = { n: 0, sumMs: 0 };
    const v = els.video;
    if (shownWatching || !("requestVideoFrameCallback" in v)) return;
    shownWatching = true;
    const onFrame = (_now, md) => {
      if (!viewer) { shownWatching = false; return; }
      if (md && md.receiveTime > 0 && md.expectedDisplayTime >= md.receiveTime) {
        shown.n += 1;
        shown.sumMs += md.expectedDisplayTime - md.receiveTime;
      }
      v.requestVideoFrameCallback(onFrame);
    };
    v.requestVideoFrameCallback(onFrame);
  }

  function stopStats() {
    clearInterval(statsTimer);
    statsTimer = null;
    reactor.fps = 0;
    reactor.width = 0;
    reactor.height = 0;
    reactor.framesDecoded = 0;
    reactor.audioSamples = 0;
    reactor.audioLevel = 0;
  }

  async function pollStats() {
    const v = viewer;
    if (!v) return;
    let report;
    try { report = await v.pc.getStats(); } catch (_) { return; }
    if (viewer !== v) return;
    let pair = null;
    report.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    });
    if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        reactor.audioSamples = s.totalSamplesReceived || 0;
        reactor.audioLevel = s.audioLevel || 0;
        return;
      }
      if (s.type !== "inbound-rtp" || s.kind !== "video") return;
      const decoded = s.framesDecoded || 0;
      let fps = s.framesPerSecond;
      if (fps === undefined && lastStats) {
        // Older browsers lack framesPerSecond: derive it from frames decoded over time.
        const dt = (s.timestamp - lastStats.timestamp) / 1000;
        fps = dt > 0 ? (decoded - lastStats.decoded) / dt : 0;
      }
      sendReport(v, s, fps, pair, lastStats);
      lastStats = { timestamp: s.timestamp, decoded, jbDelay: s.jitterBufferDelay,
                    jbEmitted: s.jitterBufferEmittedCount, decodeTime: s.totalDecodeTime };
      reactor.fps = fps || 0;
      reactor.width = s.frameWidth || els.video.videoWidth || 0;
      reactor.height = s.frameHeight || els.video.videoHeight || 0;
      reactor.framesDecoded = decoded;
      if (fps > 0) backoff = RECONNECT_MIN_MS;  // playing again: the next failure starts over
    });
    renderStatus();
  }

  // What this viewer sees, to the daemon (status, monitor, metrics): the mean jitter-buffer
  // delay and decode time over the last second, counters, size, fps and round trip.
  function sendReport(v, s, fps, pair, last) {
    const delta = (a, b) => (a !== undefined && b !== undefined ? a - b : undefined);
    const num = (x) => (typeof x === "number" && isFinite(x) ? x : null);
    const cur = { d: s.framesDecoded, jb: s.jitterBufferDelay, n: s.jitterBufferEmittedCount,
                  t: s.totalDecodeTime };
    let jb = null;
    let dec = null;
    const dn = last ? delta(cur.n, last.jbEmitted) : cur.n;
    const djb = last ? delta(cur.jb, last.jbDelay) : cur.jb;
    if (dn > 0 && djb !== undefined) jb = (djb / dn) * 1000;
    else if (cur.n > 0 && cur.jb !== undefined) jb = (cur.jb / cur.n) * 1000;
    const dd = last ? delta(cur.d, last.decoded) : cur.d;
    const dt = last ? delta(cur.t, last.decodeTime) : cur.t;
    if (dd > 0 && dt !== undefined) dec = (dt / dd) * 1000;
    else if (cur.d > 0 && cur.t !== undefined) dec = (cur.t / cur.d) * 1000;
    const rtt = pair && typeof pair.currentRoundTripTime === "number" ? pair.currentRoundTripTime * 1000 : null;
    // Render: last packet to shown, less the jitter buffer and decode (never below 0).
    let render = null;
    if (shown.n > 0 && jb !== null && dec !== null) {
      render = Math.max(0, shown.sumMs / shown.n - jb - dec);
    }
    shown = { n: 0, sumMs: 0 };
    const msg = {
      type: "stats", agent: "browser",
      jitter_buffer_ms: num(jb), decode_ms: num(dec), render_ms: num(render), rtt_ms: num(rtt),
      frames_decoded: num(s.framesDecoded), frames_dropped: num(s.framesDropped),
      freeze_count: num(s.freezeCount), freeze_s: num(s.totalFreezesDuration),
      width: num(s.frameWidth), height: num(s.frameHeight), fps: num(fps),
    };
    reactor.report = msg;
    const ch = v.channel;
    if (!ch || ch.readyState !== "open") return;
    try { ch.send(JSON.stringify(msg)); } catch (_) { /* closing: the next viewer reports */ }
  }

  async function refreshSession() {
    try {
      const res = await fetch(at("api/status"), { headers: headers() });
      if (!res.ok) return;
      const st = await res.json();
      const s = st && st.session;
      if (s && (s.id || s.session_id)) reactor.sessionId = s.id || s.session_id;
      renderStatus();
    } catch (_) { /* status is a nicety */ }
  }

  // --- send camera (WHIP) ---------------------------------------------------------------

  let sender = null;  // {pc, resource, stream}

  async function sendCamera() {
    els.sendError.hidden = true;
    const video = { width: 1280, height: 720 };
    let stream;
    try {
      // A model that listens gets the microphone with the camera.
      stream = await navigator.mediaDevices.getUserMedia(listens() ? { video, audio: true } : { video });
    } catch (err) {
      if (!listens()) return sendFailed(`camera: ${err.message || err.name}`);
      logLine(`microphone and camera: ${err.message || err.name}; trying the camera alone`, "warn");
      try {
        stream = await navigator.mediaDevices.getUserMedia({ video });
      } catch (err2) {
        return sendFailed(`camera: ${err2.message || err2.name}`);
      }
    }
    const me = { pc: null, resource: null, stream };
    sender = me;
    const pc = await peerConnection(at("whip"));
    me.pc = pc;
    if (sender !== me) { pc.close(); return; }  // stopped while asking
    for (const track of stream.getVideoTracks()) {
      pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
    for (const track of stream.getAudioTracks()) {
      pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
    reactor.micSending = stream.getAudioTracks().length > 0;
    pc.onconnectionstatechange = () => {
      if (sender !== me) return;
      reactor.sendState = pc.connectionState;
      renderStatus();
      if (pc.connectionState === "failed") {
        sendFailed("camera connection failed");
        stopCamera();
      }
    };
    els.preview.srcObject = stream;
    els.preview.hidden = false;
    reactor.sendState = "connecting";
    updateButtons();
    renderStatus();
    try {
      me.resource = await negotiate(pc, at("whip"));
      if (sender !== me) { release(me.resource); return; }
      reactor.whipLocation = me.resource;
      logLine(reactor.micSending ? "sending camera and microphone" : "sending camera", "client");
    } catch (err) {
      if (sender !== me) return;
      stopCamera();
      if (err.status === 401) needToken(err.message);
      // 503 (busy) or 409: someone else is sending; the server's reason says who to ask.
      sendFailed(err.status === 409 || err.status === 503 ? err.message
        : `send camera: ${err.message}`);
    }
  }

  function sendFailed(message) {
    els.sendError.textContent = message;
    els.sendError.hidden = false;
    setError(message);
    logLine(message, "error");
  }

  function stopCamera(keepalive) {
    const s = sender;
    sender = null;
    if (s) {
      release(s.resource, keepalive);
      if (s.pc) s.pc.close();
      s.stream.getTracks().forEach((t) => t.stop());
    }
    reactor.whipLocation = null;
    reactor.sendState = "off";
    reactor.micSending = false;
    els.preview.srcObject = null;
    els.preview.hidden = true;
    updateButtons();
    renderStatus();
  }

  function updateButtons() {
    els.watchBtn.textContent = watching ? "Leave" : "Watch";
    els.watchBtn.setAttribute("aria-pressed", String(watching));
    const what = listens() ? "camera + mic" : "camera";
    els.sendBtn.textContent = sender ? `Stop ${what}` : `Send ${what}`;
    els.sendBtn.setAttribute("aria-pressed", String(!!sender));
  }

  // --- sound ----------------------------------------------------------------------------

  const speaks = () => !!(reactor.audio && reactor.audio.output);
  const listens = () => !!(reactor.audio && reactor.audio.input);

  function renderSound() {
    reactor.muted = els.video.muted;
    renderStatus();
    els.soundBtn.hidden = !speaks();
    els.soundBtn.textContent = els.video.muted ? "Unmute" : "Mute";
    els.soundBtn.setAttribute("aria-pressed", String(!els.video.muted));
    // Sound is arriving but the page is muted: say so.
    els.soundBtn.classList.toggle("attention", els.video.muted && reactor.audioTrack);
  }

  function setMuted(muted) {
    els.video.muted = muted;
    // Unmuting happens in the click (a user gesture), which lets the browser play sound.
    els.video.play().catch(() => { /* retried when frames arrive */ });
    renderSound();
  }

  els.soundBtn.addEventListener("click", () => setMuted(!els.video.muted));
  els.video.addEventListener("volumechange", renderSound);

  els.watchBtn.addEventListener("click", () => {
    if (watching) stopViewer(true); else { backoff = RECONNECT_MIN_MS; watch(); }
  });
  els.sendBtn.addEventListener("click", () => { if (sender) stopCamera(); else sendCamera(); });

  window.addEventListener("pagehide", () => {
    // keepalive lets the DELETEs outlive the page, so the daemon sees us leave at once.
    if (viewer) { release(viewer.resource, true); if (viewer.pc) viewer.pc.close(); viewer = null; }
    if (sender) stopCamera(true);
  });

  // --- controls from /api/schema --------------------------------------------------------

  function resolve(schema, prop) {
    let p = prop || {};
    for (let i = 0; i < 8; i++) {
      if (p.$ref && p.$ref.startsWith("#/$defs/") && schema.$defs) {
        const { $ref, ...rest } = p;
        p = Object.assign({}, schema.$defs[$ref.slice(8)] || {}, rest);
      } else if (Array.isArray(p.allOf) && p.allOf.length === 1) {
        const { allOf, ...rest } = p;
        p = Object.assign({}, allOf[0], rest);
      } else break;
    }
    if (p.const !== undefined && !p.enum) p = Object.assign({}, p, { enum: [p.const] });
    return p;
  }

  function kindOf(p) {
    if (Array.isArray(p.enum)) return "enum";
    if ((p.type === "number" || p.type === "integer") &&
        typeof p.minimum === "number" && typeof p.maximum === "number") return "range";
    if (p.type === "number" || p.type === "integer") return "number";
    if (p.type === "string") return "string";
    if (p.type === "boolean") return "boolean";
    return "json";
  }

  let uid = 0;

  // Each command's control group by name: (args, force) => show the applied arguments.
  const commandViews = new Map();
  // How long after the last edit on this page a command event leaves its controls alone.
  const EDIT_QUIET_MS = 1500;

  function buildControls(schema) {
    els.controls.replaceChildren();
    commandViews.clear();
    const commands = schema.commands || [];
    if (!commands.length) {
      const p = document.createElement("p");
      p.className = "hint";
      p.textContent = "This model has no commands.";
      els.controls.append(p);
    }
    for (const cmd of commands) els.controls.append(buildCommand(cmd));
  }

  function buildCommand(cmd) {
    const params = cmd.parameters || {};
    const props = params.properties || {};
    const required = new Set(params.required || []);
    const form = document.createElement("form");
    form.className = "command";
    form.noValidate = true;  // the server validates, and names the field it refuses
    form.dataset.commandGroup = cmd.name;
    const titleId = `cmd-${++uid}`;
    form.setAttribute("aria-labelledby", titleId);

    const head = document.createElement("h3");
    head.id = titleId;
    head.textContent = cmd.name;
    form.append(head);
    if (cmd.description) {
      const d = document.createElement("p");
      d.className = "desc";
      d.textContent = cmd.description;
      form.append(d);
    }

    const readers = [];  // [name, () => value | undefined]
    const writers = new Map();  // name -> (value) => show it in the control
    let timer = null;
    let lastEdit = -Infinity;  // when this page last changed a control (performance.now())
    const sendSoon = () => {
      clearTimeout(timer);
      timer = setTimeout(() => submit(), SEND_DEBOUNCE_MS);
    };

    for (const [name, raw] of Object.entries(props)) {
      const p = resolve(params, raw);
      const row = document.createElement("div");
      row.className = "param";
      row.dataset.param = name;
      const id = `in-${++uid}`;
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = (p.title && p.title.toLowerCase() !== name.toLowerCase()) ? `${name} (${p.title})` : name;
      if (required.has(name)) label.classList.add("required");
      row.append(label);
      const mark = (el) => {
        el.dataset.command = cmd.name;
        el.dataset.param = name;
        return el;
      };
      const kind = kindOf(p);

      if (kind === "range") {
        const isInt = p.type === "integer";
        const step = isInt ? 1 : (p.maximum - p.minimum) / 100;
        const value = p.default !== undefined ? p.default : p.minimum;
        const slider = mark(document.createElement("input"));
        Object.assign(slider, { type: "range", min: p.minimum, max: p.maximum, step, id });
        slider.value = value;
        const box = mark(document.createElement("input"));
        Object.assign(box, { type: "number", min: p.minimum, max: p.maximum, step: isInt ? 1 : "any" });
        box.value = value;
        box.setAttribute("aria-label", `${name} value`);
        box.className = "num";
        slider.addEventListener("input", () => { box.value = slider.value; sendSoon(); });
        writers.set(name, (v) => { slider.value = v; box.value = v; });
        box.addEventListener("input", () => { if (box.value !== "") slider.value = box.value; });
        const wrap = document.createElement("div");
        wrap.className = "range";
        wrap.append(slider, box);
        row.append(wrap);
        readers.push([name, () => numberValue(box.value, isInt), box]);
      } else if (kind === "number") {
        const isInt = p.type === "integer";
        const box = mark(document.createElement("input"));
        Object.assign(box, { type: "number", step: isInt ? 1 : "any", id });
        if (typeof p.minimum === "number") box.min = p.minimum;
        if (typeof p.maximum === "number") box.max = p.maximum;
        if (p.default !== undefined && p.default !== null) box.value = p.default;
        box.className = "num";
        row.append(box);
        readers.push([name, () => numberValue(box.value, isInt), box]);
        writers.set(name, (v) => { box.value = v; });
      } else if (kind === "enum") {
        const sel = mark(document.createElement("select"));
        sel.id = id;
        p.enum.forEach((v, i) => {
          const o = document.createElement("option");
          o.value = String(i);
          o.textContent = String(v);
          if (p.default !== undefined && v === p.default) o.selected = true;
          sel.append(o);
        });
        sel.addEventListener("change", sendSoon);
        writers.set(name, (v) => {
          const i = p.enum.findIndex((e) => JSON.stringify(e) === JSON.stringify(v));
          if (i >= 0) sel.value = String(i);
        });
        row.append(sel);
        readers.push([name, () => p.enum[Number(sel.value)], sel]);
      } else if (kind === "string") {
        const box = mark(document.createElement("input"));
        Object.assign(box, { type: "text", id, spellcheck: false });
        if (typeof p.maxLength === "number") box.maxLength = p.maxLength;
        if (p.default !== undefined && p.default !== null) box.value = p.default;
        row.append(box);
        readers.push([name, () => box.value, box]);
        writers.set(name, (v) => { box.value = v; });
      } else if (kind === "boolean") {
        const sw = document.createElement("label");
        sw.className = "switch";
        const cb = mark(document.createElement("input"));
        Object.assign(cb, { type: "checkbox", id });
        cb.setAttribute("role", "switch");
        // Unchecked to start: a schema default is what an omitted argument means, not the
        // model's current state (pause(paused=True) does not mean "paused now").
        cb.checked = false;
        const knob = document.createElement("span");
        knob.className = "knob";
        knob.setAttribute("aria-hidden", "true");
        sw.append(cb, knob);
        cb.addEventListener("change", sendSoon);
        writers.set(name, (v) => { cb.checked = !!v; });
        row.append(sw);
        readers.push([name, () => cb.checked, cb]);
      } else {
        const ta = mark(document.createElement("textarea"));
        ta.id = id;
        ta.rows = 2;
        ta.spellcheck = false;
        ta.placeholder = "JSON";
        if (p.default !== undefined) ta.value = JSON.stringify(p.default);
        ta.className = "json";
        writers.set(name, (v) => { ta.value = JSON.stringify(v); });
        row.append(ta);
        readers.push([name, () => {
          const text = ta.value.trim();
          if (!text) return undefined;
          try { return JSON.parse(text); } catch (e) {
            throw new HttpError(0, `${name}: not valid JSON (${e.message})`, name);
          }
        }, ta]);
      }
      form.append(row);
    }

    const actions = document.createElement("div");
    actions.className = "actions";
    const apply = document.createElement("button");
    apply.type = "submit";
    apply.textContent = "Apply";
    apply.dataset.command = cmd.name;
    const ok = document.createElement("span");
    ok.className = "ok";
    ok.dataset.command = cmd.name;
    ok.textContent = "ok";
    ok.hidden = true;
    const err = document.createElement("span");
    err.className = "error";
    err.dataset.command = cmd.name;
    err.setAttribute("role", "alert");
    err.hidden = true;
    actions.append(apply, ok, err);
    form.append(actions);

    let okTimer = null;
    let inflight = 0;
    async function submit() {
      clearTimeout(timer);
      const seq = ++inflight;
      for (const [, , el] of readers) el.removeAttribute("aria-invalid");
      let args;
      try {
        args = {};
        for (const [name, read] of readers) {
          const v = read();
          if (v !== undefined) args[name] = v;
        }
      } catch (e) {
        return showError(e);
      }
      try {
        const res = await fetch(at(`api/commands/${encodeURIComponent(cmd.name)}`), {
          method: "POST",
          headers: headers({ "Content-Type": "application/json" }),
          body: JSON.stringify(args),
        });
        if (!res.ok) throw await failure(res, cmd.name);
        if (seq !== inflight) return;  // a newer send owns the feedback
        err.hidden = true;
        err.textContent = "";
        ok.hidden = false;
        clearTimeout(okTimer);
        okTimer = setTimeout(() => { ok.hidden = true; }, 1500);
      } catch (e) {
        if (seq !== inflight) return;
        if (e.status === 401) needToken(e.message);
        showError(e);
      }
    }

    function showError(e) {
      ok.hidden = true;
      const field = e.field || null;
      let text = e.message || String(e);
      if (field && !text.includes(field)) text = `${field}: ${text}`;
      err.textContent = text;
      err.hidden = false;
      if (field) {
        for (const [name, , el] of readers) if (name === field) el.setAttribute("aria-invalid", "true");
      }
      setError(`${cmd.name}: ${text}`);
    }

    form.addEventListener("submit", (ev) => { ev.preventDefault(); submit(); });
    form.addEventListener("input", () => { lastEdit = performance.now(); });
    form.addEventListener("change", () => { lastEdit = performance.now(); });
    // The model's state: the arguments this command was last applied with, by anyone
    // (the schema's `current`, then each `command` event). Not while this page is being
    // edited: its own sends come back as events a moment behind the control.
    const show = (args, force) => {
      if (!args || (!force && performance.now() - lastEdit < EDIT_QUIET_MS)) return;
      for (const [name, value] of Object.entries(args)) {
        const write = writers.get(name);
        if (write && value !== undefined && value !== null) write(value);
      }
    };
    commandViews.set(cmd.name, show);
    show(cmd.current, true);
    return form;
  }

  function numberValue(text, isInt) {
    if (text === "" || text === null) return undefined;
    const n = Number(text);
    if (!Number.isFinite(n)) return undefined;
    // A fractional value for an integer is sent as typed: the server names the field.
    return isInt && Number.isInteger(n) ? Math.trunc(n) : n;
  }

  async function loadSchema() {
    const res = await fetch(at("api/schema"), { headers: headers() });
    if (res.status === 401) {
      const err = await failure(res, "/api/schema");
      needToken(token ? "That token was refused." : err.message);
      return false;
    }
    if (!res.ok) throw await failure(res, "/api/schema");
    const schema = await res.json();
    reactor.model = schema.model || null;
    reactor.video = schema.video || null;
    reactor.commands = (schema.commands || []).map((c) => c.name);
    reactor.audio = schema.audio || null;
    // Where the browser says sound may start by itself (Firefox answers), start unmuted.
    if (speaks() && navigator.getAutoplayPolicy &&
        navigator.getAutoplayPolicy("mediaelement") === "allowed") {
      els.video.muted = false;
    }
    renderSound();
    updateButtons();
    if (reactor.model) document.title = `${reactor.model} · reactor`;
    if (reactor.video && reactor.video.width && reactor.video.height) {
      els.video.style.aspectRatio = `${reactor.video.width} / ${reactor.video.height}`;
    }
    buildControls(schema);
    reactor.schemaLoaded = true;
    renderStatus();
    return true;
  }

  // --- start ----------------------------------------------------------------------------

  let schemaRetry = null;
  async function start() {
    clearTimeout(schemaRetry);
    let ok;
    try {
      ok = await loadSchema();
    } catch (err) {
      setError(`schema: ${err.message}`);
      logLine(`could not load the schema: ${err.message}; retrying`, "error");
      schemaRetry = setTimeout(start, 2000);
      return;
    }
    if (!ok) return;  // waiting for a token
    els.tokenForm.hidden = true;
    subscribeEvents();
    backoff = RECONNECT_MIN_MS;
    watch();
  }

  renderStatus();
  start();
})();
