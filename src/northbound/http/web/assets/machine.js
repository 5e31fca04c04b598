// Machine timeline (/machine/{id}[?date=YYYY-MM-DD][&seq=N]): one SVG strip per shift of the
// day, the intervals colored by category, job/operation boundaries above; tooltips, details
// with revision history and records.
import {
  api, showError, clearError, esc, fmtDur, fmtHours, fmtClock, fmtDate, dateInZone, addDays, isDate,
  zoneOffsetMs, setShopZone, clock, observeClock, openEvents, initChrome, loadTaxonomy, categories, catLabel,
  catColor, catFill, catChip, svgDefs, idFromPath, STATE_COLORS, stateInk,
} from './common.js';

const id = idFromPath();
const $ = (x) => document.getElementById(x);
const params = new URLSearchParams(location.search);

let tile = null;
let zone = null;
let today = null;
let day = null; // {date, from, to, shifts, complete}
let intervals = [];
let selected = params.get('seq') ? Number(params.get('seq')) : null;
let refreshTimer = null;
let loading = 0;

// ---------------------------------------------------------------- data

async function fetchDay(date) {
  const r = await api(`/api/v1/reports/daily${date ? '?date=' + encodeURIComponent(date) : ''}`);
  zone = r.zone || zone;
  setShopZone(r.zone, r.from);
  if (r.today) today = r.today;
  else if (r.generated_at && zone) today = dateInZone(r.generated_at, zone);
  if (r.generated_at) observeClock({ now: r.now || r.generated_at, clock_rate: r.clock_rate });
  return { date: r.date, from: r.from, to: r.to, shifts: r.shifts || [], complete: r.complete !== false };
}

async function fetchIntervals(from, to) {
  const out = [];
  let cursor = null;
  for (let page = 0; page < 50; page++) {
    const q = new URLSearchParams({ machine: id, from, to, limit: '10000' });
    if (cursor) q.set('cursor', cursor);
    const r = await api(`/api/v1/intervals?${q}`);
    out.push(...(r.intervals || []));
    cursor = r.next_cursor;
    if (!cursor) break;
  }
  return out.filter((i) => i.machine === id || i.machine === undefined);
}

// ---------------------------------------------------------------- header

function renderHead() {
  if (!tile) return;
  $('title').textContent = tile.name || tile.id;
  document.title = `${tile.name || tile.id} · shopbridge`;
  const pill = $('statepill');
  const lost = tile.link === 'lost';
  pill.hidden = false;
  pill.style.setProperty('--sc', lost ? '#9e9e9e' : STATE_COLORS[tile.state] || STATE_COLORS.OFF);
  pill.style.setProperty('--si', lost ? '#222' : stateInk(tile.state));
  pill.dataset.state = tile.state;
  const since = lost ? tile.last_seen : tile.since;
  pill.textContent = `${lost ? 'NO DATA' : tile.state}${since ? ' · ' + fmtDur((clock.now() - Date.parse(since)) / 1000) : ''}`;
  $('nowcat').innerHTML = tile.category ? catChip(tile.category) + (tile.job ? ` <span class="muted">job ${esc(tile.job)}${tile.operation ? ' op ' + esc(tile.operation) : ''}</span>` : '') : '';
}

// ---------------------------------------------------------------- timeline

/** Where the open span began (the last interval ends there). */
function spanStart() {
  return tile ? tile.category_since || tile.since : null;
}

const H_LABEL = 18;
const H_STRIP = 38;
const H_AXIS = 18;

