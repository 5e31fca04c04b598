// Daily review (/review[?date=YYYY-MM-DD]): the day's numbers, shift against shift, three
// Pareto charts of loss, machine × shift utilization, jobs at risk, unexplained time to resolve.
// Every number comes from GET /api/v1/reports/daily; nothing is computed here that the report
// does not hold, except sums for display.
import {
  api, showError, clearError, esc, fmtDur, fmtHours, fmtPct, fmtClock, fmtDate, fmtDateTime,
  dateInZone, setShopZone, addDays, isDate, initChrome, loadTaxonomy, categories, catLabel, catColor, catFill,
  catChip, svgDefs,
} from './common.js';

const $ = (x) => document.getElementById(x);
let report = null;
let today = null;
let loading = 0;

// ---------------------------------------------------------------- headline

function headline(r) {
  const t = r.totals || {};
  const items = [
    ['utilization', fmtPct(t.utilization), 'Utilization', 'production ÷ observed time'],
    ['availability', fmtPct(t.availability), 'Availability', 'production ÷ (observed − planned)'],
    ['production_seconds', fmtHours(t.production_seconds), 'Production', fmtDur(t.production_seconds)],
    ['loss_seconds', fmtHours(t.loss_seconds), 'Loss', fmtDur(t.loss_seconds)],
    ['unexplained_seconds', fmtHours(t.unexplained_seconds), 'Unexplained', `${r.unexplained_total ? r.unexplained_total.count : 0} spans`],
    ['planned_seconds', fmtHours(t.planned_seconds), 'Planned', 'breaks, off shift, planned stops'],
    ['seconds', fmtHours(t.seconds), 'Observed', `${(r.machines || []).length} machines`],
  ];
  if (t.unobserved_seconds) items.push(['unobserved_seconds', fmtHours(t.unobserved_seconds), 'No data', 'time no machine reported']);
  $('headline').innerHTML = items.map(([k, v, label, sub]) =>
    `<li data-total="${k}" data-value="${esc(t[k] ?? '')}"><span class="l">${esc(label)}</span><span class="v num">${esc(v)}</span><span class="sub">${esc(sub)}</span></li>`).join('');
  // the day as one bar of categories
  const cats = Object.entries(t.categories || {}).filter(([, s]) => s > 0).sort((a, b) => b[1] - a[1]);
  const total = cats.reduce((a, [, s]) => a + s, 0);
  $('catbar').innerHTML = total
    ? `<div class="catbar" role="img" aria-label="The day by category: ${esc(cats.map(([c, s]) => `${catLabel(c)} ${fmtPct(s / total)}`).join(', '))}">`
      + cats.map(([c, s]) => `<span${c === 'unexplained' ? ' class="hatched-bg"' : ''} style="--c:${catColor(c)};width:${((100 * s) / total).toFixed(3)}%" title="${esc(catLabel(c))} ${fmtHours(s)}"></span>`).join('')
      + '</div>'
    : '';
}

// ---------------------------------------------------------------- tables

function topLoss(s) {
  let best = null;
  for (const [c, v] of Object.entries(s.categories || {})) {
    if (c === 'production' || c === 'planned_downtime') continue;
    if (!best || v > best[1]) best = [c, v];
  }
  return best && best[1] > 0 ? `${catChip(best[0])} <span class="muted num">${fmtHours(best[1])}</span>` : '–';
}

function shiftName(s) {
  return s == null ? 'Off shift' : `Shift ${s}`;
}

