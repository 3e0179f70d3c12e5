// Helpers for Node.js tests that run `nudge` as its own process and talk to
// it as clients do: the counterpart of tests/support/nudge_test.py.
//
// Environment (set by tests/node/CMakeLists.txt under ctest):
//   NUDGE_BIN            the nudge binary (default: `nudge` on PATH)
//   NUDGE_SOURCE_DIR     the repository root (default: two levels up from here)
//   NUDGE_ARTIFACTS_DIR  where screenshots and logs go (default: <build>/test-artifacts
//                        when NUDGE_BIN is <build>/bin/nudge, else <tmp>/nudge-test-artifacts)
//   DATABASE_URL         PostgreSQL for psql() (default: the scripts/services/postgres one)
//
// Typical use, with node:test:
//
//   import { startNudge, PIPELINES, serviceRunning, uniqueSuffix } from './support.mjs';
//   const nudge = await startNudge(`${PIPELINES}/chat.toml`, {
//     set: ['source.websocket.listen=127.0.0.1:0'], env: { NUDGE_TOPIC: `t.${uniqueSuffix()}` } });
//   t.after(() => nudge.kill());
//   ... nudge.baseUrl (http://127.0.0.1:PORT), nudge.wsUrl (ws://127.0.0.1:PORT/ws) ...
//
// Every process started here is killed when the test process exits, even
// when a test fails before its cleanup ran.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The nudge binary. */
export const NUDGE_BIN = process.env.NUDGE_BIN || 'nudge';
/** The repository root. */
export const SOURCE_DIR = path.resolve(process.env.NUDGE_SOURCE_DIR || path.join(here, '..', '..'));
/** pipelines/ of the repository. */
export const PIPELINES = path.join(SOURCE_DIR, 'pipelines');
/** scripts/services/ of the repository. */
export const SERVICES = path.join(SOURCE_DIR, 'scripts', 'services');
/** PostgreSQL used by psql(). */
export const DATABASE_URL = process.env.DATABASE_URL || 'postgresql://nudge:nudge@127.0.0.1:5432/nudge';

/** Base directory for test artifacts (screenshots, logs). Created on first use by artifactsDir(). */
export const ARTIFACTS_DIR = process.env.NUDGE_ARTIFACTS_DIR || (path.isAbsolute(NUDGE_BIN)
  ? path.join(path.dirname(path.dirname(NUDGE_BIN)), 'test-artifacts')
  : path.join(os.tmpdir(), 'nudge-test-artifacts'));

// "serving the chat at http://127.0.0.1:8080/" (static_dir set) or, without
// a page, "listening on ws://127.0.0.1:8080/ws".
const URL_LINE = /serving the chat at (https?:\/\/[^/\s]+)\/|listening on (wss?:\/\/[^/\s]+)\//;
const STARTED_LINE = /pipeline '[^']*' started/;

const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* gone */ }
  }
});

/**
 * A `nudge run <pipeline>` child process. Its stderr log is kept (log(),
 * logLines) for assertions and failure messages; baseUrl is parsed from it.
 */
// Every client of these tests connects from 127.0.0.1, which the websocket
// source's per-address rates would count as one very busy client. Tests that
// are not about those limits lift them (tests of the limits set their own).
export const ONE_ADDRESS_LIFTS = ['source.websocket.connection_rate_per_address=0',
  'source.websocket.sender_rate_limit_per_second=0', 'source.websocket.http_request_rate_per_address=0'];

