// Nudge chat client: a plain browser module, no build step, no external
// resources. Wire protocol: docs/protocol.md. Every user-supplied string
// (message text, sender and room names) is rendered with textContent only,
// never as HTML.
//
// Data flow: frames from the server update `state` (rooms, their entries,
// pending sends); render*() functions bring the DOM in line with it.

// ------------------------------------------------------------------ config --

const WS_PATH = "/ws";
const MAX_FRAME_BYTES = 64 * 1024;        // the server's default maximum message size
const MAX_NAME_BYTES = 64;
const MAX_ROOM_BYTES = 128;
const ROOM_RE = /^[A-Za-z0-9_.:-]+$/;
const DEFAULT_ROOM = "general";
const BACKOFF_BASE_MS = 500;              // delay: random in [d/2, d], d = min(30 s, 0.5 s × 2^attempt)
const BACKOFF_MAX_MS = 30000;
const STABLE_AFTER_MS = 5000;             // a connection open this long resets the attempt count
const HISTORY_WAIT_MS = 3000;             // how long "loading" shows when a server sends no `joined`
const MAX_MESSAGES_PER_ROOM = 1000;
const GROUP_WINDOW_MS = 5 * 60 * 1000;    // consecutive messages of one sender share a header
const TYPING_SEND_MS = 2000;              // while typing, an ephemeral "typing" send at most this often
const TYPING_SHOW_MS = 4000;              // "… is typing" shows this long after the sender's last one
const PRESENCE_WAIT_MS = 10000;           // a presence request unanswered this long (rate-limited) is given up

const STORE_NAME = "nudge.name";          // string; "" means "stay anonymous, do not ask again"
const STORE_ROOMS = "nudge.rooms";        // array of room names
const STORE_CURRENT = "nudge.room";       // the room shown

const ERROR_TEXT = {
  bad_json: "The server could not parse the request.",
  bad_request: "The server rejected the request.",
  unknown_type: "The server did not understand the request.",
  not_joined: "Not a member of this room.",
  unavailable: "The server could not store the message.",
  rejected: "Refused by the server's policy.",
  rate_limited: "Sending too fast.",
  ref_conflict: "Conflicting resend.",
  forbidden: "Not allowed.",
  internal: "Server error.",
};
// Codes after which the same send may succeed (docs/protocol.md, Error codes).
const RETRYABLE = new Set(["unavailable", "rate_limited", "not_joined", "ref_conflict", "internal"]);
// Codes after which a retry must keep the first attempt's ref, so the server
// publishes it once (Resending by ref); the others need a new ref.
const SAME_REF = new Set(["unavailable", "internal"]);

const encoder = new TextEncoder();
const byteLength = (s) => encoder.encode(s).length;

// ------------------------------------------------------------------ store --

const storage = {
  get(key, fallback) {
    try {
      const v = localStorage.getItem(key);
      return v === null ? fallback : JSON.parse(v);
    } catch (_) {
      return fallback;
    }
  },
  set(key, value) {
    try { localStorage.setItem(key, JSON.stringify(value)); } catch (_) { /* private mode: not kept */ }
  },
};

const validRoom = (room) =>
  typeof room === "string" && ROOM_RE.test(room) && byteLength(room) <= MAX_ROOM_BYTES;

function validName(name) {
  const n = byteLength(name);
  // eslint-disable-next-line no-control-regex
  return n >= 1 && n <= MAX_NAME_BYTES && !/[\u0000-\u001f\u007f]/.test(name);
}

// ------------------------------------------------------------------ state --

const state = {
  name: null,               // chosen display name, null = anonymous
  wireName: "anonymous",    // the name the current connection announced
  rooms: new Map(),         // name -> Room (insertion order = sidebar order)
  current: null,            // name of the room shown
  ws: null,
  conn: "connecting",       // connecting | connected | reconnecting | offline
  attempt: 0,               // failed attempts since the last stable connection
  everConnected: false,
  retryAt: 0,
  retryTimer: 0,
  tickTimer: 0,
  stableTimer: 0,
  lastClose: null,
  nextRef: 1,
  nextOrder: 1,             // local order of own sends
  nextSeq: 1,               // position in the timelines, in order of arrival
  byRef: new Map(),         // ref -> own entry waiting for its ack or error
  byId: new Map(),          // message id -> entry
  // What the connection's server offers, learnt from the first presence
  // answer and reset on every new connection: unknown | available | unsupported.
  presence: "unknown",      // member lists
  ephemeral: "unknown",     // typing sends (see onPresenceError for why they wait for presence)
  presenceAsking: null,     // { ref, room } of the one presence request unanswered, or null
  presenceQueue: [],        // names of the rooms to ask about next
  presenceTimer: 0,
  ephemeralRefs: new Set(), // refs of typing sends not answered yet
  typingSentAt: 0,          // Date.now() of the last typing send, and its room
  typingRoom: null,
  typingTimer: 0,           // hides "… is typing" when the earliest one expires
  refPrefix: "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 6) + "-",
};

// A Room:
//   { name, entries: [Entry], unread, seen: Set<id>, lastId,
//     joined: false until a join was sent on some connection (then a rejoin
//             carries `after`), loading: waiting for history,
//     historyCount: messages the first join replayed, separators: Map,
//     members: Map<client id, user> from the last presence answer kept current
//              by presence_join/leave, null when there is none,
//     total: connections in the room, listed or not (the server bounds the list),
//     presencePending: events that arrived while a presence request was
//              unanswered (null when none is), applied again to its answer,
//     typing: Map<sender, Date.now() until which "… is typing" shows> }
//
// An Entry is one message in a room's timeline:
//   { room, sender, text, ts, own, id, ref, status, code, detail, seq, order,
//     echoed, history, el, parts }
// status: null (someone else's, or our own seen in history) | "queued" (not on
//   the wire: no connection) | "sending" (sent, no answer yet) | "delivered"
//   (acked: durable) | "failed" (error frame).
// seq orders entries by arrival from the server; own sends not echoed yet
// (seq null) sort after everything else, in the order they were written.

function newRoom(name) {
  return {
    name, entries: [], unread: 0, seen: new Set(), lastId: null,
    joined: false, loading: false, loadingTimer: 0, historyCount: 0, separators: new Map(),
    members: null, total: 0, presencePending: null, typing: new Map(),
  };
}

