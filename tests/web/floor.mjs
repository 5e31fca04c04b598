// Floor view: every machine has a tile; tiles follow the machines live (SSE) and agree with
// the REST API; first paint and time to all tiles are printed as FIGURE.
import {
  scenario, newPage, getJson, poll, check, fail, log, sleep, screenshot, checkPageHealthy, BASE, WAIT,
} from './lib.mjs';

scenario('floor', async (browser) => {
  const machines = await getJson('/api/v1/machines');
  const ids = machines.map((m) => m.id);
  check(ids.length > 0, 'at least one machine in GET /api/v1/machines', machines);

  const page = await newPage(browser);
  const t0 = Date.now();
  await page.goto(BASE + '/', { waitUntil: 'domcontentloaded' });
  for (const id of ids) {
    await page.waitForSelector(`a.tile[data-machine="${id}"]`, { timeout: WAIT }).catch(() => {});
  }
  const tileIds = await page.$$eval('a.tile[data-machine]', (as) => as.map((a) => a.dataset.machine));
  const missing = ids.filter((id) => !tileIds.includes(id));
  check(!missing.length, `a tile [data-machine] for every machine of /api/v1/machines (${ids.length})`, `missing ${missing.join(', ')}; tiles: ${tileIds.join(', ')}`);
  log(`${tileIds.length} tiles after ${Date.now() - t0} ms`);

  // Every tile links to its timeline and has an operator link; states are stack-light words.
  const shape = await page.$$eval('a.tile[data-machine]', (as) => as.map((a) => ({
    id: a.dataset.machine,
    href: a.getAttribute('href'),
    state: a.dataset.state,
    op: a.parentElement.querySelector('a.oplink')?.getAttribute('href'),
    text: a.textContent,
  })));
  for (const s of shape) {
    check(s.href === `/machine/${encodeURIComponent(s.id)}`, `tile ${s.id} to link to /machine/${s.id}`, s.href);
    check(s.op === `/tablet/${encodeURIComponent(s.id)}`, `tile ${s.id} to have an Operator link to /tablet/${s.id}`, s.op);
    check(['RUN', 'IDLE', 'DOWN', 'OFF'].includes(s.state), `tile ${s.id} data-state RUN|IDLE|DOWN|OFF`, s.state);
  }
  const live = await page.getAttribute('#summary', 'aria-live');
  check(live === 'polite', 'the summary line to be aria-live="polite"', live);

  // Figures: first contentful paint, and the mark floor.js sets after the first full render.
  const fig = await poll('the tiles-rendered mark and a first-contentful-paint entry', () => page.evaluate(() => {
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    const tr = performance.getEntriesByName('tiles-rendered')[0];
    return fcp && tr ? { fcp: fcp.startTime, tiles: tr.startTime } : null;
  }));
  console.log(`FIGURE first_paint_ms=${fig.fcp.toFixed(0)} tiles_rendered_ms=${fig.tiles.toFixed(0)} machines=${ids.length}`);

  // Time in state ticks client-side (once the machines have reported a state).
  await poll('a tile with a time in state', () => page.$$eval('a.tile [data-dur]', (els) => els.some((e) => e.textContent.trim() !== '')));
  const dur0 = await page.$$eval('a.tile [data-dur]', (els) => els.map((e) => e.textContent));
  await sleep(2500);
  const dur1 = await page.$$eval('a.tile [data-dur]', (els) => els.map((e) => e.textContent));
  check(dur0.some((d, i) => d !== dur1[i]), 'time in state to tick on the tiles', { before: dur0, after: dur1 });

  // A live change: some tile's data-state changes (the demo's machines change state often).
  const before = Object.fromEntries(shape.map((s) => [s.id, s.state]));
  const handle = await page.waitForFunction((prev) => {
    for (const a of document.querySelectorAll('a.tile[data-machine]')) {
      if (prev[a.dataset.machine] && prev[a.dataset.machine] !== a.dataset.state) {
        return { id: a.dataset.machine, from: prev[a.dataset.machine], to: a.dataset.state };
      }
    }
    return null;
  }, before, { timeout: 90_000, polling: 100 }).catch(() => null);
  if (!handle) fail('a tile to change data-state within 90 s (live updates over SSE)', before);
  const change = await handle.jsonValue();
  log(`live change: ${change.id} ${change.from} -> ${change.to}`);
  console.log(`CHANGE machine=${change.id} from=${change.from} to=${change.to}`);

  // The tile agrees with GET /api/v1/machines/{id} (read before and after the tile).
  const agree = async (id) => {
    const a = (await getJson(`/api/v1/machines/${encodeURIComponent(id)}`)).state;
    const tile = await page.getAttribute(`a.tile[data-machine="${id}"]`, 'data-state');
    const b = (await getJson(`/api/v1/machines/${encodeURIComponent(id)}`)).state;
    if (tile === a || tile === b) return { tile, rest: b };
    throw new Error(`tile ${tile}, REST ${a} then ${b}`);
  };
  const ok = await poll(`tile ${change.id}'s data-state to match GET /api/v1/machines/${change.id} state`, () => agree(change.id), { timeout: 10_000, interval: 250 });
  log(`tile ${change.id} = ${ok.tile}, REST = ${ok.rest}`);
  // …and so does every other tile, within a few seconds each.
  for (const id of ids) {
    await poll(`tile ${id}'s data-state to match GET /api/v1/machines/${id} state`, () => agree(id), { timeout: 10_000, interval: 250 });
  }

  // The summary counts every machine.
  const counted = await page.$$eval('#summary b.num', (bs) => bs.reduce((s, b) => s + Number(b.textContent), 0));
  check(counted === ids.length, `the summary line to count ${ids.length} machines`, counted);

  await checkPageHealthy(page, '/');
  await screenshot(page, 'floor.png');

  // Keyboard: the first Tab lands on the skip link, and tiles are reachable.
  await page.keyboard.press('Tab');
  const first = await page.evaluate(() => document.activeElement?.className);
  check(first === 'skip', 'the first Tab to reach the "Skip to content" link', first);
});
