// A stand-in for the websocket source inside a Playwright browser context:
// serves pipelines/web/ and answers the page's WebSocket per docs/protocol.md,
// including history on join (`history: true` messages, then `joined`) and
// `after`, presence (the `presence` request, presence_join/leave) and ephemeral
// sends (docs/protocol.md). Lets page.test.mjs check the page's behaviour
// without any server, and control what real servers make hard to provoke:
// dropped connections, held acks, error frames, an older server without
// history, a pipeline without presence, members on other instances.

import fs from 'node:fs';
import path from 'node:path';
import { PIPELINES } from './support.mjs';

export const ORIGIN = 'http://chat.test';
const WEB = path.join(PIPELINES, 'web');
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };

export class FakeChat {
  /**
   * @param {object} [o]
   * @param {boolean} [o.history]  send history and `joined` (false: behave like an older server)
   * @param {number} [o.historyLimit]  messages replayed on a join without `after`
   * @param {string|null} [o.presenceError]  answer presence requests with this error code
   *   (`unsupported`: a fanout without presence; `unknown_type`: a server that predates it)
   * @param {number} [o.maxPresence]  members listed in a presence answer (the fanout's max_presence_per_room)
   */
  constructor({ history = true, historyLimit = 50, presenceError = null, maxPresence = 100 } = {}) {
    this.history = history;
    this.historyLimit = historyLimit;
    this.presenceError = presenceError;
    this.maxPresence = maxPresence;
    this.others = new Map();      // room -> Map(client -> user): members connected elsewhere
    this.clients = 0;
    this.rooms = new Map();       // room -> [message frame]
    this.conns = new Set();
    this.frames = [];             // every client frame: { conn, frame }
    this.connections = 0;         // connections ever opened
    this.refuse = false;          // close every new connection at once (code 1001)
    this.holdAcks = false;        // keep acks in this.held until releaseAcks()
    this.held = [];
    this.failNext = null;         // error code for the next send
    this.replayOverlap = 0;       // a rejoin with `after` replays this many messages up to and including it too
    this.acked = new Map();       // sender \0 ref -> id (the resend window)
    this.seq = 0;
    this.waiters = new Set();
  }

  /** Routes the page and the WebSocket of `context` to this fake. */
  async attach(context) {
    await context.route(`${ORIGIN}/**`, (route) => {
      const url = new URL(route.request().url());
      const file = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
      const full = path.join(WEB, path.normalize(file));
      if (!full.startsWith(WEB) || !fs.existsSync(full)) return route.fulfill({ status: 404, body: 'not found' });
      return route.fulfill({ status: 200, contentType: TYPES[path.extname(full)] || 'application/octet-stream', body: fs.readFileSync(full) });
    });
    await context.routeWebSocket(/\/ws(\?.*)?$/, (ws) => this._open(ws));
  }

  newId() {
    this.seq += 1;
    return `01900000-0000-7000-8000-${String(this.seq).padStart(12, '0')}`;
  }

  /** Stores a message as if sent earlier (no fan-out). */
  seed(room, sender, text, ts = Date.now()) {
    const m = { type: 'message', id: this.newId(), room, sender, text, ts };
    this.messages(room).push(m);
    return m;
  }

  messages(room) {
    if (!this.rooms.has(room)) this.rooms.set(room, []);
    return this.rooms.get(room);
  }

  /** Stores and fans out a message from another client. */
  publish(room, sender, text) {
    const m = this.seed(room, sender, text);
    for (const c of this.conns) if (c.rooms.has(room)) c.send(m);
    return m;
  }

  /** Members of `room`: { user, client }, this fake's connections first. */
  members(room) {
    const here = [...this.conns].filter((c) => c.rooms.has(room)).map((c) => ({ user: c.name, client: c.client }));
    const there = [...(this.others.get(room) ?? new Map())].map(([client, user]) => ({ user, client }));
    return [...here, ...there];
  }

  _presence(room, type, user, client) {
    for (const c of this.conns) if (c.rooms.has(room)) c.send({ type, room, user, client });
  }

  /** A user connected to another instance joins `room`; returns its client id. */
  addMember(room, user) {
    const client = `x${++this.clients}`;
    if (!this.others.has(room)) this.others.set(room, new Map());
    this.others.get(room).set(client, user);
    this._presence(room, 'presence_join', user, client);
    return client;
  }

  /** That connection leaves (`quiet`: without telling anyone, as while a page is disconnected). */
  removeMember(room, client, { quiet = false } = {}) {
    const user = this.others.get(room)?.get(client);
    this.others.get(room)?.delete(client);
    if (!quiet) this._presence(room, 'presence_leave', user, client);
  }

  /** Fans out an ephemeral message from a user elsewhere (`typing` by default). */
  ephemeral(room, sender, text = 'typing') {
    const f = { type: 'ephemeral', id: this.newId(), room, sender, text, ts: Date.now() };
    for (const c of this.conns) if (c.rooms.has(room)) c.send(f);
    return f;
  }

  /** Closes every open connection (default 1006-like: the route closes with 1001). */
  async dropAll(code = 1001, reason = 'going away') {
    await Promise.all([...this.conns].map((c) => c.ws.close({ code, reason })));
    this.conns.clear();
  }

