// End to end in a real browser, with the real servers: two `nudge` instances
// of pipelines/chat.toml (websocket → kafka → redis fan-out, postgres sink)
// and two Chromium contexts, A on instance 1 (1280x800) and B on instance 2
// (390x844, the phone layout). Both pick names and join a fresh room; their
// messages cross instances both ways; each sees the other in the room's member
// list and "… is typing…" while the other types; B reloads and finds the
// room's history; B's instance restarts and B catches up on what it missed
// meanwhile.
//
// The members and typing step checks presence and ephemeral sends across
// instances; the last two history on join and catching up with `after`
// (docs/protocol.md).
//
// Needs redis, kafka and postgres (scripts/services/<name> start); skips
// otherwise. Screenshots of every step, both contexts, and the instances'
// logs go to <artifacts>/browser/.
//
//   NUDGE_BIN=build/bin/nudge node --test tests/node/browser.test.mjs

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  artifactsDir, psql, PIPELINES, servicesMissing, startNudge, uniqueSuffix, waitFor,
} from './support.mjs';
import {
  browserSkipReason, chooseName, joinRoom, launchBrowser, messageByText, messageIds, recordPageErrors, say, snap,
  waitConnected, waitMembers,
} from './browser_support.mjs';

const CHAT = path.join(PIPELINES, 'chat.toml');
const SERVICES = ['redis', 'kafka', 'postgres'];
const STEP_TIMEOUT = 30_000;   // one UI step: a message across instances, a reconnect
const ROWS_TIMEOUT = 90_000;   // the sink writes in batches after the log

function skipReason() {
  const browser = browserSkipReason();
  if (browser) return browser;
  const missing = servicesMissing(SERVICES);
  if (missing.length) return `needs ${missing.join(', ')}: scripts/services/<name> start`;
  return false;
}
const skip = skipReason();

