// Protocol compliance of the websocket source's Socket.IO endpoint
// (/socket.io/: Socket.IO v5 over Engine.IO v4), spoken raw: fetch() for
// HTTP long-polling and `ws` for WebSocket frames, no Socket.IO client in
// between. The cases follow the ones the Socket.IO project publishes
// (engine.io-protocol and socket.io-protocol test suites), written anew for
// this server: where Nudge deliberately differs from the reference server
// (it has no echo handlers, it answers refused packets with an `error` event
// instead of closing, it reads no binary attachments), the test asserts
// Nudge's behaviour and says so.
//
// Two servers run pipelines/chat-embedded.toml (websocket -> memory fanout
// -> SQLite, no external services):
//   fast    pingInterval 300 ms, pingTimeout 400 ms, maxPayload 1000 bytes:
//           the handshake, heartbeat, close and maxPayload cases;
//   steady  the default heartbeat (25 s / 20 s) and maxPayload (65536), so
//           that no ping interleaves: upgrade and Socket.IO cases.
//
//   NUDGE_BIN=build/bin/nudge node --test tests/node/socketio_protocol.test.mjs

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { artifactsDir, PIPELINES, startNudge, uniqueSuffix } from './support.mjs';

const PING_INTERVAL = 300;
const PING_TIMEOUT = 400; // the reference suite uses 200; 400 keeps a loaded 2-core machine from missing pongs
const FAST_MAX_PAYLOAD = 1000;
const DEFAULT_MAX_PAYLOAD = 65536;
const ALLOWED_ORIGIN = 'https://allowed.example';
/** The sweep that sends pings and enforces the timeout runs every min(timeouts)/8 (25 ms here); plus scheduling slack. */
const SLACK = 250;
const RS = '\x1e'; // separates packets in a long-polling payload (Engine.IO v4)

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let roomCounter = 0;
/** A room of its own, so no test sees another's history. */
const freshRoom = (what) => `sio-${what}-${uniqueSuffix()}-${++roomCounter}`;

// ------------------------------------------------------------------ servers

const servers = {};

async function startServer(name, set) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `nudge-sio-${name}-`));
  const nudge = await startNudge(`${PIPELINES}/chat-embedded.toml`, {
    name,
    // The packet streams asserted here are the reference server's: without the
    // presence events the memory fanout would add (socketio_presence.test.mjs covers those).
    set: ['source.websocket.listen=127.0.0.1:0', 'source.websocket.presence_events=false', ...set],
    env: { NUDGE_DATA_DIR: dataDir },
  });
  const base = `${nudge.baseUrl}/socket.io/`;
  return {
    nudge,
    dataDir,
    base,
    /** http://.../socket.io/?EIO=4&transport=polling[&sid=] */
    polling: (sid) => `${base}?EIO=4&transport=polling${sid ? `&sid=${encodeURIComponent(sid)}` : ''}`,
    /** ws://.../socket.io/?EIO=4&transport=websocket[&sid=] */
    websocket: (sid) =>
      `${base.replace(/^http/, 'ws')}?EIO=4&transport=websocket${sid ? `&sid=${encodeURIComponent(sid)}` : ''}`,
  };
}

before(async () => {
  [servers.fast, servers.steady] = await Promise.all([
    startServer('fast', [
      `source.websocket.ping_interval_ms=${PING_INTERVAL}`,
      `source.websocket.ping_timeout_ms=${PING_TIMEOUT}`,
      `source.websocket.max_message_bytes=${FAST_MAX_PAYLOAD}`,
      `source.websocket.allowed_origins=["${ALLOWED_ORIGIN}"]`,
    ]),
    startServer('steady', []),
  ]);
});