  releaseAcks() {
    const held = this.held;
    this.held = [];
    for (const f of held) f();
  }

  /** Resolves with the first client frame matching `pred` (seen already or later). */
  waitForFrame(pred, timeout = 10_000) {
    const found = this.frames.find(({ frame }) => pred(frame));
    if (found) return Promise.resolve(found.frame);
    return new Promise((resolve, reject) => {
      const w = (frame) => { if (pred(frame)) { clearTimeout(t); this.waiters.delete(w); resolve(frame); } };
      const t = setTimeout(() => { this.waiters.delete(w); reject(new Error('timed out waiting for a client frame')); }, timeout);
      this.waiters.add(w);
    });
  }

  /** Client frames of one type, in order. */
  sent(type) { return this.frames.filter(({ frame }) => frame.type === type).map(({ frame }) => frame); }

  _open(ws) {
    this.connections += 1;
    if (this.refuse) { ws.close({ code: 1001, reason: 'going away' }); return; }
    const conn = {
      ws, name: 'anonymous', rooms: new Set(), client: `c${++this.clients}`, asking: false,
      send: (f) => { try { ws.send(JSON.stringify(f)); } catch { /* closed */ } },
    };
    this.conns.add(conn);
    ws.onClose(() => {
      if (!this.conns.delete(conn)) return;
      for (const room of conn.rooms) this._presence(room, 'presence_leave', conn.name, conn.client);
    });
    ws.onMessage((raw) => {
      let frame;
      try { frame = JSON.parse(String(raw)); } catch { conn.send({ type: 'error', code: 'bad_json', message: 'bad json' }); return; }
      this.frames.push({ conn, frame });
      for (const w of [...this.waiters]) w(frame);
      this._handle(conn, frame);
    });
  }

  _handle(conn, f) {
    switch (f.type) {
      case 'hello': conn.name = f.name; break;
      case 'join': {
        const first = !conn.rooms.has(f.room);
        conn.rooms.add(f.room);
        if (first) this._presence(f.room, 'presence_join', conn.name, conn.client);
        if (!this.history) break;
        const all = this.messages(f.room);
        let replay;
        if (typeof f.after === 'string') {
          const i = all.findIndex((m) => m.id === f.after);
          replay = i < 0 ? all.slice(-this.historyLimit) : all.slice(Math.max(0, i + 1 - this.replayOverlap));
        } else {
          replay = all.slice(-this.historyLimit);
        }
        for (const m of replay) conn.send({ ...m, history: true });
        conn.send({ type: 'joined', room: f.room, history: replay.length });
        break;
      }
      case 'leave':
        if (conn.rooms.delete(f.room)) this._presence(f.room, 'presence_leave', conn.name, conn.client);
        break;
      case 'presence': {
        if (this.presenceError) { conn.send({ type: 'error', ref: f.ref, code: this.presenceError, message: 'no presence here' }); break; }
        if (!conn.rooms.has(f.room)) { conn.send({ type: 'error', ref: f.ref, code: 'not_joined', message: `not a member of room ${f.room}` }); break; }
        // As the server: the answer takes a moment (a read of the fanout's
        // presence), and one request at a time per connection.
        if (conn.asking) { conn.send({ type: 'error', ref: f.ref, code: 'busy', message: 'a presence request is under way' }); break; }
        conn.asking = true;
        setTimeout(() => {
          conn.asking = false;
          const all = this.members(f.room);
          conn.send({ type: 'presence', room: f.room, ref: f.ref, members: all.slice(0, this.maxPresence), total: all.length });
        }, 20);
        break;
      }
      case 'send': {
        if (!conn.rooms.has(f.room)) { conn.send({ type: 'error', ref: f.ref, code: 'not_joined', message: `not a member of room ${f.room}` }); break; }
        // Not subject to failNext/holdAcks, which script chat messages.
        // A server that predates ephemeral sends ignores the field: a "typing" would be a stored message.
        if (f.ephemeral === true && this.presenceError !== 'unknown_type') {
          this.ephemeral(f.room, conn.name, f.text); // to the sender too
          conn.send({ type: 'ack', ref: f.ref, id: this.newId() });
          break;
        }
        const key = `${conn.name}\0${f.ref}`;
        if (this.failNext) {
          const code = this.failNext;
          this.failNext = null;
          conn.send({ type: 'error', ref: f.ref, code, message: 'log append failed' });
          break;
        }
        if (this.acked.has(key)) { conn.send({ type: 'ack', ref: f.ref, id: this.acked.get(key) }); break; }
        const m = this.publishFrom(conn.name, f.room, f.text);
        this.acked.set(key, m.id);
        const ack = () => conn.send({ type: 'ack', ref: f.ref, id: m.id });
        if (this.holdAcks) this.held.push(ack); else ack();
        break;
      }
      default: conn.send({ type: 'error', code: 'unknown_type', message: `unknown type "${f.type}"` });
    }
  }

  publishFrom(sender, room, text) { return this.publish(room, sender, text); }
}
