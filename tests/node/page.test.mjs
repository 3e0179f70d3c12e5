// The chat page (pipelines/web/) in Chromium against a scripted server
// (fake_chat.mjs): history on join, rejoin with `after` and dedupe by id,
// the send lifecycle (sending…, delivered, failed, retry with the same ref),
// queueing while disconnected, the connection states, rooms and unread
// counts, escaping, an older server without history, the member list
// (presence) and typing indicators (ephemeral sends). No servers needed.
// Screenshots of each state at 1280x800, 390x844 and 360x740 go to
// <artifacts>/page/.
//
//   node --test tests/node/page.test.mjs

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { artifactsDir, waitFor } from './support.mjs';
import {
  browserSkipReason, chooseName, launchBrowser, messageByText, messageIds, recordPageErrors, say, snap,
  waitConnected, waitMembers, waitTyping,
} from './browser_support.mjs';
import { FakeChat, ORIGIN } from './fake_chat.mjs';

const skip = browserSkipReason();
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const SMALL = { width: 360, height: 740 };
const shots = skip ? null : artifactsDir('page');
// Connection lost: "reconnecting", or "offline" where the browser sees no
// network interface besides loopback (navigator.onLine false, e.g. in a
// network namespace).
const LOST = '[data-testid="status"]:is([data-state="reconnecting"], [data-state="offline"])';

let browser;
before(async () => {
  if (skip) return;
  for (const f of fs.readdirSync(shots)) if (f.endsWith('.png')) fs.rmSync(path.join(shots, f));
  browser = await launchBrowser();
});
after(async () => { await browser?.close(); });

/**
 * A fresh context on a fake server. `name` and `rooms` preset localStorage
 * (name null: first visit, the dialog opens). `clock`: the page runs on
 * Playwright's fake clock (context.clock), for timers that tests skip ahead.
 * Runs `fn({ page, fake, errors })`; on failure a screenshot
 * <test>-failure.png is saved. Page errors fail the test.
 */
async function withPage(t, { fake = new FakeChat(), name = 'alice', rooms, viewport = DESKTOP, slug, clock = false } = {}, fn) {
  const context = await browser.newContext({ viewport });
  if (clock) await context.clock.install();
  await context.addInitScript(({ name, rooms }) => {
    if (sessionStorage.getItem('preset')) return; // only before the first load, not on reloads
    sessionStorage.setItem('preset', '1');
    if (name !== null) localStorage.setItem('nudge.name', JSON.stringify(name));
    if (rooms) localStorage.setItem('nudge.rooms', JSON.stringify(rooms));
  }, { name, rooms: rooms ?? null });
  await fake.attach(context);
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const errors = [];
  recordPageErrors(page, errors);
  const label = slug ?? t.name.split(':')[0].replace(/[^a-z0-9]+/gi, '-').toLowerCase().slice(0, 40);
  try {
    await page.goto(`${ORIGIN}/`);
    await fn({ page, fake, errors, context, shot: (step) => snap(shots, `${label}-${step}`, { [`${viewport.width}`]: page }) });
    assert.deepEqual(errors, [], 'errors in the page');
  } catch (err) {
    await snap(shots, `${label}-failure`, { page });
    throw err;
  } finally {
    await context.close();
  }
}