export class NudgeProcess {
  /**
   * @param {string} pipeline  path of the pipeline file
   * @param {object} [options]
   * @param {string[]} [options.set]  `--set key=value` overrides
   * @param {Record<string,string>} [options.env]  added to the environment
   * @param {string} [options.name]  used in messages ("nudge1 did not start: ...")
   * @param {boolean} [options.addressLimits]  keep the per-address rate limits (ONE_ADDRESS_LIFTS)
   */
  constructor(pipeline, { set = [], env = {}, name = 'nudge', addressLimits = false } = {}) {
    this.name = name;
    this.pipeline = pipeline;
    this.logLines = [];
    this.baseUrl = null;
    this.exitCode = undefined;   // undefined while running; then the code, or the signal name
    const args = ['run', pipeline];
    const lifts = !addressLimits && fs.readFileSync(pipeline, 'utf8').includes('[source.websocket]') ? ONE_ADDRESS_LIFTS : [];
    for (const o of [...lifts, ...set]) args.push('--set', o);
    this.child = spawn(NUDGE_BIN, args, {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    live.add(this.child);
    this._listeners = new Set();
    this._exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        live.delete(this.child);
        this.exitCode = code ?? signal;
        resolve(this.exitCode);
        this._notify();
      });
      this.child.on('error', (err) => {
        live.delete(this.child);
        this.logLines.push(`${name}: cannot run ${NUDGE_BIN}: ${err.message}`);
        this.exitCode = this.exitCode ?? 'spawn-error';
        resolve(this.exitCode);
        this._notify();
      });
    });
    let partial = '';
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (chunk) => {
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const line of lines) this._line(line);
      this._notify();
    });
    this.child.stderr.on('end', () => { if (partial) this._line(partial); partial = ''; this._notify(); });
  }

  _line(line) {
    this.logLines.push(line);
    if (!this.baseUrl) {
      const m = URL_LINE.exec(line);
      if (m) this.baseUrl = m[1] || m[2].replace(/^ws/, 'http');
    }
  }

  _notify() { for (const f of [...this._listeners]) f(); }

  /** True once the log says the pipeline started. */
  get started() { return this.logLines.some((l) => STARTED_LINE.test(l)); }

  /** Whether the process is still running. */
  get running() { return this.exitCode === undefined; }

  /** Resolves when `predicate(logLines)` holds; rejects (with the log) on exit or timeout. */
  waitForLog(predicate, { timeout = 30_000, what = 'a log line' } = {}) {
    return new Promise((resolve, reject) => {
      const check = () => {
        let ok = false;
        try { ok = predicate(this.logLines); } catch { ok = false; }
        if (ok) { done(); resolve(this); return; }
        if (!this.running) {
          done();
          reject(new Error(`${this.name} exited (${this.exitCode}) before ${what}:\n${this.log()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: no ${what} within ${timeout} ms:\n${this.log()}`));
      }, timeout);
      const done = () => { clearTimeout(timer); this._listeners.delete(check); };
      this._listeners.add(check);
      check();
    });
  }

  /** Resolves with this once "pipeline '...' started" is logged (and the URL known, if any). */
  async waitStarted(timeout = 30_000) {
    await this.waitForLog((lines) => lines.some((l) => STARTED_LINE.test(l)), { timeout, what: "\"pipeline '...' started\"" });
    return this;
  }

  /** ws://host:port/ws of the websocket source. */
  get wsUrl() {
    if (!this.baseUrl) throw new Error(`${this.name}: no URL in the log yet`);
    return this.baseUrl.replace(/^http/, 'ws') + '/ws';
  }

  /** { host, port } of the listener. */
  get address() {
    if (!this.baseUrl) throw new Error(`${this.name}: no URL in the log yet`);
    const u = new URL(this.baseUrl);
    return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) };
  }

  /** The log so far, one string. */
  log() { return this.logLines.join('\n'); }

  /** Sends a signal (e.g. 'SIGHUP'). */
  signal(sig) { if (this.running) this.child.kill(sig); }

  /** SIGTERM, then resolves with the exit code (SIGKILL after `timeout` ms). */
  async stop(timeout = 30_000) {
    if (this.running) this.child.kill('SIGTERM');
    let timer;
    const killed = new Promise((resolve) => {
      timer = setTimeout(() => { this.kill().then(resolve); }, timeout);
    });
    try {
      return await Promise.race([this._exited, killed]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL; resolves once the process is gone. Safe to call twice. */
  async kill() {
    if (this.running) this.child.kill('SIGKILL');
    return this._exited;
  }

  /** Writes the log to <artifacts>/<file> and returns the path. */
  saveLog(dir, file = `${this.name}.log`) {
    const p = path.join(dir, file);
    fs.writeFileSync(p, this.log() + '\n');
    return p;
  }
}

/** Starts `nudge run <pipeline>` and waits until it started (see NudgeProcess). */
export async function startNudge(pipeline, options = {}) {
  const n = new NudgeProcess(pipeline, options);
  try {
    await n.waitStarted(options.timeout ?? 60_000);
  } catch (err) {
    await n.kill();
    throw err;
  }
  return n;
}

/** `scripts/services/<name> <action>`; returns stdout (trimmed), throws with stderr on failure. */
export function service(name, action) {
  const out = spawnSync(path.join(SERVICES, name), [action], { encoding: 'utf8', timeout: 180_000 });
  if (out.status !== 0) throw new Error(`services/${name} ${action} failed:\n${out.stderr}`);
  return out.stdout.trim();
}

/** Whether `scripts/services/<name> status` says the server runs. */
export function serviceRunning(name) {
  const out = spawnSync(path.join(SERVICES, name), ['status'], { stdio: 'ignore', timeout: 60_000 });
  return out.status === 0;
}

/** The names among `names` whose server is not running ([] when all are). */
export function servicesMissing(names) {
  return names.filter((n) => !serviceRunning(n));
}

/** Runs SQL with psql against DATABASE_URL; rows as arrays of strings. Throws on error. */
export function psql(sql, { url = DATABASE_URL } = {}) {
  const out = spawnSync('psql', [url, '-X', '-q', '-At', '-F', '\t', '-v', 'ON_ERROR_STOP=1', '-c', sql],
    { encoding: 'utf8', timeout: 60_000 });
  if (out.status !== 0) throw new Error(`psql failed: ${out.stderr || out.error}`);
  return out.stdout.split('\n').filter((l) => l).map((l) => l.split('\t'));
}

/** A suffix unique to this process and moment, for topics, groups, tables, rooms: `<pid>_<ms>`. */
export function uniqueSuffix() {
  return `${process.pid}_${Date.now() % 10_000_000}`;
}

/** <ARTIFACTS_DIR>/<parts...>, created. */
export function artifactsDir(...parts) {
  const dir = path.join(ARTIFACTS_DIR, ...parts);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * Polls `probe` (sync or async) until it returns a truthy value, which is
 * returned; throws "timed out waiting for <what>" after `timeout` ms.
 * For waiting on things outside the browser (database rows, logs).
 */
export async function waitFor(probe, { timeout = 30_000, interval = 250, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? `: ${last.message}` : '';
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${detail}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** The major version of the running Node.js. */
export const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
