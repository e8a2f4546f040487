// The API reference: the hub's own OpenAPI document (/openapi.json) listed by tag — each
// operation's method, path, summary, parameters and answers — with no renderer but this one.
import { t, fmtNumber } from '../i18n.js';
import { h } from '../util.js';

const ref = (r) => (r || '').split('/').pop();

function parameters(doc, op) {
  return (op.parameters || []).map((p) => (p.$ref ? doc.components.parameters[ref(p.$ref)] : p)).filter(Boolean);
}

export async function apiPage() {
  const main = document.getElementById('main');
  const res = await fetch('/openapi.json');
  if (!res.ok) throw new Error(`/openapi.json: ${res.status}`);
  const doc = await res.json();
  const byTag = new Map();
  let count = 0;
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ['—'])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([method.toUpperCase(), path, op]);
      count += 1;
    }
  }
  main.append(
    h('h1', {}, t('api.title')),
    h('p', { id: 'api-intro' }, t('api.intro', { n: fmtNumber(count), version: doc.openapi }), ' ',
      h('a', { href: '/openapi.json' }, t('api.download'))),
    h('nav', { 'aria-label': t('api.tags') }, h('ul', { class: 'api-tags' },
      [...byTag.keys()].map((tag) => h('li', {}, h('a', { href: `#/api?tag=${encodeURIComponent(tag)}`, onclick: (e) => { e.preventDefault(); document.getElementById(`tag-${tag}`)?.scrollIntoView(); } }, tag))))),
    ...[...byTag.entries()].map(([tag, ops]) => h('section', { id: `tag-${tag}`, 'aria-labelledby': `tag-h-${tag}` },
      h('h2', { id: `tag-h-${tag}` }, tag),
      ops.map(([method, path, op]) => h('details', { class: 'api-op', dataset: { method, path } },
        h('summary', {}, h('code', { class: `method method-${method.toLowerCase()}` }, method), ' ', h('code', {}, path), ' — ', op.summary || ''),
        parameters(doc, op).length
          ? h('table', { class: 'grid' },
            h('caption', {}, t('api.parameters')),
            h('thead', {}, h('tr', {}, [t('api.name'), t('api.in'), t('api.type'), t('api.description')].map((x) => h('th', { scope: 'col' }, x)))),
            h('tbody', {}, parameters(doc, op).map((p) => h('tr', {},
              h('th', { scope: 'row' }, h('code', {}, p.name), p.required ? ' *' : ''), h('td', {}, p.in),
              h('td', {}, p.schema?.enum ? p.schema.enum.join(' | ') : (p.schema?.type || '')), h('td', {}, p.description || '')))))
          : null,
        op.requestBody ? h('p', {}, t('api.body'), ' ', Object.entries(op.requestBody.content).map(([m, c]) => h('code', {}, `${m}: ${ref(c.schema?.$ref)} `))) : null,
        h('p', {}, t('api.answers'), ' ', Object.entries(op.responses || {}).map(([status, r]) => h('code', {}, `${status}${r.content ? ` ${ref(Object.values(r.content)[0].schema?.$ref)}` : ''} `))))))),
  );
}
