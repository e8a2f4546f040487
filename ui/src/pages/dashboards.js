// Dashboards an operator composes (map, latest value, time series, gauge, table, counts), kept
// in the hub (/cityhub/v1/dashboards) and shared through a read-only link (#/share/<token>).
import L from '../leaflet.js';
import { t, fmtNumber, fmtDate } from '../i18n.js';
import { get, send, entities, series, types } from '../api.js';
import { onLive } from '../main.js';
import { renderChart } from '../chart.js';
import { h, short, clear, valueOf, colour, entityHref } from '../util.js';

const KINDS = ['count', 'latest', 'gauge', 'series', 'table', 'map'];
const BASE = '/cityhub/v1/dashboards';

export async function dashboardsPage() {
  const main = document.getElementById('main');
  main.append(h('h1', {}, t('dash.title')));
  const { body } = await get(BASE);
  const list = body || [];
  main.append(list.length
    ? h('ul', { id: 'dash-list' }, list.map((d) => h('li', {}, h('a', { href: `#/dashboards/${encodeURIComponent(d.id)}` }, d.title), ' · ', h('a', { href: `#/share/${d.share}` }, t('dash.shareLink')))))
    : h('p', {}, t('dash.none')));
  const title = h('input', { id: 'dash-new-title', required: true, size: 30 });
  main.append(h('form', { class: 'toolbar', id: 'dash-new', onsubmit: async (e) => {
    e.preventDefault();
    const { res } = await send('POST', BASE, { title: title.value.trim(), widgets: [] });
    const id = decodeURIComponent(res.headers.get('Location').split('/').pop());
    location.hash = `#/dashboards/${encodeURIComponent(id)}`;
  } }, h('label', { for: 'dash-new-title' }, t('dash.newTitle')), title, h('button', { type: 'submit' }, t('dash.create'))));
}

async function widget(w, cleanups) {
  const box = h('section', { class: 'widget', dataset: { kind: w.kind } }, h('h2', {}, w.title || t('widget.' + w.kind)));
  const q = { type: w.type, q: w.q || undefined };
  try {
    if (w.kind === 'count') {
      const { total } = await entities({ ...q, limit: 0 });
      box.append(h('p', { class: 'big', dataset: { value: total } }, fmtNumber(total)), h('p', { class: 'muted' }, w.type));
    } else if (w.kind === 'latest' || w.kind === 'gauge') {
      const { body } = await get(`/ngsi-ld/v1/entities/${encodeURIComponent(w.entity)}`, { options: 'keyValues', pick: `id,${w.attr}` });
      const show = (v) => {
        clear(box).append(h('h2', {}, w.title || t('widget.' + w.kind)));
        if (w.kind === 'gauge') {
          const max = Number(w.max) || 100;
          box.append(h('meter', { class: 'gauge', min: 0, max, value: v, 'aria-label': `${w.attr} ${fmtNumber(v)}` }));
        }
        box.append(h('p', { class: 'big', dataset: { value: v } }, fmtNumber(v)), h('p', { class: 'muted' }, `${w.attr} · `, h('a', { href: entityHref(w.entity) }, short(w.entity))));
      };
      show(body?.[w.attr]);
      cleanups.push(onLive((c) => { if (c.id === w.entity && c.entity && w.attr in c.entity) show(c.entity[w.attr]); }, box));
    } else if (w.kind === 'series') {
      const plot = h('div', { class: 'plot' });
      box.append(plot);
      const to = new Date(Date.now() + 60000).toISOString();
      const from = new Date(Date.now() - 24 * 3600000).toISOString();
      const { xs, ys } = await series(w.entity, w.attr, from, to, null);
      renderChart(plot, xs, ys, w.attr);
    } else if (w.kind === 'table') {
      const cols = (w.attrs || '').split(',').map((s) => s.trim()).filter(Boolean);
      const { items } = await entities({ ...q, limit: 20, pick: ['id', ...cols].join(',') });
      box.append(h('table', { class: 'grid' }, h('caption', {}, w.type),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'id'), cols.map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, items.map((e) => h('tr', {}, h('th', { scope: 'row' }, h('a', { href: entityHref(e.id) }, short(e.id))), cols.map((c) => h('td', {}, typeof e[c] === 'number' ? fmtNumber(e[c]) : String(valueOf(e[c]) ?? ''))))))));
    } else if (w.kind === 'map') {
      const div = h('div', { class: 'map', style: 'height:280px', role: 'region', 'aria-label': t('map.region') });
      box.append(div);
      const { items } = await entities({ ...q, limit: 1000, pick: ['id', 'location', w.attr].filter(Boolean).join(',') });
      setTimeout(() => {
        const map = L.map(div, { attributionControl: false });
        const pts = items.filter((e) => e.location?.type === 'Point').map((e) => L.circleMarker([e.location.coordinates[1], e.location.coordinates[0]], { radius: 6, color: '#333', weight: 1, fillOpacity: 0.9, fillColor: colour(w.attr, e[w.attr]) }));
        const group = L.featureGroup(pts).addTo(map);
        if (pts.length) map.fitBounds(group.getBounds(), { maxZoom: 12 });
        else map.setView([20, 115], 3);
        cleanups.push(() => map.remove());
      });
    }
  } catch (e) {
    box.append(h('p', { class: 'error' }, t('error.load', { detail: e.message })));
  }
  return box;
}