function rowsOfDay() {
  const from = Date.parse(day.from);
  const to = Date.parse(day.to);
  const shifts = [];
  for (const sh of day.shifts) {
    const a = Math.max(from, Date.parse(sh.start));
    const b = Math.min(to, Date.parse(sh.end));
    if (b > a) shifts.push({ title: `Shift ${sh.name}`, start: a, end: b, shift: sh.name });
  }
  if (!shifts.length) return [{ title: 'Whole day', start: from, end: to, shift: null }];
  shifts.sort((a, b) => a.start - b.start);
  // The time between shift windows (night, weekend hours) is a row of its own when the machine
  // has anything in it.
  const gaps = [];
  let t = from;
  for (const r of shifts) {
    if (r.start > t) gaps.push({ start: t, end: r.start });
    t = Math.max(t, r.end);
  }
  if (to > t) gaps.push({ start: t, end: to });
  const open = spanStart() ? [Date.parse(spanStart()), clock.now()] : null;
  const used = (g) => intervals.some((i) => Date.parse(i.start) < g.end && Date.parse(i.end) > g.start)
    || (open && open[0] < g.end && open[1] > g.start);
  const rows = [...shifts, ...gaps.filter(used).map((g) => ({ title: 'Off shift', start: g.start, end: g.end, shift: null }))];
  return rows.sort((a, b) => a.start - b.start);
}

function segLabel(i) {
  const secs = i.seconds ?? (Date.parse(i.end) - Date.parse(i.start)) / 1000;
  const short = secs < 120;
  const bits = [`${catLabel(i.category)} ${fmtClock(i.start, zone, short)}–${fmtClock(i.end, zone, short)} (${fmtDur(secs)})`];
  const c = i.context || {};
  if (c.job) bits.push(`job ${c.job}${c.operation ? ' op ' + c.operation : ''}`);
  if (i.now) bits.push('still going');
  return bits.join(', ');
}

function ticksFor(start, end, width) {
  const span = end - start;
  const steps = [15, 30, 60, 120, 180, 240, 360, 720].map((m) => m * 60000);
  const step = steps.find((s) => (width * s) / span >= 56) || 720 * 60000;
  const off = zoneOffsetMs(start, zone);
  let t = Math.ceil((start + off) / step) * step - off;
  const out = [];
  for (; t <= end; t += step) out.push(t);
  return out;
}

