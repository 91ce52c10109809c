// dom.js — small DOM helpers for the cairn dashboard: an element builder that only ever
// creates text nodes (never innerHTML), health badges, status arithmetic and value codecs.

/**
 * Build an element. `attrs` keys: `class`, `dataset` (object), `on<event>` (listener),
 * `value`/`checked`/`disabled` (properties), anything else becomes an attribute.
 * Children may be nodes, strings or numbers (turned into text nodes), arrays, or null.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, val] of Object.entries(attrs || {})) {
    if (val == null || val === false) continue;
    if (key === 'class') el.className = val;
    else if (key === 'dataset') Object.assign(el.dataset, val);
    else if (key.startsWith('on') && typeof val === 'function') el.addEventListener(key.slice(2), val);
    else if (key === 'value' || key === 'checked' || key === 'disabled') el[key] = val;
    else el.setAttribute(key, val === true ? '' : String(val));
  }
  appendAll(el, children);
  return el;
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace every child of `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  appendAll(el, children);
  return el;
}

const STATUSES = ['passing', 'warning', 'critical'];
const RANK = { passing: 0, warning: 1, critical: 2 };

/** The worst of a list of check statuses; `passing` for an empty list. */
export function worst(statuses) {
  let out = 'passing';
  for (const s of statuses) if ((RANK[s] ?? 2) > RANK[out]) out = STATUSES.includes(s) ? s : 'critical';
  return out;
}

/** Count checks by status: {passing, warning, critical}. */
export function countStatuses(checks) {
  const counts = { passing: 0, warning: 0, critical: 0 };
  for (const c of checks || []) counts[STATUSES.includes(c.Status) ? c.Status : 'critical'] += 1;
  return counts;
}

/** A colored badge for a health status. `label` defaults to the status itself. */
export function badge(status, label, testid = 'health-badge') {
  const known = STATUSES.includes(status) ? status : 'unknown';
  return h('span', { class: `badge badge-${known}`, 'data-testid': testid, 'data-status': known }, label ?? status);
}

/** Small per-status counters ("2 passing", "1 critical"), omitting zeros. */
export function statusCounts(counts) {
  return h('span', { class: 'counts' },
    STATUSES.filter((s) => counts[s] > 0).map((s) =>
      h('span', { class: `count count-${s}`, 'data-count': s }, `${counts[s]} ${s}`)));
}

/** A tag chip list. */
export function tagList(tags) {
  return h('span', { class: 'tags' }, (tags || []).map((t) => h('span', { class: 'tag' }, t)));
}

/** A status line for "loading", "empty" and error states inside a view. */
export function notice(text, kind = 'info', testid = 'notice') {
  return h('div', { class: `notice notice-${kind}`, 'data-testid': testid, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** Decode a KV `Value` (base64 or null). Returns {text, binary, size}. */
export function decodeValue(b64) {
  if (b64 == null) return { text: '', binary: false, size: 0 };
  const raw = atob(b64);
  const bytes = Uint8Array.from(raw, (c) => c.charCodeAt(0));
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), binary: false, size: bytes.length };
  } catch {
    return { text: b64, binary: true, size: bytes.length };
  }
}

/** Percent-encode each `/`-separated segment of a name, keeping the slashes. */
export function encodePath(path) {
  return path.split('/').map(encodeURIComponent).join('/');
}

/** Inverse of encodePath; tolerant of malformed escapes. */
export function decodePath(path) {
  return path.split('/').map((seg) => {
    try { return decodeURIComponent(seg); } catch { return seg; }
  }).join('/');
}
