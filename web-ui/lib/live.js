// live.js — what views use for live data: watch(path, onData) over the shared Hub. The hub
// runs in a SharedWorker (live-worker.js) so every tab of this agent shares one connection
// budget; without SharedWorker (or when it fails to start) it runs in this page. Also the
// connection state the header shows, and the "live updates" setting (localStorage
// `cairn:live`, shared by the tabs).

import { getToken, notifyAuth, parseBody } from './api.js';

const LIVE_KEY = 'cairn:live';
const subs = new Map(); // id -> {spec, onMsg}
const stateListeners = new Set();
let nextId = 0;
let backend = null; // {sub, unsub, live, refresh, stats}
let lastState = { state: 'live', error: '', live: true };

export function liveEnabled() {
  try { return localStorage.getItem(LIVE_KEY) !== 'off'; } catch { return true; }
}

export function setLiveEnabled(on) {
  try { localStorage.setItem(LIVE_KEY, on ? 'on' : 'off'); } catch { /* this tab only */ }
  backend.live(on);
}

/** Fetch every watched path again now (what "refresh" does while live updates are off). */
export const refresh = () => backend.refresh();

/** The hub's request counters, for the benchmark and tests. */
export const stats = () => backend.stats();

export const hubMode = () => backend.mode;

/** Subscribe to connection changes: {state: live|offline|degraded, error, since, live}. */
export function onConnection(fn) {
  stateListeners.add(fn);
  fn(lastState);
  return () => stateListeners.delete(fn);
}

function publish(state) {
  lastState = state;
  for (const fn of stateListeners) fn(state);
}

function deliver(id, msg) {
  subs.get(id)?.onMsg(msg);
}

/**
 * Watch `path` until `signal` aborts: `onData(data, index, status)` on the first answer and on
 * every change (blocking queries, or polling every `poll` ms); `onError(err)` with
 * {status, message, offline} when a request fails. The view keeps its last data on errors.
 */
export function watch(path, onData, { signal, allow404 = false, poll = 0, onError } = {}) {
  if (signal?.aborted) return;
  const id = String(++nextId);
  const spec = { path, token: getToken(), allow404, poll };
  const onMsg = (msg) => {
    if (signal?.aborted) return;
    if (msg.type === 'data') {
      performance.mark(`cairn:data ${path}`); // for the benchmark: when each answer reached the page
      onData(msg.status === 404 ? null : parseBody(msg.text), msg.index, msg.status);
      return;
    }
    if (msg.status === 403) notifyAuth(msg.message);
    onError?.({ status: msg.status, message: msg.message, offline: !!msg.offline });
  };
  subs.set(id, { spec, onMsg });
  backend.sub(id, spec);
  signal?.addEventListener('abort', () => {
    subs.delete(id);
    backend.unsub(id);
  });
}

// ---- backends ---------------------------------------------------------------------------

async function pageBackend() {
  const { Hub } = await import('./hub.js');
  const hub = new Hub();
  hub.setLive(liveEnabled());
  hub.onState(publish);
  return {
    mode: 'page',
    sub: (id, spec) => hub.subscribe(id, spec, (m) => deliver(id, m)),
    unsub: (id) => hub.unsubscribe(id),
    live: (on) => hub.setLive(on),
    refresh: () => hub.refresh(),
    stats: async () => ({ ...hub.stats, topics: hub.topics.size, parked: hub.parked.size }),
  };
}

function workerBackend(onFail) {
  const worker = new SharedWorker('/ui/live-worker.js', { type: 'module', name: 'cairn-live' });
  const port = worker.port;
  const tabId = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  const pending = new Map();
  let rid = 0;
  worker.addEventListener('error', onFail);
  port.onmessage = (e) => {
    const m = e.data;
    if (m.op === 'msg') deliver(m.id, m.msg);
    else if (m.op === 'state') publish(m.state);
    else if (m.op === 'stats') { pending.get(m.rid)?.(m.stats); pending.delete(m.rid); }
  };
  port.start();
  navigator.locks?.request(`cairn-tab-${tabId}`, () => new Promise(() => {}));
  port.postMessage({ op: 'hello', tabId, live: liveEnabled() });
  window.addEventListener('pagehide', () => port.postMessage({ op: 'bye' }));
  return {
    mode: 'shared-worker',
    sub: (id, spec) => port.postMessage({ op: 'sub', id, spec }),
    unsub: (id) => port.postMessage({ op: 'unsub', id }),
    live: (on) => port.postMessage({ op: 'live', on }),
    refresh: () => port.postMessage({ op: 'refresh' }),
    stats: () => new Promise((resolve) => { pending.set(++rid, resolve); port.postMessage({ op: 'stats', rid }); }),
  };
}

/** Start the backend: the SharedWorker, or this page when it is missing or fails. */
export async function startLive() {
  const forcePage = /[?&]hub=page\b/.test(location.search);
  if (typeof SharedWorker === 'function' && !forcePage) {
    try {
      backend = workerBackend(async () => {
        // The worker failed to load: move every subscription into this page.
        backend = await pageBackend();
        for (const [id, s] of subs) backend.sub(id, s.spec);
      });
    } catch {
      backend = null;
    }
  }
  if (!backend) backend = await pageBackend();
  // Another tab flipped "live updates": follow it.
  window.addEventListener('storage', (e) => { if (e.key === LIVE_KEY) backend.live(liveEnabled()); });
}
