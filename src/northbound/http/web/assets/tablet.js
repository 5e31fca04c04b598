// Operator tablet (/tablet/{id}): the machine's state in big letters, one tap per stop reason,
// sign in and out, confirm an ambiguous operation, report scrap.
import {
  api, showError, clearError, esc, fmtDur, fmtClock, clock, observeClock, openEvents, initChrome,
  loadTaxonomy, categories, catLabel, catColor, idFromPath, STATE_COLORS, stateInk,
} from './common.js';

const id = idFromPath();
const $ = (x) => document.getElementById(x);
let tile = null;
let reasons = [];
let showGridWhileRunning = false;
let pendingReason = null; // the reason just sent, until the bridge shows it

const STATE_WORDS = { RUN: 'RUNNING', IDLE: 'IDLE', DOWN: 'DOWN', OFF: 'OFF' };

// ---------------------------------------------------------------- toast

let toastTimer = null;
function toast(msg, isError = false) {
  const t = $('toast');
  t.textContent = msg;
  t.classList.toggle('err', isError);
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, isError ? 8000 : 4000);
}

async function act(path, body, okMsg) {
  try {
    const res = await api(path, { body });
    clearError();
    if (okMsg) toast(okMsg);
    return res || {};
  } catch (e) {
    showError(e);
    toast(`Not recorded: ${e.message}`, true);
    return null;
  }
}

// ---------------------------------------------------------------- rendering

function stopped(t) {
  return t && t.state !== 'RUN';
}

function renderBanner() {
  const t = tile;
  const b = $('banner');
  const lost = t.link === 'lost';
  b.classList.toggle('lost', lost);
  b.style.setProperty('--sc', STATE_COLORS[t.state] || STATE_COLORS.OFF);
  b.style.setProperty('--si', stateInk(t.state));
  b.dataset.state = t.state || 'OFF';
  $('mname').textContent = t.name || t.id;
  $('sword').textContent = lost ? 'NO DATA' : (STATE_WORDS[t.state] || t.state || '–');
  $('scat').textContent = t.category ? catLabel(t.category) + (t.category_source === 'operator' ? ' (operator)' : '') : '';
  $('sjob').textContent = t.job ? `Job ${t.job}${t.operation ? ' · op ' + t.operation : ''}${t.provisional ? ' ?' : ''}` : 'No job';
  document.title = `${t.name || t.id}: ${t.state} · shopbridge`;
  $('title').textContent = `Operator: ${t.name || t.id}`;
  tick();
}

function tick() {
  if (!tile) return;
  const since = tile.link === 'lost' ? tile.last_seen : tile.since;
  $('sdur').textContent = since ? fmtDur((clock.now() - Date.parse(since)) / 1000) : '';
}

function currentReason() {
  if (pendingReason) return pendingReason;
  return tile && tile.stop_reason ? tile.stop_reason.reason : null;
}

function renderReasons() {
  const t = tile;
  const box = $('reasonbox');
  const last = $('lastreason');
  const sr = t.stop_reason;
  const chosen = currentReason();
  const isStopped = stopped(t);
  if (isStopped) {
    $('reason-h').textContent = 'Why is it stopped?';
  } else {
    $('reason-h').textContent = sr ? 'Last stop' : 'Why did it stop last time?';
  }
  // Running with a reason already given for the last stop: show it, offer to change it.
  const collapse = !isStopped && sr && !showGridWhileRunning;
  if (pendingReason && (!sr || sr.reason !== pendingReason)) {
    const html = `Reason given: <b>${esc(catLabel(pendingReason))}</b> (just now)`;
    last.hidden = false;
    if (last.dataset.html !== html) { last.innerHTML = html; last.dataset.html = html; }
  } else if (sr) {
    const html = `Reason given: <b>${esc(catLabel(sr.reason))}</b>${sr.by ? ` by ${esc(sr.by)}` : ''}${sr.at ? ` at ${esc(fmtClock(sr.at))}` : ''}`
      + (collapse ? ' <button id="change" class="bigbtn" type="button">Change reason</button>' : '');
    last.hidden = false;
    // Only when it changed: a live update must not take the focus off "Change reason".
    if (last.dataset.html !== html) {
      last.innerHTML = html;
      last.dataset.html = html;
      const ch = document.getElementById('change');
      if (ch) ch.addEventListener('click', () => { showGridWhileRunning = true; renderReasons(); $('reasons').querySelector('button')?.focus(); });
    }
  } else {
    last.hidden = true;
    last.textContent = '';
    last.dataset.html = '';
  }
  const list = $('reasons');
  list.hidden = collapse;
  box.hidden = false;
  if (list.childElementCount !== reasons.length || list.dataset.built !== '1') {
    list.innerHTML = reasons.map((c) => `<li><button type="button" class="reason${c.id === 'unexplained' ? ' hatched' : ''}" data-reason="${esc(c.id)}" style="--c:${catColor(c.id)}" aria-pressed="false">${esc(c.label || catLabel(c.id))}</button></li>`).join('');
    list.dataset.built = '1';
  }
  for (const btn of list.querySelectorAll('button.reason')) {
    btn.setAttribute('aria-pressed', String(btn.dataset.reason === chosen));
  }
}

