// The hub's own APIs, as any client uses them: NGSI-LD under /ngsi-ld/v1 and the live channel.
// The tenant (NGSILD-Tenant) comes from ?tenant= or the tenant field, remembered.

const TENANT_KEY = 'cityhub.tenant';

export function tenant() {
  const asked = new URLSearchParams(location.search).get('tenant');
  if (asked !== null) localStorage.setItem(TENANT_KEY, asked);
  return localStorage.getItem(TENANT_KEY) || '';
}

export function setTenant(value) {
  localStorage.setItem(TENANT_KEY, value);
  const url = new URL(location.href);
  url.searchParams.delete('tenant');
  location.replace(url.toString());
}

function headers(extra = {}) {
  const h = { Accept: 'application/json', ...extra };
  const tn = tenant();
  if (tn) h['NGSILD-Tenant'] = tn;
  return h;
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function answer(res) {
  if (res.status === 204) return { body: null, res };
  const text = await res.text();
  const body = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(res.status, body);
  return { body, res };
}

export async function get(path, params = {}) {
  const qs = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== '' && v !== null));
  const url = `${path}${qs.toString() ? '?' + qs : ''}`;
  return answer(await fetch(url, { headers: headers() }));
}

export async function send(method, path, body) {
  const opts = { method, headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }) };
  if (body !== undefined) opts.body = JSON.stringify(body);
  return answer(await fetch(path, opts));
}

export const ld = (p) => `/ngsi-ld/v1${p}`;

/** One page of entities in keyValues form, with the total count. */
export async function entities(params) {
  const { body, res } = await get(ld('/entities'), { options: 'keyValues', count: 'true', ...params });
  return { items: body || [], total: Number(res.headers.get('NGSILD-Results-Count') ?? (body || []).length) };
}

/**
 * Every page of a query, up to `cap` entities (the UI never downloads the whole store): the
 * first page tells the count, the others are read `parallel` at a time.
 */
export async function allEntities(params, cap = 20000, pageSize = 1000, parallel = 3) {
  const first = await entities({ ...params, limit: Math.min(pageSize, cap), offset: 0 });
  const wanted = Math.min(cap, first.total);
  const offsets = [];
  for (let offset = first.items.length; first.items.length === pageSize && offset < wanted; offset += pageSize) offsets.push(offset);
  const pages = new Array(offsets.length);
  let next = 0;
  const worker = async () => {
    while (next < offsets.length) {
      const i = next++;
      pages[i] = (await entities({ ...params, limit: Math.min(pageSize, wanted - offsets[i]), offset: offsets[i] })).items;
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, offsets.length) }, worker));
  return { items: first.items.concat(...pages), total: first.total };
}

export async function types() {
  const { body } = await get(ld('/types'), { details: 'true' });
  return (body || []).map((t) => ({ name: t.typeName || t.id, attrs: t.attributeNames || [] }));
}

/**
 * The instances of one numeric attribute between two times, in time order: every page of the
 * temporal API (206 + Content-Range), at most `maxPages`; with `aggregate` (an ISO duration)
 * the store's averages per period instead.
 */
export async function series(id, attr, from, to, aggregate, maxPages = 400) {
  const points = new Map();
  let start = from;
  for (let page = 0; page < maxPages; page++) {
    const params = { attrs: attr, timerel: 'between', timeAt: start, endTimeAt: to };
    if (aggregate) Object.assign(params, { options: 'aggregatedValues', aggrMethods: 'avg', aggrPeriodDuration: aggregate });
    else params.options = 'temporalValues';
    const { body, res } = await get(ld(`/temporal/entities/${encodeURIComponent(id)}`), params);
    const values = aggregate ? body?.[attr]?.avg : body?.[attr]?.values;
    let last = null;
    for (const v of values || []) {
      const [value, at] = aggregate ? [v[0], v[1]] : v;
      if (typeof value === 'number') points.set(at, value);
      last = at;
    }
    if (res.status !== 206 || !last || last === start) break;
    start = last;
  }
  const sorted = [...points.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
  return { xs: sorted.map(([at]) => Date.parse(at) / 1000), ys: sorted.map(([, v]) => v) };
}

/**
 * Follows the live channel (Server-Sent Events read with fetch, so the tenant header goes too);
 * reconnects after a drop. Calls `onChange` with each change, `onState` with 'live' or 'down'.
 */
export function follow(onChange, onState) {
  let stopped = false;
  let controller;
  const run = async () => {
    for (let attempt = 0; !stopped; attempt++) {
      controller = new AbortController();
      try {
        const res = await fetch('/cityhub/v1/live', { headers: headers({ Accept: 'text/event-stream' }), signal: controller.signal });
        if (!res.ok || !res.body) throw new Error(`live ${res.status}`);
        onState('live');
        attempt = 0;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const event = /^event: ?(.*)$/m.exec(block)?.[1];
            const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
            if (event === 'change' && data) onChange(JSON.parse(data));
            if (event === 'lagged') onChange({ lagged: true });
          }
        }
      } catch (e) {
        if (stopped) return;
      }
      onState('down');
      await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** Math.min(attempt, 5))));
    }
  };
  run();
  return () => {
    stopped = true;
    controller?.abort();
  };
}
