// The map: every entity with a location, coloured by a chosen attribute, clustered when dense;
// click -> detail; filter by type and q; draw a box -> geo-query. The base layer is offline: a
// graticule and the hub's own area entities (districts), or --basemap's tile server.
import L from '../leaflet.js';
import 'leaflet.markercluster';
import { t, fmtNumber, fmtDate } from '../i18n.js';
import { allEntities, types, get } from '../api.js';
import { onLive } from '../main.js';
import { h, short, typeOf, colour, entityHref, valueOf, clear, pm25Level, label } from '../util.js';

const AREA = 'AdministrativeArea';
const CLUSTER_ABOVE = 300;
let config = null;

async function uiConfig() {
  if (!config) config = (await get('/ui/config.json')).body || {};
  return config;
}

/** Lines of latitude and longitude, spaced for the zoom, over the visible part of the map. */
function graticule(map, layer) {
  const draw = () => {
    layer.clearLayers();
    const z = map.getZoom();
    const step = z < 5 ? 10 : z < 8 ? 1 : z < 11 ? 0.1 : z < 14 ? 0.01 : 0.001;
    const b = map.getBounds().pad(0.2);
    const [s, n] = [Math.max(-85, b.getSouth()), Math.min(85, b.getNorth())];
    const [w, e] = [Math.max(-180, b.getWest()), Math.min(180, b.getEast())];
    const lines = [];
    for (let lat = Math.ceil(s / step) * step; lat <= n && lines.length < 400; lat += step) lines.push([[lat, w], [lat, e]]);
    for (let lng = Math.ceil(w / step) * step; lng <= e && lines.length < 800; lng += step) lines.push([[s, lng], [n, lng]]);
    layer.addLayer(L.polyline(lines, { color: '#9aa7b5', weight: 0.6, interactive: false }));
  };
  map.on('moveend', draw);
  draw();
}

function firstPoint(geo) {
  if (!geo || !geo.coordinates) return null;
  let c = geo.coordinates;
  while (Array.isArray(c[0])) c = c[0];
  return typeof c[0] === 'number' ? [c[1], c[0]] : null;
}