// -------------------------------------------------------------------- DOM --

const $ = (id) => document.getElementById(id);
const dom = {
  app: $("app"),
  sidebar: $("sidebar"),
  sidebarClose: $("sidebar-close"),
  scrim: $("scrim"),
  menuButton: $("menu-button"),
  menuBadge: $("menu-badge"),
  conn: $("conn"),
  connText: $("conn-text"),
  banner: $("conn-banner"),
  bannerText: $("conn-banner-text"),
  reconnectNow: $("reconnect-now"),
  roomList: $("room-list"),
  roomsEmpty: $("rooms-empty"),
  joinForm: $("join-form"),
  joinInput: $("join-input"),
  joinError: $("join-error"),
  meAvatar: $("me-avatar"),
  meName: $("me-name"),
  changeName: $("change-name"),
  roomTitle: $("room-title"),
  roomHash: $("room-hash"),
  leaveRoom: $("leave-room"),
  notice: $("notice"),
  noticeText: $("notice-text"),
  noticeClose: $("notice-close"),
  messages: $("messages"),
  typing: $("typing"),
  members: $("members"),
  memberList: $("member-list"),
  membersMore: $("members-more"),
  membersToggle: $("members-toggle"),
  membersCount: $("members-count"),
  empty: $("empty"),
  emptyTitle: $("empty-title"),
  emptySub: $("empty-sub"),
  list: $("message-list"),
  jump: $("jump-button"),
  composer: $("composer"),
  input: $("composer-input"),
  sendButton: $("send-button"),
  hint: $("composer-hint"),
  nameDialog: $("name-dialog"),
  nameForm: $("name-form"),
  nameInput: $("name-input"),
  nameError: $("name-error"),
  nameCancel: $("name-cancel"),
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function hue(str) {
  let h = 0;
  for (const ch of str) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

function paintAvatar(node, name) {
  const first = Array.from(name.trim())[0] || "?";
  node.textContent = first.toUpperCase();
  node.style.setProperty("--avatar-hue", String(hue(name)));
}

// ------------------------------------------------------------------- time --

const pad2 = (n) => String(n).padStart(2, "0");
const hhmm = (d) => pad2(d.getHours()) + ":" + pad2(d.getMinutes());
const fullFmt = new Intl.DateTimeFormat(undefined, {
  weekday: "long", year: "numeric", month: "long", day: "numeric",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });
const dayYearFmt = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "long", day: "numeric" });

const dayKey = (ts) => { const d = new Date(ts); return d.getFullYear() + "-" + (d.getMonth() + 1) + "-" + d.getDate(); };

function dayLabel(ts) {
  const d = new Date(ts);
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (d.toDateString() === today.toDateString()) return "Today";
  if (d.toDateString() === yesterday.toDateString()) return "Yesterday";
  return d.getFullYear() === today.getFullYear() ? dayFmt.format(d) : dayYearFmt.format(d);
}

// -------------------------------------------------------------- connection --

// With token auth on (websocket source, auth_jwt_secret), open the page as
// /#token=<JWT> (or ?token=): browsers cannot set headers on a WebSocket, so
// the token travels in the query string. The fragment form keeps it out of
// the static page's access logs.
function pageToken() {
  const fromHash = new URLSearchParams(location.hash.replace(/^#/, "")).get("token");
  return fromHash || new URLSearchParams(location.search).get("token");
}

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const token = pageToken();
  return scheme + "//" + location.host + WS_PATH + (token ? "?token=" + encodeURIComponent(token) : "");
}

// navigator.onLine only says whether the machine has a network interface
// besides loopback: a server on localhost or an intranet may be reachable
// while it is false. So it never stops an attempt; it only names the state.
const lostState = () => (navigator.onLine === false ? "offline" : "reconnecting");

function connect() {
  clearTimeout(state.retryTimer);
  setConn(state.everConnected || state.attempt > 0 ? lostState() : "connecting");

  let ws;
  try {
    ws = new WebSocket(wsUrl());
  } catch (_) {
    scheduleReconnect();
    return;
  }
  state.ws = ws;
  renderConn();

  ws.addEventListener("open", () => {
    if (state.ws !== ws) return;
    state.everConnected = true;
    state.lastClose = null;
    stopTicking();
    // A new connection may be to another server: ask again what it offers.
    state.presence = state.ephemeral = "unknown";
    state.presenceAsking = null;
    state.presenceQueue = [];
    clearTimeout(state.presenceTimer);
    state.ephemeralRefs.clear();
    // hello first: the name applies to what is sent after it.
    state.wireName = state.name || "anonymous";
    if (state.name) sendFrame({ type: "hello", name: state.name });
    for (const room of state.rooms.values()) joinOnWire(room);
    setConn("connected");
    clearTimeout(state.stableTimer);
    state.stableTimer = setTimeout(() => { state.attempt = 0; }, STABLE_AFTER_MS);
    flushQueued();
  });

  ws.addEventListener("message", (ev) => {
    if (state.ws !== ws || typeof ev.data !== "string") return;
    let frame;
    try {
      frame = JSON.parse(ev.data);
    } catch (_) {
      console.warn("nudge: ignoring a frame that is not JSON");
      return;
    }
    if (frame && typeof frame === "object" && !Array.isArray(frame)) handleFrame(frame);
  });

  ws.addEventListener("close", (ev) => {
    if (state.ws !== ws) return;
    state.ws = null;
    clearTimeout(state.stableTimer);
    state.lastClose = ev;
    requeueInFlight();
    forgetLive();
    scheduleReconnect();
  });
  // "error" is always followed by "close": nothing to do on it.
}

function dropConnection() {
  if (!state.ws) return;
  const old = state.ws;
  state.ws = null;
  try { old.close(1000, "reconnect"); } catch (_) { /* already closing */ }
  requeueInFlight();
  forgetLive();
}

// What only a live connection keeps current: typing indicators go, member
// lists stay (dimmed) until the rejoin's presence answer replaces them.
function forgetLive() {
  for (const room of state.rooms.values()) {
    room.presencePending = null;
    room.typing.clear();
  }
  renderTyping();
}

function reconnectNow() {
  state.attempt = 0;
  dropConnection();
  connect();
}

function scheduleReconnect() {
  const exp = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** state.attempt);
  const delay = Math.round(exp / 2 + Math.random() * (exp / 2)); // jitter: [exp/2, exp]
  state.attempt += 1;
  state.retryAt = Date.now() + delay;
  clearTimeout(state.retryTimer);
  state.retryTimer = setTimeout(connect, delay);
  setConn(lostState());
  startTicking();
}

