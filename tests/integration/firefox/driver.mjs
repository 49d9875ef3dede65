// Drive Debian's firefox-esr over WebDriver BiDi (puppeteer-core), for reactor's tests.
//
//   node driver.mjs URL
//
// Launches a headless Firefox with a fresh profile, opens URL, then reads one JSON request
// per stdin line and answers one JSON line on stdout for each:
//   {"eval": "<JS expression or async arrow function source>"} -> {"ok": true, "value": ...}
//   {"click": "<CSS selector>"}                                 -> {"ok": true}
//   {"goto": "<url>"}                                           -> {"ok": true}
// Errors answer {"ok": false, "error": "..."}. EOF (or {"quit": true}) closes the browser.
//
// Firefox prefs: only the fake camera/microphone and the skipped permission prompt (what
// Chromium's --use-fake-device-for-media-stream / --use-fake-ui-for-media-stream do) and
// quiet-startup prefs. Nothing that changes WebRTC or ICE: the daemon must work with a
// stock Firefox.
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const FIREFOX = process.env.REACTOR_FIREFOX || "/usr/bin/firefox-esr";
const url = process.argv[2];
if (!url) {
  console.error("usage: node driver.mjs URL");
  process.exit(2);
}

// Every RTCPeerConnection the page makes, kept for stats (window.__reactorPcs).
const TRACK_PCS = `(() => {
  const Orig = window.RTCPeerConnection;
  window.__reactorPcs = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Orig(...args);
    window.__reactorPcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Orig.prototype;
  Object.setPrototypeOf(window.RTCPeerConnection, Orig);
})();`;

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: FIREFOX,
  headless: true,
  // A test's own self-signed certificate (https to a LAN address), as Playwright's
  // ignore_https_errors does for Chromium.
  acceptInsecureCerts: process.env.REACTOR_FIREFOX_ACCEPT_INSECURE_CERTS === "1",
  extraPrefsFirefox: {
    "media.navigator.streams.fake": true,
    "media.navigator.permission.disabled": true,
    "browser.shell.checkDefaultBrowser": false,
    "datareporting.policy.dataSubmissionEnabled": false,
    "toolkit.telemetry.enabled": false,
    "app.update.enabled": false,
  },
});

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  page.on("console", (m) => process.stderr.write(`console.${m.type()}: ${m.text()}\n`));
  page.on("pageerror", (e) => process.stderr.write(`pageerror: ${e}\n`));
  await page.evaluateOnNewDocument(TRACK_PCS);
  await page.goto(url);
  reply({ ok: true, ready: true, version: await browser.version() });

  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let req;
    try {
      req = JSON.parse(line);
    } catch (e) {
      reply({ ok: false, error: `bad request line: ${e}` });
      continue;
    }
    if (req.quit) break;
    try {
      if (req.eval !== undefined) {
        // Evaluated in the page as an expression; a function source is called (and awaited).
        const value = await page.evaluate(`(async () => {
          const v = (${req.eval});
          return JSON.stringify(typeof v === "function" ? await v() : await v);
        })()`);
        reply({ ok: true, value: value === undefined ? null : JSON.parse(value) });
      } else if (req.click !== undefined) {
        await page.click(req.click);
        reply({ ok: true });
      } else if (req.goto !== undefined) {
        await page.goto(req.goto);
        reply({ ok: true });
      } else {
        reply({ ok: false, error: `unknown request: ${line}` });
      }
    } catch (e) {
      reply({ ok: false, error: String(e && e.stack ? e.stack : e) });
    }
  }
} finally {
  await browser.close();
}
