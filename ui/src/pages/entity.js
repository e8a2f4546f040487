// One entity: every attribute with its sub-properties, relationships as links, and history
// charts of its numeric attributes from the temporal API (aggregated for long ranges).
import { t, fmtNumber, fmtDate } from '../i18n.js';
import { get, ld, series } from '../api.js';
import { onLive } from '../main.js';
import { renderChart } from '../chart.js';
import { h, short, entityHref, typeHref, clear, pm25Level, label } from '../util.js';

const RANGES = { PT6H: 6, P1D: 24, P7D: 24 * 7 };
const META = new Set(['type', 'createdAt', 'modifiedAt', 'observedAt', 'unitCode', 'datasetId', 'value', 'object', 'objectType', 'languageMap', 'vocab', 'json', 'instanceId']);

function scalar(v, attr) {
  if (typeof v === 'number') return attr === 'pm25' ? `${fmtNumber(v)} (${t('level.' + pm25Level(v))})` : fmtNumber(v);
  if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v)) return fmtDate(v);
  if (typeof v === 'string' && v.startsWith('urn:')) return h('a', { href: entityHref(v) }, v);
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function attributeBlock(name, attr) {
  const instances = Array.isArray(attr) ? attr : [attr];
  return instances.map((a) => {
    const value = a.type === 'Relationship' ? (Array.isArray(a.object) ? a.object : [a.object]).map((o) => h('a', { href: entityHref(o), class: 'rel' }, o)) : scalar(a.value ?? a.languageMap ?? a.json ?? a.vocab, name);
    const subs = Object.entries(a).filter(([k]) => !META.has(k));
    const meta = ['observedAt', 'unitCode', 'datasetId', 'modifiedAt'].filter((k) => a[k]).map((k) => h('li', {}, `${t('entity.' + k)}: `, k.endsWith('At') ? fmtDate(a[k]) : a[k]));
    return h('tr', { dataset: { attr: name } },
      h('th', { scope: 'row' }, name),
      h('td', {}, t('attrType.' + a.type)),
      h('td', { class: 'value' }, value,
        meta.length || subs.length ? h('ul', { class: 'subs' }, meta, subs.map(([k, s]) => h('li', {}, `${k}: `, s && typeof s === 'object' && 'type' in s ? scalar(s.value ?? s.object, k) : scalar(s, k)))) : null));
  });
}

export async function entityPage(id) {
  const main = document.getElementById('main');
  const { body: entity } = await get(ld(`/entities/${encodeURIComponent(id)}`), { options: 'sysAttrs' });
  const type = Array.isArray(entity.type) ? entity.type[0] : entity.type;
  const attrs = Object.entries(entity).filter(([k]) => !['id', 'type', '@context', 'createdAt', 'modifiedAt'].includes(k));
  const table = h('table', { class: 'grid', id: 'entity-attrs' });
  const draw = (e) => clear(table).append(
    h('caption', {}, t('entity.attributes')),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('entity.name')), h('th', { scope: 'col' }, t('entity.kind')), h('th', { scope: 'col' }, t('entity.value')))),
    h('tbody', {}, Object.entries(e).filter(([k]) => !['id', 'type', '@context', 'createdAt', 'modifiedAt'].includes(k)).map(([k, a]) => attributeBlock(k, a))));
  draw(entity);
  main.append(
    h('h1', {}, label({ id, name: entity.name?.value })),
    h('p', { class: 'muted' }, h('a', { href: typeHref(short(type)) }, short(type)), ' · ', h('code', {}, id),
      entity.modifiedAt ? [' · ', t('entity.modified', { at: fmtDate(entity.modifiedAt) })] : null),
    table);

  const numeric = attrs.filter(([, a]) => !Array.isArray(a) && a.type === 'Property' && typeof a.value === 'number').map(([k]) => k);
  const charts = h('section', { 'aria-labelledby': 'history-h' }, h('h2', { id: 'history-h' }, t('entity.history')));
  const range = h('select', { id: 'history-range' }, Object.keys(RANGES).map((r) => h('option', { value: r }, t('range.' + r))));
  range.value = new URLSearchParams(location.hash.split('?')[1] || '').get('range') || 'P1D';
  charts.append(h('label', { for: 'history-range' }, t('entity.range')), ' ', range);
  const holder = h('div', { class: 'charts' });
  charts.append(holder);
  if (numeric.length) main.append(charts);

  async function drawCharts() {
    clear(holder);
    const hours = RANGES[range.value];
    const to = new Date(Date.now() + 60000).toISOString();
    const from = new Date(Date.now() - hours * 3600000).toISOString();
    // Long ranges are read as hourly averages, computed in the store.
    const aggregate = hours > 24 ? 'PT1H' : null;
    for (const attr of numeric) {
      const box = h('figure', { class: 'chart', dataset: { attr } });
      const plot = h('div', { class: 'plot', id: `chart-${attr}`, dataset: { from, to, aggregate: aggregate || '' } });
      box.append(h('figcaption', {}, aggregate ? t('entity.chartAvg', { attr }) : t('entity.chart', { attr })), plot);
      holder.append(box);
      try {
        const { xs, ys } = await series(id, attr, from, to, aggregate);
        renderChart(plot, xs, ys, attr);
      } catch (e) {
        plot.append(h('p', { class: 'error' }, t('error.load', { detail: e.message })));
      }
    }
  }
  range.addEventListener('change', drawCharts);
  await drawCharts();
  onLive(async (change) => {
    if (change.id !== id || change.deleted) return;
    const { body } = await get(ld(`/entities/${encodeURIComponent(id)}`), { options: 'sysAttrs' });
    draw(body);
  }, main);
}
