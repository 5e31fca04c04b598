// Page weight of the floor view with many machines (the harness runs the demo with
// --machines 50): every byte the browser received until the tiles were rendered, from the
// DevTools protocol (headers included, as on the wire). Budget: 300 KB.
import {
  scenario, newPage, getJson, poll, check, log, sleep, screenshot, checkPageHealthy, BASE, WAIT,
} from './lib.mjs';

const BUDGET = 300 * 1024;

scenario('weight', async (browser) => {
  const machines = await getJson('/api/v1/machines');
  const n = machines.length;
  const page = await newPage(browser);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  const reqs = new Map(); // requestId -> {url, finished, bytes}
  cdp.on('Network.requestWillBeSent', (e) => reqs.set(e.requestId, { url: e.request.url, bytes: 0, finished: null }));
  cdp.on('Network.dataReceived', (e) => { const r = reqs.get(e.requestId); if (r) r.bytes += e.encodedDataLength; });
  cdp.on('Network.loadingFinished', (e) => { const r = reqs.get(e.requestId); if (r) r.finished = e.encodedDataLength; });

  await page.goto(BASE + '/', { waitUntil: 'domcontentloaded' });
  const fig = await poll('the tiles-rendered mark and a first-contentful-paint entry', () => page.evaluate(() => {
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    const tr = performance.getEntriesByName('tiles-rendered')[0];
    return fcp && tr ? { fcp: fcp.startTime, tiles: tr.startTime } : null;
  }), { timeout: WAIT, interval: 100 });
  // Let the requests that were under way when the tiles rendered finish being counted.
  await sleep(500);
  const tiles = await page.$$eval('a.tile[data-machine]', (as) => as.length);
  check(tiles === n, `${n} tiles (one per machine)`, tiles);

  let total = 0;
  const lines = [];
  for (const r of reqs.values()) {
    // finished: the request's whole size; the SSE stream never finishes: what came so far.
    const b = r.finished != null ? r.finished : r.bytes;
    total += b;
    lines.push(`${String(b).padStart(8)}  ${r.finished != null ? '' : '(streaming) '}${r.url.replace(BASE, '')}`);
  }
  for (const l of lines) log(l);
  // Cross-check with the Resource Timing API (transfer sizes of finished responses).
  const rt = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    return (nav ? nav.transferSize : 0) + performance.getEntriesByType('resource').reduce((s, e) => s + (e.transferSize || 0), 0);
  });
  log(`resource timing total ${rt} bytes, DevTools total ${total} bytes`);
  console.log(`FIGURE page_weight_bytes=${total} first_paint_ms=${fig.fcp.toFixed(0)} tiles_rendered_ms=${fig.tiles.toFixed(0)} machines=${n}`);
  check(total <= BUDGET, `the floor view with ${n} machines to weigh at most ${BUDGET} bytes`, `${total} bytes`);
  await checkPageHealthy(page, '/');
  await screenshot(page, 'floor-50.png');
});
