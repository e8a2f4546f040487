// Open data: search the catalogue (the hub's CKAN package_search), a dataset's page (its
// description, a preview of its entities on the map, its downloads per format), a request for
// access to a restricted one, and the admins' list of requests with approve / refuse (the key an
// approval issues is shown once). Everything through /cityhub/v1 and /api/3/action.
import L from '../leaflet.js';
import { t, fmtNumber, fmtDate, currentLanguage } from '../i18n.js';
import { get, send, allEntities } from '../api.js';
import { h, clear, entityHref, label } from '../util.js';

const PREVIEW_CAP = 500;

/** A text in several languages, in the reader's language when it has it. */
function text(map) {
  if (!map || typeof map !== 'object') return String(map ?? '');
  const lang = currentLanguage();
  const tags = [lang, lang.split('-')[0], 'en'];
  for (const tag of tags) if (map[tag]) return map[tag];
  return Object.values(map)[0] || '';
}

/** A distribution's link in words: the live query, or the part and format of a download. */
function distributionLabel(x) {
  if (x.key === 'ngsi-ld') return t('ds.api');
  const [part, format] = String(x.key).split('-');
  return t('ds.download', { part: t('ds.part.' + part), format: x.format || String(format || '').toUpperCase() });
}

const datasetHref = (name) => `#/data/${encodeURIComponent(name)}`;

export async function catalogPage() {
  const main = document.getElementById('main');
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const input = h('input', { id: 'cat-q', type: 'search', value: params.get('q') || '', size: 30 });
  const status = h('p', { id: 'cat-status', role: 'status' });
  const list = h('ul', { id: 'cat-results', class: 'datasets' });
  const form = h('form', { class: 'toolbar', role: 'search', onsubmit: (e) => { e.preventDefault(); search(); } },
    h('label', { for: 'cat-q' }, t('cat.search')), input, h('button', { type: 'submit' }, t('cat.searchButton')));
  main.append(h('h1', {}, t('cat.title')), h('p', { class: 'muted' }, t('cat.lead')), form, status, list);

  async function search() {
    const q = input.value.trim();
    const [{ body: found }, { body: all }] = await Promise.all([
      get('/api/3/action/package_search', { q: q || undefined, rows: 1000 }),
      get('/cityhub/v1/datasets'),
    ]);
    const names = new Set((found?.result?.results || []).map((p) => p.name));
    const shown = (all || []).filter((d) => names.has(d.name));
    clear(list).append(...shown.map((d) => h('li', { dataset: { name: d.name } },
      h('a', { href: datasetHref(d.name) }, text(d.title)),
      ' ', h('span', { class: 'badge' }, t('cat.access.' + d.accessLevel)),
      h('p', { class: 'muted' }, text(d.description)))));
    status.textContent = shown.length ? t('cat.results', { n: fmtNumber(shown.length) }) : t('cat.none');
    status.dataset.count = String(shown.length);
  }
  await search();
}

function previewMap(holder, items) {
  const map = L.map(holder, { attributionControl: false, maxZoom: 19, minZoom: 2 }).setView([20, 115], 3);
  const layer = L.featureGroup().addTo(map);
  for (const e of items) {
    if (!e.location) continue;
    const shape = L.geoJSON(e.location, {
      pointToLayer: (_, at) => L.circleMarker(at, { radius: 6, color: '#1f78b4', weight: 2, fillOpacity: 0.6 }),
    });
    shape.bindTooltip(label(e));
    layer.addLayer(shape);
  }
  if (layer.getLayers().length) map.fitBounds(layer.getBounds().pad(0.2), { maxZoom: 14 });
  return layer.getLayers().length;
}