function shiftsTable(r) {
  const rows = [...(r.by_shift || [])].sort((a, b) => (a.shift == null) - (b.shift == null) || String(a.shift).localeCompare(String(b.shift)));
  const tr = (name, s, cls = '') => `<tr${cls}><th scope="row">${esc(name)}</th>`
    + `<td class="num">${fmtHours(s.seconds)}</td><td class="num">${fmtHours(s.production_seconds)}</td>`
    + `<td class="num">${fmtHours(s.loss_seconds)}</td><td class="num">${fmtHours(s.unexplained_seconds)}</td>`
    + `<td class="num">${fmtHours(s.planned_seconds)}</td><td class="num">${fmtPct(s.utilization)}</td>`
    + `<td class="num">${fmtPct(s.availability)}</td><td>${topLoss(s)}</td></tr>`;
  const win = new Map((r.shifts || []).map((s) => [s.name, s]));
  $('shifts').innerHTML = `<table><caption class="sr-only">Each shift's time (machine hours)</caption><thead><tr><th scope="col">Shift</th>`
    + '<th scope="col" class="num">Observed</th><th scope="col" class="num">Production</th><th scope="col" class="num">Loss</th>'
    + '<th scope="col" class="num">Unexplained</th><th scope="col" class="num">Planned</th><th scope="col" class="num">Utilization</th>'
    + '<th scope="col" class="num">Availability</th><th scope="col">Largest loss</th></tr></thead><tbody>'
    + rows.map((s) => {
      const w = win.get(s.shift);
      return tr(shiftName(s.shift) + (w ? ` (${fmtClock(w.start, r.zone)}–${fmtClock(w.end, r.zone)})` : ''), s);
    }).join('')
    + '</tbody><tfoot>' + tr('Day', r.totals || {}, ' class="total"') + '</tfoot></table>'
    + (rows.length ? '' : '<p class="muted">No shift data for this day.</p>');
}

function heatColor(u) {
  // white → green; the number is printed in the cell as well.
  const v = Math.max(0, Math.min(1, u || 0));
  const l = 97 - v * 62;
  return { bg: `hsl(125 45% ${l.toFixed(0)}%)`, fg: l < 55 ? '#fff' : '#1b1f24' };
}

function heatTable(r) {
  const names = [];
  for (const s of r.shifts || []) if (!names.includes(s.name)) names.push(s.name);
  let off = false;
  for (const m of r.machines || []) for (const s of m.by_shift || []) {
    if (s.shift == null) off = true;
    else if (!names.includes(s.shift)) names.push(s.shift);
  }
  const cols = [...names.map((n) => ({ key: n, label: shiftName(n) })), ...(off ? [{ key: null, label: 'Off shift' }] : [])];
  const cell = (s) => {
    if (!s || !s.seconds) return '<td class="num muted">–</td>';
    const c = heatColor(s.utilization);
    return `<td class="num" style="background:${c.bg};color:${c.fg}" title="${esc(fmtHours(s.production_seconds))} production of ${esc(fmtHours(s.seconds))}">${fmtPct(s.utilization)}</td>`;
  };
  const machines = [...(r.machines || [])].sort((a, b) => (a.name || a.machine).localeCompare(b.name || b.machine));
  $('heat').innerHTML = `<table class="heat"><caption class="sr-only">Utilization of each machine in each shift</caption><thead><tr><th scope="col">Machine</th>`
    + cols.map((c) => `<th scope="col" class="num">${esc(c.label)}</th>`).join('') + '<th scope="col" class="num">Day</th><th scope="col">Largest loss</th></tr></thead><tbody>'
    + machines.map((m) => {
      const by = new Map((m.by_shift || []).map((s) => [s.shift ?? null, s]));
      return `<tr data-machine="${esc(m.machine)}"><th scope="row"><a href="/machine/${encodeURIComponent(m.machine)}?date=${esc(r.date)}">${esc(m.name || m.machine)}</a></th>`
        + cols.map((c) => cell(by.get(c.key))).join('') + cell(m.total) + `<td>${topLoss(m.total || {})}</td></tr>`;
    }).join('')
    + '</tbody></table>'
    + (machines.length ? '' : '<p class="muted">No machine reported on this day.</p>');
}

function catsTable(r) {
  const t = r.totals || {};
  const order = categories().map((c) => c.id);
  const entries = Object.entries(t.categories || {}).sort((a, b) => b[1] - a[1] || order.indexOf(a[0]) - order.indexOf(b[0]));
  const obs = t.seconds || 0;
  $('cats').innerHTML = `<table><caption class="sr-only">Machine time by category</caption><thead><tr><th scope="col">Category</th><th scope="col" class="num">Hours</th><th scope="col" class="num">Share of observed</th></tr></thead><tbody>`
    + entries.map(([c, s]) => `<tr data-total="category:${esc(c)}" data-value="${esc(s)}"><th scope="row">${catChip(c)}</th><td class="num">${fmtHours(s)}</td><td class="num">${obs ? fmtPct(s / obs) : '–'}</td></tr>`).join('')
    + '</tbody></table>';
}