after(async () => {
  const dir = artifactsDir('socketio_protocol');
  for (const s of Object.values(servers)) {
    await s.nudge.stop(10_000);
    s.nudge.saveLog(dir);
    fs.rmSync(s.dataDir, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------ HTTP helpers

/** A long-polling request: { status, text, headers }. */
async function http(url, init = {}) {
  const response = await fetch(url, init);
  return { status: response.status, text: await response.text(), headers: response.headers };
}

const get = (server, sid, init = {}) => http(server.polling(sid), init);
const post = (server, sid, body, init = {}) => http(server.polling(sid), { method: 'POST', body, ...init });

/** Opens a long-polling session: { sid, open (the parsed open packet), text }. */
async function openPolling(server) {
  const r = await get(server);
  assert.equal(r.status, 200, r.text);
  assert.ok(r.text.startsWith('0'), `not an open packet: ${r.text}`);
  const open = JSON.parse(r.text.slice(1));
  return { sid: open.sid, open, text: r.text };
}

/** Asserts a refused request: the status and the JSON body {code, message}. */
function assertRefused(r, status, code, message) {
  assert.equal(r.status, status, `expected HTTP ${status}: ${r.text}`);
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
  assert.deepEqual(JSON.parse(r.text), { code, message });
}

/** The packets of a long-polling payload. */
const packets = (text) => (text === '' ? [] : text.split(RS));

// -------------------------------------------------------- WebSocket helpers

/**
 * A raw Engine.IO WebSocket: frames queued for next(); pings ("2") are
 * answered "3" and not queued unless `pong: false`.
 */
class RawSocket {
  constructor(url, { pong = true } = {}) {
    this.pong = pong;
    this.queue = [];
    this.waiters = [];
    this.pings = [];
    this.closeInfo = null;
    this.ws = new WebSocket(url);
    this.ws.binaryType = 'nodebuffer';
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const w of this.waiters.splice(0)) w.reject(new Error(`closed (${code} ${reason}) while waiting`));
        resolve(this.closeInfo);
      });
    });
    this.ws.on('error', () => {}); // surfaced through `opened` and `closed`
    this.ws.on('message', (data, isBinary) => {
      const frame = isBinary ? data : data.toString('utf8');
      if (frame === '2' && this.pong) {
        this.pings.push(Date.now());
        this.ws.send('3');
        return;
      }
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(frame);
      else this.queue.push(frame);
    });
  }

  static async open(url, options) {
    const s = new RawSocket(url, options);
    await s.opened;
    return s;
  }

  /** The next frame (text as a string, binary as a Buffer). */
  next(timeout = 5000) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closeInfo) return Promise.reject(new Error(`closed (${this.closeInfo.code}) before the next frame`));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`no frame within ${timeout} ms`));
      }, timeout);
      this.waiters.push(waiter);
    });
  }

  /** Asserts nothing arrives (pings aside) for `ms`. */
  async quiet(ms) {
    await sleep(ms);
    assert.deepEqual(this.queue, [], 'unexpected frames');
  }

  /** Resolves with {code, reason} when closed, rejects after `timeout`. */
  async waitClosed(timeout = 5000) {
    let timer;
    const limit = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`still open after ${timeout} ms`)), timeout);
    });
    try {
      return await Promise.race([this.closed, limit]);
    } finally {
      clearTimeout(timer);
    }
  }

  send(data) { this.ws.send(data); }
  close() { if (this.ws.readyState <= WebSocket.OPEN) this.ws.terminate(); }
}

/** A WebSocket upgrade the server must refuse: { status, text } of its HTTP answer. */
function refusedUpgrade(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on('error', () => {});
    ws.on('open', () => { ws.terminate(); reject(new Error(`upgrade to ${url} was accepted`)); });
    ws.on('unexpected-response', (req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { text += chunk; });
      res.on('end', () => {
        resolve({ status: res.statusCode, text, headers: new Headers(Object.entries(res.headers).map(([k, v]) => [k, String(v)])) });
        req.destroy();
      });
    });
  });
}

// ------------------------------------------------------ Socket.IO helpers

/** [name, ...args] of a `42[...]` event packet, or null. */
function eventOf(packet) {
  if (typeof packet !== 'string' || !packet.startsWith('42')) return null;
  return JSON.parse(packet.slice(2));
}