export async function datasetPage(name) {
  const main = document.getElementById('main');
  const { body: d } = await get(`/cityhub/v1/datasets/${encodeURIComponent(name)}`);
  const facts = h('dl', { class: 'facts', id: 'ds-facts' },
    h('dt', {}, t('ds.publisher')), h('dd', {}, text(d.publisher?.name)),
    h('dt', {}, t('ds.license')), h('dd', {}, d.license),
    h('dt', {}, t('ds.access')), h('dd', { id: 'ds-access' }, t('cat.access.' + d.accessLevel)),
    d.updateFrequency ? [h('dt', {}, t('ds.frequency')), h('dd', {}, d.updateFrequency)] : null,
    h('dt', {}, t('ds.modified')), h('dd', {}, fmtDate(d.modifiedAt)));
  const downloads = h('ul', { id: 'ds-downloads' }, (d.distributions || []).map((x) =>
    h('li', { dataset: { format: x.format || '' } }, h('a', { href: x.accessURL, download: x.key === 'ngsi-ld' ? null : '' }, distributionLabel(x)))));
  main.append(
    h('h1', {}, text(d.title)),
    h('p', { id: 'ds-description' }, text(d.description)),
    facts,
    h('section', { 'aria-labelledby': 'ds-dl-h' }, h('h2', { id: 'ds-dl-h' }, t('ds.downloads')), downloads));

  // The preview: the dataset's selection asked of the NGSI-LD API, as the caller may see it.
  const preview = h('section', { 'aria-labelledby': 'ds-pv-h' }, h('h2', { id: 'ds-pv-h' }, t('ds.preview')));
  const pvStatus = h('p', { id: 'ds-preview-status', role: 'status' });
  const mapDiv = h('div', { id: 'ds-map', class: 'map small', role: 'region', 'aria-label': t('ds.previewMap') });
  preview.append(pvStatus, mapDiv);
  main.append(preview);
  const s = d.selection || {};
  try {
    const { items, total } = await allEntities({ type: (s.types || []).join(','), q: s.q }, PREVIEW_CAP);
    const placed = previewMap(mapDiv, items);
    pvStatus.textContent = t('ds.previewCount', { n: fmtNumber(items.length), total: fmtNumber(total) });
    Object.assign(pvStatus.dataset, { count: String(items.length), total: String(total), placed: String(placed) });
    const first = items.slice(0, 10);
    if (first.length) {
      preview.append(h('ul', { id: 'ds-preview-list' }, first.map((e) => h('li', {}, h('a', { href: entityHref(e.id) }, label(e))))));
    }
  } catch (e) {
    mapDiv.remove();
    pvStatus.textContent = t('ds.previewUnavailable', { detail: e.message });
    pvStatus.dataset.count = '0';
  }

  if (d.accessLevel !== 'public') main.append(requestForm(d));
}

function requestForm(d) {
  const purpose = h('textarea', { id: 'ar-purpose', required: true, rows: 3, cols: 50 });
  const contact = h('input', { id: 'ar-name', required: true, size: 24 });
  const email = h('input', { id: 'ar-email', type: 'email', size: 28 });
  const result = h('p', { id: 'ar-result', role: 'status' });
  const form = h('form', { id: 'ar-form', onsubmit: async (e) => {
    e.preventDefault();
    const body = { dataset: d.name, purpose: purpose.value.trim(), contact: { name: contact.value.trim() } };
    if (email.value.trim()) body.contact.email = email.value.trim();
    try {
      const { body: made } = await send('POST', '/cityhub/v1/access-requests', body);
      result.textContent = t('ds.sent', { id: made.id, status: t('req.status.' + made.status) });
      result.dataset.id = made.id;
    } catch (err) {
      result.textContent = t('error.load', { detail: err.message });
    }
  } },
  h('p', {}, h('label', { for: 'ar-purpose' }, t('ds.purpose')), h('br'), purpose),
  h('p', { class: 'toolbar' }, h('label', { for: 'ar-name' }, t('ds.contactName')), contact,
    h('label', { for: 'ar-email' }, t('ds.contactEmail')), email),
  h('button', { type: 'submit' }, t('ds.send')));
  return h('section', { 'aria-labelledby': 'ds-ar-h' }, h('h2', { id: 'ds-ar-h' }, t('ds.request')),
    h('p', { class: 'muted' }, t('ds.requestLead')), form, result);
}