function startTicking() {
  clearInterval(state.tickTimer);
  state.tickTimer = setInterval(renderConn, 250);
}

function stopTicking() {
  clearInterval(state.tickTimer);
  state.tickTimer = 0;
}

function sendFrame(obj) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(obj));
  return true;
}

// join, or after a reconnect a rejoin that asks for what was missed: the
// messages stored after the last one this page saw in the room.
function joinOnWire(room) {
  const frame = { type: "join", room: room.name };
  if (room.joined && room.lastId) frame.after = room.lastId;
  if (!sendFrame(frame)) return;
  const first = !room.joined;
  room.joined = true;
  if (first) {
    room.loading = true;
    clearTimeout(room.loadingTimer);
    // A server without history never sends `joined`: stop waiting for it.
    room.loadingTimer = setTimeout(() => { room.loading = false; if (room.name === state.current) renderRoom(false); }, HISTORY_WAIT_MS);
  }
}

function setConn(s) {
  state.conn = s;
  dom.app.dataset.conn = s;
  renderConn();
  renderComposer();
}

function renderConn() {
  const s = state.conn;
  const ws = state.ws;
  const trying = !!ws && ws.readyState === WebSocket.CONNECTING;
  let label;
  let banner = "";
  if (s === "connected") {
    label = "Connected";
  } else if (s === "connecting") {
    label = "Connecting…";
  } else {
    const secs = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
    const offline = s === "offline";
    if (trying) {
      label = offline ? "Offline" : "Reconnecting…";
      banner = (offline ? "You are offline. " : "") + "Reconnecting… (attempt " + state.attempt + ")";
    } else {
      label = offline ? "Offline" : "Reconnecting in " + secs + " s";
      banner = offline ? "You are offline." : state.everConnected ? "Connection lost." : "Cannot reach the server.";
      banner += secs > 0 ? " Reconnecting in " + secs + " s" : " Reconnecting…";
      banner += " (attempt " + state.attempt + ")";
    }
  }
  dom.conn.dataset.state = s;
  dom.conn.dataset.attempt = String(state.attempt);
  const reason = s === "reconnecting" || s === "offline" ? closeReason(state.lastClose) : "";
  dom.conn.title = (banner || label) + (reason ? " · " + reason : "");
  dom.banner.title = reason ? "Closed: " + reason : "";
  dom.connText.textContent = label;
  dom.banner.hidden = !banner;
  dom.banner.dataset.state = s;
  dom.bannerText.textContent = banner;
  dom.reconnectNow.hidden = trying;
}

function closeReason(ev) {
  if (!ev) return "";
  switch (ev.code) {
    case 1001: return "the server is restarting";
    case 1008: return ev.reason || "policy violation";
    case 1009: return "a message was too large";
    case 1007: return "invalid text sent";
    default: return ev.reason || "";
  }
}

// ---------------------------------------------------------------- protocol --

function handleFrame(f) {
  switch (f.type) {
    case "message": onMessage(f); break;
    case "ack": onAck(f); break;
    case "error": onError(f); break;
    case "joined": onJoined(f); break;
    case "presence": onPresence(f); break;
    case "presence_join": onPresenceChange(f, true); break;
    case "presence_leave": onPresenceChange(f, false); break;
    case "ephemeral": onEphemeral(f); break;
    default: break; // unknown frame types are ignored (docs/protocol.md, Compatibility)
  }
}

function onMessage(m) {
  if (typeof m.room !== "string" || typeof m.id !== "string") return;
  const room = state.rooms.get(m.room);
  if (!room) return; // left meanwhile
  const sender = typeof m.sender === "string" ? m.sender : "anonymous";
  const text = typeof m.text === "string" ? m.text : "";
  const ts = typeof m.ts === "number" ? m.ts : Date.now();
  const history = m.history === true;
  room.lastId = m.id;
  // The message the typing announced: the indicator goes at once.
  if (!history && room.typing.delete(sender) && room.name === state.current) renderTyping();

  // Never render an id twice: a replayed message, or our own whose ack came first.
  const known = state.byId.get(m.id);
  if (known) {
    if (known.seq === null) known.seq = state.nextSeq++;
    known.ts = ts;
    known.echoed = true;
    room.seen.add(m.id);
    refreshRoom(room, known);
    return;
  }
  if (room.seen.has(m.id)) return; // seen before, since trimmed or dismissed

  room.seen.add(m.id);
  // The echo of one of our own sends? One sender's messages keep their
  // order, so it is the oldest unconfirmed send with this text.
  if (sender === state.wireName) {
    const mine = room.entries
      .filter((e) => e.own && !e.echoed && !e.id && e.status === "sending" && e.text === text)
      .sort((a, b) => a.order - b.order)[0];
    if (mine) {
      mine.id = m.id;
      mine.ts = ts;
      mine.echoed = true;
      mine.seq = state.nextSeq++;
      state.byId.set(m.id, mine);
      refreshRoom(room, mine);
      return;
    }
  }

  const entry = {
    room: m.room, sender, text, ts,
    own: state.name !== null && sender === state.name,
    id: m.id, ref: null, status: null, code: null, detail: null,
    seq: state.nextSeq++, order: 0, echoed: true,
    // Replayed on the first join: shown under "Earlier messages". What a
    // rejoin replays was missed while away, so it counts as new.
    history: history && room.loading,
    el: null, parts: null,
  };
  state.byId.set(m.id, entry);
  room.entries.push(entry);
  trimRoom(room);
  if (!entry.history && room.name !== state.current && !entry.own) {
    room.unread += 1;
    renderRooms();
  } else if (!entry.history && room.name === state.current && document.hidden && !entry.own) {
    room.unread += 1;
    renderRooms();
  }
  refreshRoom(room, entry);
}

function onJoined(j) {
  const room = typeof j.room === "string" ? state.rooms.get(j.room) : null;
  if (!room) return;
  if (room.loading) {
    room.loading = false;
    clearTimeout(room.loadingTimer);
    room.historyCount = typeof j.history === "number" ? j.history : room.entries.filter((e) => e.history).length;
  }
  if (room.name === state.current) renderRoom(false);
  // Joined (again): who is here now. Every join, so a rejoin replaces the list
  // the connection loss left stale.
  requestPresence(room);
}

