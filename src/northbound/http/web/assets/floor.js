// Floor view (/): one tile per machine, live over SSE; /api/v1/floor paints first.
import {
  api, showError, clearError, esc, fmtDur, fmtClock, clock, observeClock, openEvents,
  initChrome, loadTaxonomy, catChip, STATE_COLORS, stateInk,
} from './common.js';

const grid = document.getElementById('grid');
const summary = document.getElementById('summary');
const tiles = new Map(); // id -> tile object (the last the bridge sent)
let order = []; // ids in the bridge's order
let marked = false;

const SOURCES = { operator: 'operator', qms: 'QMS' };

function timeInState(t) {
  if (t.link === 'lost') return t.last_seen ? (clock.now() - Date.parse(t.last_seen)) / 1000 : null;
  return t.since ? (clock.now() - Date.parse(t.since)) / 1000 : null;
}

/** The inside of a tile's <a> (the <a> itself keeps focus across updates). */
function tileInner(t) {
  const lost = t.link === 'lost';
  const state = t.state || 'OFF';
  const word = lost ? 'NO DATA' : state;
  const d = timeInState(t);
  const durLabel = lost ? 'no data for' : 'in this state for';
  let h = `<div class="band"><span class="state">${esc(word)}</span>`
    + `<span class="dur" title="${durLabel}"><span class="sr-only">${durLabel} </span><span data-dur>${esc(d == null ? '' : fmtDur(d))}</span></span></div>`
    + `<div class="body"><h2 class="name">${esc(t.name || t.id)}</h2>`;
  if (lost) h += `<div class="nodata">no data${t.last_seen ? ' since ' + esc(fmtClock(t.last_seen)) : ''}</div>`;
  if (t.category) {
    const src = SOURCES[t.category_source];
    h += `<div class="cat">${catChip(t.category)}${src ? `<span class="src">(${esc(src)})</span>` : ''}</div>`;
  } else {
    h += '<div class="cat muted">–</div>';
  }
  if (t.job) {
    const prov = t.provisional ? ' <span class="badge prov" title="Provisional: the operator has not confirmed which operation">?</span>' : '';
    h += `<div class="line"><span class="k">Job</span> ${esc(t.job)}${t.operation ? ` · op ${esc(t.operation)}` : ''}${prov}${t.part_number ? ` <span class="k">${esc(t.part_number)}</span>` : ''}</div>`;
  } else if (t.provisional && t.candidates && t.candidates.length) {
    h += `<div class="line"><span class="k">Job</span> ${t.candidates.map((c) => esc(c.job)).join(' or ')} <span class="badge prov">?</span></div>`;
  }
  h += `<div class="line"><span class="k">Operator</span> ${t.operator ? esc(t.operator) : '<span class="muted">nobody signed in</span>'}${t.shift ? ` <span class="k">· shift ${esc(t.shift)}</span>` : ''}</div>`;
  if (t.parts_good != null || t.parts_planned != null) {
    const good = t.parts_good ?? 0;
    const pct = t.parts_planned ? Math.min(100, (100 * good) / t.parts_planned) : 0;
    h += `<div class="parts"><span>${esc(good)}${t.parts_planned ? ' / ' + esc(t.parts_planned) : ''} parts${t.scrap ? `, ${esc(t.scrap)} scrap` : ''}</span>`
      + (t.parts_planned ? `<div class="bar" aria-hidden="true"><span style="--w:${pct.toFixed(1)}%"></span></div>` : '<span></span>')
      + '</div>';
  }
  if (t.estimated_completion || t.at_risk) {
    const due = t.due ? ` title="due ${esc(fmtClock(t.due))}"` : '';
    h += `<div class="line eta${t.at_risk ? ' risk' : ''}"${due}><span class="k">Done</span> ${t.estimated_completion ? '~' + esc(fmtClock(t.estimated_completion)) : '–'}`
      + `${t.at_risk ? ' <span class="badge late">late</span>' : ''}</div>`;
  }
  const alarm = (t.alarms || []).find((a) => a.level === 'FAULT') || (t.alarms || [])[0];
  if (alarm) {
    const warn = alarm.level !== 'FAULT';
    h += `<div class="alarm${warn ? ' warn' : ''}"><span aria-hidden="true">⚠ </span><span class="sr-only">${warn ? 'Warning' : 'Alarm'}: </span>${esc(alarm.message || alarm.code || 'alarm')}${alarm.code && alarm.message ? ` <span class="muted">(${esc(alarm.code)})</span>` : ''}</div>`;
  }
  h += '</div>';
  return h;
}

function paintTile(a, t) {
  const lost = t.link === 'lost';
  a.dataset.state = t.state || 'OFF';
  a.dataset.link = lost ? 'lost' : (t.link || '');
  a.dataset.category = t.category || '';
  const color = lost ? '#9e9e9e' : (STATE_COLORS[t.state] || STATE_COLORS.OFF);
  a.style.setProperty('--sc', color);
  a.style.setProperty('--si', lost ? '#333' : stateInk(t.state));
  a.innerHTML = tileInner(t);
}

