// Operator tablet: on a stopped machine, one tap on a reason records it: the toast says so,
// the live context (GET /api/v1/floor) or the stop's interval (GET /api/v1/intervals) carries
// it with source "operator", and the machine's timeline shows it. Reason buttons are at least
// 88×88 CSS px on a 1280×800 tablet.
import {
  scenario, newPage, getJson, poll, check, fail, log, screenshot, checkPageHealthy, BASE, MACHINE, WAIT,
} from './lib.mjs';

const STOPPED = ['IDLE', 'DOWN'];

scenario('tablet', async (browser) => {
  const tax = await getJson('/api/v1/reasons');
  const operatorReasons = (tax.categories || []).filter((c) => c.operator && c.id !== (tax.production || 'production'));
  check(operatorReasons.length > 0, 'GET /api/v1/reasons to offer operator reasons', tax);

  // A stopped machine whose open span can take a reason: not planned time (a break, off
  // shift), whose link is up. Prefer spans the rules left unexplained or unsure.
  const pick = await poll('a machine in IDLE or DOWN (not in planned time) on GET /api/v1/floor', async () => {
    const floor = await getJson('/api/v1/floor');
    const ok = (floor.machines || []).filter((t) => STOPPED.includes(t.state) && t.link !== 'lost'
      && t.category_source !== 'planner' && t.category !== 'planned_downtime' && (!MACHINE || t.id === MACHINE));
    const pref = ['unexplained', 'no_operator', 'starved', 'blocked', 'micro_stop', 'tool_change'];
    ok.sort((a, b) => (pref.indexOf(a.category) + 1 || 99) - (pref.indexOf(b.category) + 1 || 99));
    if (ok.length) return ok[0];
    throw new Error((floor.machines || []).map((t) => `${t.id}=${t.state}/${t.category}/${t.category_source}`).join(' '));
  }, { timeout: 90_000, interval: 1000 });
  const id = pick.id;
  const prefer = ['starved', 'blocked', 'no_operator', 'tool_change', 'maintenance'];
  const reason = (prefer.map((p) => operatorReasons.find((c) => c.id === p)).find((c) => c && c.id !== pick.category)
    || operatorReasons.find((c) => c.id !== pick.category));
  check(reason, `an operator reason other than ${pick.category}`, operatorReasons);
  log(`machine ${id}: ${pick.state} ${pick.category} (${pick.category_source}) since ${pick.since}; giving reason ${reason.id}`);
  const stopSince = pick.since;

  const page = await newPage(browser, { viewport: { width: 1280, height: 800 }, hasTouch: true, isMobile: false });
  await page.goto(`${BASE}/tablet/${encodeURIComponent(id)}`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('button.reason[data-reason]:visible, #change:visible');
  // Running again with a reason already given: the grid is behind "Change reason".
  if (await page.isVisible('#change')) await page.tap('#change');
  await page.waitForSelector('button.reason[data-reason]', { state: 'visible' });

  // Every reason button: a real <button> with a text label, at least 88×88 CSS px.
  const sizes = await page.$$eval('button.reason', (bs) => bs.map((b) => {
    const r = b.getBoundingClientRect();
    return { reason: b.dataset.reason, text: b.textContent.trim(), w: r.width, h: r.height, tag: b.tagName };
  }));
  const wanted = operatorReasons.map((c) => c.id).sort();
  check(JSON.stringify(sizes.map((s) => s.reason).sort()) === JSON.stringify(wanted), `one button per operator reason (${wanted.join(', ')})`, sizes.map((s) => s.reason));
  for (const s of sizes) {
    check(s.w >= 88 && s.h >= 88, `reason button "${s.text}" at least 88×88 px`, `${s.w.toFixed(0)}×${s.h.toFixed(0)}`);
    check(s.text.length > 0, `reason button ${s.reason} to have a text label`, s.text);
  }
  log(`${sizes.length} reason buttons, smallest ${Math.min(...sizes.map((s) => s.w)).toFixed(0)}×${Math.min(...sizes.map((s) => s.h)).toFixed(0)} px`);

  // Portrait too: the buttons keep their size. (Measured before the tap: once a reason is
  // given and the machine runs again, the grid folds behind "Change reason".)
  await page.setViewportSize({ width: 800, height: 1280 });
  if (await page.isVisible('#change')) await page.tap('#change');
  const small = await page.$$eval('button.reason', (bs) => bs.map((b) => b.getBoundingClientRect()).filter((r) => r.width < 88 || r.height < 88).length);
  check(small === 0, 'every reason button at least 88×88 px in portrait 800×1280', `${small} smaller`);
  await page.setViewportSize({ width: 1280, height: 800 });
  if (await page.isVisible('#change')) await page.tap('#change');
  await page.waitForSelector('button.reason[data-reason]', { state: 'visible' });

  // One tap.
  const btn = page.locator(`button.reason[data-reason="${reason.id}"]`);
  await btn.tap();
  const toast = page.locator('#toast[role="status"]');
  await toast.waitFor({ state: 'visible' });
  const toastText = (await toast.textContent()).trim();
  check(toastText === `Reason recorded: ${reason.label}`, `the toast "Reason recorded: ${reason.label}"`, toastText);
  await poll(`the ${reason.id} button to be highlighted (aria-pressed)`, async () => (await btn.getAttribute('aria-pressed')) === 'true', { timeout: 5000 });
  // The banner follows over SSE (not required: the REST check below is the proof).
  await page.waitForFunction((label) => document.getElementById('scat').textContent.startsWith(label), reason.label, { timeout: 3000 }).catch(() => {});
  await checkPageHealthy(page, `/tablet/${id}`);
  await screenshot(page, 'tablet.png');


  // Through REST: the live context takes the reason while the stop's span is open; the
  // stop's interval carries it once written (at once when the machine already ran again).
  const from = new Date(Date.parse(stopSince) - 1000).toISOString();
  const result = await poll(`GET /api/v1/floor (tile ${id}) or GET /api/v1/intervals?machine=${id}&from=${from} to show category ${reason.id} with source operator`, async () => {
    const floor = await getJson('/api/v1/floor');
    const t = (floor.machines || []).find((m) => m.id === id);
    if (t && t.category === reason.id && t.category_source === 'operator') return { via: 'live context', since: t.since };
    const to = new Date(Date.parse(floor.generated_at || new Date().toISOString()) + 86400000).toISOString();
    const iv = await getJson(`/api/v1/intervals?machine=${encodeURIComponent(id)}&from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
    const hit = (iv.intervals || []).find((i) => i.category === reason.id && i.attribution && i.attribution.source === 'operator');
    if (hit) return { via: 'interval', seq: hit.seq, start: hit.start, revision: hit.revision };
    throw new Error(`tile: ${t && t.state} ${t && t.category}/${t && t.category_source}; intervals since the stop: ${(iv.intervals || []).map((i) => `${i.seq}:${i.category}/${i.attribution && i.attribution.source}`).join(' ') || 'none'}`);
  }, { timeout: 60_000, interval: 1000 });
  log(`REST shows ${reason.id} (operator) via ${result.via}${result.seq ? ' seq ' + result.seq : ''}`);

  // The timeline: a segment (or the open "now" piece) carries the reason.
  await page.goto(`${BASE}/machine/${encodeURIComponent(id)}`, { waitUntil: 'domcontentloaded' });
  const sel = `#rows .seg[data-category="${reason.id}"]`;
  await page.waitForSelector(sel, { timeout: WAIT }).catch(async () => {
    const cats = await page.$$eval('#rows .seg', (s) => [...new Set(s.map((x) => x.dataset.category + (x.dataset.now ? '(now)' : '')))]);
    fail(`a timeline segment with data-category="${reason.id}" on /machine/${id}`, cats);
  });
  const seg = page.locator(sel).last();
  const kind = await seg.evaluate((el) => (el.dataset.now ? 'now piece' : `interval seq ${el.dataset.seq}`));
  log(`timeline shows ${reason.id} on the ${kind}`);
  // Its tooltip names the category; Enter opens its details.
  await seg.focus();
  const tip = page.locator('#tip');
  await tip.waitFor({ state: 'visible' });
  const tipText = await tip.textContent();
  check(tipText.includes(reason.label), `the tooltip to name "${reason.label}"`, tipText);
  await page.keyboard.press('Enter');
  await page.locator('#details:not([hidden]) h2').waitFor();
  if (kind.startsWith('interval')) {
    const det = await page.locator('#details').textContent();
    check(det.includes('operator'), 'the interval details to show the operator attribution', det.slice(0, 400));
  }
  await checkPageHealthy(page, `/machine/${id}`);
  await screenshot(page, 'timeline.png');
});