// ---------------------------------------------------------------- presence --

// A connection may have one presence request unanswered (the server refuses
// a second with `busy`): the others wait their turn, each room once.
function requestPresence(room) {
  if (state.presence === "unsupported") return;
  if (state.presenceAsking) {
    if (state.presenceAsking.room !== room.name && !state.presenceQueue.includes(room.name)) {
      state.presenceQueue.push(room.name);
    }
    return;
  }
  const ref = state.refPrefix + "p" + state.nextRef++;
  if (!sendFrame({ type: "presence", room: room.name, ref })) return;
  state.presenceAsking = { ref, room: room.name };
  // A rate-limited request gets an error without its ref: do not wait forever.
  state.presenceTimer = setTimeout(askNextPresence, PRESENCE_WAIT_MS);
  if (!room.presencePending) room.presencePending = [];
}

function askNextPresence() {
  clearTimeout(state.presenceTimer);
  state.presenceAsking = null;
  while (state.presenceQueue.length > 0) {
    const room = state.rooms.get(state.presenceQueue.shift());
    if (room) {
      requestPresence(room);
      return;
    }
  }
}

function onPresence(f) {
  const answered = !!state.presenceAsking && f.ref === state.presenceAsking.ref;
  const room = typeof f.room === "string" ? state.rooms.get(f.room) : null;
  if (!room || !Array.isArray(f.members)) {
    if (answered) askNextPresence();
    return;
  }
  state.presence = "available";
  if (state.ephemeral === "unknown") state.ephemeral = "available";
  const members = new Map();
  for (const m of f.members) {
    if (m && typeof m.client === "string" && typeof m.user === "string") members.set(m.client, m.user);
  }
  room.members = members;
  room.total = Math.max(typeof f.total === "number" ? f.total : 0, members.size);
  // Events that crossed the request may or may not be in its answer: applied
  // again, a join of a listed client and a leave of an unlisted one change
  // nothing. (When the list is bounded, the count of the rest is approximate.)
  const crossed = room.presencePending || [];
  room.presencePending = null;
  for (const ev of crossed) applyPresenceChange(room, ev);
  if (room.name === state.current) renderMembers();
  if (answered) askNextPresence();
}

function onPresenceChange(f, join) {
  const room = typeof f.room === "string" ? state.rooms.get(f.room) : null;
  if (!room || typeof f.client !== "string") return;
  const ev = { join, client: f.client, user: typeof f.user === "string" ? f.user : "anonymous" };
  if (room.presencePending) room.presencePending.push(ev);
  applyPresenceChange(room, ev);
  if (room.name === state.current) renderMembers();
}

function applyPresenceChange(room, ev) {
  if (!room.members) return; // no list yet: the answer to come has it
  const listed = room.members.has(ev.client);
  if (ev.join) {
    if (listed) return;
    room.members.set(ev.client, ev.user);
    room.total += 1;
  } else {
    room.members.delete(ev.client);
    // An unlisted one was among the "+N more".
    if (listed || room.total > room.members.size) room.total -= 1;
  }
  room.total = Math.max(room.total, room.members.size);
}

function onPresenceError(code) {
  const room = state.rooms.get(state.presenceAsking.room);
  if (room) room.presencePending = null;
  // not_joined: left or rejoining meanwhile, asked again after the next
  // `joined`. busy: cannot happen with one request at a time; not worth a loop.
  if (code === "not_joined" || code === "busy") {
    askNextPresence();
    return;
  }
  // The pipeline keeps no presence: no member lists on this connection.
  state.presence = "unsupported";
  clearTimeout(state.presenceTimer);
  state.presenceAsking = null;
  state.presenceQueue = [];
  // A server that predates presence answers `unknown_type`. It would also
  // ignore `ephemeral` in a send and store "typing" as a chat message, so
  // typing goes unsent; any other refusal comes from a server that knows both.
  if (state.ephemeral === "unknown") state.ephemeral = code === "unknown_type" ? "unsupported" : "available";
  for (const r of state.rooms.values()) r.members = null;
  renderMembers();
}

function renderMembers() {
  const room = state.current ? state.rooms.get(state.current) : null;
  const members = room ? room.members : null;
  dom.app.dataset.presence = state.presence;
  dom.members.hidden = !members;
  dom.membersToggle.hidden = !members;
  if (!members) {
    showMembersPanel(false);
    return;
  }
  // One line per user, however many connections it has; own name first.
  const users = new Set(members.values());
  const me = state.wireName;
  const names = Array.from(users).sort((a, b) => (b === me) - (a === me) || a.localeCompare(b));
  const items = names.map((user) => {
    const li = el("li", "member");
    li.dataset.testid = "member";
    li.dataset.user = user;
    const avatar = el("span", "avatar");
    avatar.setAttribute("aria-hidden", "true");
    paintAvatar(avatar, user);
    li.append(avatar, el("span", "member-name", user));
    if (user === me) {
      li.classList.add("own");
      li.append(el("span", "member-you", "you"));
    }
    return li;
  });
  dom.memberList.replaceChildren(...items);
  const more = Math.max(0, room.total - members.size);
  dom.membersMore.hidden = more === 0;
  dom.membersMore.textContent = "+" + more + " more";
  const count = names.length + more;
  dom.membersCount.textContent = String(count);
  dom.membersToggle.title = count + (count === 1 ? " person" : " people") + " in this room";
  dom.membersToggle.setAttribute("aria-label", "Who is in this room: " + count);
}

// The list is a column on wide screens; on narrow ones a panel that the
// header's count opens.
function showMembersPanel(open) {
  dom.app.classList.toggle("members-open", open);
  dom.membersToggle.setAttribute("aria-expanded", String(open));
}

// ------------------------------------------------------------------ typing --

function onEphemeral(f) {
  const room = typeof f.room === "string" ? state.rooms.get(f.room) : null;
  // Only typing is shown; other ephemeral kinds (read receipts) are not yet.
  if (!room || f.text !== "typing" || typeof f.sender !== "string") return;
  if (f.sender === state.wireName) return; // our own, fanned out to us too
  room.typing.set(f.sender, Date.now() + TYPING_SHOW_MS);
  if (room.name === state.current) renderTyping();
}