function rowSvg(row, rowIdx, width) {
  const span = row.end - row.start;
  const x = (t) => ((Math.min(Math.max(t, row.start), row.end) - row.start) / span) * width;
  const y0 = H_LABEL;
  const inRow = intervals.filter((i) => Date.parse(i.end) > row.start && Date.parse(i.start) < row.end);
  const pieces = inRow.map((i) => ({ i, s: Math.max(Date.parse(i.start), row.start), e: Math.min(Date.parse(i.end), row.end) }));
  let nowPiece = null;
  if (tile && spanStart()) { // the open span, on whatever day it reaches
    const s = Math.max(Date.parse(spanStart()), row.start);
    const e = Math.min(clock.now(), row.end);
    if (e > s) nowPiece = { s, e };
  }
  let h = `<svg class="strip" width="${width}" height="${H_LABEL + H_STRIP + H_AXIS}" role="group" aria-label="${esc(row.title)} ${esc(fmtClock(row.start, zone))} to ${esc(fmtClock(row.end, zone))}">`;
  h += `<rect x="0" y="${y0}" width="${width}" height="${H_STRIP}" fill="#f1f3f5" stroke="#cfd5dc"/>`;
  // segments
  let first = true;
  for (const p of pieces) {
    const i = p.i;
    const x0 = x(p.s);
    const w = Math.max(1, x(p.e) - x0);
    const sel = selected != null && i.seq === selected ? ' sel' : '';
    h += `<rect class="seg${sel}" x="${x0.toFixed(2)}" y="${y0}" width="${w.toFixed(2)}" height="${H_STRIP}" fill="${catFill(i.category)}"`
      + ` data-seq="${esc(i.seq)}" data-category="${esc(i.category)}" data-row="${rowIdx}" tabindex="${first ? 0 : -1}" role="button" aria-label="${esc(segLabel(i))}"/>`;
    first = false;
  }
  if (nowPiece) {
    const cat = tile.category || 'unexplained';
    const x0 = x(nowPiece.s);
    const w = Math.max(2, x(nowPiece.e) - x0);
    const label = `${catLabel(cat)} since ${fmtClock(spanStart(), zone)}, still going${tile.job ? `, job ${tile.job}${tile.operation ? ' op ' + tile.operation : ''}` : ''}`;
    h += `<rect class="seg now" x="${x0.toFixed(2)}" y="${y0 + 1}" width="${w.toFixed(2)}" height="${H_STRIP - 2}" fill="${catFill(cat)}" fill-opacity="0.75"`
      + ` data-now="true" data-category="${esc(cat)}" data-row="${rowIdx}" tabindex="${first ? 0 : -1}" role="button" aria-label="${esc(label)}"/>`;
    h += `<text x="${Math.min(width - 2, x0 + w + 3).toFixed(1)}" y="${y0 + H_STRIP / 2 + 4}" font-size="11" fill="#1b1f24" aria-hidden="true">${x0 + w + 30 < width ? 'now' : ''}</text>`;
  }
  // job / operation boundaries
  h += '<g class="jobs" aria-hidden="true">';
  let prevKey = null;
  let lastLabelX = -1e9;
  const all = nowPiece ? [...inRow, { start: spanStart(), context: { job: tile.job, operation: tile.operation } }] : inRow;
  for (const i of all) {
    const c = i.context || {};
    const key = c.job ? `${c.job}/${c.operation || ''}` : '';
    if (key !== prevKey) {
      const inside = Date.parse(i.start) > row.start;
      if (inside || key) {
        const xx = x(Date.parse(i.start));
        if (inside) h += `<line x1="${xx.toFixed(1)}" x2="${xx.toFixed(1)}" y1="${H_LABEL - 6}" y2="${y0 + H_STRIP}"/>`;
        if (key && xx - lastLabelX > 64 && xx < width - 20) {
          h += `<text x="${(xx + 3).toFixed(1)}" y="${H_LABEL - 6}">${esc(c.job)}${c.operation ? '/' + esc(c.operation) : ''}</text>`;
          lastLabelX = xx;
        }
      }
    }
    prevKey = key;
  }
  h += '</g>';
  // axis
  h += `<g class="axis" aria-hidden="true">`;
  for (const t of ticksFor(row.start, row.end, width)) {
    const xx = x(t);
    h += `<line x1="${xx.toFixed(1)}" x2="${xx.toFixed(1)}" y1="${y0 + H_STRIP}" y2="${y0 + H_STRIP + 4}"/>`;
    if (xx > 14 && xx < width - 14) h += `<text x="${xx.toFixed(1)}" y="${y0 + H_STRIP + 15}" text-anchor="middle">${fmtClock(t, zone)}</text>`;
  }
  h += '</g></svg>';
  return { svg: h, pieces, nowPiece };
}

let rowsOfDayCache = [];

/** Today in the shop's zone, on the bridge's clock (it moves on at midnight). */
function currentToday() {
  return zone ? dateInZone(clock.now(), zone) : today;
}

function isToday() {
  return !!(day && day.date === currentToday());
}

