// The cityhub dashboard: a hash-routed single page over the hub's own APIs.
import 'leaflet/dist/leaflet.css';
import 'leaflet.markercluster/dist/MarkerCluster.css';
import 'leaflet.markercluster/dist/MarkerCluster.Default.css';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { initI18n, t, setLanguage, currentLanguage } from './i18n.js';
import { tenant, setTenant, follow } from './api.js';
import { h } from './util.js';
import { homePage } from './pages/home.js';
import { mapPage } from './pages/map.js';
import { browsePage } from './pages/browse.js';
import { entityPage } from './pages/entity.js';
import { adminPage } from './pages/admin.js';
import { apiPage } from './pages/api.js';
import { dashboardsPage, dashboardPage } from './pages/dashboards.js';
import { catalogPage, datasetPage, requestsPage } from './pages/catalog.js';
import { renderChart } from './chart.js';

// What the browser tests and operators can read: render timings, the chart function.
window.__cityhub = { timings: {}, renderChart, live: 0 };

const listeners = new Set();
/**
 * Registers `fn` for live changes while `node` (the page's main element) is shown: a page that
 * finishes loading after the reader moved on registers nothing that stays.
 */
export function onLive(fn, node) {
  const entry = { fn, node };
  listeners.add(entry);
  return () => listeners.delete(entry);
}

const ROUTES = [
  [/^#?\/?$/, () => homePage()],
  [/^#\/map$/, () => mapPage()],
  [/^#\/browse(?:\/([^/?]+))?$/, (m) => browsePage(m[1] ? decodeURIComponent(m[1]) : null)],
  [/^#\/entity\/(.+)$/, (m) => entityPage(decodeURIComponent(m[1]))],
  [/^#\/admin$/, () => adminPage()],
  [/^#\/api$/, () => apiPage()],
  [/^#\/data$/, () => catalogPage()],
  [/^#\/data\/([^/?]+)$/, (m) => datasetPage(decodeURIComponent(m[1]))],
  [/^#\/requests$/, () => requestsPage()],
  [/^#\/dashboards$/, () => dashboardsPage()],
  [/^#\/dashboards\/([^/]+)$/, (m) => dashboardPage(decodeURIComponent(m[1]), false)],
  [/^#\/share\/([^/]+)$/, (m) => dashboardPage(decodeURIComponent(m[1]), true)],
];

let leave = null;

async function route() {
  if (leave) leave();
  leave = null;
  listeners.clear();
  // A fresh main element per page: a page still loading writes into the one it started with,
  // which is no longer shown.
  const old = document.getElementById('main');
  const main = old.cloneNode(false);
  old.replaceWith(main);
  const hash = location.hash.split('?')[0];
  const found = ROUTES.map(([re, page]) => [re.exec(hash), page]).find(([m]) => m);
  try {
    if (!found) {
      main.append(h('h1', {}, t('notFound.title')), h('p', {}, t('notFound.text')));
      return;
    }
    leave = (await found[1](found[0])) || null;
  } catch (e) {
    main.append(h('p', { class: 'error', role: 'alert' }, t('error.load', { detail: e?.message || String(e) })));
  }
  document.querySelectorAll('#nav a').forEach((a) => {
    const current = a.getAttribute('href') === (hash || '#/') || (hash.startsWith(a.getAttribute('href')) && a.getAttribute('href') !== '#/');
    if (current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
}

function chrome() {
  document.title = t('app.title');
  document.getElementById('skip-link').textContent = t('nav.skip');
  document.getElementById('lang-label').textContent = t('nav.language');
  document.getElementById('tenant-label').textContent = t('nav.tenant');
  const nav = document.getElementById('nav');
  nav.setAttribute('aria-label', t('nav.main'));
  nav.append(
    h('ul', {},
      [['#/', 'nav.home'], ['#/map', 'nav.map'], ['#/browse', 'nav.browse'], ['#/dashboards', 'nav.dashboards'], ['#/data', 'nav.data'], ['#/requests', 'nav.requests'], ['#/admin', 'nav.admin'], ['#/api', 'nav.api']]
        .map(([href, key]) => h('li', {}, h('a', { href }, t(key))))),
  );
  const select = document.getElementById('lang-select');
  select.value = currentLanguage();
  select.addEventListener('change', () => setLanguage(select.value));
  const input = document.getElementById('tenant-input');
  input.value = tenant();
  input.placeholder = t('nav.tenantDefault');
  input.addEventListener('change', () => setTenant(input.value.trim()));
  const state = document.getElementById('live-state');
  follow(
    (change) => {
      window.__cityhub.live++;
      for (const entry of listeners) {
        if (entry.node && !entry.node.isConnected) listeners.delete(entry);
        else entry.fn(change);
      }
    },
    (s) => {
      state.textContent = t(s === 'live' ? 'live.on' : 'live.off');
      state.dataset.state = s;
    },
  );
}

async function start() {
  await initI18n();
  chrome();
  window.addEventListener('hashchange', route);
  await route();
}

start();
