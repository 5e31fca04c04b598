// Daily review: the page's headline numbers (data-total) equal what the journal's interval
// records add up to: newest revision of each (machine, start), clipped to the report's day,
// summed by category. Also: resolve links, and a print rendering.
import {
  scenario, newPage, getJson, check, fail, log, screenshot, checkPageHealthy, shopToday, BASE, WAIT,
} from './lib.mjs';

/** Every interval record with seq <= `upto` (all when null), paging through /api/v1/records. */
async function intervalRecords(upto) {
  const out = [];
  let after = 0;
  for (let page = 0; page < 10_000; page++) {
    const r = await getJson(`/api/v1/records?kind=interval&after=${after}&limit=10000`);
    for (const rec of r.records || []) if (upto == null || rec.seq <= upto) out.push(rec);
    const last = (r.records || []).at(-1);
    if (r.next_after == null || (upto != null && r.next_after >= upto) || (last && upto != null && last.seq >= upto)) break;
    after = r.next_after;
  }
  return out;
}

/** Totals of [from, to) from interval records: newest revision (highest seq) per (machine, start). */
function totalsOf(records, from, to) {
  const newest = new Map();
  for (const r of records) {
    const k = `${r.machine}\u0000${r.start}`;
    const prev = newest.get(k);
    if (!prev || r.seq > prev.seq) newest.set(k, r);
  }
  const cats = {};
  let seconds = 0;
  let planned = 0;
  for (const r of newest.values()) {
    const s = Math.max(Date.parse(r.start), from);
    const e = Math.min(Date.parse(r.end), to);
    if (e <= s) continue;
    const d = (e - s) / 1000;
    cats[r.category] = (cats[r.category] || 0) + d;
    seconds += d;
    // planned: what the calendar planned off (source planner, or planned downtime)
    if (r.category !== 'production' && ((r.attribution && r.attribution.source === 'planner') || r.category === 'planned_downtime')) planned += d;
  }
  const production = cats.production || 0;
  return { seconds, cats, production, planned, loss: seconds - production - planned, unexplained: cats.unexplained || 0, intervals: newest.size };
}

