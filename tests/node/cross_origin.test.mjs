// A Socket.IO front end served from another origin, as the original design's
// was (its page on port 3000 called io("http://localhost:8000")): the page
// comes from a small HTTP server of the test's own, loads the stock
// socket.io-client bundle, and talks to Nudge with the client's defaults —
// cross-origin long-polling (CORS), then the upgrade to WebSocket — in
// Chromium. A page from an origin not in allowed_origins cannot connect.
//
// No servers needed: pipelines/chat-embedded.toml (memory fanout, SQLite).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { artifactsDir, PIPELINES, startNudge } from './support.mjs';
import { browserSkipReason, launchBrowser, recordPageErrors, snap } from './browser_support.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLIENT_BUNDLE = path.join(here, 'node_modules', 'socket.io-client', 'dist', 'socket.io.min.js');

/** The original front end, reduced: connect, show `message` events, send with an ack. */
function frontEnd(nudgeUrl) {
  return `<!doctype html><meta charset="utf-8"><title>front end</title>
<style>body{font:16px system-ui;margin:2rem} li{margin:.2rem 0}</style>
<h1>Front end on another origin</h1>
<p>status: <b id="status">connecting</b> via <b id="transport">-</b> (first <b id="first">-</b>)</p>
<ul id="messages"></ul>
<script src="/socket.io.min.js"></script>
<script>
  const socket = io(${JSON.stringify(nudgeUrl)});
  const show = (id, text) => { document.getElementById(id).textContent = text; };
  // The engine's first transport is read when the engine opens: by the time
  // the namespace's 'connect' arrives the upgrade may already be done.
  socket.io.on('open', () => {
    show('first', socket.io.engine.transport.name);
    show('transport', socket.io.engine.transport.name);
    socket.io.engine.on('upgrade', (t) => show('transport', t.name));
  });
  socket.on('connect', () => show('status', 'connected'));
  socket.on('connect_error', (err) => show('status', 'refused: ' + err.message));
  socket.on('message', (text) => {
    const m = JSON.parse(text);
    const li = document.createElement('li');
    li.dataset.id = m.id;
    li.textContent = m.sender + ': ' + m.message;
    document.getElementById('messages').append(li);
  });
  window.send = (message) => socket.timeout(10000).emitWithAck('event:message', { message });
  window.hello = (name) => socket.timeout(10000).emitWithAck('hello', name);
</script>`;
}

/** An HTTP server for the front end (`nudgeUrl()` read per request); resolves with its origin. */
function serveFrontEnd(nudgeUrl) {
  const server = http.createServer((req, res) => {
    if (req.url === '/socket.io.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      return fs.createReadStream(CLIENT_BUNDLE).pipe(res);
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(frontEnd(nudgeUrl()));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    resolve({ server, origin: `http://127.0.0.1:${server.address().port}` });
  }));
}

describe('a Socket.IO front end on another origin, in Chromium', { skip: browserSkipReason() || false }, () => {
  let nudge;
  let allowed;
  let other;
  let browser;
  let dir;
  const errors = [];

  before(async () => {
    dir = artifactsDir('cross-origin');
    // The front ends listen first: Nudge is told the allowed one's origin.
    const nudgeUrl = () => nudge.baseUrl;
    allowed = await serveFrontEnd(nudgeUrl);
    other = await serveFrontEnd(nudgeUrl);
    const data = fs.mkdtempSync(path.join(os.tmpdir(), 'nudge-cross-origin-'));
    nudge = await startNudge(path.join(PIPELINES, 'chat-embedded.toml'), {
      set: ['source.websocket.listen=127.0.0.1:0', `source.websocket.allowed_origins=["${allowed.origin}"]`],
      env: { NUDGE_DATA_DIR: data },
      name: 'nudge',
    });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    allowed?.server.close();
    other?.server.close();
    if (nudge) {
      nudge.saveLog(dir);
      await nudge.stop();
    }
    assert.deepEqual(errors.filter((e) => !/Failed to load resource|CORS|socket\.io/.test(e)), []);
  });

  test('pages from an allowed origin connect over polling, upgrade, and talk to each other', async () => {
    const pages = {};
    for (const label of ['a', 'b']) {
      const context = await browser.newContext({ viewport: { width: 900, height: 500 } });
      const page = await context.newPage();
      recordPageErrors(page, errors, `${label}: `);
      await page.goto(allowed.origin + '/');
      pages[label] = page;
    }
    try {
      for (const page of Object.values(pages)) {
        await page.locator('#status', { hasText: 'connected' }).waitFor({ timeout: 15_000 });
        await page.locator('#transport', { hasText: 'websocket' }).waitFor({ timeout: 15_000 });
        assert.equal(await page.locator('#first').textContent(), 'polling', 'the default transports start with cross-origin polling');
      }
      assert.deepEqual(await pages.a.evaluate(() => window.hello('alice')), { ok: true, name: 'alice' });
      const answer = await pages.a.evaluate(() => window.send('hello across origins'));
      assert.equal(answer.ok, true);
      const seen = pages.b.locator(`li[data-id="${answer.id}"]`);
      await seen.waitFor({ timeout: 15_000 });
      assert.equal(await seen.textContent(), 'alice: hello across origins');
      await snap(dir, '01-allowed', pages);
    } catch (err) {
      await snap(dir, 'failure', pages);
      throw err;
    }
  });

  test('a page from an origin not in allowed_origins cannot connect', async () => {
    const context = await browser.newContext({ viewport: { width: 900, height: 500 } });
    const page = await context.newPage();
    const consoleLines = [];
    page.on('console', (m) => consoleLines.push(m.text()));
    await page.goto(other.origin + '/');
    await page.locator('#status', { hasText: 'refused' }).waitFor({ timeout: 15_000 });
    await snap(dir, '02-refused', { other: page });
    assert.ok(nudge.running, 'nudge keeps running');
    // What the user sees in the browser's console (docs/socketio.md quotes it) ...
    const cors = consoleLines.find((l) => /blocked by CORS policy/.test(l));
    assert.ok(cors, `the browser reports the refusal as a CORS error; console: ${JSON.stringify(consoleLines)}`);
    console.log(`browser console: ${cors}`);
    // ... and what `nudge run` says: the origin refused and the key that allows it.
    const line = nudge.logLines.find((l) => l.includes(`refused a request from origin '${other.origin}'`));
    assert.ok(line, 'nudge logs the refused origin');
    assert.match(line, /allowed_origins/);
  });
});