export async function dashboardPage(key, readOnly) {
  const main = document.getElementById('main');
  const { body: dash } = await get(readOnly ? `/cityhub/v1/shared/${encodeURIComponent(key)}` : `${BASE}/${encodeURIComponent(key)}`);
  const cleanups = [];
  main.append(h('h1', { id: 'dash-title' }, dash.title));
  if (readOnly) main.append(h('p', { class: 'muted', id: 'dash-readonly' }, t('dash.readOnly')));
  else {
    const link = `${location.origin}/#/share/${dash.share}`;
    main.append(h('p', {}, t('dash.shareIntro'), ' ', h('a', { href: `#/share/${dash.share}`, id: 'dash-share' }, link)));
  }
  const grid = h('div', { class: 'widgets', id: 'dash-widgets' });
  main.append(grid);
  for (const w of dash.widgets || []) grid.append(await widget(w, cleanups));
  if (!readOnly) main.append(await editor(dash));
  return () => cleanups.forEach((c) => c());
}

async function editor(dash) {
  const all = await types();
  const kind = h('select', { id: 'w-kind' }, KINDS.map((k) => h('option', { value: k }, t('widget.' + k))));
  const type = h('select', { id: 'w-type' }, all.map((ty) => h('option', { value: short(ty.name) }, short(ty.name))));
  const entity = h('input', { id: 'w-entity', size: 40, placeholder: 'urn:ngsi-ld:AirQualityObserved:…' });
  const attr = h('input', { id: 'w-attr', size: 12, placeholder: 'pm25' });
  const title = h('input', { id: 'w-title', size: 20 });
  const form = h('form', { class: 'toolbar', id: 'w-form', onsubmit: async (e) => {
    e.preventDefault();
    const w = { kind: kind.value, type: type.value, entity: entity.value.trim() || undefined, attr: attr.value.trim() || undefined, title: title.value.trim() || undefined };
    if (w.kind === 'table') w.attrs = w.attr || '';
    const widgets = [...(dash.widgets || []), w];
    await send('PUT', `${BASE}/${encodeURIComponent(dash.id)}`, { title: dash.title, widgets });
    location.reload();
  } },
  h('label', { for: 'w-kind' }, t('dash.kind')), kind,
  h('label', { for: 'w-type' }, t('dash.type')), type,
  h('label', { for: 'w-entity' }, t('dash.entity')), entity,
  h('label', { for: 'w-attr' }, t('dash.attr')), attr,
  h('label', { for: 'w-title' }, t('dash.widgetTitle')), title,
  h('button', { type: 'submit', id: 'w-add' }, t('dash.add')));
  const remove = h('button', { type: 'button', id: 'dash-delete', onclick: async () => {
    if (!confirm(t('dash.confirmDelete'))) return;
    await send('DELETE', `${BASE}/${encodeURIComponent(dash.id)}`);
    location.hash = '#/dashboards';
  } }, t('dash.delete'));
  return h('section', { 'aria-labelledby': 'edit-h' }, h('h2', { id: 'edit-h' }, t('dash.edit')), form, remove);
}
