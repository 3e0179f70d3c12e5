// The stock socket.io-client (npm) against two instances of the default
// pipeline (chat.toml: websocket → redis → kafka → postgres), with the real
// servers. What must hold: the original design's events work unchanged,
// across instances; acks mean durable; the Engine.IO heartbeat keeps idle
// clients; oversized packets are refused without harming anyone else; a
// client joining gets the room's last N messages, and one reconnecting gets
// exactly what it missed, in order.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { io } from 'socket.io-client';
import WebSocket from 'ws';

import { artifactsDir, PIPELINES, psql, servicesMissing, startNudge, uniqueSuffix, waitFor } from './support.mjs';

const CHAT = path.join(PIPELINES, 'chat.toml');
const HISTORY = 20;
const PING_INTERVAL = 400;
const PING_TIMEOUT = 400;
const MAX_PAYLOAD = 16 * 1024;
const missing = servicesMissing(['redis', 'kafka', 'postgres']);
const skip = missing.length ? `needs ${missing.join(', ')}: scripts/services/<name> start` : false;

/**
 * Connects a client and resolves once the namespace is connected. `prepare`
 * runs before connecting (handlers that must see the first packets).
 */
function connect(url, options = {}, prepare = () => {}) {
  const socket = io(url, { reconnection: false, forceNew: true, autoConnect: false, ...options });
  prepare(socket);
  socket.connect();
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => { socket.close(); reject(err); });
  });
}

/** Every `message` event the socket gets, parsed (the argument is JSON text). */
function collect(socket) {
  const got = [];
  socket.on('message', (text) => {
    assert.equal(typeof text, 'string', 'message carries a JSON string, as the original server sent it');
    got.push(JSON.parse(text));
  });
  return got;
}

const inRoom = (got, room) => got.filter((m) => m.room === room);
const ack = (socket, event, arg) => socket.timeout(15_000).emitWithAck(event, arg);

/** Sends `count` messages one after another; resolves with their ids in order. */
async function sendMany(socket, room, count, label) {
  const ids = [];
  for (let i = 0; i < count; i++) {
    const answer = await ack(socket, 'event:message', { message: `${label} ${i}`, room });
    assert.equal(answer.ok, true, `send ${i} acked: ${JSON.stringify(answer)}`);
    ids.push(answer.id);
  }
  return ids;
}