describe('chat page', { skip: skip ?? false }, () => {
  test('history on join: earlier messages under a divider, then live ones; text escaped; own set apart', async (t) => {
    const fake = new FakeChat();
    const day = Date.UTC(2024, 4, 17, 9, 5, 0);
    fake.seed('general', 'bob', 'first <b>bold</b> <img src=x onerror="window.pwned=1">', day);
    fake.seed('general', 'alice', 'my earlier message', day + 60_000);
    fake.seed('general', 'bob', 'latest before join');
    await withPage(t, { fake }, async ({ page, shot }) => {
      await waitConnected(page);
      const msgs = page.getByTestId('message');
      await assert.doesNotReject(msgs.nth(2).waitFor());
      assert.equal(await page.getByTestId('history-divider').count(), 1);
      assert.deepEqual(await messageIds(page), fake.messages('general').map((m) => m.id));
      assert.equal(await msgs.first().getAttribute('data-history'), 'true');
      // Divider before the first history message; day separators between days.
      const order = await page.locator('#message-list > li').evaluateAll((els) => els.map((e) => e.dataset.testid));
      assert.equal(order[0], 'history-divider');
      assert.ok(order.filter((x) => x === 'day-separator').length >= 2, `day separators in ${order}`);
      // Escaped: the markup is text, nothing ran, no element was made from it.
      const first = msgs.first();
      assert.equal(await first.getByTestId('message-text').textContent(), 'first <b>bold</b> <img src=x onerror="window.pwned=1">');
      assert.equal(await page.locator('#message-list img, #message-list b').count(), 0);
      assert.equal(await page.evaluate(() => window.pwned), undefined);
      // Sender, HH:MM, and the full timestamp in title.
      assert.equal(await first.getAttribute('data-sender'), 'bob');
      assert.equal(await first.getByTestId('message-sender').textContent(), 'bob');
      const time = first.getByTestId('message-time');
      assert.match(await time.textContent(), /^\d\d:\d\d$/);
      assert.match(await time.getAttribute('title'), /2024/);
      assert.equal(await time.getAttribute('datetime'), new Date(day).toISOString());
      // Own messages (by name) are marked, also from history.
      assert.ok(await msgs.nth(1).evaluate((e) => e.classList.contains('own')));
      assert.ok(!(await msgs.nth(0).evaluate((e) => e.classList.contains('own'))));
      // A live message follows the history, not under the divider's flag.
      const live = fake.publish('general', 'carol', 'live one');
      await page.locator(`[data-testid="message"][data-id="${live.id}"]`).waitFor();
      assert.equal(await page.locator(`[data-id="${live.id}"]`).getAttribute('data-history'), null);
      await shot('history');
    });
  });

  test('reconnect: rejoins every room with after = last id seen, shows what was missed, never an id twice', async (t) => {
    const fake = new FakeChat();
    fake.replayOverlap = 1; // the server also replays the `after` message itself: must be deduped
    fake.seed('general', 'bob', 'g1');
    fake.seed('ops', 'carol', 'o1');
    await withPage(t, { fake, rooms: ['general', 'ops'] }, async ({ page, shot }) => {
      await waitConnected(page);
      await messageByText(page, 'g1').waitFor();
      const g2 = fake.publish('general', 'bob', 'g2');
      await page.locator(`[data-id="${g2.id}"]`).waitFor();
      const firstJoins = fake.sent('join');
      assert.deepEqual(firstJoins.map((j) => [j.room, j.after]), [['general', undefined], ['ops', undefined]]);

      await fake.dropAll();
      await page.locator(LOST).waitFor();
      const g3 = fake.seed('general', 'bob', 'g3 (missed)');
      const o2 = fake.seed('ops', 'carol', 'o2 (missed)');
      await waitConnected(page, 15_000);
      const rejoins = fake.sent('join').slice(2);
      const lastOps = fake.messages('ops')[0].id;
      assert.deepEqual(rejoins.map((j) => [j.room, j.after]).sort(), [['general', g2.id], ['ops', lastOps]]);
      await page.locator(`[data-id="${g3.id}"]`).waitFor();
      const ids = await messageIds(page);
      assert.deepEqual(ids, fake.messages('general').map((m) => m.id), 'general shows each message once, in order');
      // What was missed counts as unread elsewhere, and is not "earlier messages".
      await page.locator('[data-testid="room-ops"][data-unread="1"]').waitFor();
      assert.equal(await page.locator(`[data-id="${g3.id}"]`).getAttribute('data-history'), null);
      await page.getByTestId('room-ops').click();
      await page.locator(`[data-id="${o2.id}"]`).waitFor();
      assert.equal(await page.getByTestId('message').count(), 2);
      assert.equal(await page.getByTestId('room-ops').getAttribute('data-unread'), '0');
      await shot('after-reconnect');
    });
  });

  test('send: "sending…" until the ack, failed with retry on an error, retry keeps the ref', async (t) => {
    const fake = new FakeChat();
    await withPage(t, { fake }, async ({ page, shot }) => {
      await waitConnected(page);
      fake.holdAcks = true;
      await say(page, 'held');
      const held = messageByText(page, 'held');
      await held.and(page.locator('.own[data-status="sending"]')).waitFor();
      assert.equal(await held.getByTestId('message-status').textContent(), 'sending…');
      fake.holdAcks = false;
      fake.releaseAcks();
      await held.and(page.locator('[data-status="delivered"]')).waitFor();
      assert.match(await held.getAttribute('data-id'), /^01900000-/);

      fake.failNext = 'unavailable';
      await say(page, 'fails once');
      const failing = messageByText(page, 'fails once');
      await failing.and(page.locator('.failed[data-status="failed"]')).waitFor();
      await shot('failed');
      const firstRef = fake.sent('send').at(-1).ref;
      await failing.getByTestId('retry').click();
      await failing.and(page.locator('[data-status="delivered"]')).waitFor();
      assert.equal(fake.sent('send').at(-1).ref, firstRef, 'a retry after "unavailable" resends under the same ref');
      assert.equal(await page.getByTestId('message').count(), 2, 'the retried message is one line');

      // Shift+Enter is a newline, Enter sends.
      const composer = page.getByTestId('composer');
      await composer.fill('line 1');
      await composer.press('Shift+Enter');
      await composer.pressSequentially('line 2');
      assert.equal(await composer.inputValue(), 'line 1\nline 2');
      await composer.press('Enter');
      await messageByText(page, 'line 1\nline 2').and(page.locator('[data-status="delivered"]')).waitFor();
      assert.equal(await composer.inputValue(), '');
    });
  });

  test('disconnected: messages are queued, in-flight ones resent with their ref after reconnecting', async (t) => {
    const fake = new FakeChat();
    await withPage(t, { fake }, async ({ page, shot }) => {
      await waitConnected(page);
      fake.holdAcks = true;
      await say(page, 'in flight');
      await fake.waitForFrame((f) => f.type === 'send' && f.text === 'in flight');
      const ref = fake.sent('send').find((s) => !s.ephemeral).ref;
      fake.held = []; // that connection's ack is lost with it
      fake.holdAcks = false;
      fake.refuse = true;
      await fake.dropAll();
      await page.locator(LOST).waitFor();
      await say(page, 'written offline');
      const queued = messageByText(page, 'written offline');
      await queued.and(page.locator('[data-status="queued"]')).waitFor();
      assert.equal(await messageByText(page, 'in flight').getAttribute('data-status'), 'queued');
      await page.getByTestId('composer').fill('a draft');
      assert.match(await page.getByTestId('composer-hint').textContent(), /queued/);
      assert.equal(await page.getByTestId('send').isEnabled(), true, 'sending is queued, not refused');
      await page.getByTestId('composer').fill('');
      await shot('queued');
      fake.refuse = false; // the next attempt of the backoff gets through
      await waitConnected(page, 20_000);
      await queued.and(page.locator('[data-status="delivered"]')).waitFor();
      await messageByText(page, 'in flight').and(page.locator('[data-status="delivered"]')).waitFor();
      const sends = fake.sent('send').filter((s) => !s.ephemeral); // not the typing indicators
      assert.deepEqual(sends.map((s) => s.text), ['in flight', 'in flight', 'written offline']);
      assert.equal(sends[1].ref, ref, 'the unanswered send is resent under its ref');
      assert.equal(await page.getByTestId('message').count(), 2);
    });
  });

  test('connection states: reconnecting with attempt and countdown, offline, back to connected', async (t) => {
    const fake = new FakeChat();
    await withPage(t, { fake }, async ({ page, context, shot }) => {
      await waitConnected(page);
      fake.refuse = true;
      await fake.dropAll();
      const status = page.getByTestId('status');
      const lost = (await page.evaluate(() => navigator.onLine)) ? 'reconnecting' : 'offline';
      await page.locator(`[data-testid="status"][data-state="${lost}"][data-attempt="2"]`).waitFor();
      assert.match(await page.getByTestId('conn-banner').textContent(), /Reconnecting in \d+ s \(attempt \d+\)|Reconnecting… \(attempt \d+\)/);
      assert.equal(await page.getByTestId('send').isDisabled(), true, 'nothing to send yet');
      await shot('reconnecting');
      await context.setOffline(true);
      await page.locator('[data-testid="status"][data-state="offline"]').waitFor();
      assert.equal(await status.textContent().then((s) => s.trim()), 'Offline');
      await shot('offline');
      fake.refuse = false;
      await context.setOffline(false);
      await waitConnected(page);
    });
  });

  test('rooms: default general, join, unread counts, switch, leave', async (t) => {
    const fake = new FakeChat();
    await withPage(t, { fake, rooms: undefined }, async ({ page }) => {
      await waitConnected(page);
      assert.deepEqual(await page.getByTestId('room-list').locator('[data-room]').evaluateAll((e) => e.map((x) => x.dataset.room)), ['general']);
      const input = page.getByTestId('join-input');
      await input.fill('bad room!');
      await input.press('Enter');
      await page.getByTestId('join-error').waitFor();
      await input.fill('#dev');
      await page.getByTestId('join-button').click();
      await page.locator('[data-testid="room-dev"].active').waitFor();
      await fake.waitForFrame((f) => f.type === 'join' && f.room === 'dev');
      fake.publish('general', 'bob', 'one');
      fake.publish('general', 'bob', 'two');
      await page.locator('[data-testid="room-general"][data-unread="2"]').waitFor();
      assert.equal(await page.getByTestId('room-general').getByTestId('unread').textContent(), '2');
      assert.match(await page.title(), /^\(2\) /);
      await page.getByTestId('room-general').click();
      await messageByText(page, 'two').waitFor();
      assert.equal(await page.getByTestId('room-general').getAttribute('data-unread'), '0');
      await page.getByTestId('leave-dev').click({ force: true });
      await fake.waitForFrame((f) => f.type === 'leave' && f.room === 'dev');
      assert.equal(await page.getByTestId('room-dev').count(), 0);
      await page.reload();
      await waitConnected(page);
      assert.deepEqual(await page.getByTestId('room-list').locator('[data-room]').evaluateAll((e) => e.map((x) => x.dataset.room)), ['general']);
    });
  });

  test('name: asked on the first visit, sent as hello, kept in localStorage', async (t) => {
    const fake = new FakeChat();
    await withPage(t, { fake, name: null }, async ({ page, shot }) => {
      await page.getByTestId('name-dialog').waitFor();
      await shot('name-dialog');
      await chooseName(page, 'Zoë <script>');
      await fake.waitForFrame((f) => f.type === 'hello' && f.name === 'Zoë <script>');
      assert.equal(await page.getByTestId('me-name').textContent(), 'Zoë <script>');
      await page.reload();
      await waitConnected(page);
      assert.equal(await page.getByTestId('name-dialog').isVisible(), false);
      const hellos = fake.sent('hello');
      assert.equal(hellos.at(-1).name, 'Zoë <script>');
      await shot('empty-room');
    });
  });

  test('older server (no history, no joined): the page does not wait for them', async (t) => {
    const fake = new FakeChat({ history: false });
    await withPage(t, { fake }, async ({ page }) => {
      await waitConnected(page);
      await say(page, 'still works');
      await messageByText(page, 'still works').and(page.locator('[data-status="delivered"]')).waitFor();
      await page.getByTestId('empty').waitFor({ state: 'hidden' });
      assert.equal(await page.getByTestId('history-divider').count(), 0);
    });
  });

  test('members: asked after joined, one line per user, own marked, kept current, asked again on switch and reconnect', async (t) => {
    const fake = new FakeChat();
    const bob1 = fake.addMember('general', 'bob');
    const bob2 = fake.addMember('general', 'bob'); // a second tab: still one line
    fake.addMember('general', 'carol');
    const dmitri = fake.addMember('ops', 'dmitri');
    await withPage(t, { fake, rooms: ['general', 'ops'] }, async ({ page, shot }) => {
      await waitConnected(page);
      await waitMembers(page, ['alice*', 'bob', 'carol']);
      const order = fake.frames.map(({ frame }) => `${frame.type}:${frame.room}`);
      assert.ok(order.indexOf('join:general') < order.indexOf('presence:general'), `presence asked after the join: ${order}`);
      assert.equal(typeof fake.sent('presence')[0].ref, 'string');
      // One request at a time (the server refuses a second with `busy`): ops waited its turn.
      await waitFor(() => fake.sent('presence').length === 2, { timeout: 5_000, what: 'the presence request for ops' });
      assert.deepEqual(fake.sent('presence').map((f) => f.room), ['general', 'ops']);
      // A labelled region; its own line marked in words too.
      const region = page.getByRole('complementary', { name: 'In this room' });
      assert.ok(await region.isVisible());
      assert.equal(await region.locator('.member.own .member-you').textContent(), 'you');
      assert.equal(await page.getByTestId('members-more').isVisible(), false);
      assert.equal(await page.getByTestId('members-toggle').isVisible(), false, 'a column on wide screens, no toggle');

      fake.addMember('general', 'eve');
      await waitMembers(page, ['alice*', 'bob', 'carol', 'eve']);
      fake.removeMember('general', bob1);
      fake.addMember('general', 'frank'); // events arrive in order: frank listed means bob1's leave was handled
      await waitMembers(page, ['alice*', 'bob', 'carol', 'eve', 'frank']);
      fake.removeMember('general', bob2);
      await waitMembers(page, ['alice*', 'carol', 'eve', 'frank']);
      await shot('members');

      const opsAsked = () => fake.sent('presence').filter((f) => f.room === 'ops').length;
      await waitFor(() => opsAsked() === 1, { timeout: 5_000, what: 'the presence request for ops after its join' });
      await page.getByTestId('room-ops').click();
      await waitMembers(page, ['alice*', 'dmitri']);
      await waitFor(() => opsAsked() === 2, { timeout: 5_000, what: 'ops asked again when shown' });

      // Who left while the page was away is gone after the reconnect.
      await fake.dropAll();
      await page.locator(LOST).waitFor();
      fake.removeMember('ops', dmitri, { quiet: true });
      await waitConnected(page, 15_000);
      await waitMembers(page, ['alice*']);
      assert.ok(opsAsked() >= 3, 'asked again after the rejoin');
    });
  });

  test('members: "+N more" when the server lists fewer than total; leaves of unlisted ones count down', async (t) => {
    const fake = new FakeChat({ maxPresence: 3 });
    const others = ['bob', 'carol', 'dmitri', 'eve', 'frank'].map((u) => fake.addMember('general', u));
    await withPage(t, { fake }, async ({ page, shot }) => {
      await waitConnected(page);
      await waitMembers(page, ['alice*', 'bob', 'carol']);
      const more = page.getByTestId('members-more');
      await more.filter({ hasText: /^\+3 more$/ }).waitFor();
      await shot('more');
      fake.removeMember('general', others[4]); // frank, not listed
      await more.filter({ hasText: /^\+2 more$/ }).waitFor();
      fake.removeMember('general', others[0]); // bob, listed
      await waitMembers(page, ['alice*', 'carol']);
      assert.equal(await more.textContent(), '+2 more');
      fake.addMember('general', 'gina');
      await waitMembers(page, ['alice*', 'carol', 'gina']);
      assert.equal(await more.textContent(), '+2 more');
    });
  });

  test('typing: "bob is typing…" for 4 s after the last one, several names, cleared at once by their message', async (t) => {
    const fake = new FakeChat();
    await withPage(t, { fake, clock: true }, async ({ page, shot }) => {
      await waitConnected(page);
      await page.clock.pauseAt(Date.now() + 1000);
      const typing = page.getByTestId('typing');
      assert.equal(await typing.getAttribute('aria-live'), 'polite');
      fake.ephemeral('general', 'bob');
      await waitTyping(page, 'bob is typing…');
      await page.clock.fastForward(3000);
      fake.ephemeral('general', 'carol');
      await waitTyping(page, 'bob and carol are typing…');
      await shot('two');
      await page.clock.fastForward(1100); // bob's 4 s are over, carol's are not
      await waitTyping(page, 'carol is typing…');
      fake.ephemeral('general', 'dmitri');
      fake.ephemeral('general', 'eve');
      fake.ephemeral('general', 'frank');
      await waitTyping(page, 'carol, dmitri and 2 others are typing…');
      fake.publish('general', 'carol', 'here it is');
      await waitTyping(page, 'dmitri, eve and frank are typing…');
      // Other ephemeral kinds are neither an indicator nor a message.
      fake.ephemeral('general', 'gina', 'read:01900000');
      fake.publish('general', 'bob', 'sync');
      await messageByText(page, 'sync').waitFor();
      assert.equal(await typing.textContent(), 'dmitri, eve and frank are typing…');
      assert.equal(await page.getByTestId('message').count(), 2);
      await page.clock.fastForward(4000);
      await waitTyping(page, '');
      assert.equal(await typing.evaluate((e) => e.getBoundingClientRect().height), 0, 'no line while nobody types');
    });
  });

  test('typing sends: ephemeral "typing" at most once per 2 s while typing on; own typing never shown', async (t) => {
    const fake = new FakeChat();
    await withPage(t, { fake, clock: true }, async ({ page }) => {
      await waitConnected(page);
      await waitMembers(page, ['alice*']); // presence answered: this server takes ephemeral sends
      await page.clock.pauseAt(Date.now() + 1000);
      const composer = page.getByTestId('composer');
      await composer.focus();
      for (let i = 0; i < 20; i++) { // 5 s of steady typing, a key every 250 ms
        await composer.press('a');
        await page.clock.fastForward(250);
      }
      await composer.press('Enter');
      // Frames keep their order: once the message is there, every typing send is too.
      await fake.waitForFrame((f) => f.type === 'send' && !f.ephemeral);
      const sends = fake.sent('send');
      const typingSends = sends.filter((f) => f.ephemeral === true);
      assert.equal(typingSends.length, 3, 'one at 0, 2 and 4 s, not one per key');
      for (const f of typingSends) {
        assert.equal(f.text, 'typing');
        assert.equal(f.room, 'general');
        assert.equal(typeof f.ref, 'string');
      }
      assert.equal(new Set(typingSends.map((f) => f.ref)).size, 3, 'each under its own ref');
      await messageByText(page, 'a'.repeat(20)).and(page.locator('[data-status="delivered"]')).waitFor();
      // The fake fans each one out to alice too, like the server: never shown to her.
      assert.equal(await page.getByTestId('typing').textContent(), '');
      assert.equal(await page.getByTestId('message').count(), 1);
      assert.equal(await page.getByTestId('notice').isVisible(), false, 'acks of typing sends are not messages');
    });
  });

  for (const code of ['unsupported', 'unknown_type']) {
    test(`server without presence (${code}): no member list, no notice, no console errors`, async (t) => {
      const fake = new FakeChat({ presenceError: code });
      await withPage(t, { fake, viewport: PHONE }, async ({ page, shot }) => {
        await waitConnected(page);
        await page.locator('#app[data-presence="unsupported"]').waitFor({ state: 'attached' });
        await page.getByTestId('composer').pressSequentially('hello');
        await page.getByTestId('composer').press('Enter');
        await messageByText(page, 'hello').and(page.locator('[data-status="delivered"]')).waitFor();
        assert.equal(await page.getByTestId('members').isVisible(), false);
        assert.equal(await page.getByTestId('members-toggle').isVisible(), false);
        assert.equal(await page.getByTestId('notice').isVisible(), false);
        const typingSends = fake.sent('send').filter((f) => f.ephemeral === true).length;
        // A server that predates presence would store "typing" as a message: the page sends none there.
        assert.equal(typingSends, code === 'unknown_type' ? 0 : 1);
        assert.ok(!fake.messages('general').some((m) => m.text === 'typing'));
        assert.equal(fake.sent('presence').length, 1, 'asked once, not again');
        await shot('no-members');
      });
    });
  }

  for (const viewport of [DESKTOP, PHONE, SMALL]) {
    test(`layout at ${viewport.width}x${viewport.height}: no horizontal overflow, controls reachable`, async (t) => {
      const fake = new FakeChat();
      const now = Date.now();
      fake.seed('general', 'bob', 'Morning! The deploy went out last night.', now - 26 * 3600_000);
      fake.seed('general', 'carol', 'Any issues with the Kafka upgrade?', now - 26 * 3600_000 + 60_000);
      fake.seed('general', 'alice', 'None so far, consumer lag is back to zero.', now - 26 * 3600_000 + 120_000);
      fake.seed('general', 'bob', 'Standup in 5 minutes', now - 3600_000);
      fake.seed('general', 'dmitri-with-a-long-display-name', 'A longer message, to see wrapping: '.repeat(4) + 'https://example.com/a/very/long/url/without/any/spaces/that/must/wrap/somewhere', now - 600_000);
      for (const u of ['bob', 'carol', 'dmitri-with-a-long-display-name']) fake.addMember('general', u);
      await withPage(t, { fake, viewport, rooms: ['general', 'random', 'ops'] }, async ({ page, shot }) => {
        await waitConnected(page);
        await page.getByTestId('message').nth(4).waitFor();
        await say(page, 'On my way 🏃');
        await messageByText(page, 'On my way 🏃').and(page.locator('[data-status="delivered"]')).waitFor();
        fake.publish('random', 'carol', 'psst');
        await page.locator('[data-testid="room-random"][data-unread="1"]').waitFor({ state: 'attached' });
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `page wider than the viewport by ${overflow}px`);
        for (const id of ['composer', 'send', 'status', 'room-title']) {
          assert.ok(await page.getByTestId(id).isVisible(), `${id} visible`);
        }
        await waitMembers(page, ['alice*', 'bob', 'carol', 'dmitri-with-a-long-display-name']);
        fake.ephemeral('general', 'bob');
        fake.ephemeral('general', 'dmitri-with-a-long-display-name');
        await waitTyping(page, 'bob and dmitri-with-a-long-display-name are typing…');
        const wide = viewport.width >= 1024;
        assert.equal(await page.getByTestId('members').isVisible(), wide, 'the list is a column on wide screens only');
        assert.equal(await page.getByTestId('members-toggle').isVisible(), !wide, 'narrow screens have the count');
        const overflowNow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflowNow <= 0, `page wider than the viewport by ${overflowNow}px with the members and typing`);
        await shot('chat');
        if (!wide) {
          assert.equal(await page.getByTestId('members-count').textContent(), '4');
          await page.getByTestId('members-toggle').click();
          await page.getByTestId('members').waitFor();
          assert.equal(await page.getByTestId('members-toggle').getAttribute('aria-expanded'), 'true');
          const box = await page.getByTestId('members').boundingBox();
          assert.ok(box.x >= 0 && box.x + box.width <= viewport.width, `the panel fits the width: ${JSON.stringify(box)}`);
          await shot('members');
          await page.keyboard.press('Escape');
          await page.getByTestId('members').waitFor({ state: 'hidden' });
        }
        if (viewport.width < 761) {
          await page.locator('#menu-button').click();
          await page.getByTestId('join-input').waitFor();
          await shot('drawer');
        }
      });
    });
  }
});
