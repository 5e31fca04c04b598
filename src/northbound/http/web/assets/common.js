// shopbridge web UI: what every page shares. Plain ES2020 module, no dependencies.
//
// - api(): fetch with the optional bearer token, JSON in and out, API errors as ApiError;
// - showError()/clearError(): the page's role="alert" element;
// - the taxonomy (labels, operator reasons) and the category and state colors;
// - the bridge's clock (the demo's runs faster than the browser's);
// - the live stream (SSE) with its "live / reconnecting…" indicator;
// - the header's "sign in with token" dialog and role display.

const TOKEN_KEY = 'shopbridge.token';

export function token() {
  try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export function setToken(t) {
  try {
    if (t) localStorage.setItem(TOKEN_KEY, t); else localStorage.removeItem(TOKEN_KEY);
  } catch { /* storage off: the token lasts for this page only */ }
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** GET (or POST with `body`) a JSON API path; throws ApiError with the bridge's message. */
export async function api(path, { method, body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method: method || (body !== undefined ? 'POST' : 'GET'),
      headers,
      body: body !== undefined ? JSON.stringify(body) : undefined,
      signal,
      cache: 'no-store',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `The bridge did not answer (${path}): ${e.message}`);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const err = data && data.error;
    const msg = err && err.message ? err.message : `${res.status} ${res.statusText} from ${path}`;
    const hint = res.status === 401 || res.status === 403 ? ' Sign in with a token (top right).' : '';
    throw new ApiError(res.status, (err && err.code) || 'http_' + res.status, msg + hint);
  }
  return data;
}

// ---------------------------------------------------------------- errors

export function showError(e) {
  const box = document.getElementById('alert');
  const msg = e instanceof Error ? e.message : String(e);
  if (!box) { console.error(msg); return; }
  box.textContent = msg;
  box.hidden = false;
  if (!(e instanceof ApiError)) console.error(e);
}

export function clearError() {
  const box = document.getElementById('alert');
  if (box && !box.hidden) { box.hidden = true; box.textContent = ''; }
}

// ---------------------------------------------------------------- text helpers

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
/** HTML-escapes anything for use in a template string. */
export function esc(v) {
  return v == null ? '' : String(v).replace(/[&<>"']/g, (c) => ESC[c]);
}

/** "2h 05m", "4m 09s", "12s". */
export function fmtDur(seconds) {
  if (seconds == null || !isFinite(seconds)) return '–';
  let s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const p = (n) => String(n).padStart(2, '0');
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${p(m)}m`;
  if (m) return `${m}m ${p(s)}s`;
  return `${s}s`;
}

/** Hours with one decimal: "7.4 h". */
export function fmtHours(seconds) {
  if (seconds == null || !isFinite(seconds)) return '–';
  if (seconds > 0 && seconds < 360) return fmtDur(seconds); // not "0.0 h" for a few minutes
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function fmtPct(ratio) {
  if (ratio == null || !isFinite(ratio)) return '–';
  return `${(ratio * 100).toFixed(1)} %`;
}

// A zone string the bridge reports: an IANA name ("America/Chicago"), "UTC", or an offset
// ("+01:00"). Intl takes the first two; offsets are applied by hand.
const exactOffsets = new Map();
function zoneOffsetMinutes(zone) {
  if (exactOffsets.has(zone)) return exactOffsets.get(zone);
  const m = /^(?:UTC|GMT)?([+-])(\d{1,2}):?(\d{2})?(?::?(\d{2}))?$/.exec(zone || '');
  if (!m) return null;
  return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3] || 0) + Number(m[4] || 0) / 60);
}

/**
 * A fixed-offset zone ("+00:29") may be rounded to the minute; a report's `from` is the local
 * midnight, which gives the exact offset (the demo's shifted calendar has seconds in it).
 */
export function learnZone(zone, from) {
  const nominal = zoneOffsetMinutes(zone);
  const ms = Date.parse(from);
  if (nominal == null || !isFinite(ms)) return;
  let off = ((-ms % 86400000) + 86400000) % 86400000; // local midnight - utc, mod a day
  if (off > 43200000) off -= 86400000;
  const minutes = off / 60000;
  if (Math.abs(minutes - nominal) < 1) exactOffsets.set(zone, minutes);
}

const fmtCache = new Map();
function formatter(zone, opts) {
  const key = zone + JSON.stringify(opts);
  let f = fmtCache.get(key);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat('en-GB', { ...opts, timeZone: zone || undefined });
    } catch {
      f = new Intl.DateTimeFormat('en-GB', opts);
    }
    fmtCache.set(key, f);
  }
  return f;
}

function parts(ms, zone) {
  const off = zoneOffsetMinutes(zone);
  if (off != null) {
    const d = new Date(ms + off * 60000);
    return { y: d.getUTCFullYear(), mo: d.getUTCMonth() + 1, d: d.getUTCDate(), h: d.getUTCHours(), mi: d.getUTCMinutes(), s: d.getUTCSeconds() };
  }
  const f = formatter(zone, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
  const o = {};
  for (const p of f.formatToParts(new Date(ms))) o[p.type] = p.value;
  return { y: +o.year, mo: +o.month, d: +o.day, h: +o.hour % 24, mi: +o.minute, s: +o.second };
}

const p2 = (n) => String(n).padStart(2, '0');

/** The zone's offset from UTC at an instant, in ms (local = utc + offset). */
export function zoneOffsetMs(ms, zone) {
  const x = parts(ms, zone);
  const asUtc = Date.UTC(x.y, x.mo - 1, x.d, x.h, x.mi, x.s);
  return asUtc - Math.floor(ms / 1000) * 1000;
}

// The shop's zone, when the bridge said it (`zone` of /api/v1/floor or of a report): times
// are shown in it, so that the floor, the tablet and the review agree with the shift calendar.
let shopZone = null;
export function setShopZone(zone, from) {
  if (!zone) return;
  shopZone = zone;
  if (from) learnZone(zone, from);
}

/** "14:20" in `zone` (the shop's zone when not given, else the browser's own). */
export function fmtClock(t, zone = shopZone, withSeconds = false) {
  const ms = typeof t === 'number' ? t : Date.parse(t);
  if (!isFinite(ms)) return '–';
  const x = parts(ms, zone);
  return `${p2(x.h)}:${p2(x.mi)}${withSeconds ? ':' + p2(x.s) : ''}`;
}

/** "YYYY-MM-DD" of an instant in `zone`. */
export function dateInZone(t, zone) {
  const ms = typeof t === 'number' ? t : Date.parse(t);
  const x = parts(ms, zone);
  return `${x.y}-${p2(x.mo)}-${p2(x.d)}`;
}

/** "Thu 26 Nov 14:20" in `zone`. */
export function fmtDateTime(t, zone) {
  const ms = typeof t === 'number' ? t : Date.parse(t);
  if (!isFinite(ms)) return '–';
  const date = dateInZone(ms, zone);
  return `${fmtDate(date, true)} ${fmtClock(ms, zone)}`;
}

/** "Thu 26 Nov 2026" for "2026-11-26". */
export function fmtDate(date, short = false) {
  const [y, m, d] = date.split('-').map(Number);
  const dt = new Date(Date.UTC(y, m - 1, d));
  const opts = short
    ? { weekday: 'short', day: 'numeric', month: 'short', timeZone: 'UTC' }
    : { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' };
  return new Intl.DateTimeFormat('en-GB', opts).format(dt);
}

export function addDays(date, n) {
  const [y, m, d] = date.split('-').map(Number);
  const dt = new Date(Date.UTC(y, m - 1, d + n));
  return dt.toISOString().slice(0, 10);
}

export const isDate = (s) => typeof s === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(s);

// ---------------------------------------------------------------- the bridge's clock

// The demo's clock runs `--speed` times faster than real time, so "now" on a page is the
// bridge's now: anchored on the timestamps the bridge sends (`now`/`generated_at`, and the
// machines' `last_seen`), advanced at the bridge's rate (`clock_rate` when the bridge says
// it, else estimated from two anchors some seconds apart).
export const clock = {
  anchorServer: null,
  anchorLocal: 0,
  rate: 1,
  explicit: false,
  first: null,

  /** A server timestamp that was "now" (or shortly before) when it arrived. */
  observe(t, rate) {
    const s = typeof t === 'number' ? t : Date.parse(t);
    if (!isFinite(s)) return;
    const l = performance.now();
    if (typeof rate === 'number' && rate > 0) {
      this.rate = rate;
      this.explicit = true;
      this.anchorServer = s;
      this.anchorLocal = l;
      return;
    }
    if (!this.explicit) {
      if (!this.first) this.first = { s, l };
      else if (l - this.first.l > 3000) {
        const r = (s - this.first.s) / (l - this.first.l);
        if (r > 0.2) this.rate = Math.abs(r - 1) < 0.1 ? 1 : r;
      }
    }
    if (this.anchorServer == null || s > this.now()) {
      this.anchorServer = s;
      this.anchorLocal = l;
    }
  },

  /** The bridge's now, in ms since the epoch. */
  now() {
    if (this.anchorServer == null) return Date.now();
    return this.anchorServer + (performance.now() - this.anchorLocal) * this.rate;
  },
};

/** Feeds the clock from a floor object or a tile. */
export function observeClock(obj) {
  if (!obj) return;
  if (obj.zone) setShopZone(obj.zone);
  if (obj.now || obj.generated_at) clock.observe(obj.now || obj.generated_at, obj.clock_rate);
  else if (obj.last_seen && obj.link !== 'lost') clock.observe(obj.last_seen);
}

// ---------------------------------------------------------------- taxonomy and colors

export const STATE_COLORS = { RUN: '#2e7d32', IDLE: '#f9a825', DOWN: '#c62828', OFF: '#757575' };
export const STATE_WORDS = { RUN: 'Running', IDLE: 'Idle', DOWN: 'Down', OFF: 'Off' };

export const CATEGORY_COLORS = {
  production: '#2e7d32',
  setup: '#1565c0',
  program_proveout: '#6a1b9a',
  waiting_inspection: '#00838f',
  quality_hold: '#ad1457',
  blocked: '#ef6c00',
  starved: '#f9a825',
  no_operator: '#8d6e63',
  tool_change: '#5c6bc0',
  maintenance: '#4e342e',
  machine_fault: '#c62828',
  micro_stop: '#ffb74d',
  planned_downtime: '#9e9e9e',
  unexplained: '#424242',
};

const DEFAULT_LABELS = {
  production: 'Production',
  setup: 'Setup',
  program_proveout: 'Program prove-out',
  waiting_inspection: 'Waiting on inspection',
  quality_hold: 'Quality hold',
  blocked: 'Blocked',
  starved: 'Starved',
  no_operator: 'No operator',
  tool_change: 'Tool change',
  maintenance: 'Maintenance',
  machine_fault: 'Machine fault',
  micro_stop: 'Micro-stop',
  planned_downtime: 'Planned downtime',
  unexplained: 'Unexplained',
};

// Colors light enough that black text reads better on them than white.
const LIGHT = new Set(['#f9a825', '#ffb74d', '#9e9e9e', '#ef6c00']);

function hashHue(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); }
  return (h >>> 0) % 360;
}

export function catColor(id) {
  if (!id) return '#bdbdbd';
  return CATEGORY_COLORS[id] || `hsl(${hashHue(id)} 50% 40%)`;
}

/** Text color on a category's color. */
export function catInk(id) {
  return LIGHT.has(CATEGORY_COLORS[id]) ? '#1b1f24' : '#fff';
}

export function stateInk(state) {
  return state === 'IDLE' ? '#1b1f24' : '#fff';
}

let taxonomy = { categories: [], production: 'production' };
const labels = new Map(Object.entries(DEFAULT_LABELS));

export function catLabel(id) {
  if (!id) return 'No category';
  return labels.get(id) || id.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
}

/** The taxonomy from the bridge (labels, which reasons an operator may pick). */
export async function loadTaxonomy() {
  try {
    taxonomy = await api('/api/v1/reasons');
    for (const c of taxonomy.categories || []) if (c.label) labels.set(c.id, c.label);
  } catch (e) {
    showError(e);
  }
  return taxonomy;
}

export function categories() {
  return taxonomy.categories || [];
}

/** An SVG <defs> with the hatch that marks unexplained time (visible in grey print too). */
export function svgDefs() {
  return `<defs><pattern id="hatch-unexplained" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)">
<rect width="6" height="6" fill="#424242"/><rect width="2.2" height="6" fill="#9e9e9e"/></pattern>
<pattern id="hatch-now" patternUnits="userSpaceOnUse" width="8" height="8" patternTransform="rotate(45)">
<rect width="8" height="8" fill="#fff" fill-opacity="0"/><rect width="3" height="8" fill="#fff" fill-opacity="0.35"/></pattern></defs>`;
}

/** The fill of a category in SVG. */
export function catFill(id) {
  return id === 'unexplained' ? 'url(#hatch-unexplained)' : catColor(id);
}

/** A small legend swatch + word for a category (HTML). */
export function catChip(id, extra = '') {
  return `<span class="chip${id === 'unexplained' ? ' hatched' : ''}" style="--c:${catColor(id)}"${extra}><span class="sw" aria-hidden="true"></span>${esc(catLabel(id))}</span>`;
}

// ---------------------------------------------------------------- live stream

/**
 * Opens the SSE stream. `onSnapshot(floor)` for the first full picture (and again after each
 * reconnect), `onMachine(tile)` for each change. The header's live indicator follows the
 * connection.
 */
export function openEvents({ onSnapshot, onMachine }) {
  let es = null;
  let retry = null;
  const connect = () => {
    const t = token();
    es = new EventSource('/api/v1/events' + (t ? `?access_token=${encodeURIComponent(t)}` : ''));
    setLive('connecting');
    es.addEventListener('open', () => setLive('live'));
    es.addEventListener('snapshot', (ev) => {
      setLive('live');
      try {
        const data = JSON.parse(ev.data);
        observeClock(data);
        onSnapshot && onSnapshot(data);
      } catch (e) { showError(e); }
    });
    es.addEventListener('machine', (ev) => {
      try {
        const tile = JSON.parse(ev.data);
        observeClock(tile);
        onMachine && onMachine(tile);
      } catch (e) { showError(e); }
    });
    es.addEventListener('clock', (ev) => {
      try { const c = JSON.parse(ev.data); clock.observe(c.now, c.clock_rate); } catch { /* ignore */ }
    });
    es.addEventListener('error', () => {
      if (es.readyState === EventSource.CONNECTING) setLive('reconnecting');
      else if (es.readyState === EventSource.CLOSED) {
        // The server refused (e.g. 401) or went away: try again ourselves, slowly.
        setLive('offline');
        clearTimeout(retry);
        retry = setTimeout(connect, 5000);
      }
    });
  };
  connect();
  return { close: () => { clearTimeout(retry); es && es.close(); } };
}

function setLive(state) {
  const el = document.getElementById('live');
  if (!el) return;
  el.dataset.live = state;
  el.textContent = { live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…', offline: 'offline, retrying…' }[state] || state;
}

// ---------------------------------------------------------------- header chrome

/** Wires the header: current role, the token dialog. Call once per page. */
export function initChrome() {
  const who = document.getElementById('whoami');
  const btn = document.getElementById('token-btn');
  const dlg = document.getElementById('token-dialog');
  const refreshWho = async () => {
    if (!who) return;
    try {
      const w = await api('/api/v1/whoami');
      const role = w.role || 'no access';
      who.textContent = w.user ? `${w.user} · ${role}` : role + (w.local ? ' (this computer)' : '');
    } catch {
      who.textContent = token() ? 'token not accepted' : '';
    }
  };
  if (btn && dlg) {
    const input = dlg.querySelector('input');
    btn.addEventListener('click', () => {
      input.value = token();
      if (dlg.showModal) dlg.showModal(); else dlg.setAttribute('open', '');
      input.focus();
    });
    dlg.addEventListener('close', () => {
      if (dlg.returnValue === 'save') setToken(input.value.trim());
      else if (dlg.returnValue === 'clear') setToken('');
      else return;
      btn.textContent = token() ? 'Token set' : 'Sign in with token';
      refreshWho();
      location.reload();
    });
    btn.textContent = token() ? 'Token set' : 'Sign in with token';
  }
  refreshWho();
}

/** The path's last segment: the machine id of /machine/{id} and /tablet/{id}. */
export function idFromPath() {
  const parts = location.pathname.split('/').filter(Boolean);
  return parts.length >= 2 ? decodeURIComponent(parts[parts.length - 1]) : '';
}