function inDays(n) {
  const at = new Date(Date.now() + n * 86400000);
  return at.toISOString().slice(0, 10);
}

export async function requestsPage() {
  const main = document.getElementById('main');
  const shown = h('p', { id: 'ar-key', role: 'status' });
  const holder = h('div', {});
  main.append(h('h1', {}, t('req.title')), shown, holder);

  async function load() {
    const { body } = await get('/cityhub/v1/access-requests');
    const list = body || [];
    if (!list.length) {
      clear(holder).append(h('p', { id: 'ar-table' }, t('req.none')));
      return;
    }
    const rows = list.map((r) => {
      const u = r.usage;
      return h('tr', { dataset: { id: r.id, status: r.status } },
        h('th', { scope: 'row' }, r.id),
        h('td', {}, h('a', { href: datasetHref(r.dataset) }, r.dataset)),
        h('td', {}, r.requester, h('br'), r.contact?.name || '', r.contact?.email ? ` <${r.contact.email}>` : ''),
        h('td', {}, r.purpose),
        h('td', { class: 'status' }, t('req.status.' + r.status), r.reason ? ` (${r.reason})` : '', r.expiresAt ? [h('br'), t('req.until', { at: fmtDate(r.expiresAt) })] : ''),
        h('td', {}, u ? t('req.usageText', { requests: fmtNumber(u.requests), rows: fmtNumber(u.rows), bytes: fmtNumber(u.bytes) }) : '—'),
        h('td', {}, decision(r)));
    });
    clear(holder).append(h('table', { class: 'grid', id: 'ar-table' },
      h('caption', {}, t('req.caption', { n: fmtNumber(list.length) })),
      h('thead', {}, h('tr', {}, ['req.id', 'req.dataset', 'req.requester', 'req.purpose', 'req.status', 'req.usage', 'req.decision']
        .map((k) => h('th', { scope: 'col' }, t(k))))),
      h('tbody', {}, rows)));
  }

  function decision(r) {
    const act = async (what, body) => {
      try {
        const { body: done } = await send('POST', `/cityhub/v1/access-requests/${encodeURIComponent(r.id)}/${what}`, body);
        if (done.key) {
          shown.textContent = '';
          shown.append(t('req.key', { id: r.id }), ' ', h('code', { id: 'ar-key-value' }, done.key));
        }
      } catch (err) {
        shown.textContent = t('error.load', { detail: err.message });
      }
      await load();
    };
    if (r.status === 'approved') {
      return h('button', { type: 'button', class: 'ar-revoke', onclick: () => act('revoke', {}) }, t('req.revoke'));
    }
    if (r.status !== 'pending') return '—';
    const id = (k) => `ar-${k}-${r.id}`;
    const until = h('input', { id: id('until'), type: 'date', value: inDays(90), required: true });
    const rate = h('input', { id: id('rate'), type: 'number', min: '0.1', step: '0.1', value: '5', size: 5, required: true });
    const reason = h('input', { id: id('reason'), size: 18 });
    return h('div', {},
      h('form', { class: 'toolbar ar-approve', onsubmit: (e) => { e.preventDefault(); act('approve', { expiresAt: `${until.value}T23:59:59Z`, rateLimit: Number(rate.value) }); } },
        h('label', { for: id('until') }, t('req.expires')), until,
        h('label', { for: id('rate') }, t('req.rate')), rate,
        h('button', { type: 'submit' }, t('req.approve'))),
      h('form', { class: 'toolbar ar-refuse', onsubmit: (e) => { e.preventDefault(); act('refuse', { reason: reason.value.trim() }); } },
        h('label', { for: id('reason') }, t('req.reason')), reason,
        h('button', { type: 'submit' }, t('req.refuse'))));
  }
  await load();
}
