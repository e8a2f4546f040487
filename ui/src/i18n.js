// Message catalogues (public/i18n/<lang>.json): every string the UI shows comes from them.
// The language: ?lang= (remembered in localStorage), else the remembered one, else the
// browser's languages (what it sends as Accept-Language), else English.

export const LANGUAGES = ['en', 'ko', 'vi', 'zh-Hans'];
const KEY = 'cityhub.lang';
let lang = 'en';
let messages = {};
let fallback = {};

export function pickLanguage(search, stored, preferred) {
  const asked = new URLSearchParams(search).get('lang');
  const fit = (tag) => {
    if (!tag) return null;
    const t = tag.toLowerCase();
    if (t.startsWith('zh')) return 'zh-Hans';
    return LANGUAGES.find((l) => t === l.toLowerCase() || t.startsWith(l.toLowerCase() + '-')) || null;
  };
  return fit(asked) || fit(stored) || (preferred || []).map(fit).find(Boolean) || 'en';
}

async function catalogue(l) {
  const res = await fetch(`/ui/i18n/${l}.json`);
  if (!res.ok) throw new Error(`no catalogue for ${l}`);
  return res.json();
}

export async function initI18n() {
  const asked = new URLSearchParams(location.search).get('lang');
  lang = pickLanguage(location.search, localStorage.getItem(KEY), navigator.languages);
  if (asked) localStorage.setItem(KEY, lang);
  [fallback, messages] = await Promise.all([catalogue('en'), lang === 'en' ? null : catalogue(lang)]);
  messages = messages || fallback;
  document.documentElement.lang = lang;
}

export function setLanguage(l) {
  localStorage.setItem(KEY, l);
  const url = new URL(location.href);
  url.searchParams.set('lang', l);
  location.replace(url.toString());
}

export function currentLanguage() {
  return lang;
}

/** The message `key`, with {name} placeholders filled from `params`. */
export function t(key, params = {}) {
  let text = messages[key] ?? fallback[key] ?? key;
  for (const [k, v] of Object.entries(params)) text = text.replaceAll(`{${k}}`, String(v));
  return text;
}

export function fmtNumber(n, opts) {
  return typeof n === 'number' ? new Intl.NumberFormat(lang, opts).format(n) : String(n ?? '');
}

export function fmtDate(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso ?? '');
  return new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeStyle: 'medium' }).format(d);
}