/** {id, args} of a `43<id>[...]` ack packet, or null. */
function ackOf(packet) {
  const m = typeof packet === 'string' ? /^43(\d+)(\[.*)$/s.exec(packet) : null;
  return m ? { id: Number(m[1]), args: JSON.parse(m[2]) } : null;
}

/** Asserts `packet` is the `error` event and returns its {code, message}. */
function assertErrorEvent(packet, code) {
  const event = eventOf(packet);
  assert.ok(event, `not an event: ${packet}`);
  assert.equal(event[0], 'error', `not an error event: ${packet}`);
  assert.equal(event.length, 2);
  assert.equal(event[1].code, code, packet);
  assert.equal(typeof event[1].message, 'string');
  return event[1];
}

/** Asserts `packet` is a `message` event (one argument: a JSON string) and returns the parsed message. */
function assertMessageEvent(packet) {
  const event = eventOf(packet);
  assert.ok(event, `not an event: ${packet}`);
  assert.equal(event[0], 'message', packet);
  assert.equal(event.length, 2, 'message carries one argument');
  assert.equal(typeof event[1], 'string', 'the argument is a JSON string');
  return JSON.parse(event[1]);
}

/** A WebSocket Socket.IO client connected to "/": { socket, sid (Engine.IO), nsSid (Socket.IO) }. */
async function sioConnect(server, auth) {
  const socket = await RawSocket.open(server.websocket());
  const open = JSON.parse((await socket.next()).slice(1));
  socket.send(auth === undefined ? '40' : `40${JSON.stringify(auth)}`);
  const connected = await socket.next();
  assert.match(connected, /^40\{/);
  return { socket, sid: open.sid, nsSid: JSON.parse(connected.slice(2)).sid };
}

/** Emits `event:message` asking for ack `id`; resolves with the ack's argument. */
async function sendMessage(socket, text, id, extra = {}) {
  socket.send(`42${id}${JSON.stringify(['event:message', { message: text, ...extra }])}`);
  const others = [];
  for (;;) {
    const packet = await socket.next();
    const ack = ackOf(packet);
    if (ack && ack.id === id) {
      socket.queue.unshift(...others); // what came before the ack stays to be read
      assert.equal(ack.args.length, 1);
      return ack.args[0];
    }
    others.push(packet);
  }
}

/** The server still works: a message sent with an ack is acked ok. */
async function assertStillWorks(socket, id = 999) {
  const ack = await sendMessage(socket, 'still working', id);
  assert.equal(ack.ok, true, JSON.stringify(ack));
  assert.match(ack.id, /^[0-9a-f-]{36}$/);
}

// =================================================================== Engine.IO

describe('Engine.IO v4', () => {
  describe('handshake', () => {
    describe('HTTP long-polling', () => {
      test('successfully opens a session', async () => {
        const r = await get(servers.fast);
        assert.equal(r.status, 200);
        assert.match(r.headers.get('content-type'), /^text\/plain/);
        assert.ok(r.text.startsWith('0'), r.text);
        assert.ok(!r.text.includes(RS), 'the open packet comes alone');
        const open = JSON.parse(r.text.slice(1));
        assert.deepEqual(Object.keys(open).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
        assert.equal(typeof open.sid, 'string');
        assert.ok(open.sid.length > 0);
        assert.deepEqual(open.upgrades, ['websocket']);
        assert.equal(open.pingInterval, PING_INTERVAL);
        assert.equal(open.pingTimeout, PING_TIMEOUT);
        assert.equal(open.maxPayload, FAST_MAX_PAYLOAD);
      });

      test('advertises the defaults when not configured', async () => {
        const { open } = await openPolling(servers.steady);
        assert.equal(open.pingInterval, 25000);
        assert.equal(open.pingTimeout, 20000);
        assert.equal(open.maxPayload, DEFAULT_MAX_PAYLOAD);
      });

      test('each handshake gets its own sid', async () => {
        const [a, b] = await Promise.all([openPolling(servers.fast), openPolling(servers.fast)]);
        assert.notEqual(a.sid, b.sid);
      });

      test('fails with an invalid EIO query parameter (400, code 5)', async () => {
        for (const query of ['transport=polling', 'EIO=abc&transport=polling', 'EIO=3&transport=polling']) {
          assertRefused(await http(`${servers.fast.base}?${query}`), 400, 5, 'Unsupported protocol version');
        }
      });

      test('fails with an invalid transport query parameter (400, code 0)', async () => {
        for (const query of ['EIO=4', 'EIO=4&transport=abc']) {
          assertRefused(await http(`${servers.fast.base}?${query}`), 400, 0, 'Transport unknown');
        }
        // transport=websocket without an Upgrade header
        assertRefused(await http(`${servers.fast.base}?EIO=4&transport=websocket`), 400, 3, 'Bad request');
      });

      test('fails with an invalid request method (400)', async () => {
        // Nudge difference: a POST without sid is "Session ID unknown" (code 1); the reference says code 2.
        assertRefused(await http(servers.fast.polling(), { method: 'POST', body: '' }), 400, 1, 'Session ID unknown');
        assertRefused(await http(servers.fast.polling(), { method: 'PUT', body: '' }), 400, 2, 'Bad handshake method');
        assertRefused(await http(servers.fast.polling(), { method: 'DELETE' }), 400, 2, 'Bad handshake method');
      });

      test('fails with an unknown sid (400, code 1)', async () => {
        assertRefused(await get(servers.fast, 'not-a-session'), 400, 1, 'Session ID unknown');
        assertRefused(await post(servers.fast, 'not-a-session', '40'), 400, 1, 'Session ID unknown');
      });
    });

    describe('WebSocket', () => {
      test('successfully opens a session', async () => {
        const socket = await RawSocket.open(servers.fast.websocket());
        try {
          const frame = await socket.next();
          assert.ok(frame.startsWith('0'), frame);
          const open = JSON.parse(frame.slice(1));
          assert.deepEqual(Object.keys(open).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
          assert.equal(typeof open.sid, 'string');
          assert.deepEqual(open.upgrades, [], 'nothing to upgrade to from WebSocket');
          assert.equal(open.pingInterval, PING_INTERVAL);
          assert.equal(open.pingTimeout, PING_TIMEOUT);
          assert.equal(open.maxPayload, FAST_MAX_PAYLOAD);
        } finally {
          socket.close();
        }
      });

      test('fails with an invalid EIO query parameter', async () => {
        const ws = servers.fast.base.replace(/^http/, 'ws');
        for (const query of ['transport=websocket', 'EIO=abc&transport=websocket']) {
          assertRefused(await refusedUpgrade(`${ws}?${query}`), 400, 5, 'Unsupported protocol version');
        }
      });

      test('fails with an invalid transport query parameter', async () => {
        const ws = servers.fast.base.replace(/^http/, 'ws');
        assertRefused(await refusedUpgrade(`${ws}?EIO=4`), 400, 0, 'Transport unknown');
        assertRefused(await refusedUpgrade(`${ws}?EIO=4&transport=abc`), 400, 0, 'Transport unknown');
        assertRefused(await refusedUpgrade(`${ws}?EIO=4&transport=polling`), 400, 3, 'Bad request');
      });

      test('fails with an unknown sid', async () => {
        assertRefused(await refusedUpgrade(servers.fast.websocket('not-a-session')), 400, 1, 'Session ID unknown');
      });
    });
  });

  describe('message', () => {
    describe('HTTP long-polling', () => {
      // The reference suite's server echoes Engine.IO messages; Nudge reads
      // them as Socket.IO packets, so these cases send Socket.IO packets.
      test('sends and receives a payload of several packets', async () => {
        const { sid } = await openPolling(servers.steady);
        const room = freshRoom('payload');
        const r = await post(servers.steady, sid, `40${JSON.stringify({ room })}${RS}40/custom,${RS}2`);
        assert.equal(r.status, 200);
        assert.equal(r.text, 'ok');
        const poll = await get(servers.steady, sid);
        assert.equal(poll.status, 200);
        const got = packets(poll.text);
        assert.equal(got.length, 3, poll.text);
        assert.match(got[0], /^40\{"sid":"[^"]+"\}$/);
        assert.equal(got[1], '44/custom,{"message":"Invalid namespace"}');
        assert.equal(got[2], '3', 'a client ping is answered');
        await post(servers.steady, sid, '1');
      });

      test('refuses a base64 binary packet with an error and keeps the session', async () => {
        const { sid } = await openPolling(servers.steady);
        const r = await post(servers.steady, sid, `40${JSON.stringify({ room: freshRoom('b64') })}${RS}bAQIDBA==`);
        assert.equal(r.status, 200);
        const got = packets((await get(servers.steady, sid)).text);
        assert.match(got[0], /^40\{"sid"/);
        assertErrorEvent(got[1], 'bad_request');
        assert.equal(got.length, 2);
        // still usable
        assert.equal((await post(servers.steady, sid, '42' + '7' + JSON.stringify(['hello', 'bob']))).status, 200);
        const ack = ackOf((await get(servers.steady, sid)).text);
        assert.deepEqual(ack, { id: 7, args: [{ ok: true, name: 'bob' }] });
        await post(servers.steady, sid, '1');
      });

      test('closes the session upon invalid packet format', async () => {
        const { sid } = await openPolling(servers.steady);
        const r = await post(servers.steady, sid, 'abc');
        // Nudge difference: the POST is answered 200 "ok" (the reference answers 400); the session ends all the same.
        assert.equal(r.status, 200);
        assertRefused(await get(servers.steady, sid), 400, 1, 'Session ID unknown');
      });

      test('closes the session upon duplicate poll requests', async () => {
        const { sid } = await openPolling(servers.steady);
        const first = get(servers.steady, sid);
        await sleep(50);
        const second = await get(servers.steady, sid);
        assertRefused(second, 400, 3, 'Bad request');
        const firstDone = await first;
        assert.equal(firstDone.status, 200);
        assert.equal(firstDone.text, '1', 'the waiting poll learns the session closed');
        assertRefused(await get(servers.steady, sid), 400, 1, 'Session ID unknown');
      });
    });

    describe('WebSocket', () => {
      test('sends and receives a plain text packet', async () => {
        const socket = await RawSocket.open(servers.steady.websocket());
        try {
          await socket.next(); // open
          socket.send('2');
          assert.equal(await socket.next(), '3', 'a client ping is answered');
          socket.send('6'); // noop: ignored
          socket.send(`40${JSON.stringify({ room: freshRoom('ws-text') })}`);
          assert.match(await socket.next(), /^40\{"sid":"[^"]+"\}$/);
        } finally {
          socket.close();
        }
      });

      test('refuses a binary frame with an error and keeps the session', async () => {
        const socket = await RawSocket.open(servers.steady.websocket());
        try {
          await socket.next();
          socket.send(Uint8Array.from([1, 2, 3, 4]));
          assertErrorEvent(await socket.next(), 'bad_request');
          socket.send(`40${JSON.stringify({ room: freshRoom('ws-bin') })}`);
          assert.match(await socket.next(), /^40\{/);
        } finally {
          socket.close();
        }
      });

      test('closes the session upon invalid packet format', async () => {
        const socket = await RawSocket.open(servers.steady.websocket());
        await socket.next();
        socket.send('abc');
        const { code } = await socket.waitClosed();
        assert.equal(code, 1000);
      });
    });
  });

  describe('heartbeat', () => {
    describe('HTTP long-polling', () => {
      test('sends ping packets at pingInterval and takes pongs', async () => {
        const { sid } = await openPolling(servers.fast);
        let last = Date.now();
        for (let i = 0; i < 3; i++) {
          const poll = await get(servers.fast, sid);
          const elapsed = Date.now() - last;
          assert.equal(poll.status, 200);
          assert.equal(poll.text, '2', `ping ${i}`);
          assert.ok(elapsed >= PING_INTERVAL - 50 && elapsed <= PING_INTERVAL + PING_TIMEOUT + SLACK, `ping ${i} after ${elapsed} ms`);
          const pong = await post(servers.fast, sid, '3');
          assert.equal(pong.status, 200);
          assert.equal(pong.text, 'ok');
          last = Date.now();
        }
        await post(servers.fast, sid, '1');
      });

      test('closes the session upon ping timeout', async () => {
        const { sid } = await openPolling(servers.fast);
        await sleep(PING_INTERVAL + PING_TIMEOUT + SLACK);
        assertRefused(await post(servers.fast, sid, '3'), 400, 1, 'Session ID unknown');
        assertRefused(await get(servers.fast, sid), 400, 1, 'Session ID unknown');
      });
    });

    describe('WebSocket', () => {
      test('sends ping packets at pingInterval and takes pongs', async () => {
        const socket = await RawSocket.open(servers.fast.websocket(), { pong: false });
        try {
          await socket.next(); // open
          let last = Date.now();
          for (let i = 0; i < 3; i++) {
            assert.equal(await socket.next(), '2');
            const elapsed = Date.now() - last;
            assert.ok(elapsed >= PING_INTERVAL - 50 && elapsed <= PING_INTERVAL + PING_TIMEOUT + SLACK, `ping ${i} after ${elapsed} ms`);
            socket.send('3');
            last = Date.now();
          }
          assert.equal(socket.closeInfo, null, 'a client that answers pings stays connected');
        } finally {
          socket.close();
        }
      });

      test('closes the session upon ping timeout', async () => {
        const socket = await RawSocket.open(servers.fast.websocket(), { pong: false });
        const started = Date.now();
        await socket.next(); // open
        assert.equal(await socket.next(), '2');
        await socket.waitClosed(PING_INTERVAL + PING_TIMEOUT + 2 * SLACK);
        const elapsed = Date.now() - started;
        assert.ok(elapsed >= PING_INTERVAL + PING_TIMEOUT - 50, `closed after ${elapsed} ms`);
      });
    });
  });

  describe('close', () => {
    test('HTTP long-polling: forcefully closes the session', async () => {
      const { sid } = await openPolling(servers.steady);
      const waiting = get(servers.steady, sid);
      await sleep(50);
      const r = await post(servers.steady, sid, '1');
      assert.equal(r.status, 200);
      const poll = await waiting;
      assert.equal(poll.status, 200);
      // Nudge answers the waiting poll with close "1"; the reference server with noop "6".
      assert.equal(poll.text, '1');
      assertRefused(await get(servers.steady, sid), 400, 1, 'Session ID unknown');
    });

    test('WebSocket: forcefully closes the session', async () => {
      const socket = await RawSocket.open(servers.steady.websocket());
      await socket.next();
      socket.send('1');
      await socket.waitClosed();
    });
  });

  describe('maxPayload', () => {
    /** POSTs maxPayload bytes (accepted), then maxPayload + 1 (413, and the session ends). */
    async function postOverLimit(server, limit) {
      const { sid } = await openPolling(server);
      const fits = await post(server, sid, `2${'x'.repeat(limit - 1)}`);
      assert.equal(fits.status, 200, `a ${limit}-byte POST is accepted`);
      const over = await post(server, sid, `2${'x'.repeat(limit)}`);
      assertRefused(over, 413, 3, 'Payload too large');
      assertRefused(await get(server, sid), 400, 1, 'Session ID unknown');
    }

    test('a POST over maxPayload is refused with 413 and the session closed (default 65536)', async () => {
      await postOverLimit(servers.steady, DEFAULT_MAX_PAYLOAD);
    });

    test('a POST over maxPayload is refused with 413 and the session closed (maxPayload 1000)', async () => {
      await postOverLimit(servers.fast, FAST_MAX_PAYLOAD);
    });

    test('a WebSocket message over maxPayload closes the connection with 1009', async () => {
      const socket = await RawSocket.open(servers.fast.websocket());
      await socket.next();
      socket.send(`42${JSON.stringify(['event:message', { message: 'x'.repeat(FAST_MAX_PAYLOAD) }])}`);
      const { code } = await socket.waitClosed();
      assert.equal(code, 1009);
    });
  });

  describe('upgrade', () => {
    /** A polling session connected to "/" in a room of its own: { sid, room }. */
    async function connectedPolling(server) {
      const { sid } = await openPolling(server);
      const room = freshRoom('upgrade');
      assert.equal((await post(server, sid, `40${JSON.stringify({ room })}`)).status, 200);
      assert.match((await get(server, sid)).text, /^40\{"sid"/);
      return { sid, room };
    }

    test('successfully upgrades from HTTP long-polling to WebSocket', async () => {
      const server = servers.steady;
      const { sid } = await connectedPolling(server);
      const waiting = get(server, sid);
      await sleep(50);
      const socket = await RawSocket.open(server.websocket(sid));
      try {
        socket.send('2probe');
        assert.equal(await socket.next(), '3probe');
        const poll = await waiting;
        assert.equal(poll.status, 200);
        assert.equal(poll.text, '6', 'the waiting poll is ended with a noop');
        socket.send('5');
        // the session now lives on the WebSocket
        const ack = await sendMessage(socket, 'over the upgraded transport', 1);
        assert.equal(ack.ok, true);
        const msg = assertMessageEvent(await socket.next());
        assert.equal(msg.message, 'over the upgraded transport');
      } finally {
        socket.close();
      }
    });

    test('a poll sent after the probe is answered with a noop', async () => {
      // Reference behaviour (engine.io-protocol "successfully upgrades"):
      // GET after 3probe and before 5 returns "6" at once.
      const server = servers.steady;
      const { sid } = await connectedPolling(server);
      const socket = await RawSocket.open(server.websocket(sid));
      try {
        socket.send('2probe');
        assert.equal(await socket.next(), '3probe');
        const controller = new AbortController();
        const timer = setTimeout(() => controller.abort(), 2000);
        let poll;
        try {
          poll = await get(server, sid, { signal: controller.signal });
        } catch (err) {
          assert.fail(`the poll after the probe got no answer within 2 s (${err.name})`);
        } finally {
          clearTimeout(timer);
        }
        assert.equal(poll.status, 200);
        assert.equal(poll.text, '6');
        socket.send('5');
        await assertStillWorks(socket, 2);
      } finally {
        socket.close();
      }
    });

    test('buffered packets move to the WebSocket on upgrade', async () => {
      const server = servers.steady;
      const { sid } = await connectedPolling(server);
      const socket = await RawSocket.open(server.websocket(sid));
      try {
        socket.send('2probe');
        assert.equal(await socket.next(), '3probe');
        // sent over polling while no poll is waiting: queued for the next poll
        assert.equal((await post(server, sid, `423${JSON.stringify(['hello', 'carol'])}`)).status, 200);
        socket.send('5');
        assert.deepEqual(ackOf(await socket.next()), { id: 3, args: [{ ok: true, name: 'carol' }] });
      } finally {
        socket.close();
      }
    });

    test('ignores HTTP requests with the same sid after upgrade', async () => {
      const server = servers.steady;
      const { sid } = await connectedPolling(server);
      const socket = await RawSocket.open(server.websocket(sid));
      try {
        socket.send('2probe');
        assert.equal(await socket.next(), '3probe');
        socket.send('5');
        await sleep(100);
        assertRefused(await get(server, sid), 400, 3, 'Bad request');
        assertRefused(await post(server, sid, '42["hello","mallory"]'), 400, 3, 'Bad request');
        await assertStillWorks(socket, 4);
      } finally {
        socket.close();
      }
    });

    test('ignores a WebSocket connection with the same sid after upgrade', async () => {
      const server = servers.steady;
      const { sid } = await connectedPolling(server);
      const socket = await RawSocket.open(server.websocket(sid));
      try {
        socket.send('2probe');
        assert.equal(await socket.next(), '3probe');
        socket.send('5');
        await sleep(100);
        assertRefused(await refusedUpgrade(server.websocket(sid)), 400, 3, 'Bad request');
        await assertStillWorks(socket, 5);
      } finally {
        socket.close();
      }
    });

    test('a probe connection that sends anything else is closed (1002)', async () => {
      const server = servers.steady;
      const { sid } = await connectedPolling(server);
      const socket = await RawSocket.open(server.websocket(sid));
      socket.send('4hello');
      assert.equal((await socket.waitClosed()).code, 1002);
      // the polling session is untouched
      assert.equal((await post(server, sid, '1')).status, 200);
    });
  });

  describe('CORS', () => {
    test('an allowed origin gets Access-Control-Allow-Origin; another gets 403 (code 4)', async () => {
      const ok = await http(servers.fast.polling(), { headers: { Origin: ALLOWED_ORIGIN } });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get('access-control-allow-origin'), ALLOWED_ORIGIN);
      assert.equal(ok.headers.get('access-control-allow-credentials'), 'true');
      const sid = JSON.parse(ok.text.slice(1)).sid;
      const preflight = await http(servers.fast.polling(sid), {
        method: 'OPTIONS',
        headers: { Origin: ALLOWED_ORIGIN, 'Access-Control-Request-Method': 'POST' },
      });
      assert.equal(preflight.status, 204);
      assert.match(preflight.headers.get('access-control-allow-methods'), /POST/);
      assertRefused(await http(servers.fast.polling(), { headers: { Origin: 'https://evil.example' } }), 403, 4, 'Forbidden');
      await post(servers.fast, sid, '1');
    });
  });
});

// =================================================================== Socket.IO

describe('Socket.IO v5', () => {
  describe('connect', () => {
    test('connects to the main namespace: 40{"sid"} then the default room\'s history', async () => {
      const socket = await RawSocket.open(servers.steady.websocket());
      try {
        const open = JSON.parse((await socket.next()).slice(1));
        socket.send('40');
        const connected = await socket.next();
        assert.ok(connected.startsWith('40'), connected);
        const handshake = JSON.parse(connected.slice(2));
        assert.deepEqual(Object.keys(handshake), ['sid']);
        assert.equal(typeof handshake.sid, 'string');
        // Nudge difference: the Socket.IO sid is the Engine.IO sid (the reference makes a new one).
        assert.equal(handshake.sid, open.sid);
        // in "general": a message sent without a room goes there
        const ack = await sendMessage(socket, 'hello general', 10);
        assert.equal(ack.ok, true, JSON.stringify(ack));
        const msg = assertMessageEvent(await socket.next());
        assert.equal(msg.room, 'general');
      } finally {
        socket.close();
      }
    });

    test('connects with auth data (room, name) and gets the room\'s history', async () => {
      const room = freshRoom('auth');
      const a = await sioConnect(servers.steady, { room, name: 'alice' });
      let sentId;
      try {
        const ack = await sendMessage(a.socket, 'first', 11);
        assert.equal(ack.ok, true);
        sentId = ack.id;
        const live = assertMessageEvent(await a.socket.next());
        assert.deepEqual(Object.keys(live).sort(), ['id', 'message', 'room', 'sender', 'ts']);
        assert.equal(live.id, sentId);
        assert.equal(live.message, 'first');
        assert.equal(live.room, room);
        assert.equal(live.sender, 'alice');
        assert.equal(typeof live.ts, 'number');
      } finally {
        a.socket.close();
      }
      const b = await sioConnect(servers.steady, { room });
      try {
        const past = assertMessageEvent(await b.socket.next());
        assert.equal(past.history, true);
        assert.equal(past.id, sentId);
        assert.equal(past.sender, 'alice');
      } finally {
        b.socket.close();
      }
    });

    test('auth data with an invalid room is refused with 44', async () => {
      const socket = await RawSocket.open(servers.steady.websocket());
      try {
        await socket.next();
        socket.send('40{"room":"no spaces allowed"}');
        const refused = await socket.next();
        assert.ok(refused.startsWith('44{'), refused);
        assert.match(JSON.parse(refused.slice(2)).message, /invalid room name/);
        socket.send(`40${JSON.stringify({ room: freshRoom('retry') })}`);
        assert.match(await socket.next(), /^40\{"sid"/);
      } finally {
        socket.close();
      }
    });

    test('refuses a custom or unknown namespace with 44 "Invalid namespace"', async () => {
      const socket = await RawSocket.open(servers.steady.websocket());
      try {
        await socket.next();
        socket.send('40/custom,');
        assert.equal(await socket.next(), '44/custom,{"message":"Invalid namespace"}');
        socket.send('40/random');
        assert.equal(await socket.next(), '44/random,{"message":"Invalid namespace"}');
        socket.send('40/custom,{"token":"abc"}');
        assert.equal(await socket.next(), '44/custom,{"message":"Invalid namespace"}');
        // the main namespace still connects
        socket.send(`40${JSON.stringify({ room: freshRoom('nsp') })}`);
        assert.match(await socket.next(), /^40\{"sid"/);
        // packets to a namespace not connected are ignored
        socket.send('42/custom,["event:message",{"message":"nowhere"}]');
        await socket.quiet(200);
      } finally {
        socket.close();
      }
    });

    test('an invalid handshake gets an error event, and the connection stays', async () => {
      // Nudge difference: the reference closes the connection on "4abc".
      const socket = await RawSocket.open(servers.steady.websocket());
      try {
        await socket.next();
        socket.send('4abc');
        assertErrorEvent(await socket.next(), 'bad_packet');
        socket.send('40[]');
        assertErrorEvent(await socket.next(), 'bad_packet');
        socket.send(`40${JSON.stringify({ room: freshRoom('badhs') })}`);
        assert.match(await socket.next(), /^40\{"sid"/);
      } finally {
        socket.close();
      }
    });

    test('events before CONNECT are ignored', async () => {
      const socket = await RawSocket.open(servers.steady.websocket());
      try {
        await socket.next();
        socket.send('421["event:message",{"message":"too early"}]');
        await socket.quiet(200);
      } finally {
        socket.close();
      }
    });
  });

  describe('disconnect', () => {
    test('a disconnect from the main namespace closes the session (WebSocket)', async () => {
      const { socket } = await sioConnect(servers.steady, { room: freshRoom('disc') });
      socket.send('41');
      await socket.waitClosed();
    });

    test('a disconnect from the main namespace closes the session (polling)', async () => {
      const { sid } = await openPolling(servers.steady);
      await post(servers.steady, sid, `40${JSON.stringify({ room: freshRoom('disc-poll') })}`);
      assert.match((await get(servers.steady, sid)).text, /^40\{/);
      assert.equal((await post(servers.steady, sid, '41')).status, 200);
      assertRefused(await get(servers.steady, sid), 400, 1, 'Session ID unknown');
    });

    test('a disconnect from another namespace is ignored', async () => {
      const { socket } = await sioConnect(servers.steady, { room: freshRoom('disc-nsp') });
      try {
        socket.send('41/custom,');
        await assertStillWorks(socket, 12);
      } finally {
        socket.close();
      }
    });
  });

  describe('message', () => {
    test('an event is delivered to the room as `message` with one JSON string argument', async () => {
      const room = freshRoom('event');
      const a = await sioConnect(servers.steady, { room, name: 'ann' });
      const b = await sioConnect(servers.steady, { room, name: 'ben' });
      try {
        a.socket.send(`42${JSON.stringify(['event:message', { message: 'hi ben' }])}`);
        const got = assertMessageEvent(await b.socket.next());
        assert.equal(got.message, 'hi ben');
        assert.equal(got.sender, 'ann');
        assert.equal(got.room, room);
        assert.equal(got.history, undefined);
        assert.equal(assertMessageEvent(await a.socket.next()).id, got.id, 'the sender gets it too');
      } finally {
        a.socket.close();
        b.socket.close();
      }
    });

    test('an event with an ack id is answered 43<id>[...] once durable', async () => {
      const room = freshRoom('ack');
      const { socket } = await sioConnect(servers.steady, { room });
      try {
        socket.send('42456["event:message",{"message":"with ack"}]');
        const packetsSeen = [await socket.next(), await socket.next()];
        const ackPacket = packetsSeen.find((p) => p.startsWith('43'));
        assert.ok(ackPacket, packetsSeen.join(' | '));
        const ack = ackOf(ackPacket);
        assert.equal(ack.id, 456);
        assert.equal(ack.args.length, 1);
        assert.equal(ack.args[0].ok, true);
        assert.match(ack.args[0].id, /^[0-9a-f-]{36}$/);
        const msg = assertMessageEvent(packetsSeen.find((p) => p.startsWith('42')));
        assert.equal(msg.id, ack.args[0].id);
      } finally {
        socket.close();
      }
    });

    test('join, leave and hello answer their acks; a refused event answers {ok:false,error}', async () => {
      const room = freshRoom('chat');
      const other = freshRoom('chat2');
      const { socket } = await sioConnect(servers.steady, { room });
      try {
        socket.send(`4220${JSON.stringify(['join', other])}`);
        assert.deepEqual(ackOf(await socket.next()), { id: 20, args: [{ ok: true, room: other, history: 0 }] });
        socket.send(`4221${JSON.stringify(['join', { room }])}`);
        assert.deepEqual(ackOf(await socket.next()), { id: 21, args: [{ ok: true, room, history: 0 }] });
        socket.send(`4222${JSON.stringify(['leave', other])}`);
        assert.deepEqual(ackOf(await socket.next()), { id: 22, args: [{ ok: true, room: other, left: true }] });
        socket.send(`4223${JSON.stringify(['hello', 'dora'])}`);
        assert.deepEqual(ackOf(await socket.next()), { id: 23, args: [{ ok: true, name: 'dora' }] });
        // sending to a room left
        const notJoined = await sendMessage(socket, 'nope', 24, { room: other });
        assert.equal(notJoined.ok, false);
        assert.equal(notJoined.error.code, 'not_joined');
        // an unknown event, with and without ack
        socket.send('4225["shout","x"]');
        const unknown = ackOf(await socket.next());
        assert.equal(unknown.id, 25);
        assert.equal(unknown.args[0].ok, false);
        assert.equal(unknown.args[0].error.code, 'unknown_event');
        socket.send('42["shout","x"]');
        assertErrorEvent(await socket.next(), 'unknown_event');
        // the name given by hello is the sender
        await sendMessage(socket, 'signed', 26);
        assert.equal(assertMessageEvent(await socket.next()).sender, 'dora');
      } finally {
        socket.close();
      }
    });

    test('the same over HTTP long-polling', async () => {
      const server = servers.steady;
      const room = freshRoom('poll-chat');
      const { sid } = await openPolling(server);
      await post(server, sid, `40${JSON.stringify({ room })}`);
      assert.match((await get(server, sid)).text, /^40\{/);
      await post(server, sid, `4231${JSON.stringify(['event:message', { message: 'polled' }])}`);
      const seen = [];
      while (seen.length < 2) seen.push(...packets((await get(server, sid)).text));
      const ack = ackOf(seen.find((p) => p.startsWith('43')));
      assert.equal(ack.id, 31);
      assert.equal(ack.args[0].ok, true);
      assert.equal(assertMessageEvent(seen.find((p) => p.startsWith('42'))).message, 'polled');
      await post(server, sid, '1');
    });
  });

  describe('malformed packets: an error event, and the server keeps working', () => {
    // Nudge difference: the reference server closes the connection on each of these.
    const cases = [
      ['unknown packet type', '4abc', 'bad_packet'],
      ['type digit out of range', '49["event:message",{"message":"x"}]', 'bad_packet'],
      ['invalid payload format (object for an event)', '42{}', 'bad_packet'],
      ['invalid JSON', '42["event:message",{"message":', 'bad_packet'],
      ['invalid ack id', '42abc["event:message",{"message":"x"}]', 'bad_packet'],
      ['reserved event name', '42["disconnect"]', 'bad_packet'],
      ['event with a bad argument', '42["event:message",42]', 'bad_request'],
      ['ack without id', '43[1]', 'bad_packet'],
      ['connect_error from a client', '44{"message":"x"}', 'bad_packet'],
    ];
    for (const [name, packet, code] of cases) {
      test(name, async () => {
        const { socket } = await sioConnect(servers.steady, { room: freshRoom('bad') });
        try {
          socket.send(packet);
          assertErrorEvent(await socket.next(), code);
          await assertStillWorks(socket);
        } finally {
          socket.close();
        }
      });
    }

    test('binary event "51-[...]" then its attachment: one error, the attachment skipped', async () => {
      const { socket } = await sioConnect(servers.steady, { room: freshRoom('bin') });
      try {
        socket.send('451-["event:message",{"_placeholder":true,"num":0}]');
        socket.send(Uint8Array.from([1, 2, 3]));
        assertErrorEvent(await socket.next(), 'bad_request');
        await socket.quiet(150); // no second error for the attachment
        await assertStillWorks(socket);
      } finally {
        socket.close();
      }
    });

    test('binary event with an ack id "452-789[...]": the ack answers the refusal', async () => {
      const { socket } = await sioConnect(servers.steady, { room: freshRoom('binack') });
      try {
        socket.send('452-789["event:message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
        socket.send(Uint8Array.from([1, 2, 3]));
        socket.send(Uint8Array.from([4, 5, 6]));
        const ack = ackOf(await socket.next());
        assert.equal(ack.id, 789);
        assert.equal(ack.args[0].ok, false);
        assert.equal(ack.args[0].error.code, 'bad_request');
        await socket.quiet(150);
        await assertStillWorks(socket);
      } finally {
        socket.close();
      }
    });

    test('binary attachments over polling (base64 "b...") after a binary event', async () => {
      const server = servers.steady;
      const { sid } = await openPolling(server);
      await post(server, sid, `40${JSON.stringify({ room: freshRoom('binpoll') })}`);
      assert.match((await get(server, sid)).text, /^40\{/);
      await post(server, sid, `451-["event:message",{"_placeholder":true,"num":0}]${RS}bAQID`);
      const got = packets((await get(server, sid)).text);
      assert.equal(got.length, 1, got.join(' | '));
      assertErrorEvent(got[0], 'bad_request');
      await post(server, sid, '1');
    });
  });
});
