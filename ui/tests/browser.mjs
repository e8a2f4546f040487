// The dashboard in a real headless Chromium (Debian's /usr/bin/chromium through playwright-core),
// against a running hub started by cli/tests/ui.rs with --demo. Every request to a host other
// than the loopback is refused and fails the run; axe-core checks each page; screenshots and a
// JSON report go to the artefacts directory. Exits non-zero on the first failed check.
//
//   node ui/tests/browser.mjs http://127.0.0.1:PORT ARTEFACTS_DIR
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const [base, artefacts] = process.argv.slice(2);
if (!base || !artefacts) throw new Error('usage: browser.mjs BASE_URL ARTEFACTS_DIR');
mkdirSync(artefacts, { recursive: true });
const here = dirname(fileURLToPath(import.meta.url));
const AXE = readFileSync(join(here, '../node_modules/axe-core/axe.min.js'), 'utf8');
const CHROMIUM = process.env.CITYHUB_CHROMIUM || '/usr/bin/chromium';
const report = { blocked: [], axe: {}, checks: [], timings: {} };
const ld = (p) => `${base}/ngsi-ld/v1${p}`;

function check(ok, what, detail) {
  report.checks.push({ ok: !!ok, what, detail });
  if (!ok) throw new Error(`FAILED: ${what}: ${JSON.stringify(detail)}`);
}

