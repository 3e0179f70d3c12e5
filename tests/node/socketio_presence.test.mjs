// Presence and ephemeral messages for the stock socket.io-client (npm) on two
// instances of the default pipeline (chat.toml: websocket → redis → kafka →
// postgres), with the real servers (docs/socketio.md). What must hold: each
// member hears joins and leaves of the other instance's clients as
// `presence_join` / `presence_leave` with one object argument, a `presence`
// request answers the room's members on both instances in its ack, and an
// ephemeral `event:message` reaches the other instance as an `ephemeral` event,
// never as a `message`, nor stored.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { io } from 'socket.io-client';

import { artifactsDir, PIPELINES, psql, servicesMissing, startNudge, uniqueSuffix, waitFor } from './support.mjs';

const CHAT = path.join(PIPELINES, 'chat.toml');
const missing = servicesMissing(['redis', 'kafka', 'postgres']);
const skip = missing.length ? `needs ${missing.join(', ')}: scripts/services/<name> start` : false;

function connect(url, options = {}) {
  const socket = io(url, { reconnection: false, forceNew: true, autoConnect: false, ...options });
  const seen = [];
  socket.onAny((event, ...args) => seen.push({ event, args }));
  socket.seen = seen;
  socket.connect();
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => { socket.close(); reject(err); });
  });
}

const ack = (socket, event, arg) => socket.timeout(15_000).emitWithAck(event, arg);
const events = (socket, name) => socket.seen.filter((e) => e.event === name).map((e) => e.args);

describe('Socket.IO presence and ephemeral messages on two instances of chat.toml', { skip }, () => {
  const suffix = uniqueSuffix();
  const table = `e2e_sio_presence_${suffix}`;
  const env = {
    NUDGE_TOPIC: `e2e.siop.${suffix}`, NUDGE_GROUP: `e2e-siop-${suffix}`, NUDGE_TABLE: table,
    NUDGE_RECENT_PREFIX: `e2e.siop:${suffix}:recent:`,
  };
  const set = [
    'source.websocket.listen=127.0.0.1:0',
    `fanout.redis.presence_key_prefix=e2e.siop:${suffix}:presence:`,
    `fanout.redis.channel_prefix=e2e.siop:${suffix}:room:`,
  ];
  let one;
  let two;
  const sockets = [];

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
    const dir = artifactsDir('socketio_presence');
    for (const n of [one, two]) n?.saveLog(dir);
    assert.deepEqual(codes, [0, 0], 'both instances stop cleanly');
  });

  test('joins, leaves, the presence list and an ephemeral message across instances', async () => {
    const room = `sp_${suffix}`;
    const alice = await connect(one.baseUrl, { auth: { name: 'alice', room } });
    sockets.push(alice);
    await waitFor(() => events(alice, 'presence_join').some(([e]) => e.user === 'alice'),
      { what: "alice's own join", timeout: 15_000 });
    const bob = await connect(two.baseUrl, { transports: ['websocket'], auth: { name: 'bob', room } });
    sockets.push(bob);
    await waitFor(() => events(alice, 'presence_join').some(([e]) => e.user === 'bob'),
      { what: "bob's join at alice", timeout: 15_000 });
    const [joined] = events(alice, 'presence_join').find(([e]) => e.user === 'bob');
    assert.deepEqual(Object.keys(joined).sort(), ['client', 'room', 'user']);
    assert.equal(joined.room, room);
    assert.match(joined.client, /^[0-9a-f]{16}$/, 'an opaque id');

    // The list, in the ack: by room name, by {room}, and the room joined last.
    for (const arg of [room, { room }, undefined]) {
      const answer = arg === undefined ? await bob.timeout(15_000).emitWithAck('presence') : await ack(bob, 'presence', arg);
      assert.equal(answer.ok, true, JSON.stringify(answer));
      assert.equal(answer.room, room);
      assert.deepEqual(answer.members.map((m) => m.user).sort(), ['alice', 'bob']);
      assert.equal(answer.total, 2);
      assert.ok(answer.members.some((m) => m.client === joined.client), 'the same id on both instances');
    }
    const refused = await ack(bob, 'presence', 'elsewhere');
    assert.equal(refused.ok, false);
    assert.equal(refused.error.code, 'not_joined');

    // Ephemeral: acked once handed to the fanout, an `ephemeral` event with one object at the other instance.
    const sent = await ack(alice, 'event:message', { message: 'typing', room, ephemeral: true });
    assert.equal(sent.ok, true, JSON.stringify(sent));
    await waitFor(() => events(bob, 'ephemeral').length === 1, { what: 'the ephemeral event at bob', timeout: 15_000 });
    const [[eph]] = events(bob, 'ephemeral');
    assert.equal(typeof eph, 'object', 'one object argument, not JSON text');
    assert.equal(eph.message, 'typing');
    assert.equal(eph.id, sent.id);
    assert.equal(eph.sender, 'alice');
    assert.equal(eph.room, room);
    assert.equal(typeof eph.ts, 'number');
    await waitFor(() => events(alice, 'ephemeral').length === 1, { what: 'the sender gets its own', timeout: 15_000 });
    const real = await ack(alice, 'event:message', { message: 'real', room });
    assert.equal(real.ok, true);
    await waitFor(() => events(bob, 'message').length >= 1, { what: 'the real message at bob', timeout: 15_000 });
    for (const s of [alice, bob]) {
      assert.ok(!events(s, 'message').some(([text]) => JSON.parse(text).id === sent.id), 'never as a message');
    }
    await waitFor(() => { try { return psql(`SELECT 1 FROM ${table} WHERE id = '${real.id}'`).length === 1; } catch { return false; } },
      { what: 'the real message in postgres', timeout: 60_000 });
    assert.deepEqual(psql(`SELECT count(*) FROM ${table} WHERE id = '${sent.id}'`), [['0']], 'the ephemeral one is not stored');

    // A leave, then a disconnect, reach the other instance.
    const left = await ack(bob, 'leave', room);
    assert.equal(left.ok, true);
    await waitFor(() => events(alice, 'presence_leave').some(([e]) => e.user === 'bob'), { what: "bob's leave", timeout: 15_000 });
    assert.equal((await ack(bob, 'join', room)).ok, true);
    await waitFor(() => events(alice, 'presence_join').filter(([e]) => e.user === 'bob').length === 2,
      { what: "bob's second join", timeout: 15_000 });
    bob.close();
    await waitFor(() => events(alice, 'presence_leave').filter(([e]) => e.user === 'bob').length === 2,
      { what: "bob's disconnect as a leave", timeout: 15_000 });
    const after = await ack(alice, 'presence', room);
    assert.deepEqual(after.members.map((m) => m.user), ['alice']);
  });
});