function typingText(names) {
  if (names.length === 0) return "";
  if (names.length === 1) return names[0] + " is typing…";
  if (names.length <= 3) return names.slice(0, -1).join(", ") + " and " + names[names.length - 1] + " are typing…";
  return names.slice(0, 2).join(", ") + " and " + (names.length - 2) + " others are typing…";
}

function renderTyping() {
  clearTimeout(state.typingTimer);
  const room = state.current ? state.rooms.get(state.current) : null;
  const now = Date.now();
  const names = [];
  let next = Infinity;
  if (room) {
    for (const [sender, until] of room.typing) {
      if (until <= now) {
        room.typing.delete(sender);
      } else {
        names.push(sender);
        next = Math.min(next, until);
      }
    }
  }
  const text = typingText(names);
  if (dom.typing.textContent !== text) {
    // The line takes room from the messages: keep the newest in view.
    const stick = nearBottom();
    dom.typing.textContent = text;
    dom.typing.classList.toggle("active", names.length > 0);
    if (stick) scrollToBottom();
  }
  if (next !== Infinity) state.typingTimer = setTimeout(renderTyping, next - now);
}

// The user is typing in the composer: tell the room, at most once every
// TYPING_SEND_MS (receivers show it for TYPING_SHOW_MS, so it never flickers).
function noteTyping() {
  const room = state.current;
  if (!room || state.ephemeral !== "available" || dom.input.value.trim() === "") return;
  const now = Date.now();
  if (state.typingRoom === room && now - state.typingSentAt < TYPING_SEND_MS) return;
  const ref = state.refPrefix + "t" + state.nextRef++;
  if (!sendFrame({ type: "send", room, text: "typing", ref, ephemeral: true })) return;
  state.ephemeralRefs.add(ref);
  state.typingSentAt = now;
  state.typingRoom = room;
}

function onAck(a) {
  if (typeof a.ref !== "string" || typeof a.id !== "string") return;
  if (state.ephemeralRefs.delete(a.ref)) return;
  const entry = state.byRef.get(a.ref);
  if (!entry) return;
  state.byRef.delete(a.ref);
  const room = state.rooms.get(entry.room);

  // The echo attached by content was someone else's (same name, same text):
  // give it back its own line.
  if (entry.id && entry.id !== a.id) {
    const other = Object.assign({}, entry, { own: false, ref: null, status: null, code: null, detail: null, el: null, parts: null });
    state.byId.set(other.id, other);
    if (room) room.entries.push(other);
    entry.echoed = false;
    entry.seq = null;
  }
  // Our echo may already be in the timeline as a line of its own.
  const dup = state.byId.get(a.id);
  if (dup && dup !== entry && room) {
    const i = room.entries.indexOf(dup);
    if (i >= 0) room.entries.splice(i, 1);
    if (dup.el) dup.el.remove();
    entry.ts = dup.ts;
    entry.seq = dup.seq;
    entry.history = dup.history;
    entry.echoed = true;
  }
  entry.id = a.id;
  entry.status = "delivered";
  entry.code = entry.detail = null;
  if (entry.seq === null) entry.seq = state.nextSeq++;
  state.byId.set(a.id, entry);
  if (room) {
    room.seen.add(a.id);
    refreshRoom(room, entry);
  }
}

function onError(e) {
  const code = typeof e.code === "string" ? e.code : "error";
  const detail = typeof e.message === "string" ? e.message : "";
  if (state.presenceAsking && e.ref === state.presenceAsking.ref) {
    onPresenceError(code);
    return;
  }
  if (typeof e.ref === "string" && state.ephemeralRefs.delete(e.ref)) {
    // A pipeline with `ephemeral = false` refuses them: typing indicators are
    // a nicety, not worth a notice; stop sending them on this connection.
    if (code !== "not_joined") state.ephemeral = "unsupported";
    return;
  }
  const entry = typeof e.ref === "string" ? state.byRef.get(e.ref) : null;
  if (entry) {
    state.byRef.delete(e.ref);
    entry.status = "failed";
    entry.code = code;
    entry.detail = detail || null;
    const room = state.rooms.get(entry.room);
    if (room) refreshRoom(room, entry);
    return;
  }
  showNotice((ERROR_TEXT[code] || "The server refused a request.") + (detail ? " " + detail : "") + " [" + code + "]");
}

// The connection dropped: sends without an answer will get none on this
// connection. They go back to the queue and are re-sent, with the same ref,
// after reconnecting: within the server's resend window that yields the
// first attempt's outcome instead of a second message.
function requeueInFlight() {
  for (const [ref, entry] of state.byRef) {
    state.byRef.delete(ref);
    entry.status = "queued";
    const room = state.rooms.get(entry.room);
    if (room) refreshRoom(room, entry);
  }
}

function flushQueued() {
  const queued = [];
  for (const room of state.rooms.values()) {
    for (const e of room.entries) if (e.status === "queued") queued.push(e);
  }
  queued.sort((a, b) => a.order - b.order);
  for (const e of queued) transmit(e);
}

function transmit(entry) {
  if (!entry.ref) entry.ref = state.refPrefix + state.nextRef++;
  if (!sendFrame({ type: "send", room: entry.room, text: entry.text, ref: entry.ref })) return false;
  entry.status = "sending";
  state.byRef.set(entry.ref, entry);
  const room = state.rooms.get(entry.room);
  if (room) refreshRoom(room, entry);
  return true;
}

// ------------------------------------------------------------------- rooms --

function addRoom(name, select) {
  let room = state.rooms.get(name);
  if (!room) {
    room = newRoom(name);
    state.rooms.set(name, room);
    joinOnWire(room);
    saveRooms();
  }
  if (select || !state.current) selectRoom(name);
  else renderRooms();
}

function leaveRoom(name) {
  const room = state.rooms.get(name);
  if (!room) return;
  sendFrame({ type: "leave", room: name });
  clearTimeout(room.loadingTimer);
  for (const e of room.entries) {
    if (e.ref) state.byRef.delete(e.ref);
    if (e.id) state.byId.delete(e.id);
  }
  const names = Array.from(state.rooms.keys());
  const idx = names.indexOf(name);
  state.rooms.delete(name);
  saveRooms();
  if (state.current === name) {
    const rest = names.filter((n) => n !== name);
    selectRoom(rest[Math.min(idx, rest.length - 1)] || null);
  } else {
    renderRooms();
  }
}

