// Shared helpers of the browser scenarios (floor, tablet, review, weight).
//
// Each scenario runs against a bridge that is already running (the demo), named by the
// environment:
//   SHOPBRIDGE_URL  the bridge's HTTP base, e.g. http://127.0.0.1:41234 (required)
//   CHROMIUM        the browser (default /usr/bin/chromium)
//   SCREENSHOTS     where full-page PNGs go (default target/web-screenshots; created)
//   SB_MACHINE      optional: the machine a scenario should use
// Exit code 0 = pass. A failure prints "FAIL <scenario>: expected …, found …" and exits 1.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const BASE = (process.env.SHOPBRIDGE_URL || '').replace(/\/+$/, '');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const SHOTS = process.env.SCREENSHOTS || 'target/web-screenshots';
export const MACHINE = process.env.SB_MACHINE || '';
/** Per wait; CI is a loaded 2-core box. */
export const WAIT = 30_000;

export class Failure extends Error {}

/** Fails the scenario: `what` was expected, `found` was found. */
export function fail(what, found) {
  throw new Failure(found === undefined ? what : `expected ${what}; found ${fmt(found)}`);
}

export function check(cond, what, found) {
  if (!cond) fail(what, found);
}

function fmt(v) {
  if (typeof v === 'string') return v;
  try { return JSON.stringify(v); } catch { return String(v); }
}

export function log(...args) {
  const t = ((performance.now() - started) / 1000).toFixed(1).padStart(6);
  console.log(`[${t}s]`, ...args);
}

const started = performance.now();

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** GET a JSON path of the bridge (from Node, not the page). */
export async function getJson(path) {
  const res = await fetch(BASE + path, { headers: { Accept: 'application/json' } });
  const text = await res.text();
  if (!res.ok) fail(`GET ${path} to answer 2xx`, `${res.status}: ${text.slice(0, 300)}`);
  try { return JSON.parse(text); } catch { return fail(`GET ${path} to answer JSON`, text.slice(0, 200)); }
}

/**
 * Calls `fn` until it returns a truthy value; returns it. Fails after `timeout` ms with
 * `what` and the last value `fn` returned (or threw).
 */
export async function poll(what, fn, { timeout = WAIT, interval = 500 } = {}) {
  const end = performance.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      if (e instanceof Failure) throw e;
      last = e.message;
    }
    if (performance.now() > end) fail(`${what} within ${Math.round(timeout / 1000)} s`, last ?? 'nothing');
    await sleep(interval);
  }
}

/** Launches the headless browser. */
export async function launch() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
}

/**
 * A page that records uncaught script errors (a scenario fails on any) and the browser's
 * console errors (printed).
 */
export async function newPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, ...options });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => { page.errors.push(e.message); log(`page error: ${e.message}`); });
  page.on('console', (m) => { if (m.type() === 'error') log(`console error: ${m.text()}`); });
  return page;
}

/** Fails when the page threw, or shows an error in its role="alert" box. */
export async function checkPageHealthy(page, where) {
  check(!page.errors.length, `no script errors on ${where}`, page.errors);
  const alert = await page.$('#alert:not([hidden])');
  if (alert) fail(`no error shown on ${where}`, (await alert.textContent()).trim());
}

export async function screenshot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  const path = join(SHOTS, name);
  await page.screenshot({ path, fullPage: true });
  log(`screenshot ${path}`);
  return path;
}

/**
 * Runs a scenario: prints PASS or FAIL, exits 0 or 1. The whole scenario has `limit` ms
 * (default 115 s); the browser is closed either way; on failure a screenshot of each open
 * page is saved as `<name>-failure-N.png`.
 */
export async function scenario(name, fn, { limit = 115_000 } = {}) {
  if (!BASE) {
    console.error(`FAIL ${name}: SHOPBRIDGE_URL is not set (the base URL of a running bridge, e.g. http://127.0.0.1:8080)`);
    process.exit(1);
  }
  let browser = null;
  const timer = setTimeout(() => {
    console.error(`FAIL ${name}: did not finish within ${limit / 1000} s`);
    process.exit(1);
  }, limit);
  try {
    browser = await launch();
    await fn(browser);
    clearTimeout(timer);
    await browser.close();
    log(`PASS ${name}`);
    process.exit(0);
  } catch (e) {
    clearTimeout(timer);
    const msg = e instanceof Failure ? e.message : (e && e.stack) || String(e);
    console.error(`FAIL ${name}: ${msg}`);
    if (browser) {
      let n = 0;
      for (const ctx of browser.contexts()) {
        for (const p of ctx.pages()) {
          try { await screenshot(p, `${name}-failure-${++n}.png`); } catch { /* page gone */ }
        }
      }
      try { await browser.close(); } catch { /* already gone */ }
    }
    process.exit(1);
  }
}

/** "YYYY-MM-DD" of an instant in an IANA zone (or "UTC", or an offset like "+01:00"). */
export function dateInZone(t, zone) {
  const ms = typeof t === 'number' ? t : Date.parse(t);
  const m = /^(?:UTC|GMT)?([+-])(\d{1,2}):?(\d{2})?$/.exec(zone || '');
  if (m) {
    const off = (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3] || 0));
    return new Date(ms + off * 60000).toISOString().slice(0, 10);
  }
  const f = new Intl.DateTimeFormat('en-CA', { timeZone: zone || 'UTC', year: 'numeric', month: '2-digit', day: '2-digit' });
  return f.format(new Date(ms));
}

/** The shop's "today" (the bridge's clock, the report's zone). */
export async function shopToday() {
  const r = await getJson('/api/v1/reports/daily');
  if (r.today) return { today: r.today, zone: r.zone };
  return { today: dateInZone(r.generated_at, r.zone), zone: r.zone };
}
