// Nudge chat client. Plain browser JavaScript, no build step.
// Wire protocol: docs/protocol.md. User-supplied strings (message text,
// sender and room names) are only ever rendered with textContent.
"use strict";

(() => {
  // ---------------------------------------------------------------- config --

  const WS_PATH = "/ws";
  const MAX_FRAME_BYTES = 64 * 1024;      // server default max message size
  const MAX_NAME_BYTES = 64;
  const MAX_ROOM_BYTES = 128;
  const ROOM_RE = /^[A-Za-z0-9_.:-]+$/;
  const DEFAULT_ROOM = "general";
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const STABLE_AFTER_MS = 5000;           // an open this long resets the backoff
  const MAX_MESSAGES_PER_ROOM = 1000;
  const GROUP_WINDOW_MS = 5 * 60 * 1000;  // consecutive messages grouped under one header

  const STORE_NAME = "nudge.name";
  const STORE_ROOMS = "nudge.rooms";
  const STORE_CURRENT = "nudge.room";

  const ERROR_TEXT = {
    bad_json: "The server could not parse the request.",
    bad_request: "The server rejected the request.",
    unknown_type: "The server did not understand the request.",
    not_joined: "You are not a member of this room.",
    too_large: "Message is too large.",
    unavailable: "The server could not store the message.",
    rate_limited: "You are sending too fast.",
    disconnected: "Connection lost before the server confirmed this message.",
  };
  const RETRYABLE = new Set(["unavailable", "rate_limited", "disconnected", "not_joined"]);

  const encoder = new TextEncoder();
  const byteLength = (s) => encoder.encode(s).length;

  // ----------------------------------------------------------------- store --

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
      try { localStorage.setItem(key, JSON.stringify(value)); } catch (_) { /* private mode */ }
    },
  };

  function validRoom(room) {
    return typeof room === "string" && ROOM_RE.test(room) && byteLength(room) <= MAX_ROOM_BYTES;
  }

  function validName(name) {
    const n = byteLength(name);
    return n >= 1 && n <= MAX_NAME_BYTES;
  }

  // ----------------------------------------------------------------- state --

  const state = {
    name: null,              // chosen name, or null for "anonymous"
    wireName: "anonymous",   // name the current connection announced
    rooms: new Map(),        // room -> { name, entries: [], unread, el }
    current: null,
    ws: null,
    conn: "connecting",      // connecting | connected | reconnecting
    attempt: 0,
    everConnected: false,
    retryAt: 0,
    retryTimer: 0,
    countdownTimer: 0,
    stableTimer: 0,
    lastClose: null,
    nextRef: 1,
    nextOrder: 1,            // local send order
    nextSeq: 1,              // position in the room timeline
    byRef: new Map(),        // ref -> entry awaiting ack
    byId: new Map(),         // server message id -> entry
  };

  // An entry is one line in a room's timeline:
  //   { room, sender, text, ts, own, id, ref, status, code, detail, seq, order, el }
  // status: null (someone else's message) | "queued" (not yet on the wire) |
  //         "sending" (sent, no ack yet) | "delivered" (acked) | "failed".
  // seq orders entries by when they appeared in the server's stream; own
  // messages without a seq (not yet echoed) sort after all others by order.

  // ------------------------------------------------------------------- DOM --

  const $ = (id) => document.getElementById(id);
  const dom = {
    app: $("app"),
    sidebar: $("sidebar"),
    scrim: $("scrim"),
    menuButton: $("menu-button"),
    conn: $("conn"),
    connText: $("conn-text"),
    connCompact: $("conn-compact"),
    connCompactText: $("conn-compact-text"),
    connDetail: $("conn-detail"),
    connDetailText: $("conn-detail-text"),
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
    empty: $("empty"),
    emptyTitle: $("empty-title"),
    emptySub: $("empty-sub"),
    list: $("message-list"),
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

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  const dayFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

  function shortTime(ts) {
    const d = new Date(ts);
    const now = new Date();
    const sameDay = d.toDateString() === now.toDateString();
    return sameDay ? timeFmt.format(d) : dayFmt.format(d) + ", " + timeFmt.format(d);
  }

  // ------------------------------------------------------------ connection --

  // With token auth on (websocket source, auth_jwt_secret), open the page as
  // /#token=<JWT> (or ?token=): browsers cannot set headers on a WebSocket,
  // so the token travels in the query string. The fragment form keeps it out
  // of the static page's access logs.
  function pageToken() {
    const fromHash = new URLSearchParams(location.hash.replace(/^#/, "")).get("token");
    return fromHash || new URLSearchParams(location.search).get("token");
  }

  function wsUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const token = pageToken();
    return scheme + "//" + location.host + WS_PATH + (token ? "?token=" + encodeURIComponent(token) : "");
  }

  function connect() {
    clearTimeout(state.retryTimer);
    clearInterval(state.countdownTimer);
    setConn(state.everConnected ? "reconnecting" : "connecting");

    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (err) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;

    ws.addEventListener("open", () => {
      if (state.ws !== ws) return;
      state.everConnected = true;
      state.lastClose = null;
      state.wireName = state.name || "anonymous";
      if (state.name) sendFrame({ type: "hello", name: state.name });
      for (const room of state.rooms.keys()) sendFrame({ type: "join", room });
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
        console.warn("nudge: ignoring non-JSON frame", ev.data);
        return;
      }
      if (frame && typeof frame === "object") handleFrame(frame);
    });

    ws.addEventListener("close", (ev) => {
      if (state.ws !== ws) return;
      state.ws = null;
      clearTimeout(state.stableTimer);
      state.lastClose = ev;
      failInFlight();
      scheduleReconnect();
    });
    // "error" is always followed by "close"; nothing to do here.
  }

  function reconnectNow() {
    state.attempt = 0;
    if (state.ws) {
      const old = state.ws;
      state.ws = null;
      old.close(1000, "reconnect");
      failInFlight();
    }
    connect();
  }

  function scheduleReconnect() {
    const exp = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** state.attempt);
    const delay = Math.round(exp / 2 + Math.random() * exp / 2); // jittered
    state.attempt += 1;
    state.retryAt = Date.now() + delay;
    setConn("reconnecting");
    state.retryTimer = setTimeout(connect, delay);
    clearInterval(state.countdownTimer);
    state.countdownTimer = setInterval(renderConn, 500);
  }

  function sendFrame(obj) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  function setConn(s) {
    state.conn = s;
    renderConn();
    renderComposer();
  }

  function renderConn() {
    const s = state.conn;
    let label;
    let detail = "";
    if (s === "connected") {
      label = "Connected";
    } else if (s === "connecting") {
      label = "Connecting…";
    } else {
      label = "Reconnecting…";
      const ws = state.ws;
      if (!ws || ws.readyState !== WebSocket.CONNECTING) {
        const secs = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
        detail = state.everConnected ? "Connection lost. " : "Cannot reach the server. ";
        detail += secs > 0 ? "Retrying in " + secs + " s" : "Retrying…";
        detail += " (attempt " + state.attempt + ")";
        const reason = closeReason(state.lastClose);
        if (reason) detail += " — " + reason;
      } else {
        detail = "Attempt " + state.attempt + "…";
      }
    }
    dom.conn.dataset.state = s;
    dom.connCompact.dataset.state = s;
    dom.connCompact.title = detail || label;
    dom.connCompactText.textContent = s === "connected" ? "" : label;
    dom.connText.textContent = label;
    dom.connDetail.hidden = s !== "reconnecting";
    dom.connDetailText.textContent = detail;
    dom.reconnectNow.hidden = !!(state.ws && state.ws.readyState === WebSocket.CONNECTING);
  }

  function closeReason(ev) {
    if (!ev) return "";
    if (ev.code === 1009) return "a frame was too large (1009)";
    if (ev.code === 1007) return "invalid UTF-8 (1007)";
    if (ev.code === 1008) return "policy violation (1008)";
    if (ev.code === 1001) return "server going away";
    if (ev.reason) return ev.reason;
    return "";
  }

  // -------------------------------------------------------------- protocol --

  function handleFrame(f) {
    switch (f.type) {
      case "message": onMessage(f); break;
      case "ack": onAck(f); break;
      case "error": onError(f); break;
      default: console.warn("nudge: unknown frame type", f.type);
    }
  }

  function onMessage(m) {
    if (typeof m.room !== "string" || typeof m.id !== "string") return;
    const room = state.rooms.get(m.room);
    if (!room) return; // left meanwhile
    const sender = typeof m.sender === "string" ? m.sender : "anonymous";
    const text = typeof m.text === "string" ? m.text : "";
    const ts = typeof m.ts === "number" ? m.ts : Date.now();

    // Already known: our own message whose ack came first, or a duplicate.
    const known = state.byId.get(m.id);
    if (known) {
      if (known.seq === null) known.seq = state.nextSeq++;
      known.ts = ts;
      known.echoed = true;
      refreshRoom(room, known);
      return;
    }

    // The echo of one of our own sends? The server keeps one sender's
    // messages in order, so it belongs to the oldest unechoed matching send.
    if (sender === state.wireName) {
      const mine = room.entries.find((e) =>
        e.own && !e.echoed && !e.id && e.status === "sending" && e.text === text);
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
      room: m.room, sender, text, ts, own: sender === state.wireName && sender !== "anonymous",
      id: m.id, ref: null, status: null, code: null, detail: null,
      seq: state.nextSeq++, order: 0, echoed: true, el: null,
    };
    state.byId.set(m.id, entry);
    room.entries.push(entry);
    trimRoom(room);
    if (room.name !== state.current) {
      room.unread += 1;
      renderRooms();
    }
    refreshRoom(room, entry);
  }

  function onAck(a) {
    if (typeof a.ref !== "string" || typeof a.id !== "string") return;
    const entry = state.byRef.get(a.ref);
    if (!entry) return;
    state.byRef.delete(a.ref);
    const room = state.rooms.get(entry.room);

    // The echo we attached by content belonged to someone else (same name,
    // same text): give it back its own line.
    if (entry.id && entry.id !== a.id) {
      const other = Object.assign({}, entry, {
        ref: null, status: null, code: null, detail: null, el: null,
      });
      state.byId.set(other.id, other);
      if (room) room.entries.push(other);
      entry.id = null;
      entry.echoed = false;
      entry.seq = null;
    }
    // Our echo may already be in the timeline as a separate line.
    const dup = state.byId.get(a.id);
    if (dup && dup !== entry && room) {
      room.entries.splice(room.entries.indexOf(dup), 1);
      if (dup.el) dup.el.remove();
      entry.ts = dup.ts;
      entry.seq = dup.seq;
      entry.echoed = true;
    }
    entry.id = a.id;
    entry.status = "delivered";
    entry.code = entry.detail = null;
    if (entry.seq === null) entry.seq = state.nextSeq++;
    state.byId.set(a.id, entry);
    if (room) refreshRoom(room, entry);
  }

  function onError(e) {
    const code = typeof e.code === "string" ? e.code : "error";
    const detail = typeof e.message === "string" ? e.message : "";
    const entry = typeof e.ref === "string" ? state.byRef.get(e.ref) : null;
    if (entry) {
      state.byRef.delete(e.ref);
      markFailed(entry, code, detail);
      return;
    }
    showNotice((ERROR_TEXT[code] || "Server error.") + (detail ? " (" + detail + ")" : "") +
      " [" + code + "]");
  }

  function markFailed(entry, code, detail) {
    entry.status = "failed";
    entry.code = code;
    entry.detail = detail || null;
    if (entry.seq === null) entry.seq = state.nextSeq++;
    const room = state.rooms.get(entry.room);
    if (room) refreshRoom(room, entry);
  }

  // Sends that were on the wire when the connection dropped can no longer
  // be acked (acks are per connection): surface them so the user can retry.
  function failInFlight() {
    for (const [ref, entry] of state.byRef) {
      state.byRef.delete(ref);
      markFailed(entry, "disconnected", null);
    }
  }

  function flushQueued() {
    for (const room of state.rooms.values()) {
      const queued = room.entries.filter((e) => e.status === "queued").sort((a, b) => a.order - b.order);
      for (const entry of queued) transmit(entry);
    }
  }

  function transmit(entry) {
    const ref = "c-" + state.nextRef++;
    if (!sendFrame({ type: "send", room: entry.room, text: entry.text, ref })) return false;
    entry.ref = ref;
    entry.status = "sending";
    state.byRef.set(ref, entry);
    const room = state.rooms.get(entry.room);
    if (room) refreshRoom(room, entry);
    return true;
  }

  // ------------------------------------------------------------------ rooms --

  function addRoom(name, select) {
    if (!state.rooms.has(name)) {
      state.rooms.set(name, { name, entries: [], unread: 0, el: null });
      sendFrame({ type: "join", room: name });
      saveRooms();
    }
    if (select || !state.current) selectRoom(name);
    else renderRooms();
  }

  function leaveRoom(name) {
    const room = state.rooms.get(name);
    if (!room) return;
    sendFrame({ type: "leave", room: name });
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
    state.current = name;
    storage.set(STORE_CURRENT, name);
    const room = name ? state.rooms.get(name) : null;
    if (room) room.unread = 0;
    renderRooms();
    renderRoom(true);
    renderComposer();
    closeDrawer();
  }

  function renderRooms() {
    dom.roomList.replaceChildren();
    for (const room of state.rooms.values()) {
      const li = el("li", "room-item");
      const btn = el("button", "room-button");
      btn.type = "button";
      if (room.name === state.current) {
        btn.classList.add("active");
        btn.setAttribute("aria-current", "true");
      }
      btn.append(el("span", "room-hash", "#"), el("span", "room-name", room.name));
      if (room.unread > 0) {
        btn.append(el("span", "badge", room.unread > 99 ? "99+" : String(room.unread)));
      }
      btn.addEventListener("click", () => selectRoom(room.name));
      const leave = el("button", "room-leave", "×");
      leave.type = "button";
      leave.title = "Leave #" + room.name;
      leave.setAttribute("aria-label", "Leave " + room.name);
      leave.addEventListener("click", () => leaveRoom(room.name));
      li.append(btn, leave);
      dom.roomList.append(li);
    }
    dom.roomsEmpty.hidden = state.rooms.size > 0;
    const total = Array.from(state.rooms.values()).reduce((n, r) => n + r.unread, 0);
    document.title = (total ? "(" + total + ") " : "") + (state.current ? "#" + state.current + " · " : "") + "Nudge chat";
  }

  // --------------------------------------------------------------- messages --

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
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }

  function refreshRoom(room, entry) {
    const visible = room.name === state.current;
    const stick = visible && (nearBottom() || !!(entry && entry.own && entry.status === "queued"));
    if (entry) renderEntry(entry);
    if (visible) renderRoom(false, stick);
  }

  function renderRoom(jump, forceScroll) {
    const room = state.current ? state.rooms.get(state.current) : null;
    dom.roomTitle.textContent = room ? room.name : "";
    dom.roomHash.hidden = !room;
    dom.leaveRoom.hidden = !room;
    const stick = jump || forceScroll || nearBottom();

    const entries = room ? sortedEntries(room) : [];
    let lastDelivered = null;
    for (const e of entries) if (e.own && e.status === "delivered") lastDelivered = e;
    let prev = null;
    const nodes = [];
    for (const e of entries) {
      e.el && e.el.classList.toggle("last-delivered", e === lastDelivered);
      if (!e.el) {
        renderEntry(e);
        e.el.classList.toggle("last-delivered", e === lastDelivered);
      }
      const grouped = prev && prev.sender === e.sender && prev.status !== "failed" &&
        e.status !== "failed" && Math.abs(e.ts - prev.ts) < GROUP_WINDOW_MS;
      e.el.classList.toggle("grouped", !!grouped);
      nodes.push(e.el);
      prev = e;
    }
    const current = Array.from(dom.list.children);
    if (current.length !== nodes.length || current.some((n, i) => n !== nodes[i])) {
      dom.list.replaceChildren(...nodes);
    }

    dom.empty.hidden = entries.length > 0;
    if (!room) {
      dom.emptyTitle.textContent = "No room selected";
      dom.emptySub.textContent = "Join a room from the sidebar to start chatting.";
    } else {
      dom.emptyTitle.textContent = "Welcome to #" + room.name;
      dom.emptySub.textContent = "No messages yet. New messages appear here as they are sent.";
    }
    if (stick) dom.messages.scrollTop = dom.messages.scrollHeight;
  }

  function renderEntry(e) {
    if (!e.el) {
      const li = el("li", "message");
      const avatar = el("span", "avatar");
      avatar.setAttribute("aria-hidden", "true");
      const body = el("div", "message-body");
      const head = el("div", "message-head");
      const sender = el("span", "message-sender");
      const time = el("time", "message-time");
      head.append(sender, time);
      const bubble = el("div", "message-text");
      const meta = el("div", "message-meta");
      body.append(head, bubble, meta);
      li.append(avatar, body);
      e.el = li;
      e.parts = { avatar, sender, time, bubble, meta };
    }
    const p = e.parts;
    e.el.classList.toggle("own", !!e.own);
    e.el.classList.toggle("failed", e.status === "failed");
    e.el.classList.toggle("pending", e.status === "queued" || e.status === "sending");
    paintAvatar(p.avatar, e.sender);
    p.sender.textContent = e.own ? e.sender + " (you)" : e.sender;
    p.time.textContent = shortTime(e.ts);
    p.time.dateTime = new Date(e.ts).toISOString();
    p.time.title = dateTimeFmt.format(new Date(e.ts));
    if (p.bubble.textContent !== e.text) p.bubble.textContent = e.text;

    p.meta.replaceChildren();
    if (e.status === "queued" || e.status === "sending") {
      p.meta.append(el("span", "status status-pending", e.status === "queued" ? "waiting for connection…" : "sending…"));
    } else if (e.status === "delivered") {
      const s = el("span", "status status-delivered", "✓");
      s.append(el("span", "status-label", " delivered"));
      s.title = "Delivered: stored by the server" + (e.id ? " · " + e.id : "");
      p.meta.append(s);
    } else if (e.status === "failed") {
      const msg = el("span", "status status-failed", "⚠ " + (ERROR_TEXT[e.code] || "Not sent."));
      msg.title = (e.detail ? e.detail + " " : "") + "[" + e.code + "]";
      p.meta.append(msg);
      if (e.detail) p.meta.append(el("span", "status-detail", e.detail));
      if (RETRYABLE.has(e.code)) {
        const retry = el("button", "link-button", "Retry");
        retry.type = "button";
        retry.addEventListener("click", () => retryEntry(e));
        p.meta.append(retry);
      }
      const drop = el("button", "link-button", "Dismiss");
      drop.type = "button";
      drop.addEventListener("click", () => dismissEntry(e));
      p.meta.append(drop);
    }
    p.meta.hidden = p.meta.childNodes.length === 0;
  }

  function retryEntry(e) {
    const room = state.rooms.get(e.room);
    if (!room) return;
    // A failed send the server never echoed is replaced; one that was echoed
    // (fanned out but not confirmed durable) stays as a record of that.
    if (!e.echoed) dismissEntry(e);
    queueSend(e.room, e.text);
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
      seq: null, order: state.nextOrder++, echoed: false, el: null,
    };
    room.entries.push(entry);
    refreshRoom(room, entry);
    transmit(entry);
  }

  // --------------------------------------------------------------- composer --

  function renderComposer() {
    const hasRoom = !!state.current;
    dom.input.disabled = !hasRoom;
    dom.input.placeholder = hasRoom ? "Message #" + state.current : "Join a room to chat";
    updateSendButton();
  }

  function frameBytes(room, text) {
    return byteLength(JSON.stringify({ type: "send", room, text, ref: "c-" + state.nextRef }));
  }

  function updateSendButton() {
    const text = dom.input.value;
    const hasText = text.trim().length > 0;
    let hint = "";
    let tooBig = false;
    if (state.current && text.length > 1000) {
      const n = frameBytes(state.current, text);
      tooBig = n > MAX_FRAME_BYTES;
      if (tooBig) hint = "Too long: " + Math.ceil(n / 1024) + " KiB, the limit is " + MAX_FRAME_BYTES / 1024 + " KiB.";
    }
    if (!hint && hasText && state.conn !== "connected") {
      hint = "Offline: messages will be sent when the connection is back.";
    }
    dom.hint.textContent = hint;
    dom.hint.classList.toggle("error", tooBig);
    dom.sendButton.disabled = !state.current || !hasText || tooBig;
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
  }

  // ------------------------------------------------------------------ name --

  function renderMe() {
    const shown = state.name || "anonymous";
    dom.meName.textContent = shown;
    paintAvatar(dom.meAvatar, shown);
  }

  function openNameDialog(first) {
    dom.nameInput.value = state.name || "";
    dom.nameError.hidden = true;
    dom.nameCancel.textContent = first ? "Stay anonymous" : "Cancel";
    if (typeof dom.nameDialog.showModal === "function") dom.nameDialog.showModal();
    else dom.nameDialog.setAttribute("open", "");
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
      dom.nameError.textContent = name ? "Names are at most 64 bytes." : "Enter a name.";
      dom.nameError.hidden = false;
      return;
    }
    closeNameDialog();
    const changed = name !== state.name;
    state.name = name;
    storage.set(STORE_NAME, name);
    renderMe();
    // The name is announced by hello at connect; reconnect to apply it.
    if (changed && state.ws) reconnectNow();
  }

  // ---------------------------------------------------------------- notices --

  let noticeTimer = 0;
  function showNotice(text) {
    dom.noticeText.textContent = text;
    dom.notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { dom.notice.hidden = true; }, 8000);
  }

  // ------------------------------------------------------------ mobile nav --

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

  // ------------------------------------------------------------------ wire --

  function init() {
    const storedName = storage.get(STORE_NAME, null);
    state.name = typeof storedName === "string" && validName(storedName) ? storedName : null;

    let rooms = storage.get(STORE_ROOMS, null);
    if (!Array.isArray(rooms)) rooms = [DEFAULT_ROOM];
    for (const r of rooms) {
      if (validRoom(r) && !state.rooms.has(r)) state.rooms.set(r, { name: r, entries: [], unread: 0, el: null });
    }
    const cur = storage.get(STORE_CURRENT, null);
    state.current = state.rooms.has(cur) ? cur : (state.rooms.keys().next().value || null);

    dom.joinForm.addEventListener("submit", (ev) => {
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
    });
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
    dom.scrim.addEventListener("click", closeDrawer);
    document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") closeDrawer(); });

    dom.composer.addEventListener("submit", (ev) => { ev.preventDefault(); submitComposer(); });
    dom.input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        submitComposer();
      }
    });
    dom.input.addEventListener("input", () => { autoGrow(); updateSendButton(); });

    renderMe();
    renderRooms();
    renderRoom(true);
    renderComposer();
    renderConn();
    connect();

    // First visit: ask for a name (an empty stored string means "anonymous, don't ask").
    if (storedName === null) openNameDialog(true);
  }

  init();
})();
