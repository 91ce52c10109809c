// api.js — the dashboard's client for the Consul-compatible HTTP API (same origin):
// plain requests, blocking-query watches (X-Consul-Index + ?index=&wait=) with back-off,
// and a shared "connection" state that the header shows. It also holds the ACL token: kept in
// localStorage (`cairn:token`, as Consul's UI keeps `consul:token`), sent as X-Consul-Token on
// every request, and a 403 answer tells the `onAuth` listeners that a (better) token is needed.

export class ApiError extends Error {
  constructor(status, message, body = '') {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.body = body; // the agent's own words, e.g. "ACL not found"
  }
}

// ---- ACL token ----------------------------------------------------------------------------

const TOKEN_KEY = 'cairn:token';
const authListeners = new Set();
let memoryToken = ''; // the token when localStorage cannot hold it

/** The stored ACL token, or '' (storage may be unavailable, e.g. disabled cookies). */
export function getToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

/** Store `token` (an empty one forgets it). */
export function setToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch { /* not persisted: the token lasts as long as the page */ }
  memoryToken = token || '';
}

/** Subscribe to "this agent refused the token" (403); the callback gets the agent's message. */
export function onAuth(fn) {
  authListeners.add(fn);
  return () => authListeners.delete(fn);
}

function authHeaders(override) {
  const token = override ?? (getToken() || memoryToken);
  return token ? { 'X-Consul-Token': token } : {};
}

/**
 * One request. Returns {status, index, data}; `index` is X-Consul-Index as a number (or null).
 * A 404 resolves with data null when `allow404` is set, otherwise every non-2xx throws ApiError.
 * `token` replaces the stored token for this request (the login form checks a candidate).
 */
export async function request(method, path, { body, signal, allow404 = false, token } = {}) {
  const headers = { ...authHeaders(token), ...(body == null ? {} : { 'Content-Type': 'text/plain; charset=utf-8' }) };
  const res = await fetch(path, { method, body, signal, cache: 'no-store', headers });
  const header = res.headers.get('X-Consul-Index');
  const index = header != null && /^\d+$/.test(header) ? Number(header) : null;
  if (res.status === 404 && allow404) return { status: 404, index, data: null };
  const text = await res.text();
  // Only 403 asks for a token: a 401 ("ACL support disabled") is not a login case.
  if (res.status === 403 && token == null) for (const fn of authListeners) fn(text.trim());
  if (!res.ok) throw new ApiError(res.status, `${method} ${path}: ${res.status} ${text.trim()}`.trim(), text.trim());
  let data = null;
  if (text !== '') {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  return { status: res.status, index, data };
}

export const getJSON = async (path, opts) => (await request('GET', path, opts)).data;

/** Append query parameters to a path that may already carry some (`?keys&separator=/`). */
export function withQuery(path, params) {
  const qs = Object.entries(params).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  if (!qs) return path;
  return path + (path.includes('?') ? '&' : '?') + qs;
}

/** Resolves after `ms`, or early (without error) when `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() { clearTimeout(timer); signal?.removeEventListener('abort', done); resolve(); }
    signal?.addEventListener('abort', done);
  });
}

// ---- connection state shared by every watch and poll ----------------------------------

const failing = new Map(); // watcher key -> {error, retryAt}
const listeners = new Set();

/** Subscribe to connection changes; the callback gets {ok, error, retryAt}. */
export function onConnection(fn) {
  listeners.add(fn);
  fn(connectionState());
  return () => listeners.delete(fn);
}

function connectionState() {
  if (failing.size === 0) return { ok: true };
  const [first] = failing.values();
  return { ok: false, error: first.error, retryAt: first.retryAt };
}

export function reportError(key, error, delay) {
  failing.set(key, { error: String(error?.message || error), retryAt: Date.now() + delay });
  for (const fn of listeners) fn(connectionState());
}

export function reportOk(key) {
  if (!failing.delete(key)) return;
  for (const fn of listeners) fn(connectionState());
}

export const BACKOFF_MIN = 1000;
export const BACKOFF_MAX = 10000;
let watchIds = 0;

/**
 * Watch `path` with Consul blocking queries until `signal` aborts. The first request is a
 * plain GET; each later one carries `index=<last X-Consul-Index>&wait=30s`, so the server
 * holds it until something changes. `onData(data, index)` runs on the first answer and
 * whenever the index moves. Errors back off 1 s, 2 s, 4 s ... up to 10 s; `onError(err)` is
 * told, and the view keeps showing the last data it had.
 */
export function watch(path, onData, { signal, allow404 = false, wait = '30s', onError } = {}) {
  const key = `watch-${++watchIds}`;
  (async () => {
    let index = 0;
    let backoff = BACKOFF_MIN;
    let first = true;
    while (!signal?.aborted) {
      const started = Date.now();
      try {
        const url = index > 0 ? withQuery(path, { index, wait }) : path;
        const res = await request('GET', url, { signal, allow404 });
        if (signal?.aborted) break;
        reportOk(key);
        backoff = BACKOFF_MIN;
        const next = res.index ?? 0;
        const changed = first || next !== index || res.index == null;
        first = false;
        // An index that goes backwards (snapshot restore, new leader) restarts from zero, as
        // Consul's docs advise; a missing index means the endpoint does not block.
        index = next < index ? 0 : next;
        if (changed) onData(res.data, next);
        // Never spin: a reply that came back at once without blocking waits a moment.
        const quick = Date.now() - started < 50;
        if (res.index == null) await sleep(2000, signal);
        else if (quick && !changed) await sleep(1000, signal);
      } catch (err) {
        if (signal?.aborted || err?.name === 'AbortError') break;
        reportError(key, err, backoff);
        onError?.(err);
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, BACKOFF_MAX);
      }
    }
    reportOk(key);
  })();
}

/**
 * Poll a non-blocking endpoint every `interval` ms until `signal` aborts (agent/self has no
 * index to block on). Errors back off like watch().
 */
export function poll(fn, { signal, interval = 2000 } = {}) {
  const key = `poll-${++watchIds}`;
  (async () => {
    let backoff = BACKOFF_MIN;
    while (!signal?.aborted) {
      try {
        await fn(signal);
        reportOk(key);
        backoff = BACKOFF_MIN;
        await sleep(interval, signal);
      } catch (err) {
        if (signal?.aborted || err?.name === 'AbortError') break;
        reportError(key, err, backoff);
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, BACKOFF_MAX);
      }
    }
    reportOk(key);
  })();
}

/**
 * Run `fn` after the current burst of calls settles, never two at once: calls that arrive
 * while one runs cause exactly one more run afterwards. Used to coalesce refreshes that
 * several watches trigger together.
 */
export function coalesce(fn, delay = 30) {
  let timer = null;
  let running = false;
  let again = false;
  const run = async () => {
    timer = null;
    if (running) { again = true; return; }
    running = true;
    try { await fn(); } finally {
      running = false;
      if (again) { again = false; schedule(); }
    }
  };
  const schedule = () => { if (!timer) timer = setTimeout(run, delay); };
  return schedule;
}

/** Map `items` through async `fn` with at most `limit` in flight (keeps browser sockets free). */
export async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