function saveRooms() {
  storage.set(STORE_ROOMS, Array.from(state.rooms.keys()));
}

function selectRoom(name) {
  const changed = state.current !== name;
  state.current = name;
  storage.set(STORE_CURRENT, name);
  const room = name ? state.rooms.get(name) : null;
  if (room) room.unread = 0;
  renderRooms();
  renderRoom(true);
  renderComposer();
  renderMembers();
  renderTyping();
  // Shown again: correct what the events may have missed meanwhile.
  if (changed && room && room.members) requestPresence(room);
  closeDrawer();
  if (changed && room && matchMedia("(min-width: 761px)").matches) dom.input.focus();
}

function renderRooms() {
  const items = [];
  for (const room of state.rooms.values()) {
    const li = el("li", "room-item");
    li.dataset.testid = "room-" + room.name;
    li.dataset.room = room.name;
    li.dataset.unread = String(room.unread);
    const btn = el("button", "room-button");
    btn.type = "button";
    const active = room.name === state.current;
    li.classList.toggle("active", active);
    if (active) btn.setAttribute("aria-current", "page");
    btn.append(el("span", "room-hash", "#"), el("span", "room-name", room.name));
    if (room.unread > 0) {
      const badge = el("span", "badge", room.unread > 99 ? "99+" : String(room.unread));
      badge.dataset.testid = "unread";
      badge.setAttribute("aria-label", room.unread + " unread");
      btn.append(badge);
      li.classList.add("has-unread");
    }
    btn.addEventListener("click", () => selectRoom(room.name));
    const leave = el("button", "room-leave", "×");
    leave.type = "button";
    leave.title = "Leave #" + room.name;
    leave.setAttribute("aria-label", "Leave " + room.name);
    leave.dataset.testid = "leave-" + room.name;
    leave.addEventListener("click", () => leaveRoom(room.name));
    li.append(btn, leave);
    items.push(li);
  }
  dom.roomList.replaceChildren(...items);
  dom.roomsEmpty.hidden = state.rooms.size > 0;
  let total = 0;
  for (const r of state.rooms.values()) total += r.unread;
  dom.menuBadge.hidden = total === 0;
  dom.menuBadge.textContent = total > 99 ? "99+" : String(total);
  document.title = (total ? "(" + total + ") " : "") + (state.current ? "#" + state.current + " · " : "") + "Nudge chat";
}

// ---------------------------------------------------------------- messages --

function trimRoom(room) {
  while (room.entries.length > MAX_MESSAGES_PER_ROOM) {
    const idx = room.entries.findIndex((e) => e.status !== "sending" && e.status !== "queued");
    if (idx < 0) break;
    const [gone] = room.entries.splice(idx, 1);
    if (gone.id) state.byId.delete(gone.id);
    if (gone.el) gone.el.remove();
  }
}

function sortedEntries(room) {
  return room.entries.slice().sort((a, b) => {
    const sa = a.seq === null ? Infinity : a.seq;
    const sb = b.seq === null ? Infinity : b.seq;
    if (sa !== sb) return sa - sb;
    return a.order - b.order;
  });
}

function nearBottom() {
  const m = dom.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 120;
}

function scrollToBottom() {
  dom.messages.scrollTop = dom.messages.scrollHeight;
  dom.jump.hidden = true;
}

function refreshRoom(room, entry) {
  const visible = room.name === state.current;
  const stick = visible && (nearBottom() || !!(entry && entry.own && entry.status === "queued"));
  if (entry) renderEntry(entry);
  if (visible) {
    renderRoom(false, stick);
    if (!stick && entry && !entry.own && entry.status === null) dom.jump.hidden = false;
  }
}

function separator(room, key, className, text, testid) {
  let node = room.separators.get(key);
  if (!node) {
    node = el("li", className);
    node.setAttribute("role", "separator");
    node.dataset.testid = testid;
    node.append(el("span", "separator-label", text));
    room.separators.set(key, node);
  } else if (node.firstChild.textContent !== text) {
    node.firstChild.textContent = text;
  }
  return node;
}

function renderRoom(jump, forceScroll) {
  const room = state.current ? state.rooms.get(state.current) : null;
  dom.roomTitle.textContent = room ? room.name : "No room";
  dom.roomHash.hidden = !room;
  dom.leaveRoom.hidden = !room;
  const stick = jump || forceScroll || nearBottom();

  const entries = room ? sortedEntries(room) : [];
  let lastDelivered = null;
  for (const e of entries) if (e.own && e.status === "delivered") lastDelivered = e;

  const nodes = [];
  let prev = null;
  let historyShown = false;
  for (const e of entries) {
    if (!e.el) renderEntry(e);
    if (e.history && !historyShown) {
      historyShown = true;
      nodes.push(separator(room, "history", "history-divider", "Earlier messages", "history-divider"));
    }
    const day = dayKey(e.ts);
    const newDay = !prev || dayKey(prev.ts) !== day;
    if (newDay) nodes.push(separator(room, "day:" + day, "day-separator", dayLabel(e.ts), "day-separator"));
    const grouped = !newDay && prev && prev.sender === e.sender && prev.own === e.own &&
      prev.status !== "failed" && e.status !== "failed" && prev.history === e.history &&
      Math.abs(e.ts - prev.ts) < GROUP_WINDOW_MS;
    e.el.classList.toggle("grouped", !!grouped);
    e.el.classList.toggle("last-delivered", e === lastDelivered);
    nodes.push(e.el);
    prev = e;
  }
  const current = dom.list.children;
  if (current.length !== nodes.length || nodes.some((n, i) => current[i] !== n)) {
    dom.list.replaceChildren(...nodes);
  }

  dom.empty.hidden = entries.length > 0;
  if (!room) {
    dom.emptyTitle.textContent = "You are not in any room";
    dom.emptySub.textContent = "Join or create one from the list of rooms.";
  } else if (room.loading && state.conn === "connected") {
    dom.emptyTitle.textContent = "#" + room.name;
    dom.emptySub.textContent = "Loading recent messages…";
  } else {
    dom.emptyTitle.textContent = "Welcome to #" + room.name;
    dom.emptySub.textContent = "This is the start of the room. Say hello!";
  }
  dom.empty.classList.toggle("loading", !!(room && room.loading));
  if (stick) scrollToBottom();
}