describe('Socket.IO clients on two instances of chat.toml', { skip }, () => {
  const suffix = uniqueSuffix();
  const table = `e2e_sio_${suffix}`;
  const env = {
    NUDGE_TOPIC: `e2e.sio.${suffix}`, NUDGE_GROUP: `e2e-sio-${suffix}`, NUDGE_TABLE: table,
    NUDGE_RECENT_PREFIX: `e2e.sio:${suffix}:recent:`,
  };
  const set = [
    'source.websocket.listen=127.0.0.1:0',
    `source.websocket.ping_interval_ms=${PING_INTERVAL}`,
    `source.websocket.ping_timeout_ms=${PING_TIMEOUT}`,
    `source.websocket.history_messages=${HISTORY}`,
    `source.websocket.max_message_bytes=${MAX_PAYLOAD}`,
    'source.websocket.allowed_origins=["http://localhost:3000"]',
  ];
  let one;
  let two;
  const sockets = [];
  const open = async (url, options, prepare) => {
    const s = await connect(url, options, prepare);
    sockets.push(s);
    return s;
  };

  before(async () => {
    [one, two] = await Promise.all([
      startNudge(CHAT, { set, env, name: 'nudge1' }),
      startNudge(CHAT, { set, env, name: 'nudge2' }),
    ]);
  });

  after(async () => {
    for (const s of sockets) s.close();
    const codes = await Promise.all([one?.stop(), two?.stop()]);
    try { psql(`DROP TABLE IF EXISTS ${table}`); } catch { /* never created */ }
    const dir = artifactsDir('socketio');
    for (const n of [one, two]) n?.saveLog(dir);
    // Under the sanitizers (make test-asan) a report is a failure too.
    for (const n of [one, two]) {
      const reports = (n?.logLines ?? []).filter((l) => /AddressSanitizer|runtime error:|LeakSanitizer/.test(l));
      assert.deepEqual(reports, [], `${n.name}: sanitizer reports`);
    }
    assert.deepEqual(codes, [0, 0], 'both instances stop cleanly');
  });

  test('default transports upgrade to WebSocket; event:message reaches a websocket-only client of the other instance', async () => {
    const room = `r1_${suffix}`;
    const alice = await open(one.baseUrl);
    await waitFor(() => alice.io.engine.transport.name === 'websocket', { what: 'the upgrade from polling', timeout: 10_000 });
    const bob = await open(two.baseUrl, { transports: ['websocket'] });
    const atBob = collect(bob);
    const atAlice = collect(alice);
    assert.deepEqual(await ack(alice, 'hello', 'alice'), { ok: true, name: 'alice' });
    for (const s of [alice, bob]) assert.equal((await ack(s, 'join', room)).ok, true);

    const sent = await ack(alice, 'event:message', { message: 'hello from alice', room });
    assert.equal(sent.ok, true);
    await waitFor(() => inRoom(atBob, room).length === 1, { what: "bob's message", timeout: 15_000 });
    const [m] = inRoom(atBob, room);
    assert.equal(m.message, 'hello from alice');
    assert.equal(m.id, sent.id, 'the ack carries the id every recipient sees');
    assert.equal(m.sender, 'alice');
    assert.equal(typeof m.ts, 'number');
    assert.ok(Math.abs(Date.now() - m.ts) < 60_000);
    await waitFor(() => inRoom(atAlice, room).length === 1, { what: 'the sender receiving its own message' });

    // The ack means durable: the message reaches the database.
    await waitFor(() => { try { return psql(`SELECT 1 FROM ${table} WHERE id = '${sent.id}'`).length === 1; } catch { return false; } },
      { what: 'the acked message in postgres', timeout: 60_000 });
  });

  test('a client that never joins is in "general"; join and leave move it', async () => {
    const a = await open(one.baseUrl, { transports: ['websocket'] });
    const b = await open(two.baseUrl);
    const atB = collect(b);
    const text = `in general ${suffix}`;
    const sent = await ack(a, 'event:message', { message: text });
    assert.equal(sent.ok, true);
    await waitFor(() => atB.some((m) => m.id === sent.id), { what: 'the message in general' });
    assert.equal(atB.find((m) => m.id === sent.id).room, 'general');

    const other = `moved_${suffix}`;
    assert.equal((await ack(b, 'leave', 'general')).ok, true);
    assert.equal((await ack(b, 'join', other)).ok, true);
    const again = await ack(a, 'event:message', { message: `${text} again` });
    const there = await ack(a, 'event:message', { message: 'nobody hears this', room: other });
    assert.equal(there.ok, false, 'sending to a room the sender is not in is refused');
    assert.equal(there.error.code, 'not_joined');
    assert.equal((await ack(a, 'join', other)).ok, true);
    const mine = await ack(a, 'event:message', { message: 'in the other room' });  // the last joined is current
    await waitFor(() => atB.some((m) => m.id === mine.id), { what: 'the message in the joined room' });
    assert.equal(atB.find((m) => m.id === mine.id).room, other);
    assert.ok(!atB.some((m) => m.id === again.id), 'after leaving general, its messages no longer arrive');
  });

  test('an emit without a callback also works, and a sender name comes from hello', async () => {
    const room = `plain_${suffix}`;
    const a = await open(one.baseUrl);
    const b = await open(two.baseUrl);
    const atB = collect(b);
    await ack(a, 'hello', { name: 'carol' });
    for (const s of [a, b]) await ack(s, 'join', room);
    a.emit('event:message', { message: 'fire and forget', room });
    await waitFor(() => inRoom(atB, room).length === 1, { what: 'the message' });
    assert.equal(inRoom(atB, room)[0].sender, 'carol');
  });

  test('the heartbeat keeps idle clients connected past two ping intervals, on both transports', async () => {
    const clients = [await open(one.baseUrl, { transports: ['websocket'] }), await open(two.baseUrl, { transports: ['polling'] })];
    const pings = [0, 0];
    const drops = [];
    clients.forEach((c, i) => {
      c.io.engine.on('ping', () => { pings[i] += 1; });
      c.on('disconnect', (reason) => drops.push(reason));
    });
    await new Promise((r) => setTimeout(r, PING_INTERVAL * 4 + 200));
    assert.deepEqual(drops, [], 'no disconnect');
    for (const [i, n] of pings.entries()) assert.ok(n >= 3, `client ${i} answered ${n} pings (expected at least 3)`);
    for (const c of clients) assert.equal(c.connected, true);
  });

  test('a client over maxPayload is refused cleanly; everyone else is unaffected', async () => {
    const room = `big_${suffix}`;
    const bystander = await open(two.baseUrl);
    const atBystander = collect(bystander);
    await ack(bystander, 'join', room);
    for (const transports of [['websocket'], ['polling']]) {
      const big = await open(one.baseUrl, { transports });
      await ack(big, 'join', room);
      const reason = new Promise((resolve) => big.once('disconnect', resolve));
      big.emit('event:message', { message: 'x'.repeat(MAX_PAYLOAD + 1024), room });
      assert.match(await reason, /io server disconnect|transport (close|error)/, `${transports}: disconnected by the server`);
    }
    const writer = await open(one.baseUrl);
    await ack(writer, 'join', room);
    const after = await ack(writer, 'event:message', { message: 'still here', room });
    assert.equal(after.ok, true);
    await waitFor(() => atBystander.some((m) => m.id === after.id), { what: 'later messages flowing' });
    assert.ok(!atBystander.some((m) => m.message.length > MAX_PAYLOAD), 'nothing oversized was delivered');
    assert.equal(one.running && two.running, true);
  });

  test('binary and malformed packets get an error event, and the connection goes on', async () => {
    const room = `bad_${suffix}`;
    const c = await open(one.baseUrl, { transports: ['websocket'] });
    const errors = [];
    c.on('error', (e) => errors.push(e));
    await ack(c, 'join', room);
    c.emit('event:message', Buffer.from([1, 2, 3]));
    const refused = await ack(c, 'event:message', { text: 'wrong field' });
    assert.equal(refused.ok, false);
    assert.equal(refused.error.code, 'bad_request');
    const unknown = await ack(c, 'shout', 'hi');
    assert.equal(unknown.error.code, 'unknown_event');
    await waitFor(() => errors.length >= 1, { what: 'the error event for binary data' });
    assert.equal(errors[0].code, 'bad_request');
    assert.match(errors[0].message, /binary/);
    const fine = await ack(c, 'event:message', { message: 'after the bad ones', room });
    assert.equal(fine.ok, true);
  });

  test('native /ws clients and Socket.IO clients in one room see each other', async () => {
    const room = `mixed_${suffix}`;
    const sio = await open(one.baseUrl);
    const atSio = collect(sio);
    await ack(sio, 'join', room);
    const ws = new WebSocket(two.wsUrl);
    const atWs = [];
    ws.on('message', (data) => atWs.push(JSON.parse(data.toString())));
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    ws.send(JSON.stringify({ type: 'hello', name: 'native' }));
    ws.send(JSON.stringify({ type: 'join', room }));
    await waitFor(() => atWs.some((f) => f.type === 'joined' && f.room === room), { what: 'the native join' });
    const sent = await ack(sio, 'event:message', { message: 'to the native client', room });
    await waitFor(() => atWs.some((f) => f.type === 'message' && f.id === sent.id), { what: 'native receiving' });
    ws.send(JSON.stringify({ type: 'send', room, text: 'to the socket.io client', ref: 'r1' }));
    await waitFor(() => atSio.some((m) => m.message === 'to the socket.io client' && m.sender === 'native'),
      { what: 'socket.io receiving' });
    ws.close();
  });

  test(`a client joining after 30 messages receives the last ${HISTORY}, in order`, async () => {
    const room = `hist_${suffix}`;
    const writer = await open(one.baseUrl, { transports: ['websocket'] });
    await ack(writer, 'join', room);
    const ids = await sendMany(writer, room, 30, 'history');
    const late = await open(two.baseUrl, { transports: ['websocket'] });
    const got = collect(late);
    const joined = await ack(late, 'join', room);
    assert.deepEqual(joined, { ok: true, room, history: HISTORY });
    const history = inRoom(got, room);
    assert.deepEqual(history.map((m) => m.id), ids.slice(-HISTORY), 'the last N, oldest first');
    assert.ok(history.every((m) => m.history === true));
    assert.deepEqual(history.map((m) => m.message), ids.slice(-HISTORY).map((_, i) => `history ${30 - HISTORY + i}`));
  });

  for (const [how, reconnect] of [
    ['with auth {room, after} on the same instance',
      (last, room, prepare) => open(two.baseUrl, { auth: { room, after: last } }, prepare)],
    ['with join {room, after} on the other instance', async (last, room, prepare) => {
      const s = await open(one.baseUrl, { transports: ['websocket'] }, prepare);
      s.emit('join', { room, after: last });
      return s;
    }],
  ]) {
    test(`a client that missed 100 messages catches up ${how}: exactly those, in order`, async () => {
      const room = `recover_${how.length}_${suffix}`;
      const writer = await open(one.baseUrl, { transports: ['websocket'] });
      await ack(writer, 'join', room);
      const reader = await open(two.baseUrl);
      const before = collect(reader);
      await ack(reader, 'join', room);
      const [first] = await sendMany(writer, room, 1, 'before');
      await waitFor(() => before.some((m) => m.id === first), { what: 'the first message' });
      reader.disconnect();

      const missed = await sendMany(writer, room, 100, 'missed');
      // The handler is on before connecting: what is missed may follow CONNECT at once.
      const got = [];
      await reconnect(first, room, (s) => s.on('message', (text) => got.push(JSON.parse(text))));
      await waitFor(() => inRoom(got, room).length >= 100, { what: 'the 100 missed messages', timeout: 20_000 });
      const live = await ack(writer, 'event:message', { message: 'live again', room });
      await waitFor(() => got.some((m) => m.id === live.id), { what: 'live messages after catching up' });
      const ids = inRoom(got, room).map((m) => m.id);
      assert.deepEqual(ids, [...missed, live.id], 'exactly the missed ones, in order, then live');
    });
  }

  test('CORS: an allowed origin gets its headers, another is refused', async () => {
    const url = `${one.baseUrl}/socket.io/?EIO=4&transport=polling`;
    const allowed = await fetch(url, { headers: { Origin: 'http://localhost:3000' } });
    assert.equal(allowed.status, 200);
    assert.equal(allowed.headers.get('access-control-allow-origin'), 'http://localhost:3000');
    assert.equal(allowed.headers.get('access-control-allow-credentials'), 'true');
    assert.match(await allowed.text(), /^0\{"sid":/);
    const preflight = await fetch(url, {
      method: 'OPTIONS',
      headers: { Origin: 'http://localhost:3000', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
    });
    assert.equal(preflight.status, 204);
    assert.match(preflight.headers.get('access-control-allow-methods'), /POST/);
    const refused = await fetch(url, { headers: { Origin: 'http://evil.example' } });
    assert.equal(refused.status, 403);
    assert.equal(refused.headers.get('access-control-allow-origin'), null);
    // The stock client from another origin (as the original front end on port 3000 did).
    const c = await open(one.baseUrl, { extraHeaders: { Origin: 'http://localhost:3000' } });
    await waitFor(() => c.io.engine.transport.name === 'websocket', { what: 'the cross-origin upgrade', timeout: 10_000 });
  });
});
