// The entity browser: per type, a table paged, sorted and filtered (q) through the NGSI-LD API
// with keyValues and pick: one page at a time, never the whole store.
import { t, fmtNumber, fmtDate } from '../i18n.js';
import { entities, types } from '../api.js';
import { onLive } from '../main.js';
import { h, short, entityHref, typeHref, valueOf, clear } from '../util.js';

const PAGE = 20;

function cell(v) {
  v = valueOf(v);
  if (typeof v === 'number') return fmtNumber(v);
  if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v)) return fmtDate(v);
  if (typeof v === 'string' && v.startsWith('urn:')) return h('a', { href: entityHref(v) }, short(v.split(':').slice(-2).join(':')));
  if (v && typeof v === 'object') return v.type && v.coordinates ? v.type : JSON.stringify(v);
  return v === undefined ? '' : String(v);
}

export async function browsePage(type) {
  const main = document.getElementById('main');
  const all = await types();
  main.append(h('h1', {}, type ? t('browse.titleType', { type }) : t('browse.title')));
  main.append(h('nav', { 'aria-label': t('browse.types') }, h('ul', { class: 'chips' }, all.map((ty) =>
    h('li', {}, h('a', { href: typeHref(short(ty.name)), 'aria-current': short(ty.name) === type ? 'page' : undefined }, short(ty.name)))))));
  if (!type) {
    main.append(h('p', {}, t('browse.pick')));
    return;
  }
  const info = all.find((ty) => short(ty.name) === type);
  const columns = (info ? info.attrs.map(short) : []).filter((a) => a !== 'location').slice(0, 8);
  let offset = 0;
  let q = '';
  let order = 'id';
  const qInput = h('input', { id: 'browse-q', size: 24, placeholder: 'pm25>10' });
  const orderSelect = h('select', { id: 'browse-order' }, h('option', { value: 'id' }, 'id'), columns.map((c) => h('option', { value: c }, c)));
  const status = h('p', { id: 'browse-status', role: 'status' });
  const table = h('table', { class: 'grid', id: 'browse-table' });
  const prev = h('button', { type: 'button', id: 'browse-prev' }, t('browse.prev'));
  const next = h('button', { type: 'button', id: 'browse-next' }, t('browse.next'));
  main.append(
    h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); q = qInput.value.trim(); offset = 0; load(); } },
      h('label', { for: 'browse-q' }, t('browse.q')), qInput,
      h('label', { for: 'browse-order' }, t('browse.order')), orderSelect,
      h('button', { type: 'submit' }, t('browse.apply'))),
    status, table, h('div', { class: 'pager' }, prev, next));

  async function load() {
    let page;
    try {
      page = await entities({ type, q: q || undefined, limit: PAGE, offset, orderBy: order === 'id' ? undefined : order, pick: ['id', ...columns].join(',') });
    } catch (e) {
      status.textContent = t('error.load', { detail: e.message });
      return;
    }
    clear(table).append(
      h('caption', {}, t('browse.caption', { type, from: fmtNumber(page.total ? offset + 1 : 0), to: fmtNumber(offset + page.items.length), total: fmtNumber(page.total) })),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'id'), columns.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, page.items.map((e) => h('tr', { dataset: { id: e.id } },
        h('th', { scope: 'row' }, h('a', { href: entityHref(e.id) }, e.id)),
        columns.map((c) => h('td', { dataset: { attr: c } }, cell(e[c])))))));
    status.textContent = t('browse.count', { total: fmtNumber(page.total) });
    prev.disabled = offset === 0;
    next.disabled = offset + PAGE >= page.total;
  }
  prev.addEventListener('click', () => { offset = Math.max(0, offset - PAGE); load(); });
  next.addEventListener('click', () => { offset += PAGE; load(); });
  orderSelect.addEventListener('change', () => { order = orderSelect.value; offset = 0; load(); });
  await load();
  onLive((change) => {
    const row = table.querySelector(`tr[data-id="${CSS.escape(change.id)}"]`);
    if (!row || !change.entity) return;
    for (const c of columns) {
      const td = row.querySelector(`td[data-attr="${c}"]`);
      if (td && c in change.entity) clear(td).append(cell(change.entity[c]));
    }
  }, main);
}