function makeItem(t) {
  const li = document.createElement('li');
  li.className = 'tilewrap';
  const a = document.createElement('a');
  a.className = 'tile';
  a.href = `/machine/${encodeURIComponent(t.id)}`;
  a.dataset.machine = t.id;
  paintTile(a, t);
  const op = document.createElement('a');
  op.className = 'oplink';
  op.href = `/tablet/${encodeURIComponent(t.id)}`;
  op.textContent = 'Operator';
  op.setAttribute('aria-label', `Operator page of ${t.name || t.id}`);
  li.append(a, op);
  return li;
}

function renderAll(list) {
  const ids = list.map((t) => t.id);
  const same = ids.length === order.length && ids.every((id, i) => id === order[i]);
  for (const t of list) tiles.set(t.id, t);
  for (const id of [...tiles.keys()]) if (!ids.includes(id)) tiles.delete(id);
  if (same) {
    for (const t of list) {
      const a = grid.querySelector(`a.tile[data-machine="${CSS.escape(t.id)}"]`);
      if (a) paintTile(a, t);
    }
  } else {
    order = ids;
    const frag = document.createDocumentFragment();
    for (const t of list) frag.append(makeItem(t));
    grid.replaceChildren(frag);
    if (!list.length) grid.innerHTML = '<li class="empty">No machines are configured.</li>';
  }
  updateSummary(true);
  if (!marked) {
    marked = true;
    performance.mark('tiles-rendered');
  }
}

function updateOne(t) {
  const a = grid.querySelector(`a.tile[data-machine="${CSS.escape(t.id)}"]`);
  if (!a) { // a machine we did not know: re-render in the bridge's order at the end
    renderAll([...order.map((id) => tiles.get(id)).filter(Boolean), t]);
    return;
  }
  tiles.set(t.id, t);
  paintTile(a, t);
  updateSummary(false);
}

// The summary line is the page's only live region: it changes at most every 5 s.
let lastSummary = '';
let summaryTimer = null;
let summaryAt = 0;
function updateSummary(now) {
  const run = () => {
    summaryTimer = null;
    summaryAt = performance.now();
    const n = { RUN: 0, IDLE: 0, DOWN: 0, OFF: 0 };
    let lost = 0;
    for (const t of tiles.values()) {
      if (t.link === 'lost') lost++;
      else n[t.state in n ? t.state : 'OFF']++;
    }
    const parts = [
      `<span><span class="num">${tiles.size}</span> machines:</span>`,
      `<span class="st" style="--c:${STATE_COLORS.RUN}"><b class="num">${n.RUN}</b> running</span>`,
      `<span class="st" style="--c:${STATE_COLORS.IDLE}"><b class="num">${n.IDLE}</b> idle</span>`,
      `<span class="st" style="--c:${STATE_COLORS.DOWN}"><b class="num">${n.DOWN}</b> down</span>`,
      `<span class="st" style="--c:${STATE_COLORS.OFF}"><b class="num">${n.OFF}</b> off</span>`,
    ];
    if (lost) parts.push(`<span class="st" style="--c:#bdbdbd"><b class="num">${lost}</b> no data</span>`);
    const html = parts.join(' ');
    if (html !== lastSummary) { summary.innerHTML = html; lastSummary = html; }
  };
  if (now || performance.now() - summaryAt > 5000) { clearTimeout(summaryTimer); run(); }
  else if (!summaryTimer) summaryTimer = setTimeout(run, 5000 - (performance.now() - summaryAt));
}

function tick() {
  for (const a of grid.querySelectorAll('a.tile')) {
    const t = tiles.get(a.dataset.machine);
    const el = a.querySelector('[data-dur]');
    if (!t || !el) continue;
    const d = timeInState(t);
    const s = d == null ? '' : fmtDur(d);
    if (el.textContent !== s) el.textContent = s;
  }
}

// Compact tiles (name, state, category, time): for a wall screen with many machines.
function wireCompact() {
  const btn = document.getElementById('compact');
  const set = (on) => {
    grid.classList.toggle('compact', on);
    btn.setAttribute('aria-pressed', String(on));
    try { localStorage.setItem('shopbridge.compact', on ? '1' : ''); } catch { /* no storage */ }
  };
  let on = false;
  try { on = localStorage.getItem('shopbridge.compact') === '1'; } catch { /* no storage */ }
  set(on);
  btn.addEventListener('click', () => set(!grid.classList.contains('compact')));
}

async function main() {
  initChrome();
  wireCompact();
  const tax = loadTaxonomy();
  try {
    const floor = await api('/api/v1/floor');
    observeClock(floor);
    renderAll(floor.machines || []);
    clearError();
  } catch (e) {
    showError(e);
    summary.textContent = 'Could not load the machines.';
  }
  openEvents({
    onSnapshot: (floor) => { clearError(); renderAll(floor.machines || []); },
    onMachine: (t) => updateOne(t),
  });
  setInterval(tick, 1000);
  await tax;
  // Labels of custom categories come with the taxonomy: repaint once it is here.
  if (tiles.size) renderAll(order.map((id) => tiles.get(id)).filter(Boolean));
}

main();