async function api(path, init = {}) {
  const res = await fetch(path.startsWith('http') ? path : ld(path), init);
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

/** Every instance of `attr` between `from` and `to`, read page by page (Content-Range). */
async function apiInstances(id, attr, from, to) {
  const seen = new Set();
  let start = from;
  for (let i = 0; i < 500; i++) {
    const q = new URLSearchParams({ attrs: attr, options: 'temporalValues', timerel: 'between', timeAt: start, endTimeAt: to });
    const r = await api(`/temporal/entities/${encodeURIComponent(id)}?${q}`);
    const values = r.body?.[attr]?.values || [];
    values.forEach(([, at]) => seen.add(at));
    const last = values.at(-1)?.[1];
    if (r.status !== 206 || !last || last === start) break;
    start = last;
  }
  return seen.size;
}

async function axe(page, name) {
  await page.addScriptTag({ content: AXE });
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  report.axe[name] = result;
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  check(bad.length === 0, `axe finds no serious or critical violation on ${name}`, bad);
}

async function shot(page, name) {
  await page.screenshot({ path: join(artefacts, `${name}.png`), fullPage: true });
}

const profile = mkdtempSync(join(tmpdir(), 'cityhub-ui-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: { width: 1280, height: 900 },
  locale: 'en-US',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
// Offline: the UI must work air-gapped. Anything not on the loopback is refused and recorded.
await context.route('**/*', (route) => {
  const url = new URL(route.request().url());
  if (['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) return route.continue();
  report.blocked.push(route.request().url());
  return route.abort('blockedbyclient');
});
const page = context.pages()[0] || (await context.newPage());
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));

try {
  // The first page in words.
  await page.goto(`${base}/?lang=en#/`);
  await page.waitForSelector('#kinds-table');
  const aqCount = (await api('/entities?type=AirQualityObserved&count=true&limit=0')).headers.get('ngsild-results-count');
  const row = await page.textContent('#kinds-table tr[data-type="AirQualityObserved"] td.num');
  check(row.trim() === aqCount, 'the first page counts the stations', { row, aqCount });
  check(await page.$('main h1') && await page.$('header nav'), 'landmarks and a heading', {});
  const seoul = await page.textContent('#city-now li[data-city="Seoul"]');
  check(/4 air-quality stations, mean PM2\.5 [\d.]+ µg\/m³/.test(seoul) && /of 4 parking spots free/.test(seoul), 'the first page says how each city is doing', seoul);
  await shot(page, 'home-en');
  await axe(page, 'home');

  // The map shows the demo stations.
  await page.goto(`${base}/?lang=en#/map?type=AirQualityObserved&by=pm25`);
  await page.waitForSelector('#map-status[data-count][data-rendered]');
  const markers = await page.$$eval('.marker[data-id]', (els) => els.map((e) => e.dataset.id));
  check(markers.length === Number(aqCount) && markers.every((id) => id.includes('AirQualityObserved')), 'the map shows every station', { markers: markers.length, aqCount });
  await shot(page, 'map');
  await axe(page, 'map');

  // Drawing a box asks the hub a geo-query (within the box) and shows its answer.
  const area = await page.$eval('#map', (el) => { const r = el.getBoundingClientRect(); return { x: r.x, y: r.y, w: r.width, h: r.height }; });
  await page.click('#map-draw');
  await page.mouse.move(area.x + area.w * 0.5, area.y + area.h * 0.05);
  await page.mouse.down();
  await page.mouse.move(area.x + area.w * 0.72, area.y + area.h * 0.4, { steps: 8 });
  await page.mouse.up();
  await page.waitForSelector('#map-status[data-box][data-rendered]');
  const drawn = await page.$eval('#map-status', (el) => ({ box: el.dataset.box, count: Number(el.dataset.count) }));
  const within = await api(`/entities?${new URLSearchParams({ type: 'AirQualityObserved', georel: 'within', geometry: 'Polygon', coordinates: drawn.box, count: 'true', limit: '0' })}`);
  const inBox = Number(within.headers.get('ngsild-results-count'));
  check(drawn.count === inBox && inBox > 0 && inBox < Number(aqCount), 'a drawn box shows what the geo-query answers', { drawn, inBox });
  await shot(page, 'map-box');
  await page.click('#map-clear');
  await page.waitForSelector(`#map-status[data-count="${aqCount}"][data-rendered]:not([data-box])`);

  // Clicking one opens its detail with the right values.
  const id = markers[0];
  // Markers are buttons: the keyboard opens one as a click does (and overlapping ones do not hide it).
  await page.focus(`.marker[data-id="${id}"]`);
  await page.keyboard.press('Enter');
  await page.waitForSelector(`#map-detail[data-id="${id}"]`);
  const truth = (await api(`/entities/${encodeURIComponent(id)}?options=keyValues`)).body;
  const shown = await page.textContent('#map-detail dd[data-attr="pm25"]');
  const expected = new Intl.NumberFormat('en').format(truth.pm25);
  check(shown.startsWith(expected), 'the detail shows the station\'s pm25', { shown, expected });
  await shot(page, 'map-detail');

  // A write through the API recolours the marker and updates the open detail within 2 s.
  const onMap = 55.5;
  const began0 = Date.now();
  const patched = await api(`/entities/${encodeURIComponent(id)}/attrs`, {
    method: 'PATCH', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ pm25: { type: 'Property', value: onMap } }),
  });
  check(patched.status === 204, 'the write is accepted', patched);
  await page.waitForFunction(([sel, v]) => document.querySelector(sel)?.dataset.value === v && document.querySelector('#map-detail dd[data-attr="pm25"]')?.textContent.startsWith(v),
    [`.marker[data-id="${id}"]`, String(onMap)], { timeout: 2000 });
  report.timings.liveMapMs = Date.now() - began0;
  const markerColour = await page.$eval(`.marker[data-id="${id}"]`, (el) => el.style.background);
  check(markerColour === 'rgb(230, 97, 1)', 'the marker takes the colour of its new level (unhealthy)', markerColour);

  // The entity page: a chart with the points the temporal API holds.
  await page.goto(`${base}/?lang=en#/entity/${encodeURIComponent(id)}?range=P1D`);
  await page.waitForSelector('#chart-pm25[data-points]');
  const chart = await page.$eval('#chart-pm25', (el) => ({ ...el.dataset }));
  const held = await apiInstances(id, 'pm25', chart.from, chart.to);
  check(Number(chart.points) === held && held > 20, 'the chart shows the points the temporal API holds', { chart, held });
  await shot(page, 'entity');
  await axe(page, 'entity');
  await page.selectOption('#history-range', 'P7D');
  await page.waitForSelector('#chart-pm25[data-aggregate="PT1H"][data-points]');
  const week = await page.$eval('#chart-pm25', (el) => ({ ...el.dataset }));
  const hourly = await api(`/temporal/entities/${encodeURIComponent(id)}?${new URLSearchParams({ attrs: 'pm25', options: 'aggregatedValues', aggrMethods: 'avg', aggrPeriodDuration: 'PT1H', timerel: 'between', timeAt: week.from, endTimeAt: week.to })}`);
  const periods = (hourly.body?.pm25?.avg || []).length;
  check(Number(week.points) === periods && periods >= 7 * 24, 'a week is charted as the store\'s hourly averages', { week, periods });
  await shot(page, 'entity-week');
  await page.selectOption('#history-range', 'P1D');
  await page.waitForSelector('#chart-pm25[data-aggregate=""][data-points]');

  // A value written through the API appears in the open page within 2 s.
  const written = 123.4 + Math.round(Math.random() * 100) / 10;
  const began = Date.now();
  const patch = await api(`/entities/${encodeURIComponent(id)}/attrs`, {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ pm25: { type: 'Property', value: written } }),
  });
  check(patch.status === 204, 'the write is accepted', patch);
  const text = new Intl.NumberFormat('en').format(written);
  await page.waitForFunction((t) => document.querySelector('#entity-attrs tr[data-attr="pm25"]')?.textContent.includes(t), text, { timeout: 2000 });
  report.timings.liveUpdateMs = Date.now() - began;
  await shot(page, 'entity-live');

  // The entity browser and administration.
  await page.goto(`${base}/?lang=en#/browse/AirQualityObserved`);
  await page.waitForSelector('#browse-table tbody tr');
  const rows = await page.$$eval('#browse-table tbody tr', (r) => r.length);
  check(rows === Math.min(20, Number(aqCount)), 'the browser shows one page', { rows });
  // Sorted and filtered by the hub (orderBy, q), one page at a time.
  await page.selectOption('#browse-order', 'pm25');
  await page.waitForFunction(() => {
    const v = [...document.querySelectorAll('#browse-table td[data-attr="pm25"]')].map((td) => Number(td.textContent.replace(/,/g, '')));
    return v.length > 1 && v.every((x, i) => i === 0 || v[i - 1] <= x);
  });
  await page.fill('#browse-q', 'pm25>50');
  await page.click('#browse-q ~ button[type=submit]');
  const over = Number((await api('/entities?type=AirQualityObserved&q=pm25>50&count=true&limit=0')).headers.get('ngsild-results-count'));
  await page.waitForFunction((n) => document.querySelectorAll('#browse-table tbody tr').length === n, over);
  check(over >= 1, 'q filters the table as the hub does', { over });
  await shot(page, 'browse');
  await axe(page, 'browse');
  await page.goto(`${base}/?lang=en#/admin`);
  await page.waitForSelector('#tenants-table');
  await page.fill('#sub-type', 'AirQualityObserved');
  await page.fill('#sub-attrs', 'pm25');
  await page.fill('#sub-uri', 'http://127.0.0.1:9/nowhere');
  await page.click('#sub-form button[type=submit]');
  await page.waitForSelector('#subs-table tbody tr');
  const subs = (await api('/subscriptions')).body;
  check(subs.length === 1 && subs[0].watchedAttributes?.[0] === 'pm25', 'a subscription made in administration is in the hub', subs);
  await shot(page, 'admin');
  await axe(page, 'admin');

  // The API reference renders the hub's own /openapi.json: every operation listed.
  await page.goto(`${base}/?lang=en#/api`);
  await page.waitForSelector('details.api-op');
  const doc = await (await fetch(`${base}/openapi.json`)).json();
  const documented = Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).length, 0);
  const listed = await page.$$eval('details.api-op', (ops) => ops.map((o) => `${o.dataset.method} ${o.dataset.path}`));
  check(listed.length === documented && listed.includes('GET /ngsi-ld/v1/entities'), 'the API page lists every documented operation', { listed: listed.length, documented });
  await shot(page, 'api');
  await axe(page, 'api');
  // Open data: the catalogue is searched, a dataset's page previews its entities, a request for
  // a restricted dataset appears in the admins' list, and approving it shows its key once.
  const restricted = { name: 'air-restricted', title: { en: 'Air quality, raw', ko: '대기질 원자료' }, description: { en: 'Raw station readings, on approval.' },
    publisher: { id: 'city', name: { en: 'City' } }, license: 'CC-BY-4.0', accessLevel: 'restricted', selection: { types: ['AirQualityObserved'] } };
  const published = await api(`${base}/cityhub/v1/datasets`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(restricted) });
  check(published.status === 201, 'a restricted dataset is published', published);
  await page.goto(`${base}/?lang=en#/data`);
  await page.waitForSelector('#cat-status[data-count]');
  await page.fill('#cat-q', 'pm25');
  await page.click('#cat-q ~ button[type=submit]');
  const ckan = (await api(`${base}/api/3/action/package_search?q=pm25`)).body.result;
  await page.waitForFunction((n) => document.querySelector('#cat-status')?.dataset.count === String(n), ckan.count);
  const found = await page.$$eval('#cat-results li', (els) => els.map((e) => e.dataset.name));
  check(found.includes('air-quality') && found.length === ckan.count, 'the catalogue search finds the demo dataset as CKAN does', { found, ckan: ckan.count });
  await shot(page, 'catalog');
  await axe(page, 'catalog');
  await page.click('#cat-results li[data-name="air-quality"] a');
  await page.waitForSelector('#ds-preview-status[data-count]');
  const preview = await page.$eval('#ds-preview-status', (el) => ({ ...el.dataset }));
  check(Number(preview.count) === Number(aqCount) && Number(preview.placed) === Number(aqCount), 'the dataset page previews its entities on the map', { preview, aqCount });
  const links = await page.$$eval('#ds-downloads a', (els) => els.map((a) => a.getAttribute('href')));
  check(['csv', 'geojson', 'ndjson'].every((f) => links.some((l) => l.includes(`/cityhub/v1/datasets/air-quality/download?format=${f}`))), 'the dataset page links a download per format', links);
  check(!(await page.$('#ar-form')), 'a public dataset asks for no request', {});
  await shot(page, 'dataset');
  await axe(page, 'dataset');
  await page.goto(`${base}/?lang=en#/data/air-restricted`);
  await page.waitForSelector('#ar-form');
  await page.fill('#ar-purpose', 'A bus app that avoids polluted streets');
  await page.fill('#ar-name', 'Kim');
  await page.fill('#ar-email', 'kim@bus.example');
  await page.click('#ar-form button[type=submit]');
  await page.waitForSelector('#ar-result[data-id]');
  const requestId = await page.getAttribute('#ar-result', 'data-id');
  await axe(page, 'dataset-restricted');
  await page.goto(`${base}/?lang=en#/requests`);
  await page.waitForSelector(`#ar-table tr[data-id="${requestId}"][data-status="pending"]`);
  await axe(page, 'requests');
  await page.click(`#ar-table tr[data-id="${requestId}"] .ar-approve button[type=submit]`);
  await page.waitForSelector(`#ar-table tr[data-id="${requestId}"][data-status="approved"]`);
  const issued = await page.textContent('#ar-key-value');
  const stored = (await api(`${base}/cityhub/v1/access-requests/${requestId}`)).body;
  check(issued.startsWith('chk_') && stored.status === 'approved' && stored.keyId && !JSON.stringify(stored).includes(issued), 'approving shows the key once, and the hub keeps only its id', { stored });
  await shot(page, 'requests');
  await page.reload();
  await page.waitForSelector(`#ar-table tr[data-id="${requestId}"][data-status="approved"]`);
  check(!(await page.$('#ar-key-value')), 'the key is not shown again', {});

  // Languages: Korean, Vietnamese, Chinese labels; the choice is remembered.
  for (const [lang, nav, title] of [['ko', '지도', '이 허브에 있는 데이터'], ['vi', 'Bản đồ', 'Dữ liệu trong trung tâm này'], ['zh-Hans', '地图', '本数据中心的内容']]) {
    await page.goto(`${base}/?lang=${lang}#/`);
    await page.waitForSelector('#kinds-table');
    const labels = { nav: await page.textContent('#nav a[href="#/map"]'), h1: await page.textContent('main h1'), lang: await page.getAttribute('html', 'lang') };
    check(labels.nav === nav && labels.h1 === title && labels.lang === lang, `?lang=${lang} shows its labels`, labels);
    await shot(page, `home-${lang}`);
    await axe(page, `home-${lang}`);
  }
  await page.goto(`${base}/#/`);
  await page.waitForSelector('#kinds-table');
  check(await page.getAttribute('html', 'lang') === 'zh-Hans', 'the language is remembered', {});
  await page.goto(`${base}/?lang=en#/`);
  await page.waitForSelector('#kinds-table');

  // A dashboard composed in the page, saved in the hub, reopened, and shared read-only.
  await page.goto(`${base}/?lang=en#/dashboards`);
  await page.waitForSelector('#dash-new-title');
  await axe(page, 'dashboards');
  await page.fill('#dash-new-title', 'Air in Seoul');
  await page.click('#dash-new button[type=submit]');
  await page.waitForSelector('#w-form');
  await page.selectOption('#w-kind', 'latest');
  await page.fill('#w-entity', id);
  await page.fill('#w-attr', 'pm25');
  await page.click('#w-add');
  await page.waitForSelector('.widget[data-kind="latest"] .big');
  await page.selectOption('#w-kind', 'count');
  await page.selectOption('#w-type', 'ParkingSpot');
  await page.click('#w-add');
  await page.waitForSelector('.widget[data-kind="count"] .big');
  const dashUrl = page.url();
  await page.goto(`${base}/?lang=en#/`);
  await page.goto(dashUrl);
  await page.waitForSelector('.widget[data-kind="count"] .big');
  const latest = await page.getAttribute('.widget[data-kind="latest"] .big', 'data-value');
  const parking = await page.getAttribute('.widget[data-kind="count"] .big', 'data-value');
  const parkingCount = (await api('/entities?type=ParkingSpot&count=true&limit=0')).headers.get('ngsild-results-count');
  check(Number(latest) === written && parking === parkingCount, 'the saved dashboard reopens with its widgets', { latest, written, parking, parkingCount });
  check(!(await page.$('#home-summary')), 'a page left while loading writes nothing into the next one', {});
  await shot(page, 'dashboard');
  await axe(page, 'dashboard');
  const share = await page.getAttribute('#dash-share', 'href');
  await page.goto(`${base}/?lang=en${share}`);
  await page.waitForSelector('#dash-readonly');
  await page.waitForSelector('.widget[data-kind="count"] .big');
  check(!(await page.$('#w-form')) && (await page.$$('.widget')).length === 2, 'the share link is read-only', {});
  await shot(page, 'dashboard-shared');

  // Performance: the browser's own timings. A chart of 100k points...
  await page.goto(`${base}/?lang=en#/`);
  await page.waitForSelector('#kinds-table');
  report.timings.chart100k = await page.evaluate(async () => {
    const div = document.createElement('div');
    div.style.width = '900px';
    document.getElementById('main').append(div);
    const n = 100000;
    const xs = new Array(n);
    const ys = new Array(n);
    const t0 = Date.now() / 1000 - n * 6;
    for (let i = 0; i < n; i++) { xs[i] = t0 + i * 6; ys[i] = 20 + 10 * Math.sin(i / 500) + Math.random() * 4; }
    const began = performance.now();
    window.__cityhub.renderChart(div, xs, ys, 'pm25');
    const drawn = performance.now();
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    return { points: Number(div.dataset.points), drawMs: drawn - began, firstFrameMs: performance.now() - began };
  });
  check(report.timings.chart100k.points === 100000, 'the chart draws 100k points', report.timings.chart100k);

  // ... and the map with 10k entities (in a tenant of their own).
  const perf = 'uiperf';
  for (let b = 0; b < 10; b++) {
    const batch = [];
    for (let i = 0; i < 1000; i++) {
      const n = b * 1000 + i;
      batch.push({ id: `urn:ngsi-ld:Sensor:perf:${n}`, type: 'Sensor', pm25: { type: 'Property', value: n % 90 },
        location: { type: 'GeoProperty', value: { type: 'Point', coordinates: [126.8 + (n % 100) * 0.003, 37.45 + Math.floor(n / 100) * 0.003] } } });
    }
    const r = await api('/entityOperations/create', { method: 'POST', headers: { 'Content-Type': 'application/json', 'NGSILD-Tenant': perf }, body: JSON.stringify(batch) });
    check(r.status === 201, 'the 10k entities are created', r.status);
  }
  await page.goto(`${base}/?lang=en&tenant=${perf}#/map?type=Sensor&by=pm25`);
  await page.waitForSelector('#map-status[data-count="10000"][data-rendered]', { timeout: 120000 });
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  report.timings.map10k = await page.evaluate(() => ({
    ...window.__cityhub.timings.map,
    // From the start of the navigation, as the browser counts it.
    sinceNavigationMs: performance.getEntriesByName('cityhub-map-placed')[0]?.startTime,
  }));
  await shot(page, 'map-10k');
  check(report.blocked.length === 0, 'no request left the loopback', report.blocked);
  check(errors.length === 0, 'no script error in the page', errors);
  report.ok = true;
} catch (e) {
  report.ok = false;
  report.error = String(e.stack || e);
  await shot(page, 'failure').catch(() => {});
} finally {
  report.pageErrors = errors;
  writeFileSync(join(artefacts, 'report.json'), JSON.stringify(report, null, 2));
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(report));
process.exit(report.ok ? 0 : 1);
