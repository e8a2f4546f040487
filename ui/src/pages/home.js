// The first page in words: the areas, the kinds of data with counts, the latest values.
import { t, fmtNumber, fmtDate } from '../i18n.js';
import { entities, types } from '../api.js';
import { h, short, typeHref, entityHref, valueOf } from '../util.js';

const AREA = 'AdministrativeArea';

export async function homePage() {
  const main = document.getElementById('main');
  main.append(h('h1', {}, t('home.title')), h('p', { class: 'lead' }, t('home.lead')));
  const all = await types();
  const counted = await Promise.all(all.map(async (ty) => ({ ...ty, count: (await entities({ type: ty.name, limit: 0 })).total })));
  const total = counted.reduce((n, ty) => n + ty.count, 0);
  main.append(h('p', { id: 'home-summary' }, t('home.summary', { entities: fmtNumber(total), types: fmtNumber(counted.length) })));

  const areas = counted.some((ty) => short(ty.name) === AREA) ? (await entities({ type: AREA, limit: 100, pick: 'id,name,addressLocality,addressCountry' })).items : [];
  const cities = new Map();
  for (const a of areas) {
    const city = valueOf(a.addressLocality) || t('home.unknownCity');
    if (!cities.has(city)) cities.set(city, []);
    cities.get(city).push(a);
  }
  const areaSection = h('section', { 'aria-labelledby': 'areas-h' }, h('h2', { id: 'areas-h' }, t('home.areas')));
  if (!cities.size) areaSection.append(h('p', {}, t('home.noAreas')));
  else areaSection.append(h('ul', { class: 'cities' }, [...cities].map(([city, list]) =>
    h('li', {}, h('strong', {}, city), ' ', t('home.districts', { n: fmtNumber(list.length) }), ': ',
      list.map((a, i) => [i ? ', ' : '', h('a', { href: entityHref(a.id) }, valueOf(a.name) || short(a.id))])))));
  main.append(areaSection);

  const kinds = h('section', { 'aria-labelledby': 'kinds-h' }, h('h2', { id: 'kinds-h' }, t('home.kinds')));
  if (!counted.length) kinds.append(h('p', {}, t('home.empty')));
  else kinds.append(h('table', { class: 'grid', id: 'kinds-table' },
    h('caption', {}, t('home.kindsCaption')),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('home.type')), h('th', { scope: 'col' }, t('home.count')), h('th', { scope: 'col' }, t('home.attributes')))),
    h('tbody', {}, counted.map((ty) => h('tr', { dataset: { type: short(ty.name) } },
      h('th', { scope: 'row' }, h('a', { href: typeHref(short(ty.name)) }, short(ty.name))),
      h('td', { class: 'num' }, fmtNumber(ty.count)),
      h('td', {}, ty.attrs.map(short).join(', ')))))));
  main.append(kinds);

  const latest = h('section', { 'aria-labelledby': 'latest-h' }, h('h2', { id: 'latest-h' }, t('home.latest')));
  for (const ty of counted.filter((x) => short(x.name) !== AREA).slice(0, 6)) {
    const { items } = await entities({ type: ty.name, limit: 5, options: 'keyValues,sysAttrs', orderBy: 'modifiedAt', pick: 'id,name,modifiedAt,' + ty.attrs.map(short).filter((a) => a !== 'location').slice(0, 8).join(',') }).catch(() => entities({ type: ty.name, limit: 5 }));
    latest.append(h('h3', {}, short(ty.name)), h('ul', {}, items.map((e) => h('li', {},
      h('a', { href: entityHref(e.id) }, valueOf(e.name) || short(e.id)), ': ',
      Object.entries(e).filter(([k, v]) => !['id', 'type', 'name', 'modifiedAt', 'createdAt', 'location', 'refArea', 'dateObserved'].includes(k) && (typeof v === 'number' || typeof v === 'string'))
        .map(([k, v]) => `${k} ${typeof v === 'number' ? fmtNumber(v) : v}`).join(' · '),
      e.modifiedAt ? h('span', { class: 'muted' }, ' — ', fmtDate(e.modifiedAt)) : null))));
  }
  main.append(latest);
}