describe('chat in two browsers on two instances', { skip }, () => {
  const suffix = uniqueSuffix();
  const room = `e2e-${suffix.replace('_', '-')}`;
  const table = `e2e_browser_${suffix}`;
  // A fresh topic, group and table per run keeps runs independent.
  const env = { NUDGE_TOPIC: `e2e.browser.${suffix}`, NUDGE_GROUP: `e2e-browser-${suffix}`, NUDGE_TABLE: table,
    NUDGE_RECENT_PREFIX: `e2e.browser:${suffix}:recent:` };
  const listen = (addr) => [`source.websocket.listen=${addr}`];
  const errors = [];
  const sent = {};             // text -> id, in sending order
  let dir;
  let browser;
  let n1;
  let n2;
  let a;                       // page of context A, on instance 1
  let b;                       // page of context B, on instance 2
  let exchanged = false;
  let step = 0;

  const shot = (name) => snap(dir, `${String(++step).padStart(2, '0')}-${name}`, { a, b });

  // Runs a test body; on failure: screenshots of both pages and the logs.
  async function run(name, fn) {
    try {
      await fn();
      assert.deepEqual(errors, [], 'errors in the pages');
    } catch (err) {
      await snap(dir, `failure-${name}`, { a, b });
      throw err;
    }
  }

  before(async () => {
    dir = artifactsDir('browser');
    for (const f of fs.readdirSync(dir)) if (/\.(png|log)$/.test(f)) fs.rmSync(path.join(dir, f));
    [n1, n2] = await Promise.all([
      startNudge(CHAT, { set: listen('127.0.0.1:0'), env, name: 'nudge1' }),
      startNudge(CHAT, { set: listen('127.0.0.1:0'), env, name: 'nudge2' }),
    ]);
    browser = await launchBrowser();
    const ctxA = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const ctxB = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    a = await ctxA.newPage();
    b = await ctxB.newPage();
    for (const [label, page] of [['A: ', a], ['B: ', b]]) {
      page.setDefaultTimeout(STEP_TIMEOUT);
      recordPageErrors(page, errors, label);
    }
  });

  after(async () => {
    await browser?.close();
    for (const n of [n1, n2]) {
      if (!n) continue;
      await n.kill();
      n.saveLog(dir);
    }
    try {
      psql(`DROP TABLE IF EXISTS ${table}`);
    } catch (err) {
      console.error(`could not drop ${table}: ${err.message}`);
    }
  });

  /** Sends `text` from `page` and waits until it is acked and has come back through the fan-out. */
  async function sendAndEcho(page, text) {
    await say(page, text);
    const own = messageByText(page, text).and(page.locator('.own[data-status="delivered"][data-echoed="true"]'));
    await own.waitFor();
    sent[text] = await own.getAttribute('data-id');
    assert.match(sent[text], /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a UUIDv7 id');
  }

  /** Waits until `page` shows the message with this id, from `sender`, exactly once. */
  async function sees(page, text, sender) {
    const msg = page.locator(`[data-testid="message"][data-id="${sent[text]}"]`);
    await msg.waitFor();
    assert.equal(await msg.count(), 1);
    assert.equal(await msg.getAttribute('data-sender'), sender);
    assert.equal(await msg.getByTestId('message-text').textContent(), text);
    return msg;
  }

  test('names, a room, and messages across instances both ways', async () => {
    await run('exchange', async () => {
      await Promise.all([a.goto(`${n1.baseUrl}/`), b.goto(`${n2.baseUrl}/`)]);
      await Promise.all([chooseName(a, 'alice'), chooseName(b, 'bob')]);
      await Promise.all([waitConnected(a), waitConnected(b)]);
      await shot('connected');

      // Each one's first message coming back through the fan-out means its
      // instance subscribed to the room: from then on nothing is missed live.
      await joinRoom(a, room);
      await sendAndEcho(a, 'Hello from alice on instance 1');
      await joinRoom(b, room);
      await sendAndEcho(b, 'Hi alice, bob here on instance 2 <b>not bold</b>');
      await shot('joined');

      await sees(a, 'Hi alice, bob here on instance 2 <b>not bold</b>', 'bob');           // B → A
      await sendAndEcho(a, 'Good to see you, bob');
      await sees(b, 'Good to see you, bob', 'alice');                                    // A → B
      assert.equal(await a.locator('#message-list b').count(), 0, 'text is not HTML');
      for (const page of [a, b]) {
        const ids = await messageIds(page);
        assert.equal(new Set(ids).size, ids.length, `no id twice: ${ids}`);
      }
      // Own messages are set apart; time is HH:MM with the full timestamp as title.
      const mine = a.locator(`[data-id="${sent['Good to see you, bob']}"]`);
      assert.ok(await mine.evaluate((e) => e.classList.contains('own')));
      assert.match(await mine.getByTestId('message-time').textContent(), /^\d\d:\d\d$/);
      assert.ok((await mine.getByTestId('message-time').getAttribute('title')).length > 10);
      await shot('exchanged');
      exchanged = true;
    });
  });

  test('each sees the other in the member list, and "… is typing…" while the other types', async () => {
    assert.ok(exchanged, 'needs both in the room');
    await run('presence', async () => {
      // A (1280 wide) has the list as a column; B (a phone) opens it from the header.
      await waitMembers(a, ['alice*', 'bob'], STEP_TIMEOUT);
      await b.getByTestId('members-toggle').click();
      await waitMembers(b, ['bob*', 'alice'], STEP_TIMEOUT);
      assert.equal(await b.getByTestId('members-count').textContent(), '2');
      await shot('members');
      await b.keyboard.press('Escape');

      // Typing crosses instances as an ephemeral message, never stored. Each
      // types for over 2 s: their last typing send (with the previous
      // message) may be less than 2 s old, and the page sends at most one per 2 s.
      const reply = 'Typing this one slowly';
      const bobTyping = a.getByTestId('typing').filter({ hasText: /^bob is typing…$/ }).waitFor();
      await b.getByTestId('composer').pressSequentially(reply, { delay: 110 });
      await bobTyping;
      const aliceTyping = b.getByTestId('typing').filter({ hasText: /^alice is typing…$/ }).waitFor();
      await a.getByTestId('composer').pressSequentially('Me too', { delay: 400 });
      await aliceTyping;
      assert.doesNotMatch(await a.getByTestId('typing').textContent(), /alice/, 'own typing is not shown');
      await shot('typing');

      // Bob's message takes his indicator away at once, not 4 s later.
      await b.getByTestId('composer').press('Enter');
      const own = messageByText(b, reply).and(b.locator('.own[data-status="delivered"][data-echoed="true"]'));
      await own.waitFor();
      sent[reply] = await own.getAttribute('data-id');
      await sees(a, reply, 'bob');
      assert.doesNotMatch(await a.getByTestId('typing').textContent(), /bob/, 'cleared by his message');
      await sendAndEcho(a, 'Me too');
      await sees(b, 'Me too', 'alice');
      for (const page of [a, b]) {
        assert.equal(await messageByText(page, 'typing').count(), 0, 'typing is not a message');
      }
      await shot('typing-done');
    });
  });

  test('after a reload, B sees the history of the room', async () => {
    assert.ok(exchanged, 'needs the messages of the previous test');
    await run('history', async () => {
      // Acked means durable in the log; wait for the sink too, so that history
      // served from the database (or anywhere downstream) has them.
      const ids = Object.values(sent);
      await waitFor(() => {
        let rows;
        try { rows = psql(`SELECT id FROM ${table}`).map((r) => r[0]); } catch { return false; } // no table yet
        return ids.every((id) => rows.includes(id));
      }, { timeout: ROWS_TIMEOUT, interval: 500, what: `the ${ids.length} messages in ${table}` });

      await b.reload();
      await waitConnected(b);
      assert.equal(await b.getByTestId('room-title').textContent(), room, 'the room shown survives a reload');
      await shot('reloaded');
      // Rendered from history: every earlier message once, oldest first, under the divider.
      await waitFor(async () => (await messageIds(b)).length >= ids.length, {
        timeout: 15_000, what: `B to show the room's ${ids.length} earlier messages after the reload (history on join)`,
      }).catch(async (err) => {
        await shot('no-history');
        throw err;
      });
      assert.deepEqual(await messageIds(b), ids);
      for (const id of ids) assert.equal(await b.locator(`[data-id="${id}"]`).getAttribute('data-history'), 'true');
      assert.equal(await b.getByTestId('history-divider').count(), 1);
      const bobs = b.locator(`[data-id="${sent['Hi alice, bob here on instance 2 <b>not bold</b>']}"]`);
      assert.ok(await bobs.evaluate((e) => e.classList.contains('own')), 'own messages recognised in history');
      await shot('history');
    });
  });

  test("B's instance restarts: B reconnects, rejoins with `after` and gets what it missed, once", async () => {
    assert.ok(exchanged, 'needs the messages of the previous tests');
    await run('catch-up', async () => {
      const { host, port } = n2.address;
      await n2.kill();
      // "offline" where the browser sees no network besides loopback (a network namespace).
      await b.locator('[data-testid="status"]:is([data-state="reconnecting"], [data-state="offline"])').waitFor();
      await shot('instance2-down');
      await sendAndEcho(a, 'Sent while bob was away');
      n2.saveLog(dir, 'nudge2-before-restart.log');
      n2 = await startNudge(CHAT, { set: listen(`${host}:${port}`), env, name: 'nudge2' });
      await waitConnected(b, 60_000);
      // A reconnect attempt of B that came before the instance was back was
      // refused, and Chromium logs that as a console error: expected here.
      const refused = /^B: console\.error: WebSocket connection to .* failed: .*ERR_CONNECTION_REFUSED/;
      for (let i = errors.length - 1; i >= 0; i--) if (refused.test(errors[i])) errors.splice(i, 1);
      await sees(b, 'Sent while bob was away', 'alice');
      const ids = await messageIds(b);
      assert.equal(new Set(ids).size, ids.length, `no id twice after the rejoin: ${ids}`);
      await shot('caught-up');
      // And live again, both ways.
      await sendAndEcho(b, 'Back, thanks');
      await sees(a, 'Back, thanks', 'bob');
      await shot('live-again');
    });
  });
});