function renderEntry(e) {
  if (!e.el) {
    const li = el("li", "message");
    li.dataset.testid = "message";
    const avatar = el("span", "avatar");
    avatar.setAttribute("aria-hidden", "true");
    const body = el("div", "message-body");
    const head = el("div", "message-head");
    const sender = el("span", "message-sender");
    sender.dataset.testid = "message-sender";
    head.append(sender);
    const bubble = el("div", "bubble");
    const text = el("span", "message-text");
    text.dataset.testid = "message-text";
    const spacer = el("span", "stamp-space");
    spacer.setAttribute("aria-hidden", "true");
    const stamp = el("span", "stamp");
    const time = el("time", "message-time");
    time.dataset.testid = "message-time";
    const tick = el("span", "tick");
    stamp.append(time, tick);
    bubble.append(text, spacer, stamp);
    const meta = el("div", "message-meta");
    meta.dataset.testid = "message-status";
    body.append(head, bubble, meta);
    li.append(avatar, body);
    e.el = li;
    e.parts = { avatar, sender, text, time, tick, meta };
  }
  const p = e.parts;
  const li = e.el;
  if (e.id) li.dataset.id = e.id; else delete li.dataset.id;
  li.dataset.sender = e.sender;
  li.dataset.status = e.status || "received";
  if (e.history) li.dataset.history = "true"; else delete li.dataset.history;
  // Came back through the server's fan-out (for own messages: the echo arrived).
  if (e.echoed) li.dataset.echoed = "true"; else delete li.dataset.echoed;
  li.classList.toggle("own", !!e.own);
  li.classList.toggle("failed", e.status === "failed");
  li.classList.toggle("pending", e.status === "queued" || e.status === "sending");
  paintAvatar(p.avatar, e.sender);
  li.style.setProperty("--avatar-hue", String(hue(e.sender)));
  p.sender.textContent = e.sender;
  const d = new Date(e.ts);
  p.time.textContent = hhmm(d);
  p.time.dateTime = d.toISOString();
  p.time.title = fullFmt.format(d);
  if (p.text.textContent !== e.text) p.text.textContent = e.text;

  // Own messages seen in history or echoed from another tab are stored: ✓ too.
  p.tick.textContent = e.status === "delivered" || (e.own && e.status === null) ? "✓" : (e.status === "sending" || e.status === "queued") ? "◷" : e.status === "failed" ? "!" : "";
  p.tick.title = p.tick.textContent === "✓" ? "Delivered: stored by the server" : "";

  p.meta.replaceChildren();
  if (e.status === "queued") {
    p.meta.append(el("span", "status status-pending", "waiting for connection…"));
  } else if (e.status === "sending") {
    p.meta.append(el("span", "status status-pending", "sending…"));
  } else if (e.status === "delivered") {
    p.meta.append(el("span", "status status-delivered", "Delivered"));
  } else if (e.status === "failed") {
    const why = ERROR_TEXT[e.code] || "Refused by the server.";
    const msg = el("span", "status status-failed", "Not sent");
    msg.title = why + (e.detail ? " " + e.detail : "") + " [" + e.code + "]";
    p.meta.append(msg, el("span", "status-reason", why));
    if (RETRYABLE.has(e.code)) {
      const retry = el("button", "link-button", "Retry");
      retry.type = "button";
      retry.dataset.testid = "retry";
      retry.addEventListener("click", () => retryEntry(e));
      p.meta.append(retry);
    }
    const drop = el("button", "link-button", "Delete");
    drop.type = "button";
    drop.dataset.testid = "dismiss";
    drop.addEventListener("click", () => dismissEntry(e));
    p.meta.append(drop);
  }
  p.meta.hidden = p.meta.childNodes.length === 0;
}

function retryEntry(e) {
  const room = state.rooms.get(e.room);
  if (!room || e.status !== "failed") return;
  if (!SAME_REF.has(e.code)) e.ref = null;
  if (e.code === "not_joined") sendFrame({ type: "join", room: e.room });
  e.status = "queued";
  e.code = e.detail = null;
  refreshRoom(room, e);
  transmit(e);
}

function dismissEntry(e) {
  const room = state.rooms.get(e.room);
  if (!room) return;
  const idx = room.entries.indexOf(e);
  if (idx >= 0) room.entries.splice(idx, 1);
  if (e.id) state.byId.delete(e.id);
  if (e.el) e.el.remove();
  renderRoom(false);
}

function queueSend(roomName, text) {
  const room = state.rooms.get(roomName);
  if (!room) return;
  const entry = {
    room: roomName, sender: state.name || "anonymous", text, ts: Date.now(), own: true,
    id: null, ref: null, status: "queued", code: null, detail: null,
    seq: null, order: state.nextOrder++, echoed: false, history: false, el: null, parts: null,
  };
  room.entries.push(entry);
  refreshRoom(room, entry);
  transmit(entry);
}

// ---------------------------------------------------------------- composer --

function renderComposer() {
  const hasRoom = !!state.current;
  dom.input.disabled = !hasRoom;
  dom.input.placeholder = hasRoom ? "Message #" + state.current : "Join a room to chat";
  updateSendButton();
}

function frameBytes(room, text) {
  return byteLength(JSON.stringify({ type: "send", room, text, ref: state.refPrefix + state.nextRef }));
}

function updateSendButton() {
  const text = dom.input.value;
  const hasText = text.trim().length > 0;
  let hint = "";
  let tooBig = false;
  if (state.current && text.length > 1000) {
    const n = frameBytes(state.current, text);
    tooBig = n > MAX_FRAME_BYTES;
    if (tooBig) hint = "Too long: " + Math.ceil(n / 1024) + " KiB; the limit is " + MAX_FRAME_BYTES / 1024 + " KiB.";
  }
  if (!hint && hasText && state.conn !== "connected") {
    hint = "Not connected: your message is queued and sent as soon as the connection is back.";
  }
  dom.hint.textContent = hint;
  dom.hint.classList.toggle("error", tooBig);
  dom.sendButton.disabled = !state.current || !hasText || tooBig;
  dom.composer.dataset.conn = state.conn;
}

function autoGrow() {
  dom.input.style.height = "auto";
  dom.input.style.height = Math.min(dom.input.scrollHeight, 200) + "px";
}

