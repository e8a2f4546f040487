// Small DOM helpers: elements are built with text nodes (never innerHTML with data).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** The short name of an entity type or attribute (the last part of an IRI). */
export function short(name) {
  const s = String(name ?? '');
  const cut = Math.max(s.lastIndexOf('/'), s.lastIndexOf('#'));
  return cut >= 0 && s.includes('://') ? s.slice(cut + 1) : s;
}

export function typeOf(entity) {
  return Array.isArray(entity.type) ? entity.type[0] : entity.type;
}

/** The value of an attribute in keyValues form, or of a normalized one. */
export function valueOf(v) {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    if ('value' in v) return v.value;
    if ('object' in v) return v.object;
  }
  return v;
}

export const entityHref = (id) => `#/entity/${encodeURIComponent(id)}`;
export const typeHref = (type) => `#/browse/${encodeURIComponent(type)}`;

/** Air-quality level of a PM2.5 value (µg/m³, WHO-style bands), for colours and words. */
export function pm25Level(v) {
  if (typeof v !== 'number') return 'unknown';
  if (v <= 15) return 'good';
  if (v <= 35) return 'moderate';
  if (v <= 75) return 'unhealthy';
  return 'hazardous';
}

const LEVEL_COLOURS = { good: '#1a9850', moderate: '#d9a400', unhealthy: '#e66101', hazardous: '#b2182b', unknown: '#6b6b6b' };
const PALETTE = ['#1f78b4', '#33a02c', '#e31a1c', '#ff7f00', '#6a3d9a', '#b15928', '#a6761d', '#1b9e77'];
const WORDS = { free: '#1a9850', occupied: '#b2182b', closed: '#6b6b6b', unknown: '#6b6b6b' };

/**
 * The colour of a value of attribute `attr`: PM2.5 by air-quality level, known words (free,
 * occupied) by meaning, other numbers on a scale between `min` and `max`, other text by hash.
 */
export function colour(attr, value, min, max) {
  if (value === undefined || value === null) return '#6b6b6b';
  if (short(attr) === 'pm25') return LEVEL_COLOURS[pm25Level(value)];
  if (typeof value === 'number') {
    const f = max > min ? Math.min(1, Math.max(0, (value - min) / (max - min))) : 0.5;
    const r = Math.round(26 + f * (178 - 26));
    const g = Math.round(152 - f * (152 - 24));
    const b = Math.round(80 - f * (80 - 43));
    return `rgb(${r},${g},${b})`;
  }
  const s = String(value);
  if (WORDS[s]) return WORDS[s];
  let hash = 0;
  for (const ch of s) hash = (hash * 31 + ch.charCodeAt(0)) | 0;
  return PALETTE[Math.abs(hash) % PALETTE.length];
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** A readable label of an entity: its name, else its id without the urn:ngsi-ld: prefix. */
export function label(e) {
  const name = valueOf(e?.name);
  if (name) return String(name);
  return String(e?.id ?? '').replace(/^urn:ngsi-ld:/, '').split(':').join(' ');
}
