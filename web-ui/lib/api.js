// api.js — the dashboard's plain requests to the Consul-compatible HTTP API (same origin):
// one-off reads and writes, the ACL token (kept in localStorage as `cairn:token`, as Consul's
// UI keeps `consul:token`, sent as X-Consul-Token), and the "this agent wants a (better)
// token" signal that a 403 raises. Live data (blocking queries) goes through live.js instead.

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
  try { return localStorage.getItem(TOKEN_KEY) || memoryToken; } catch { return memoryToken; }
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

/** Tell the auth listeners that the agent answered 403 with `message`. */
export function notifyAuth(message) {
  for (const fn of authListeners) fn(message);
}

/** Whether an error is the agent's "permission denied" (a token that lacks a right). */
export const isDenied = (err) => err?.status === 403;

// ---- requests -----------------------------------------------------------------------------

/**
 * One request. Returns {status, index, data}; `index` is X-Consul-Index as a number (or null).
 * A 404 resolves with data null when `allow404` is set, otherwise every non-2xx throws ApiError.
 * `token` replaces the stored token for this request (the login form checks a candidate).
 * `body` may be a string or bytes (a Uint8Array is sent as it is).
 */
export async function request(method, path, { body, signal, allow404 = false, token } = {}) {
  const secret = token ?? getToken();
  const headers = { ...(secret ? { 'X-Consul-Token': secret } : {}) };
  if (body != null) headers['Content-Type'] = body instanceof Uint8Array ? 'application/octet-stream' : 'text/plain; charset=utf-8';
  const res = await fetch(path, { method, body, signal, cache: 'no-store', headers });
  const header = res.headers.get('X-Consul-Index');
  const index = header != null && /^\d+$/.test(header) ? Number(header) : null;
  if (res.status === 404 && allow404) return { status: 404, index, data: null };
  const text = await res.text();
  // Only 403 asks for a token: a 401 ("ACL support disabled") is not a login case.
  if (res.status === 403 && token == null) notifyAuth(text.trim());
  if (!res.ok) throw new ApiError(res.status, `${method} ${path}: ${res.status} ${text.trim()}`.trim(), text.trim());
  return { status: res.status, index, data: parseBody(text) };
}

/** JSON when it parses, the text otherwise, null for an empty body. */
export function parseBody(text) {
  if (text == null || text === '') return null;
  try { return JSON.parse(text); } catch { return text; }
}

export const getJSON = async (path, opts) => (await request('GET', path, opts)).data;

/** Append query parameters to a path that may already carry some (`?keys&separator=/`). */
export function withQuery(path, params) {
  const qs = Object.entries(params).filter(([, v]) => v != null)
    .map(([k, v]) => (v === true ? encodeURIComponent(k) : `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)).join('&');
  if (!qs) return path;
  return path + (path.includes('?') ? '&' : '?') + qs;
}
