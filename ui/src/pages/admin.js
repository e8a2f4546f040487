// Administration: subscriptions (status, last failure; pause and resume), registrations (and
// whether their source answers, as the hub last saw it), tenants, hosted @contexts.
import { t, fmtNumber, fmtDate } from '../i18n.js';
import { get, send, ld } from '../api.js';
import { h, clear } from '../util.js';

function table(id, caption, heads, rows) {
  if (!rows.length) return h('p', { id }, t('admin.none'));
  return h('table', { class: 'grid', id },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, heads.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c, i) => (i ? h('td', {}, c) : h('th', { scope: 'row' }, c)))))));
}

const when = (v) => (v ? fmtDate(v) : '—');

export async function adminPage() {
  const main = document.getElementById('main');
  main.append(h('h1', {}, t('admin.title')));
  const subs = h('section', { 'aria-labelledby': 'subs-h' }, h('h2', { id: 'subs-h' }, t('admin.subscriptions')));
  const regs = h('section', { 'aria-labelledby': 'regs-h' }, h('h2', { id: 'regs-h' }, t('admin.registrations')));
  const tenants = h('section', { 'aria-labelledby': 'tenants-h' }, h('h2', { id: 'tenants-h' }, t('admin.tenants')));
  const ctxs = h('section', { 'aria-labelledby': 'ctx-h' }, h('h2', { id: 'ctx-h' }, t('admin.contexts')));
  main.append(subs, regs, tenants, ctxs);

  async function loadSubs() {
    const { body } = await get(ld('/subscriptions'), { limit: 100 });
    const list = body || [];
    clear(subs).append(h('h2', { id: 'subs-h' }, t('admin.subscriptions')), table('subs-table', t('admin.subscriptionsCaption', { n: fmtNumber(list.length) }),
      [t('admin.id'), t('admin.status'), t('admin.endpoint'), t('admin.sent'), t('admin.lastSuccess'), t('admin.lastFailure'), t('admin.action')],
      list.map((s) => {
        const n = s.notification || {};
        const paused = s.isActive === false;
        const button = h('button', { type: 'button', onclick: async () => { await send('PATCH', ld(`/subscriptions/${encodeURIComponent(s.id)}`), { isActive: paused }); loadSubs(); } }, t(paused ? 'admin.resume' : 'admin.pause'));
        return [s.subscriptionName || s.id, [t('status.' + (s.status || 'active')), n.status === 'failed' ? ` · ${t('admin.deliveryFailed')}` : ''], n.endpoint?.uri || '', fmtNumber(n.timesSent ?? 0), when(n.lastSuccess),
          n.lastFailure ? [when(n.lastFailure), n.lastFailureReason ? ` (${n.lastFailureReason})` : ''] : '—', button];
      })));
  }

  const { body: regList } = await get(ld('/csourceRegistrations'), { limit: 100 }).catch(() => ({ body: [] }));
  regs.append(table('regs-table', t('admin.registrationsCaption', { n: fmtNumber((regList || []).length) }),
    [t('admin.id'), t('admin.endpoint'), t('admin.mode'), t('admin.answers'), t('admin.lastFailure')],
    (regList || []).map((r) => [r.registrationName || r.id, r.endpoint, r.mode || 'inclusive',
      r.status === 'failed' ? t('admin.answersNo') : r.lastSuccess || r.status === 'ok' ? t('admin.answersYes') : t('admin.answersUnknown'), when(r.lastFailure)])));

  const { body: tenantList } = await get('/cityhub/v1/tenants').catch(() => ({ body: [] }));
  tenants.append(table('tenants-table', t('admin.tenantsCaption'), [t('admin.tenant')],
    (tenantList || []).map((name) => [h('a', { href: `?tenant=${encodeURIComponent(name)}#/` }, name || t('nav.tenantDefault'))])));

  const { body: ctxList } = await get(ld('/jsonldContexts'), { details: 'true' }).catch(() => ({ body: [] }));
  ctxs.append(table('contexts-table', t('admin.contextsCaption'), [t('admin.url'), t('admin.kind'), t('admin.created'), t('admin.hits')],
    (ctxList || []).map((c) => [c.url || c.localId, c.kind, when(c.createdAt), fmtNumber(c.numberOfHits ?? 0)])));
  await loadSubs();

  // A new subscription: entities of a type, the attributes watched, an HTTP endpoint.
  const type = h('input', { id: 'sub-type', required: true, size: 18, placeholder: 'AirQualityObserved' });
  const attrs = h('input', { id: 'sub-attrs', size: 16, placeholder: 'pm25' });
  const q = h('input', { id: 'sub-q', size: 14, placeholder: 'pm25>35' });
  const uri = h('input', { id: 'sub-uri', required: true, size: 30, type: 'url', placeholder: 'http://127.0.0.1:8080/notify' });
  const result = h('p', { id: 'sub-result', role: 'status' });
  const form = h('form', { class: 'toolbar', id: 'sub-form', onsubmit: async (e) => {
    e.preventDefault();
    const body = { type: 'Subscription', entities: [{ type: type.value.trim() }], notification: { endpoint: { uri: uri.value.trim(), accept: 'application/json' } } };
    const watched = attrs.value.split(',').map((a) => a.trim()).filter(Boolean);
    if (watched.length) body.watchedAttributes = watched;
    if (q.value.trim()) body.q = q.value.trim();
    try {
      await send('POST', ld('/subscriptions'), body);
      result.textContent = t('admin.subscriptionCreated');
      loadSubs();
    } catch (err) {
      result.textContent = t('error.load', { detail: err.message });
    }
  } },
  h('label', { for: 'sub-type' }, t('admin.type')), type,
  h('label', { for: 'sub-attrs' }, t('admin.watched')), attrs,
  h('label', { for: 'sub-q' }, t('map.q')), q,
  h('label', { for: 'sub-uri' }, t('admin.endpoint')), uri,
  h('button', { type: 'submit' }, t('admin.subscribe')));
  subs.after(h('section', { 'aria-labelledby': 'newsub-h' }, h('h2', { id: 'newsub-h' }, t('admin.newSubscription')), form, result));
}
