// The first page in words: the areas, the kinds of data with counts, the latest values.
import { t, fmtNumber, fmtDate } from '../i18n.js';
import { entities, types } from '../api.js';
import { h, short, typeHref, entityHref, valueOf, label, pm25Level } from '../util.js';

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
  if (cities.size) main.append(await citySummary(areas, counted));

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
    const { items } = await entities({ type: ty.name, limit: 5, options: 'keyValues,sysAttrs', pick: 'id,name,modifiedAt,' + ty.attrs.map(short).filter((a) => a !== 'location').slice(0, 8).join(',') }).catch(() => entities({ type: ty.name, limit: 5 }));
    latest.append(h('h3', {}, short(ty.name)), h('ul', {}, items.map((e) => h('li', {},
      h('a', { href: entityHref(e.id) }, label(e)), ': ',
      Object.entries(e).filter(([k, v]) => !['id', 'type', 'name', 'modifiedAt', 'createdAt', 'location', 'refArea', 'dateObserved'].includes(k) && (typeof v === 'number' || typeof v === 'string'))
        .map(([k, v]) => `${k} ${typeof v === 'number' ? fmtNumber(v) : v}`).join(' · '),
      e.modifiedAt ? h('span', { class: 'muted' }, ' — ', fmtDate(e.modifiedAt)) : null))));
  }
  main.append(latest);
}

/** Per city, in words: its air-quality stations with their mean PM2.5, and its free parking spots. */
async function citySummary(areas, counted) {
  const cityOf = new Map(areas.map((a) => [a.id, valueOf(a.addressLocality) || t('home.unknownCity')]));
  const section = h('section', { 'aria-labelledby': 'now-h', id: 'city-now' }, h('h2', { id: 'now-h' }, t('home.now')));
  const withAttr = (attr) => counted.filter((ty) => ty.attrs.map(short).includes(attr) && ty.attrs.map(short).includes('refArea'));
  const stats = new Map();
  const at = (city) => stats.get(city) || stats.set(city, { n: 0, sum: 0, spots: 0, free: 0 }).get(city);
  for (const ty of withAttr('pm25')) {
    const { items } = await entities({ type: ty.name, limit: 1000, pick: 'id,refArea,pm25' });
    for (const e of items) {
      const city = cityOf.get(valueOf(e.refArea));
      if (city && typeof e.pm25 === 'number') { at(city).n++; at(city).sum += e.pm25; }
    }
  }
  for (const ty of withAttr('status')) {
    const { items } = await entities({ type: ty.name, limit: 1000, pick: 'id,refArea,status' });
    for (const e of items) {
      const city = cityOf.get(valueOf(e.refArea));
      if (city) { at(city).spots++; if (e.status === 'free') at(city).free++; }
    }
  }
  section.append(h('ul', {}, [...stats].sort().map(([city, s]) => {
    const parts = [];
    if (s.n) {
      const mean = s.sum / s.n;
      parts.push(t('home.air', { n: fmtNumber(s.n), mean: fmtNumber(mean, { maximumFractionDigits: 1 }), level: t('level.' + pm25Level(mean)) }));
    }
    if (s.spots) parts.push(t('home.parking', { free: fmtNumber(s.free), spots: fmtNumber(s.spots) }));
    return h('li', { dataset: { city } }, h('strong', {}, city), ': ', parts.join(' '));
  })));
  return section;
}