function renderOperator() {
  const t = tile;
  const signed = !!t.operator;
  $('signin').hidden = signed;
  $('signedin').hidden = !signed;
  $('who').textContent = signed ? `Signed in: ${t.operator}` : '';
}

function renderProvisional() {
  const t = tile;
  const box = $('provbox');
  const cands = t.provisional && t.candidates && t.candidates.length ? t.candidates : null;
  box.hidden = !cands;
  if (!cands) return;
  $('prov-text').textContent = `The program matches ${cands.length} operations. Tap the one on the machine.`;
  const html = cands.map((c) => `<button type="button" class="bigbtn" data-job="${esc(c.job)}" data-op="${esc(c.operation)}">Job ${esc(c.job)} · op ${esc(c.operation)}</button>`).join('');
  if ($('cands').innerHTML !== html) $('cands').innerHTML = html;
}

function renderParts() {
  const t = tile;
  const good = t.parts_good;
  $('partsline').textContent = good == null && t.parts_planned == null
    ? 'No operation with a part count.'
    : `${good ?? 0}${t.parts_planned ? ' of ' + t.parts_planned : ''} good${t.scrap ? `, ${t.scrap} scrap` : ''}`
      + (t.estimated_completion ? ` · done ~${fmtClock(t.estimated_completion)}` : '') + (t.at_risk ? ' · late' : '');
  $('scrap').disabled = !t.job;
}

function render() {
  if (!tile) return;
  renderBanner();
  renderReasons();
  renderOperator();
  renderProvisional();
  renderParts();
}

function setTile(t) {
  if (!t || t.id !== id) return;
  const wasStopped = stopped(tile);
  tile = t;
  if (pendingReason && t.stop_reason && t.stop_reason.reason === pendingReason) pendingReason = null;
  if (wasStopped !== stopped(t)) showGridWhileRunning = false;
  render();
}

// ---------------------------------------------------------------- actions

function wire() {
  $('reasons').addEventListener('click', async (ev) => {
    const btn = ev.target.closest('button.reason');
    if (!btn || btn.disabled) return;
    const reason = btn.dataset.reason;
    const all = $('reasons').querySelectorAll('button.reason');
    all.forEach((b) => { b.disabled = true; });
    const body = { reason };
    if (tile && tile.operator) body.by = tile.operator;
    const res = await act(`/api/v1/machines/${encodeURIComponent(id)}/reason`, body, `Reason recorded: ${catLabel(reason)}`);
    all.forEach((b) => { b.disabled = false; });
    if (res) {
      pendingReason = reason;
      showGridWhileRunning = false;
      renderReasons();
      setTimeout(() => { if (pendingReason === reason) { pendingReason = null; renderReasons(); } }, 15000);
    }
  });

  $('signin').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = $('opname').value.trim();
    if (!name) { $('opname').focus(); toast('Enter your name or badge first.', true); return; }
    const res = await act(`/api/v1/machines/${encodeURIComponent(id)}/sign-in`, { operator: name }, `Signed in: ${name}`);
    if (res) {
      $('opname').value = '';
      setTile({ ...tile, operator: name });
      $('signout').focus();
    }
  });

  $('signout').addEventListener('click', async () => {
    const who = tile && tile.operator;
    const res = await act(`/api/v1/machines/${encodeURIComponent(id)}/sign-out`, {}, `Signed out${who ? ': ' + who : ''}`);
    if (res) {
      setTile({ ...tile, operator: null });
      $('opname').focus();
    }
  });

  $('cands').addEventListener('click', async (ev) => {
    const btn = ev.target.closest('button[data-job]');
    if (!btn) return;
    const { job, op } = btn.dataset;
    const res = await act(`/api/v1/machines/${encodeURIComponent(id)}/confirm`, { job, operation: op }, `Operation confirmed: job ${job} op ${op}`);
    if (res) setTile({ ...tile, provisional: false, candidates: [], job, operation: op });
  });

  // Scrap takes two taps (a stray tap should not count a part as scrap).
  let armed = null;
  $('scrap').addEventListener('click', async () => {
    const btn = $('scrap');
    if (!armed) {
      btn.textContent = 'Tap again to confirm 1 scrap';
      armed = setTimeout(() => { armed = null; btn.textContent = 'Report 1 scrap'; }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    btn.textContent = 'Report 1 scrap';
    await act(`/api/v1/machines/${encodeURIComponent(id)}/parts`, { scrap: 1 }, 'Scrap recorded: 1 part');
  });
}

// ---------------------------------------------------------------- start

async function main() {
  initChrome();
  wire();
  $('timelink').href = `/machine/${encodeURIComponent(id)}`;
  const tax = await loadTaxonomy();
  reasons = (tax.categories || categories()).filter((c) => c.operator && c.id !== (tax.production || 'production'));
  try {
    const floor = await api('/api/v1/floor');
    observeClock(floor);
    const t = (floor.machines || []).find((m) => m.id === id);
    if (!t) {
      showError(`No machine "${id}" is configured. Open the floor view to pick one.`);
      $('mname').textContent = id || 'Unknown machine';
      return;
    }
    setTile(t);
  } catch (e) {
    showError(e);
  }
  openEvents({
    onSnapshot: (floor) => setTile((floor.machines || []).find((m) => m.id === id)),
    onMachine: (t) => setTile(t),
  });
  setInterval(tick, 1000);
}

main();