function renderTimeline() {
  const rowsEl = $('rows');
  const width = Math.max(320, Math.floor(rowsEl.clientWidth || 900));
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest('.seg');
  const focusKey = focused ? (focused.dataset.seq || 'now') : null;
  rowsOfDayCache = rowsOfDay();
  let html = svgDefsHidden();
  const totals = new Map();
  for (const [idx, row] of rowsOfDayCache.entries()) {
    const { svg, pieces, nowPiece } = rowSvg(row, idx, width);
    const sums = new Map();
    for (const p of pieces) sums.set(p.i.category, (sums.get(p.i.category) || 0) + (p.e - p.s) / 1000);
    if (nowPiece && tile) sums.set(tile.category || 'unexplained', (sums.get(tile.category || 'unexplained') || 0) + (nowPiece.e - nowPiece.s) / 1000);
    for (const [k, v] of sums) totals.set(k, (totals.get(k) || 0) + v);
    const alt = [...sums].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${catLabel(k)} ${fmtHours(v)}`).join(', ') || 'no data';
    html += `<div class="trow"><h3>${esc(row.title)} <span class="muted">${esc(fmtClock(row.start, zone))}–${esc(fmtClock(row.end, zone))}</span></h3>`
      + `${svg}<p class="sr-only">${esc(row.title)}: ${esc(alt)}.</p></div>`;
  }
  rowsEl.innerHTML = html;
  // legend: the categories of the day, in taxonomy order
  const order = ['production', ...categories().map((c) => c.id)];
  const present = [...totals.keys()].sort((a, b) => (order.indexOf(a) + 1 || 999) - (order.indexOf(b) + 1 || 999));
  $('legend').innerHTML = present.map((c) => `<li>${catChip(c)} <span class="muted num">${fmtHours(totals.get(c))}</span></li>`).join('')
    + (rowsEl.querySelector('.seg.now') ? '<li><span class="chip"><span class="sw" aria-hidden="true" style="background:#fff;border:1.5px dashed #1b1f24"></span>still open (now)</span></li>' : '');
  if (!intervals.length && !rowsEl.querySelector('.seg.now')) {
    rowsEl.insertAdjacentHTML('afterbegin', '<p class="muted">No intervals recorded for this machine on this day.</p>');
  }
  if (focusKey) {
    const el = focusKey === 'now' ? rowsEl.querySelector('.seg.now') : rowsEl.querySelector(`.seg[data-seq="${CSS.escape(focusKey)}"]`);
    if (el) { rovingTo(el); el.focus({ preventScroll: true }); }
  }
}

function svgDefsHidden() {
  return `<svg width="0" height="0" style="position:absolute" aria-hidden="true" focusable="false">${svgDefs()}</svg>`;
}

// ---------------------------------------------------------------- tooltip, keyboard, details

function findInterval(el) {
  if (el.dataset.now) return null;
  return intervals.find((i) => String(i.seq) === el.dataset.seq) || null;
}

function tipHtml(el) {
  const i = findInterval(el);
  if (!i) {
    if (!tile) return '';
    const d = (clock.now() - Date.parse(spanStart())) / 1000;
    return `<b>${esc(catLabel(tile.category))}</b> · now<dl>`
      + `<dt>Since</dt><dd>${esc(fmtClock(spanStart(), zone, true))} (${esc(fmtDur(d))}, still going)</dd>`
      + (tile.job ? `<dt>Job</dt><dd>${esc(tile.job)}${tile.operation ? ' op ' + esc(tile.operation) : ''}${tile.provisional ? ' (provisional)' : ''}</dd>` : '')
      + (tile.operator ? `<dt>Operator</dt><dd>${esc(tile.operator)}</dd>` : '')
      + `<dt>Decided by</dt><dd>${esc(tile.category_source || '–')} (provisional until the span closes)</dd></dl>`;
  }
  const c = i.context || {};
  const a = i.attribution || {};
  return `<b>${esc(catLabel(i.category))}</b> · ${esc(i.shop_state || '')}<dl>`
    + `<dt>Time</dt><dd>${esc(fmtClock(i.start, zone, true))}–${esc(fmtClock(i.end, zone, true))}</dd>`
    + `<dt>Duration</dt><dd>${esc(fmtDur(i.seconds ?? (Date.parse(i.end) - Date.parse(i.start)) / 1000))}</dd>`
    + (c.job ? `<dt>Job</dt><dd>${esc(c.job)}${c.operation ? ' op ' + esc(c.operation) : ''}${c.part_number ? ' · ' + esc(c.part_number) : ''}${i.provisional ? ' (provisional)' : ''}</dd>` : '')
    + (c.operator ? `<dt>Operator</dt><dd>${esc(c.operator)}</dd>` : '')
    + `<dt>Decided by</dt><dd>${esc(attribution(a))}</dd>`
    + (i.revision ? `<dt>Revised</dt><dd>rev ${esc(i.revision.n)} · ${esc(i.revision.why)}</dd>` : '')
    + '</dl>';
}

function attribution(a) {
  const bits = [a.source || '–'];
  if (a.rule) bits.push(`rule "${a.rule}"`);
  if (a.confidence != null) bits.push(`confidence ${Number(a.confidence).toFixed(2)}`);
  if (a.by) bits.push(`by ${a.by}`);
  return bits.join(', ');
}

function showTip(el, clientX, clientY) {
  const tip = $('tip');
  tip.innerHTML = tipHtml(el);
  tip.hidden = false;
  const r = el.getBoundingClientRect();
  const x = clientX ?? r.left + Math.min(r.width / 2, 40);
  const y = clientY ?? r.bottom;
  const tw = tip.offsetWidth;
  const th = tip.offsetHeight;
  let left = x + 12;
  if (left + tw > window.innerWidth - 8) left = Math.max(8, x - tw - 12);
  let top = y + 14;
  if (top + th > window.innerHeight - 8) top = Math.max(8, r.top - th - 8);
  tip.style.left = `${left}px`;
  tip.style.top = `${top}px`;
  el.setAttribute('aria-describedby', 'tip');
}

function hideTip() {
  $('tip').hidden = true;
}

function rovingTo(el) {
  const row = el.dataset.row;
  for (const s of $('rows').querySelectorAll(`.seg[data-row="${row}"]`)) s.setAttribute('tabindex', s === el ? '0' : '-1');
}

function wireTimeline() {
  const rows = $('rows');
  rows.addEventListener('mousemove', (ev) => {
    const el = ev.target.closest && ev.target.closest('.seg');
    if (el) showTip(el, ev.clientX, ev.clientY); else hideTip();
  });
  rows.addEventListener('mouseleave', hideTip);
  rows.addEventListener('focusin', (ev) => {
    const el = ev.target.closest && ev.target.closest('.seg');
    if (el) { rovingTo(el); showTip(el); }
  });
  rows.addEventListener('focusout', hideTip);
  rows.addEventListener('click', (ev) => {
    const el = ev.target.closest && ev.target.closest('.seg');
    if (el) openDetails(el);
  });
  rows.addEventListener('keydown', (ev) => {
    const el = ev.target.closest && ev.target.closest('.seg');
    if (!el) return;
    const segs = [...rows.querySelectorAll(`.seg[data-row="${el.dataset.row}"]`)];
    const k = segs.indexOf(el);
    let to = null;
    if (ev.key === 'ArrowRight') to = segs[Math.min(segs.length - 1, k + 1)];
    else if (ev.key === 'ArrowLeft') to = segs[Math.max(0, k - 1)];
    else if (ev.key === 'Home') to = segs[0];
    else if (ev.key === 'End') to = segs[segs.length - 1];
    else if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); openDetails(el); return; }
    else if (ev.key === 'Escape') { hideTip(); return; }
    if (to) { ev.preventDefault(); rovingTo(to); to.focus(); }
  });
  window.addEventListener('resize', () => { clearTimeout(wireTimeline.t); wireTimeline.t = setTimeout(() => day && renderTimeline(), 150); });
}

function recordTime(r) {
  const t = r.at || r.start || (r.time && (r.time.aligned || r.time.received));
  return t ? fmtClock(t, zone, true) : '';
}

function recordSummary(r) {
  switch (r.kind) {
    case 'observation': return `${r.signal} = ${JSON.stringify(r.value)}`;
    case 'state_change': {
      const s = r.state || {};
      return `${r.shop_state}: ${[s.execution, s.controller_mode, s.functional_mode, s.alarm ? 'ALARM' : null, s.program ? 'program ' + s.program : null, s.part_count != null ? 'parts ' + s.part_count : null].filter(Boolean).join(', ')}`;
    }
    case 'command': {
      const who = r.origin && r.origin.user ? ` by ${r.origin.user}` : '';
      const what = r.reason || r.operator || (r.job ? `job ${r.job} op ${r.operation}` : '') || (r.scrap != null ? `scrap ${r.scrap}` : '');
      return `${r.command} ${what}${who}`.trim();
    }
    case 'context': return `${r.category} (${attribution(r.attribution || {})})`;
    case 'operation': return `${r.event} job ${r.job} op ${r.operation}${r.by ? ' (' + r.by + ')' : ''}`;
    case 'interval': return `${r.category} ${fmtClock(r.start, zone)}–${fmtClock(r.end, zone)}${r.revision ? ' rev ' + r.revision.n : ''}`;
    case 'quality': return `${r.event}${r.job ? ' job ' + r.job : ''}${r.accepted != null ? (r.accepted ? ' accepted' : ' rejected') : ''}`;
    case 'link': return `${r.status || r.link || ''} ${r.detail || r.reason || ''}`.trim();
    case 'condition': return `${r.level || ''} ${r.code || ''} ${r.message || ''}`.trim();
    default: {
      const rest = { ...r };
      delete rest.seq; delete rest.kind; delete rest.machine;
      const s = JSON.stringify(rest);
      return s.length > 140 ? s.slice(0, 140) + '…' : s;
    }
  }
}

function recordsTable(recs, caption) {
  return `<div class="table-wrap"><table class="records"><caption class="sr-only">${esc(caption)}</caption><thead><tr><th scope="col" class="num">seq</th><th scope="col">kind</th><th scope="col">time</th><th scope="col">what</th></tr></thead><tbody>`
    + recs.map((r) => `<tr><td class="num">${esc(r.seq)}</td><td>${esc(r.kind)}</td><td>${esc(recordTime(r))}</td><td>${esc(recordSummary(r))}</td></tr>`).join('')
    + '</tbody></table></div>';
}

/** State changes, commands, context … in a table; the (many) signal observations folded away. */
function recordsTables(recs) {
  if (!recs.length) return '<p class="muted">No records in this span.</p>';
  const main = recs.filter((r) => r.kind !== 'observation');
  const obs = recs.filter((r) => r.kind === 'observation');
  let h = main.length ? recordsTable(main, 'Records other than signal observations') : '<p class="muted">Only signal observations.</p>';
  if (obs.length) {
    h += `<details class="obs"><summary>${obs.length} signal observation${obs.length === 1 ? '' : 's'}</summary>${recordsTable(obs, 'Signal observations')}</details>`;
  }
  return h;
}

function revLine(rev) {
  const bits = [`rev ${rev.n}`, rev.why];
  if (rev.previous_category) bits.push(`was ${catLabel(rev.previous_category)}${rev.previous_source ? ` (${rev.previous_source})` : ''}`);
  if (rev.previous_job) bits.push(`was job ${rev.previous_job}${rev.previous_operation ? ' op ' + rev.previous_operation : ''}`);
  if (rev.by || rev.at) bits.push(`${rev.by ? 'by ' + rev.by : ''}${rev.at ? ' at ' + fmtClock(rev.at, zone) : ''}`.trim());
  return bits.join(' · ');
}

async function openDetails(el) {
  const panel = $('details');
  for (const s of $('rows').querySelectorAll('.seg.sel')) s.classList.remove('sel');
  el.classList.add('sel');
  hideTip();
  if (el.dataset.now) {
    selected = null;
    panel.hidden = false;
    panel.innerHTML = `<button class="btn close" type="button">Close</button><h2 id="det-h">Now: ${esc(catLabel(tile.category))}</h2>`
      + `<p>This span is still open: it started at ${esc(fmtClock(spanStart(), zone, true))} and its category is provisional until it closes.</p>`;
    panel.focus();
    return;
  }
  const seq = Number(el.dataset.seq);
  await showDetails(seq);
}

async function showDetails(seq) {
  const panel = $('details');
  selected = seq;
  const url = new URL(location.href);
  url.searchParams.set('seq', String(seq));
  history.replaceState(null, '', url);
  panel.hidden = false;
  panel.innerHTML = '<p class="muted">Loading…</p>';
  let d;
  try {
    d = await api(`/api/v1/intervals/${encodeURIComponent(seq)}`);
  } catch (e) {
    panel.innerHTML = `<h2 id="det-h">Interval ${esc(seq)}</h2>`;
    showError(e);
    return;
  }
  const i = d.interval;
  const c = i.context || {};
  const a = i.attribution || {};
  const hist = [...(d.history || []), i].filter((x) => x.revision);
  const fields = [
    ['Category', catChip(i.category) + (i.provisional ? ' <span class="badge prov">provisional job</span>' : '')],
    ['State', esc(i.shop_state)],
    ['From', esc(fmtDate(dateInZone(i.start, zone), true) + ' ' + fmtClock(i.start, zone, true))],
    ['To', esc(fmtClock(i.end, zone, true))],
    ['Duration', esc(fmtDur(i.seconds))],
    ['Job', c.job ? esc(`${c.job}${c.operation ? ' op ' + c.operation : ''}${c.part_number ? ' · part ' + c.part_number : ''}${c.part_revision ? ' rev ' + c.part_revision : ''}`) : '–'],
    ['Operator', esc(c.operator || '–')],
    ['Shift', esc(c.shift || 'off shift')],
    ['Decided by', esc(attribution(a))],
    ['Program', esc((i.state && i.state.program) || '–')],
    ['Journal seq', esc(i.seq)],
  ];
  const recs = d.records || [];
  panel.innerHTML = `<button class="btn close" type="button">Close</button>`
    + `<h2 id="det-h">${esc(catLabel(i.category))} ${esc(fmtClock(i.start, zone))}–${esc(fmtClock(i.end, zone))}</h2>`
    + `<dl class="fields">${fields.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('')}</dl>`
    + `<h3>Revision history</h3>`
    + (hist.length ? `<ol class="revs">${hist.map((x) => `<li>${esc(revLine(x.revision))}</li>`).join('')}</ol>` : '<p class="muted">Never revised: this is what the rules decided when the span closed.</p>')
    + `<h3>Records (${recs.length}${d.records_truncated || recs.length >= 200 ? ', the first 200' : ''})</h3>`
    + recordsTables(recs);
  panel.focus();
}

// ---------------------------------------------------------------- day navigation

async function loadDay(date, { keepDetails = false } = {}) {
  const my = ++loading;
  $('status').textContent = 'Loading…';
  try {
    const d = await fetchDay(date);
    const iv = await fetchIntervals(d.from, d.to);
    if (my !== loading) return;
    day = d;
    intervals = iv;
    clearError();
    $('day').value = day.date;
    const t = currentToday();
    if (t) $('day').max = t;
    $('next').disabled = !!t && day.date >= t;
    $('tl-date').textContent = fmtDate(day.date);
    const url = new URL(location.href);
    url.searchParams.set('date', day.date);
    if (!keepDetails) { url.searchParams.delete('seq'); $('details').hidden = true; selected = null; }
    history.replaceState(null, '', url);
    renderTimeline();
    $('status').textContent = isToday() ? `Today so far · updated ${fmtClock(clock.now(), zone)}` : '';
  } catch (e) {
    if (my === loading) { showError(e); $('status').textContent = ''; }
  }
  scheduleRefresh();
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (!isToday()) return;
  refreshTimer = setTimeout(async () => {
    if (document.hidden) { scheduleRefresh(); return; } // a background tab does not poll
    try {
      const iv = await fetchIntervals(day.from, day.to);
      intervals = iv;
      renderTimeline();
      clearError();
      $('status').textContent = `Today so far · updated ${fmtClock(clock.now(), zone)}`;
    } catch (e) {
      showError(e);
    }
    scheduleRefresh();
  }, 10000);
}

async function main() {
  initChrome();
  wireTimeline();
  $('tabletlink').href = `/tablet/${encodeURIComponent(id)}`;
  $('details').addEventListener('click', (ev) => {
    if (ev.target.closest('.close')) {
      $('details').hidden = true;
      selected = null;
      for (const s of $('rows').querySelectorAll('.seg.sel')) s.classList.remove('sel');
      const url = new URL(location.href);
      url.searchParams.delete('seq');
      history.replaceState(null, '', url);
    }
  });
  $('prev').addEventListener('click', () => day && loadDay(addDays(day.date, -1)));
  $('next').addEventListener('click', () => day && loadDay(addDays(day.date, 1)));
  $('today').addEventListener('click', () => loadDay('today'));
  $('day').addEventListener('change', () => isDate($('day').value) && loadDay($('day').value));

  const tax = loadTaxonomy();
  try {
    const floor = await api('/api/v1/floor');
    observeClock(floor);
    tile = (floor.machines || []).find((m) => m.id === id) || null;
    if (!tile) showError(`No machine "${id}" is configured.`);
    renderHead();
  } catch (e) {
    showError(e);
  }
  openEvents({
    onSnapshot: (f) => { const t = (f.machines || []).find((m) => m.id === id); if (t) { tile = t; renderHead(); } },
    onMachine: (t) => {
      if (t.id !== id) return;
      const prev = tile;
      tile = t;
      renderHead();
      if (!day) return;
      if (!prev || (t.category_since || t.since) !== (prev.category_since || prev.since)) {
        // A new span started: the one before it is an interval now.
        clearTimeout(refreshTimer);
        refreshTimer = setTimeout(() => loadDayQuiet(), 800);
      } else if (t.category !== prev.category || t.job !== prev.job || t.operation !== prev.operation) {
        renderTimeline();
      }
    },
  });
  setInterval(() => { renderHead(); updateNowPiece(); }, 1000);

  let date = params.get('date');
  const seq = params.get('seq');
  if (!isDate(date)) {
    date = 'today';
    if (seq) {
      // An interval without a date: its day, in the shop's zone (which comes with a report).
      try {
        await fetchDay('today');
        const d = await api(`/api/v1/intervals/${encodeURIComponent(seq)}`);
        if (zone) date = dateInZone(d.interval.start, zone);
      } catch (e) {
        showError(e);
      }
    }
  }
  await tax;
  await loadDay(date, { keepDetails: !!seq });
  if (seq) {
    await showDetails(Number(seq));
    const el = $('rows').querySelector(`.seg[data-seq="${CSS.escape(seq)}"]`);
    if (el) { el.classList.add('sel'); el.scrollIntoView({ block: 'center' }); }
  }
}

async function loadDayQuiet() {
  if (!day) return;
  try {
    intervals = await fetchIntervals(day.from, day.to);
    renderTimeline();
  } catch (e) { showError(e); }
  scheduleRefresh();
}

// Grow the open "now" piece between refreshes without redrawing everything.
function updateNowPiece() {
  if (!tile) return;
  for (const el of $('rows').querySelectorAll('.seg.now')) {
    const svg = el.ownerSVGElement;
    const row = rowsOfDayCache[Number(el.dataset.row)];
    if (!row || !svg) continue;
    const width = Number(svg.getAttribute('width'));
    const x = (t) => ((Math.min(Math.max(t, row.start), row.end) - row.start) / (row.end - row.start)) * width;
    const x0 = x(Date.parse(spanStart()));
    el.setAttribute('x', x0.toFixed(2));
    el.setAttribute('width', Math.max(2, x(clock.now()) - x0).toFixed(2));
  }
}

main();