function riskTable(r) {
  const jobs = r.jobs_at_risk || [];
  if (!jobs.length) { $('risk').innerHTML = '<p>No job is at risk.</p>'; return; }
  $('risk').innerHTML = `<table><caption class="sr-only">Jobs whose estimated completion is after their due time</caption><thead><tr>`
    + '<th scope="col">Job</th><th scope="col">Machine</th><th scope="col">Part</th><th scope="col">Due</th><th scope="col">Estimated</th>'
    + '<th scope="col" class="num">Good / qty</th><th scope="col">Status</th><th scope="col" class="num">Late by</th><th scope="col">Why</th></tr></thead><tbody>'
    + jobs.map((j) => `<tr><th scope="row">${esc(j.job)}${j.operation ? ' op ' + esc(j.operation) : ''}</th>`
      + `<td><a href="/machine/${encodeURIComponent(j.machine)}">${esc(machineName(j.machine))}</a></td><td>${esc(j.part_number || '–')}</td>`
      + `<td>${j.due ? esc(fmtDateTime(j.due, r.zone)) : '–'}</td><td>${j.estimated_completion ? esc(fmtDateTime(j.estimated_completion, r.zone)) : '–'}</td>`
      + `<td class="num">${esc(j.good ?? 0)}${j.quantity != null ? ' / ' + esc(j.quantity) : ''}</td><td>${esc(j.status || '')}</td>`
      + `<td class="num">${j.late_by_seconds != null ? `<span class="badge late">${esc(fmtDur(j.late_by_seconds))}</span>` : '–'}</td><td>${esc(j.why || '')}</td></tr>`).join('')
    + '</tbody></table>';
}

function machineName(id) {
  const m = (report.machines || []).find((x) => x.machine === id);
  return (m && m.name) || id;
}

function unexplained(r) {
  const u = r.unexplained_total || { count: 0, seconds: 0 };
  const list = r.unexplained || [];
  $('unexp-sum').innerHTML = u.count
    ? `<b class="num">${esc(u.count)}</b> spans, <b class="num">${esc(fmtHours(u.seconds))}</b> without a reason${list.length < u.count ? ` (the ${list.length} longest below)` : ''}. Resolve one to give it a reason on the machine's timeline.`
    : 'Every stop of the day has a reason.';
  if (!list.length) { $('unexp').innerHTML = ''; return; }
  $('unexp').innerHTML = `<table><caption class="sr-only">Unexplained spans, longest first</caption><thead><tr><th scope="col">Machine</th><th scope="col">From</th><th scope="col">To</th>`
    + '<th scope="col" class="num">Duration</th><th scope="col">Shift</th><th scope="col">Job</th><th scope="col" class="noprint">Action</th></tr></thead><tbody>'
    + list.map((x) => `<tr data-seq="${esc(x.seq)}"><th scope="row">${esc(machineName(x.machine))}</th><td>${esc(fmtClock(x.start, r.zone))}</td><td>${esc(fmtClock(x.end, r.zone))}</td>`
      + `<td class="num">${esc(fmtDur(x.seconds))}</td><td>${esc(x.shift == null ? 'off shift' : x.shift)}</td><td>${x.job ? esc(x.job) + (x.operation ? ' op ' + esc(x.operation) : '') : '–'}</td>`
      + `<td class="noprint"><a href="/machine/${encodeURIComponent(x.machine)}?date=${esc(r.date)}&amp;seq=${encodeURIComponent(x.seq)}" aria-label="Resolve ${esc(machineName(x.machine))} ${esc(fmtClock(x.start, r.zone))}">Resolve</a></td></tr>`).join('')
    + '</tbody></table>';
}

// ---------------------------------------------------------------- Pareto charts