export async function mapPage() {
  const main = document.getElementById('main');
  const began = performance.now();
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const all = (await types()).filter((ty) => ty.attrs.map(short).includes('location'));
  const shown = all.filter((ty) => short(ty.name) !== AREA);
  let type = params.get('type') || '';
  let q = params.get('q') || '';
  let by = params.get('by') || (shown.some((ty) => short(ty.name) === 'AirQualityObserved') ? 'pm25' : '');
  let box = null;

  const typeSelect = h('select', { id: 'map-type' }, h('option', { value: '' }, t('map.allTypes')), shown.map((ty) => h('option', { value: short(ty.name) }, short(ty.name))));
  typeSelect.value = type;
  const attrs = [...new Set(shown.flatMap((ty) => ty.attrs.map(short)))].filter((a) => !['location', 'name'].includes(a));
  const bySelect = h('select', { id: 'map-by' }, h('option', { value: '' }, t('map.noColour')), attrs.map((a) => h('option', { value: a }, a)));
  bySelect.value = by;
  const qInput = h('input', { id: 'map-q', value: q, placeholder: 'pm25>35', size: 18 });
  const drawButton = h('button', { type: 'button', id: 'map-draw', 'aria-pressed': 'false' }, t('map.draw'));
  const clearButton = h('button', { type: 'button', id: 'map-clear' }, t('map.clearArea'));
  const status = h('p', { id: 'map-status', role: 'status' });
  const form = h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); q = qInput.value.trim(); load(); } },
    h('label', { for: 'map-type' }, t('map.type')), typeSelect,
    h('label', { for: 'map-q' }, t('map.q')), qInput,
    h('label', { for: 'map-by' }, t('map.colourBy')), bySelect,
    h('button', { type: 'submit' }, t('map.apply')), drawButton, clearButton);
  const mapDiv = h('div', { id: 'map', class: 'map', role: 'region', 'aria-label': t('map.region') });
  const detail = h('section', { id: 'map-detail', class: 'detail', 'aria-live': 'polite', 'aria-label': t('map.detail') });
  const legend = h('div', { id: 'map-legend', class: 'legend' });
  const list = h('details', { class: 'map-list' }, h('summary', {}, t('map.list')));
  main.append(h('h1', {}, t('map.title')), form, status, h('div', { class: 'map-layout' }, mapDiv, h('div', { class: 'side' }, legend, detail)), list);

  const map = L.map(mapDiv, { maxZoom: 19, minZoom: 2, attributionControl: false, zoomControl: true, worldCopyJump: true }).setView([20, 115], 3);
  const cfg = await uiConfig();
  if (cfg.basemap) L.tileLayer(cfg.basemap, { maxZoom: 19 }).addTo(map);
  else graticule(map, L.layerGroup().addTo(map));
  const areaLayer = L.geoJSON(null, { style: { color: '#34495e', weight: 1.2, fillColor: '#c9d6e3', fillOpacity: 0.35 } }).addTo(map);
  const shapeLayer = L.layerGroup().addTo(map);
  let markerLayer = L.layerGroup().addTo(map);
  const markers = new Map();
  const values = new Map();
  let range = [0, 0];

  // The areas are the base layer: drawn once, beneath everything.
  if (all.some((ty) => short(ty.name) === AREA)) {
    const { items } = await allEntities({ type: AREA, pick: 'id,name,location,addressLocality' }, 2000);
    // Each city's name at the middle of its districts, so the offline map reads without tiles.
    const cityBounds = new Map();
    for (const a of items) {
      if (!a.location) continue;
      const layer = L.geoJSON(a.location, { style: { color: '#34495e', weight: 1.2, fillColor: '#c9d6e3', fillOpacity: 0.35 } });
      layer.bindTooltip(label(a));
      layer.on('click', () => showDetail(a));
      areaLayer.addLayer(layer);
      const city = valueOf(a.addressLocality);
      if (city) cityBounds.set(city, (cityBounds.get(city) || L.latLngBounds([])).extend(layer.getBounds()));
    }
    for (const [city, b] of cityBounds) {
      L.tooltip({ permanent: true, direction: 'top', className: 'city-label', interactive: false }).setLatLng(b.getCenter()).setContent(String(city)).addTo(map);
    }
  }

  function icon() {
    return L.divIcon({ className: 'marker', html: '', iconSize: [14, 14], iconAnchor: [7, 7] });
  }

  function paint(marker, e) {
    const el = marker.getElement();
    const v = by ? e[by] : undefined;
    if (el) {
      el.style.background = colour(by, v, range[0], range[1]);
      el.dataset.id = e.id;
      el.dataset.value = v === undefined ? '' : String(v);
    }
  }

  function showDetail(e) {
    clear(detail);
    const rows = Object.entries(e).filter(([k]) => !['id', 'type', 'location'].includes(k));
    detail.dataset.id = e.id;
    detail.append(
      h('h2', {}, label(e)),
      h('p', { class: 'muted' }, short(typeOf(e)), ' · ', e.id),
      h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', { dataset: { attr: k } }, display(k, v))])),
      h('p', {}, h('a', { href: entityHref(e.id) }, t('map.open'))),
    );
  }

  function display(k, v) {
    v = valueOf(v);
    if (typeof v === 'number') return k === 'pm25' ? `${fmtNumber(v)} (${t('level.' + pm25Level(v))})` : fmtNumber(v);
    if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v)) return fmtDate(v);
    return typeof v === 'object' ? JSON.stringify(v) : String(v);
  }

  function computeRange() {
    const nums = [...values.values()].map((e) => e[by]).filter((v) => typeof v === 'number');
    range = nums.length ? [Math.min(...nums.slice(0, 50000)), Math.max(...nums.slice(0, 50000))] : [0, 0];
  }

  function drawLegend() {
    clear(legend);
    if (!by) return;
    legend.append(h('h2', {}, t('map.legend', { attr: by })));
    if (by === 'pm25') {
      legend.append(h('ul', {}, ['good', 'moderate', 'unhealthy', 'hazardous'].map((l) =>
        h('li', {}, h('span', { class: 'swatch', style: `background:${colour('pm25', { good: 5, moderate: 25, unhealthy: 50, hazardous: 100 }[l])}` }), t('level.' + l)))));
    } else if (range[1] > range[0]) {
      legend.append(h('p', {}, t('map.range', { min: fmtNumber(range[0]), max: fmtNumber(range[1]) })));
    }
  }

  function makeMarker(e, at) {
    const name = label(e);
    const marker = L.marker(at, { icon: icon(), title: name, alt: name, keyboard: true, riseOnHover: true });
    const open = () => showDetail(values.get(e.id));
    marker.on('click', open);
    // Markers are buttons: Enter and Space open them as a click does.
    marker.on('keypress', (ev) => { if (ev.originalEvent.key === 'Enter' || ev.originalEvent.key === ' ') open(); });
    marker.on('add', () => paint(marker, values.get(e.id)));
    markers.set(e.id, marker);
    return marker;
  }

  async function load() {
    const loadBegan = performance.now();
    let fetched = loadBegan;
    status.textContent = t('map.loading');
    const query = { q: q || undefined, pick: ['id', 'type', 'name', 'location', by].filter(Boolean).join(',') };
    if (box) Object.assign(query, { georel: 'within', geometry: 'Polygon', coordinates: JSON.stringify(box) });
    const wanted = type ? [type] : shown.map((ty) => short(ty.name));
    let total = 0;
    let items = [];
    try {
      for (const ty of wanted) {
        const page = await allEntities({ ...query, type: ty }, 20000);
        total += page.total;
        items.push(...page.items);
      }
    } catch (e) {
      status.textContent = t('error.load', { detail: e.message });
      return;
    }
    fetched = performance.now();
    map.removeLayer(markerLayer);
    markers.clear();
    values.clear();
    delete status.dataset.rendered;
    // Every marker placed: the clusters are drawn (markercluster adds them in chunks, between frames).
    const rendered = () => {
      const timing = window.__cityhub.timings.map;
      if (timing) timing.allPlacedMs = performance.now() - loadBegan;
      status.dataset.rendered = 'true';
      performance.mark('cityhub-map-placed');
    };
    markerLayer = items.length > CLUSTER_ABOVE
      ? L.markerClusterGroup({ chunkedLoading: true, disableClusteringAtZoom: 16, chunkProgress: (done, total) => { if (done === total) rendered(); } })
      : L.layerGroup();
    for (const e of items) values.set(e.id, e);
    computeRange();
    markerLayer.addTo(map);
    const made = [];
    shapeLayer.clearLayers();
    for (const e of items) {
      const at = firstPoint(e.location);
      if (at) made.push(makeMarker(e, at));
      // Lines and polygons are drawn as they are, with a marker at their first point to click.
      if (e.location && e.location.type !== 'Point') {
        const paintShape = { color: colour(by, by ? e[by] : undefined, range[0], range[1]), weight: 3, fillOpacity: 0.2 };
        shapeLayer.addLayer(L.geoJSON(e.location, { style: paintShape, interactive: false }));
      }
    }
    if (markerLayer.addLayers) markerLayer.addLayers(made);
    else made.forEach((m) => markerLayer.addLayer(m));
    drawLegend();
    status.textContent = t('map.count', { n: fmtNumber(items.length), total: fmtNumber(total) });
    status.dataset.count = String(items.length);
    if (box) status.dataset.box = JSON.stringify(box);
    else delete status.dataset.box;
    clear(list).append(h('summary', {}, t('map.list')), h('ul', {}, items.slice(0, 200).map((e) => h('li', {}, h('a', { href: entityHref(e.id) }, label(e))))));
    const ms = performance.now() - loadBegan;
    window.__cityhub.timings.map = { entities: items.length, fetchMs: fetched - loadBegan, renderMs: performance.now() - fetched, loadAndRenderMs: ms, sincePageMs: performance.now() - began };
    performance.mark('cityhub-map-rendered');
    if (!markerLayer.addLayers || !made.length) rendered();
  }

  typeSelect.addEventListener('change', () => { type = typeSelect.value; load(); });
  bySelect.addEventListener('change', () => { by = bySelect.value; load(); });
  clearButton.addEventListener('click', () => { box = null; boxLayer.clearLayers(); load(); });

  // Drawing a box: press the button, then drag on the map.
  const boxLayer = L.layerGroup().addTo(map);
  let drawing = false;
  let corner = null;
  let rect = null;
  drawButton.addEventListener('click', () => {
    drawing = !drawing;
    drawButton.setAttribute('aria-pressed', String(drawing));
    if (drawing) map.dragging.disable();
    else map.dragging.enable();
  });
  map.on('mousedown', (ev) => {
    if (!drawing) return;
    corner = ev.latlng;
    boxLayer.clearLayers();
    rect = L.rectangle([corner, corner], { color: '#1f5fa8', weight: 2, fill: false, interactive: false }).addTo(boxLayer);
  });
  map.on('mousemove', (ev) => { if (drawing && corner && rect) rect.setBounds([corner, ev.latlng]); });
  map.on('mouseup', (ev) => {
    if (!drawing || !corner) return;
    const b = L.latLngBounds(corner, ev.latlng);
    corner = null;
    drawing = false;
    drawButton.setAttribute('aria-pressed', 'false');
    map.dragging.enable();
    const [w, s, e, n] = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((x) => Math.round(x * 1e5) / 1e5);
    if (w === e || s === n) return;
    box = [[[w, s], [e, s], [e, n], [w, n], [w, s]]];
    load();
  });

  await load();
  // Start on what there is: the shown entities, else the areas.
  const points = [...markers.values()].map((m) => m.getLatLng());
  const bounds = points.length ? L.latLngBounds(points) : areaLayer.getBounds();
  if (bounds.isValid()) map.fitBounds(bounds, { maxZoom: 13, padding: [20, 20] });

  onLive((change) => {
    if (change.lagged) return load();
    const e = change.entity;
    if (change.deleted) {
      const m = markers.get(change.id);
      if (m) markerLayer.removeLayer(m);
      markers.delete(change.id);
      values.delete(change.id);
      return;
    }
    if (!values.has(change.id)) return;
    const merged = { ...values.get(change.id), ...e };
    values.set(change.id, merged);
    const m = markers.get(change.id);
    if (m) paint(m, merged);
    if (detail.dataset.id === change.id) showDetail(merged);
  }, main);
  return () => map.remove();
}
