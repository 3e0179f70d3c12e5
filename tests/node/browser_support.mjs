// Browser helpers shared by the Playwright tests (page.test.mjs, browser.test.mjs).

import fs from 'node:fs';
import assert from 'node:assert/strict';
import path from 'node:path';
import { NODE_MAJOR } from './support.mjs';

/** The Chromium Playwright drives: Debian's package (scripts/install-deps installs it). */
export const CHROMIUM = process.env.NUDGE_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];

/**
 * Why the browser tests cannot run here, or null when they can: Playwright
 * 1.65 needs Node.js 20 or later, and a Chromium binary.
 */
export function browserSkipReason() {
  if (NODE_MAJOR < 20) return `Playwright needs Node.js >= 20, this is ${process.versions.node}`;
  if (!fs.existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM}: scripts/install-deps installs the chromium package`;
  const pw = path.join(path.dirname(new URL(import.meta.url).pathname), 'node_modules', 'playwright-core');
  if (!fs.existsSync(pw)) return 'tests/node/node_modules missing: run scripts/install-deps (npm ci in tests/node)';
  return null;
}

/** Launches Chromium (headless). Imported lazily: playwright-core refuses old Node.js at import. */
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
}

/** Collects console errors and page errors of `page` into `sink` (array of strings). */
export function recordPageErrors(page, sink, label = '') {
  page.on('pageerror', (e) => sink.push(`${label}pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') sink.push(`${label}console.error: ${m.text()}`); });
}

/**
 * Screenshots of every page in `pages` ({ label: page }) as <dir>/<step>-<label>.png.
 * Never throws (a screenshot must not hide the real failure).
 */
export async function snap(dir, step, pages) {
  for (const [label, page] of Object.entries(pages)) {
    try {
      await page.screenshot({ path: path.join(dir, `${step}-${label}.png`), animations: 'disabled', timeout: 10_000 });
    } catch { /* page gone */ }
  }
}

/** Sets the display name through the first-visit dialog. */
export async function chooseName(page, name) {
  await page.getByTestId('name-input').fill(name);
  await page.getByTestId('name-save').click();
  await page.getByTestId('name-dialog').waitFor({ state: 'hidden' });
}

/** Waits until the page says it is connected. */
export async function waitConnected(page, timeout = 30_000) {
  await page.locator('[data-testid="status"][data-state="connected"]').waitFor({ timeout });
}

/** Joins `room` through the sidebar form (on narrow screens the form is in the drawer). */
export async function joinRoom(page, room) {
  const input = page.getByTestId('join-input');
  if (!(await input.isVisible())) await page.locator('#menu-button').click();
  await input.fill(room);
  await input.press('Enter');
  await page.locator(`[data-testid="room-${room}"].active`).waitFor({ state: 'attached' });
  await page.getByTestId('room-title').filter({ hasText: room }).waitFor();
}

/** Types `text` in the composer and sends it with Enter. */
export async function say(page, text) {
  const composer = page.getByTestId('composer');
  await composer.fill(text);
  await composer.press('Enter');
}

/** The message element with this exact text (and optionally this sender). */
export function messageByText(page, text, sender) {
  let loc = page.getByTestId('message');
  if (sender) loc = loc.and(page.locator(`[data-sender="${sender}"]`));
  return loc.filter({ has: page.getByTestId('message-text').getByText(text, { exact: true }) });
}

/** data-id of every message element, in document order. */
export function messageIds(page) {
  return page.getByTestId('message').evaluateAll((els) => els.map((e) => e.dataset.id || null));
}

/** The member list as shown: one user per line, the own one with a trailing '*'. */
export function memberNames(page) {
  return page.getByTestId('member').evaluateAll((els) => els.map((e) => e.dataset.user + (e.classList.contains('own') ? '*' : '')));
}

/** Waits until the member list reads `expected`; fails showing what it reads. */
export async function waitMembers(page, expected, timeout = 10_000) {
  try {
    await page.waitForFunction((want) => JSON.stringify([...document.querySelectorAll('[data-testid="member"]')]
      .map((e) => e.dataset.user + (e.classList.contains('own') ? '*' : ''))) === want, JSON.stringify(expected), { timeout });
  } catch {
    assert.deepEqual(await memberNames(page), expected, 'member list');
  }
}

/** Waits until the typing line reads `text` ('' : nobody typing). */
export async function waitTyping(page, text, timeout = 10_000) {
  try {
    await page.waitForFunction((want) => document.querySelector('[data-testid="typing"]').textContent === want, text, { timeout });
  } catch {
    assert.equal(await page.getByTestId('typing').textContent(), text, 'typing line');
  }
}