function submitComposer() {
  const text = dom.input.value;
  if (!state.current || text.trim() === "") return;
  if (frameBytes(state.current, text) > MAX_FRAME_BYTES) {
    updateSendButton();
    return;
  }
  queueSend(state.current, text);
  dom.input.value = "";
  autoGrow();
  updateSendButton();
  dom.input.focus();
  scrollToBottom();
}

// -------------------------------------------------------------------- name --

function renderMe() {
  const shown = state.name || "anonymous";
  dom.meName.textContent = shown;
  paintAvatar(dom.meAvatar, shown);
}

function openNameDialog(first) {
  dom.nameInput.value = state.name || "";
  dom.nameError.hidden = true;
  dom.nameCancel.textContent = first ? "Stay anonymous" : "Cancel";
  if (typeof dom.nameDialog.showModal === "function") {
    if (!dom.nameDialog.open) dom.nameDialog.showModal();
  } else {
    dom.nameDialog.setAttribute("open", "");
  }
  dom.nameInput.focus();
}

function closeNameDialog() {
  if (typeof dom.nameDialog.close === "function") dom.nameDialog.close();
  else dom.nameDialog.removeAttribute("open");
}

function saveName(ev) {
  ev.preventDefault();
  const name = dom.nameInput.value.trim();
  if (!validName(name)) {
    dom.nameError.textContent = !name ? "Enter a name." : byteLength(name) > MAX_NAME_BYTES
      ? "Names are at most 64 bytes." : "Names cannot contain control characters.";
    dom.nameError.hidden = false;
    return;
  }
  closeNameDialog();
  state.name = name;
  storage.set(STORE_NAME, name);
  renderMe();
  // hello again on the open connection: the name applies from now on.
  if (sendFrame({ type: "hello", name })) state.wireName = name;
  renderMembers();
  for (const room of state.rooms.values()) {
    for (const e of room.entries) {
      const own = e.status !== null || e.sender === name;
      if (own !== e.own) { e.own = own; renderEntry(e); }
    }
  }
  renderRoom(false);
}

// ----------------------------------------------------------------- notices --

let noticeTimer = 0;
function showNotice(text) {
  dom.noticeText.textContent = text;
  dom.notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { dom.notice.hidden = true; }, 8000);
}

// -------------------------------------------------------------- mobile nav --

function openDrawer() {
  dom.app.classList.add("drawer-open");
  dom.scrim.hidden = false;
  dom.menuButton.setAttribute("aria-expanded", "true");
}

function closeDrawer() {
  dom.app.classList.remove("drawer-open");
  dom.scrim.hidden = true;
  dom.menuButton.setAttribute("aria-expanded", "false");
}

// -------------------------------------------------------------------- wire --

function submitJoin(ev) {
  ev.preventDefault();
  const name = dom.joinInput.value.trim().replace(/^#/, "");
  let err = "";
  if (!name) err = "Enter a room name.";
  else if (!ROOM_RE.test(name)) err = "Use letters, digits and _ . : - only.";
  else if (byteLength(name) > MAX_ROOM_BYTES) err = "Room names are at most 128 characters.";
  dom.joinError.textContent = err;
  dom.joinError.hidden = !err;
  if (err) return;
  dom.joinInput.value = "";
  addRoom(name, true);
}

function init() {
  const storedName = storage.get(STORE_NAME, null);
  state.name = typeof storedName === "string" && validName(storedName) ? storedName : null;

  let rooms = storage.get(STORE_ROOMS, null);
  if (!Array.isArray(rooms)) rooms = [DEFAULT_ROOM];
  for (const r of rooms) if (validRoom(r) && !state.rooms.has(r)) state.rooms.set(r, newRoom(r));
  const cur = storage.get(STORE_CURRENT, null);
  state.current = state.rooms.has(cur) ? cur : (state.rooms.keys().next().value || null);

  dom.joinForm.addEventListener("submit", submitJoin);
  dom.joinInput.addEventListener("input", () => { dom.joinError.hidden = true; });
  dom.leaveRoom.addEventListener("click", () => { if (state.current) leaveRoom(state.current); });
  dom.changeName.addEventListener("click", () => openNameDialog(false));
  dom.nameForm.addEventListener("submit", saveName);
  dom.nameCancel.addEventListener("click", () => {
    if (!state.name) storage.set(STORE_NAME, "");
    closeNameDialog();
  });
  dom.reconnectNow.addEventListener("click", reconnectNow);
  dom.noticeClose.addEventListener("click", () => { dom.notice.hidden = true; });
  dom.menuButton.addEventListener("click", openDrawer);
  dom.sidebarClose.addEventListener("click", closeDrawer);
  dom.scrim.addEventListener("click", closeDrawer);
  dom.jump.addEventListener("click", scrollToBottom);
  dom.messages.addEventListener("scroll", () => { if (nearBottom()) dom.jump.hidden = true; });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") { closeDrawer(); showMembersPanel(false); }
  });
  dom.membersToggle.addEventListener("click", () => showMembersPanel(!dom.app.classList.contains("members-open")));
  document.addEventListener("pointerdown", (ev) => {
    if (dom.app.classList.contains("members-open") && !dom.members.contains(ev.target) &&
        !dom.membersToggle.contains(ev.target)) showMembersPanel(false);
  });
  document.addEventListener("visibilitychange", () => {
    const room = state.current && state.rooms.get(state.current);
    if (!document.hidden && room && room.unread) { room.unread = 0; renderRooms(); }
  });
  // An open socket may survive a network change: only a lost one changes state.
  window.addEventListener("offline", () => { if (state.conn === "reconnecting") setConn("offline"); });
  window.addEventListener("online", () => { if (state.conn !== "connected") reconnectNow(); });

  dom.composer.addEventListener("submit", (ev) => { ev.preventDefault(); submitComposer(); });
  dom.input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      submitComposer();
    }
  });
  dom.input.addEventListener("input", () => { autoGrow(); updateSendButton(); noteTyping(); });

  // Timestamps say "Today" and "Yesterday": redraw after midnight.
  setInterval(() => { if (state.current) renderRoom(false); }, 60 * 1000);

  renderMe();
  renderRooms();
  renderRoom(true);
  renderComposer();
  renderMembers();
  connect();

  // First visit: ask for a name ("" stored means "anonymous, do not ask").
  if (storedName === null) openNameDialog(true);
}

init();
