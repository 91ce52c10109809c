// dom.js — small DOM helpers for the cairn dashboard: an element builder that only ever
// creates text nodes (never innerHTML), health badges (maintenance shown as maintenance),
// status arithmetic, key/value lists, inline confirmations, error notices, value codecs.

/**
 * Build an element. `attrs` keys: `class`, `dataset` (object), `on<event>` (listener),
 * `value`/`checked`/`disabled`/`readOnly` (properties), anything else becomes an attribute.
 * Children may be nodes, strings or numbers (turned into text nodes), arrays, or null.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, val] of Object.entries(attrs || {})) {
    if (val == null || val === false) continue;
    if (key === 'class') el.className = val;
    else if (key === 'dataset') Object.assign(el.dataset, val);
    else if (key.startsWith('on') && typeof val === 'function') el.addEventListener(key.slice(2), val);
    else if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'readOnly') el[key] = val;
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

// ---- health -------------------------------------------------------------------------------

const STATUSES = ['passing', 'warning', 'critical'];
const RANK = { passing: 0, warning: 1, critical: 2, maintenance: 3 };

/** Consul's maintenance checks: `_node_maintenance` and `_service_maintenance:<id>`. */
export const isMaintenance = (check) => /^_(node|service)_maintenance/.test(check?.CheckID || '');

/** The status a check is shown with: its own, or `maintenance`. */
export const checkStatus = (check) => (isMaintenance(check) ? 'maintenance' : (STATUSES.includes(check?.Status) ? check.Status : 'critical'));

/** The worst of a list of statuses (maintenance beats critical); `passing` for none. */
export function worst(statuses) {
  let out = 'passing';
  for (const s of statuses) {
    const known = RANK[s] == null ? 'critical' : s;
    if (RANK[known] > RANK[out]) out = known;
  }
  return out;
}

/** The worst status of a list of checks. */
export const worstCheck = (checks) => worst((checks || []).map(checkStatus));

/** Count checks by status: {passing, warning, critical}. */
export function countStatuses(checks) {
  const counts = { passing: 0, warning: 0, critical: 0 };
  for (const c of checks || []) counts[STATUSES.includes(c.Status) ? c.Status : 'critical'] += 1;
  return counts;
}

/** A colored badge for a health status. `label` defaults to the status itself. */
export function badge(status, label, testid = 'health-badge') {
  const known = RANK[status] != null ? status : 'unknown';
  return h('span', { class: `badge badge-${known}`, 'data-testid': testid, 'data-status': known }, label ?? status);
}

/** Small per-status counters ("2 passing", "1 critical"), omitting zeros. */
export function statusCounts(counts) {
  return h('span', { class: 'counts' },
    STATUSES.filter((s) => counts[s] > 0).map((s) =>
      h('span', { class: `count count-${s}`, 'data-count': s }, `${counts[s]} ${s}`)));
}

// ---- small building blocks -------------------------------------------------------------

/** A tag chip list. */
export function tagList(tags) {
  return h('span', { class: 'tags' }, (tags || []).map((t) => h('span', { class: 'tag' }, t)));
}

/** A definition list of an object's entries (meta, tagged addresses), or a dash when empty. */
export function kvList(obj, testid, render = (v) => (typeof v === 'object' ? JSON.stringify(v) : String(v))) {
  const entries = Object.entries(obj || {}).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return h('span', { class: 'muted', 'data-testid': testid }, 'none');
  return h('dl', { class: 'meta', 'data-testid': testid },
    entries.map(([k, v]) => [h('dt', null, k), h('dd', { 'data-key': k }, render(v))]));
}

/** A status line for "loading", "empty" and error states inside a view. */
export function notice(text, kind = 'info', testid = 'notice') {
  return h('div', { class: `notice notice-${kind}`, 'data-testid': testid, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/**
 * The notice for a failed read: "permission denied" (403) in words an operator can act on,
 * "unavailable" for an agent too old for the endpoint (404), else the agent's message.
 */
export function errorNotice(what, err) {
  if (err?.status === 403) {
    return notice(`Permission denied: your ACL token may not read ${what}. Log in with a token that can.`, 'error', 'permission-denied');
  }
  if (err?.offline) return notice(`Showing the last ${what} loaded: the agent cannot be reached.`, 'warning', 'stale-notice');
  return notice(`Could not load ${what}: ${err?.message || err}`, 'error', 'load-error');
}

/**
 * A button that asks inline ("Really delete? Yes / Cancel") before running `action`. Escape
 * cancels the question; focus goes to the confirming button and back.
 */
export function confirmButton(label, testid, action, onError, question = 'Really delete? ') {
  const box = h('span', { class: 'confirm' });
  const onKey = (e) => { if (e.key === 'Escape') { e.preventDefault(); reset(true); } };
  const ask = () => {
    const yes = h('button', { type: 'button', class: 'danger', 'data-testid': `${testid}-confirm`, onclick: async () => {
      document.removeEventListener('keydown', onKey);
      try { await action(); } catch (err) { onError(err); reset(true); }
    } }, `Yes, ${label.toLowerCase()}`);
    replace(box, h('span', { class: 'muted' }, question), yes, ' ',
      h('button', { type: 'button', 'data-testid': `${testid}-cancel`, onclick: () => reset(true) }, 'Cancel'));
    document.addEventListener('keydown', onKey);
    yes.focus();
  };
  const reset = (focus) => {
    document.removeEventListener('keydown', onKey);
    const button = h('button', { type: 'button', class: 'danger', 'data-testid': testid, onclick: ask }, label);
    replace(box, button);
    if (focus) button.focus();
  };
  reset(false);
  return box;
}

// ---- formats ------------------------------------------------------------------------------

/** "3.2 s ago", "4 min ago" from milliseconds. */
export function ago(ms) {
  if (ms == null || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3600000) return `${Math.round(ms / 60000)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

/** Go duration strings ("1.5s", "250ms", "1m30s") to milliseconds; numbers are nanoseconds. */
export function durationMs(value) {
  if (typeof value === 'number') return value / 1e6;
  if (!value) return null;
  let total = 0;
  const re = /([\d.]+)(ns|us|µs|ms|s|m|h)/g;
  let m;
  let any = false;
  const unit = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };
  while ((m = re.exec(value))) { total += Number(m[1]) * unit[m[2]]; any = true; }
  return any ? total : null;
}

/** Decode a KV `Value` (base64 or null): {text, binary, size, bytes}. */
export function decodeValue(b64) {
  if (b64 == null) return { text: '', binary: false, size: 0, bytes: new Uint8Array(0) };
  const raw = atob(b64);
  const bytes = Uint8Array.from(raw, (c) => c.charCodeAt(0));
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), binary: false, size: bytes.length, bytes };
  } catch {
    return { text: b64, binary: true, size: bytes.length, bytes };
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