function pareto(el, title, rows, { labelOf, colorOf, limit = 10, note = '' }) {
  const top = rows.slice(0, limit);
  const rest = rows.slice(limit);
  if (rest.length) {
    const s = rest.reduce((a, x) => a + x.seconds, 0);
    const last = rest[rest.length - 1];
    top.push({ key: '__rest', label: `${rest.length} more`, seconds: s, share: rest.reduce((a, x) => a + (x.share || 0), 0), cumulative: last.cumulative ?? 1, rest: true });
  }
  const W = 560;
  const H = 280;
  const m = { l: 100, r: 40, t: 14, b: 96 };
  const iw = W - m.l - m.r;
  const ih = H - m.t - m.b;
  const max = Math.max(1, ...top.map((x) => x.seconds));
  // a round hour scale
  const maxH = max / 3600;
  const stepH = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500].find((s) => maxH / s <= 5) || 1000;
  const topH = Math.max(stepH, Math.ceil(maxH / stepH) * stepH);
  const y = (sec) => m.t + ih - (sec / 3600 / topH) * ih;
  const bw = top.length ? iw / top.length : iw;
  let svg = `<svg viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="${el.id}-t ${el.id}-d">`;
  svg += `<title id="${el.id}-t">${esc(title)}</title><desc id="${el.id}-d">${esc(top.length ? top.slice(0, 5).map((x) => `${labelOf(x)} ${fmtHours(x.seconds)} (${fmtPct(x.share)})`).join(', ') + (top.length > 5 ? ', …' : '') : 'no loss')}</desc>`;
  svg += svgDefs();
  for (let h = 0; h <= topH + 1e-9; h += stepH) {
    const yy = y(h * 3600);
    svg += `<line x1="${m.l}" x2="${W - m.r}" y1="${yy}" y2="${yy}" stroke="#e1e5ea"/><text x="${m.l - 6}" y="${yy + 4}" text-anchor="end">${h % 1 ? h.toFixed(2).replace(/0$/, '') : h} h</text>`;
  }
  for (const p of [0, 0.5, 1]) {
    const yy = m.t + ih - p * ih;
    svg += `<text x="${W - m.r + 6}" y="${yy + 4}">${p * 100}%</text>`;
  }
  const pts = [];
  top.forEach((x, k) => {
    const x0 = m.l + k * bw + bw * 0.12;
    const w = bw * 0.76;
    const yy = y(x.seconds);
    const fill = x.rest ? '#b0bec5' : colorOf(x);
    svg += `<rect x="${x0.toFixed(1)}" y="${yy.toFixed(1)}" width="${w.toFixed(1)}" height="${(m.t + ih - yy).toFixed(1)}" fill="${fill}"><title>${esc(labelOf(x))}: ${fmtHours(x.seconds)}, ${fmtPct(x.share)} of loss</title></rect>`;
    const cx = x0 + w / 2;
    const label = labelOf(x);
    const short = label.length > 16 ? label.slice(0, 15) + '…' : label;
    svg += `<text transform="translate(${cx.toFixed(1)},${m.t + ih + 10}) rotate(-40)" text-anchor="end">${esc(short)}</text>`;
    if (x.cumulative != null) pts.push([cx, m.t + ih - x.cumulative * ih]);
  });
  svg += `<line x1="${m.l}" x2="${W - m.r}" y1="${m.t + ih}" y2="${m.t + ih}" stroke="#6b7682"/>`;
  if (pts.length) {
    svg += `<polyline class="cum" points="${pts.map((p) => p.map((v) => v.toFixed(1)).join(',')).join(' ')}"/>`;
    svg += pts.map((p) => `<circle class="cumdot" cx="${p[0].toFixed(1)}" cy="${p[1].toFixed(1)}" r="2.5"/>`).join('');
  }
  svg += '</svg>';
  const table = `<div class="sr-only"><table><caption>${esc(title)}</caption><thead><tr><th scope="col">What</th><th scope="col">Hours</th><th scope="col">Share of loss</th><th scope="col">Cumulative</th></tr></thead><tbody>`
    + rows.map((x) => `<tr><th scope="row">${esc(labelOf(x))}</th><td>${fmtHours(x.seconds)}</td><td>${fmtPct(x.share)}</td><td>${fmtPct(x.cumulative)}</td></tr>`).join('')
    + '</tbody></table></div>';
  el.innerHTML = `<figcaption><h3>${esc(title)}</h3>${note ? `<p class="status">${esc(note)}</p>` : ''}</figcaption>`
    + (rows.length ? svg + table : '<p class="muted">No loss on this day.</p>');
}