scenario('review', async (browser) => {
  const { today, zone } = await shopToday();
  log(`shop today: ${today} (${zone})`);
  // The journal's interval records before the page's report (the lower bound when the report
  // does not say which seq it read through).
  const before = await intervalRecords(null);
  const beforeSeq = before.reduce((m, r) => Math.max(m, r.seq), 0);

  const page = await newPage(browser, { viewport: { width: 1280, height: 900 } });
  await page.goto(`${BASE}/review?date=${today}`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('[data-total="utilization"][data-value]', { timeout: WAIT });
  const shown = await page.evaluate(() => {
    const v = {};
    for (const el of document.querySelectorAll('[data-total]')) v[el.dataset.total] = el.dataset.value === '' ? null : Number(el.dataset.value);
    return { v, body: { ...document.body.dataset } };
  });
  log(`page: date ${shown.body.date}, generated_at ${shown.body.generatedAt}, through_seq ${shown.body.throughSeq ?? '(not given)'}`);
  check(shown.body.date === today, `the page to show ${today}`, shown.body.date);
  const from = Date.parse(shown.body.from);
  const to = Date.parse(shown.body.to);

  // The journal, read after the page: exact when the report says through which seq it read;
  // otherwise the page's numbers must lie between the totals before and after it.
  let lo;
  let hi;
  if (shown.body.throughSeq) {
    const recs = await intervalRecords(Number(shown.body.throughSeq));
    lo = hi = totalsOf(recs, from, to);
  } else {
    const after = await intervalRecords(null);
    lo = totalsOf(before.filter((r) => r.seq <= beforeSeq), from, to);
    hi = totalsOf(after, from, to);
  }
  log(`journal: ${hi.intervals} intervals (newest revisions) in the day`);

  const rows = [];
  const cmp = (name, page_, a, b, tol = 1) => {
    const okv = page_ != null && page_ >= Math.min(a, b) - tol && page_ <= Math.max(a, b) + tol;
    rows.push({ name, page: page_, journal: a === b ? a : `${a}..${b}`, ok: okv });
  };
  const v = shown.v;
  cmp('seconds', v.seconds, lo.seconds, hi.seconds);
  cmp('production_seconds', v.production_seconds, lo.production, hi.production);
  cmp('unexplained_seconds', v.unexplained_seconds, lo.unexplained, hi.unexplained);
  cmp('planned_seconds', v.planned_seconds, lo.planned, hi.planned);
  cmp('loss_seconds', v.loss_seconds, lo.loss, hi.loss);
  const cats = new Set([...Object.keys(lo.cats), ...Object.keys(hi.cats), ...Object.keys(v).filter((k) => k.startsWith('category:')).map((k) => k.slice(9))]);
  for (const c of [...cats].sort()) cmp(`category:${c}`, v[`category:${c}`] ?? 0, lo.cats[c] || 0, hi.cats[c] || 0);
  // Ratios from the page's own seconds.
  const utilOk = v.seconds ? Math.abs(v.utilization - v.production_seconds / v.seconds) < 0.001 : v.utilization == null || v.utilization === 0;
  rows.push({ name: 'utilization', page: v.utilization, journal: hi.seconds ? +(hi.production / hi.seconds).toFixed(4) : null, ok: utilOk });
  const avDen = v.seconds - v.planned_seconds;
  const avOk = avDen > 0 ? Math.abs(v.availability - v.production_seconds / avDen) < 0.001 : true;
  rows.push({ name: 'availability', page: v.availability, journal: avDen > 0 ? +(v.production_seconds / avDen).toFixed(4) : null, ok: avOk });

  for (const r of rows) {
    const f = (x) => (typeof x === 'number' ? x.toFixed(3) : String(x));
    console.log(`COMPARE ${r.name} page=${f(r.page)} journal=${typeof r.journal === 'string' ? r.journal.split('..').map((x) => Number(x).toFixed(3)).join('..') : f(r.journal)} ${r.ok ? 'ok' : 'MISMATCH'}`);
  }
  const bad = rows.filter((r) => !r.ok);
  if (bad.length) fail('the page\'s totals to equal the journal\'s interval records within 1 s', bad);

  // Unexplained rows link to the interval on the machine's timeline.
  const links = await page.$$eval('#unexp a', (as) => as.map((a) => a.getAttribute('href')));
  for (const h of links) check(/^\/machine\/[^/?]+\?(date=[\d-]+&)?seq=\d+$/.test(h), 'resolve links like /machine/{id}?seq={seq}', h);
  log(`${links.length} resolve links`);
  // Charts have text alternatives.
  const charts = await page.$$eval('figure.chart svg[role="img"]', (s) => s.map((x) => x.getAttribute('aria-labelledby')));
  log(`${charts.length} Pareto charts with text alternatives`);

  await checkPageHealthy(page, '/review');
  await screenshot(page, 'review.png');
  await page.emulateMedia({ media: 'print' });
  const navShown = await page.isVisible('nav');
  check(!navShown, 'the nav to be hidden in print', 'visible');
  await screenshot(page, 'review-print.png');
  await page.emulateMedia({ media: 'screen' });

  // Follow one resolve link: the timeline opens that interval.
  if (links.length) {
    await page.goto(BASE + links[0], { waitUntil: 'domcontentloaded' });
    const seq = /seq=(\d+)/.exec(links[0])[1];
    await page.waitForSelector('#details:not([hidden]) dl.fields', { timeout: WAIT });
    const sel = await page.$(`#rows .seg.sel[data-seq="${seq}"]`);
    check(sel, `the timeline to select interval ${seq} from a resolve link`, 'no selected segment');
    await checkPageHealthy(page, links[0]);
  }
});