function charts(r) {
  const p = r.pareto || {};
  pareto($('p-cat'), 'Loss by category', p.by_category || [], {
    labelOf: (x) => catLabel(x.key),
    colorOf: (x) => catFill(x.key),
    limit: 14,
    note: 'Bars: hours lost; line: cumulative share. Planned downtime is not a loss.',
  });
  pareto($('p-machine'), 'Loss by machine', p.by_machine || [], {
    labelOf: (x) => x.label || x.key,
    colorOf: (x) => (x.top_category ? catFill(x.top_category) : '#546e7a'),
    note: 'Bar color: the machine\'s largest loss category.',
  });
  pareto($('p-job'), 'Loss by job', p.by_job || [], {
    labelOf: (x) => (x.key === '' ? 'no job' : (x.label || x.key)),
    colorOf: () => '#546e7a',
    note: 'Loss while the job was on the machine.',
  });
}

// ---------------------------------------------------------------- page

function render(r) {
  report = r;
  document.body.dataset.date = r.date;
  document.body.dataset.complete = String(r.complete !== false);
  // For tests and scripts: the moment the numbers are of.
  document.body.dataset.from = r.from;
  document.body.dataset.to = r.to;
  document.body.dataset.generatedAt = r.generated_at || '';
  if (r.through_seq != null) document.body.dataset.throughSeq = String(r.through_seq);
  $('r-date').textContent = fmtDate(r.date);
  document.title = `Daily review ${r.date} · shopbridge`;
  $('day').value = r.date;
  if (today) { $('day').max = today; $('next').disabled = r.date >= today; }
  const gen = r.generated_at ? fmtDateTime(r.generated_at, r.zone) : '';
  $('meta').innerHTML = (r.complete === false
    ? `<span class="incomplete">Day still going: the numbers run until ${esc(fmtClock(r.generated_at, r.zone))}.</span> `
    : '')
    + `Shop time zone ${esc(r.zone || '?')} · ${esc(fmtDateTime(r.from, r.zone))} to ${esc(fmtDateTime(r.to, r.zone))} · generated ${esc(gen)}`
    + (r.compute_ms != null ? ` in ${esc(Number(r.compute_ms).toFixed(1))} ms` : '');
  headline(r);
  shiftsTable(r);
  charts(r);
  heatTable(r);
  catsTable(r);
  riskTable(r);
  unexplained(r);
}

async function load(date) {
  const my = ++loading;
  $('status').textContent = 'Loading…';
  try {
    const r = await api(`/api/v1/reports/daily${date ? '?date=' + encodeURIComponent(date) : ''}`);
    if (my !== loading) return;
    setShopZone(r.zone, r.from);
    if (r.today) today = r.today;
    else if (r.generated_at && r.zone) today = dateInZone(r.generated_at, r.zone);
    clearError();
    render(r);
    const url = new URL(location.href);
    url.searchParams.set('date', r.date);
    history.replaceState(null, '', url);
    $('status').textContent = '';
  } catch (e) {
    if (my === loading) { showError(e); $('status').textContent = ''; }
  }
}

async function main() {
  initChrome();
  $('live').hidden = true; // the review reads a report, not the live stream
  $('prev').addEventListener('click', () => report && load(addDays(report.date, -1)));
  $('next').addEventListener('click', () => report && load(addDays(report.date, 1)));
  $('today').addEventListener('click', () => load('today'));
  $('print').addEventListener('click', () => window.print());
  $('day').addEventListener('change', () => isDate($('day').value) && load($('day').value));
  await loadTaxonomy();
  const d = new URLSearchParams(location.search).get('date');
  await load(isDate(d) || d === 'today' ? d : undefined);
}

main();
