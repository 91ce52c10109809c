// hub.js — the one place that fetches live data from the agent, shared by every tab when it
// runs in the SharedWorker (live-worker.js), or inside one page when SharedWorker is missing.
//
// - A "topic" is one URL (plus token): identical subscriptions from any tab share one
//   blocking query (X-Consul-Index + ?index=&wait=) or one poll, and get the same answers.
// - The browser allows 6 connections per host for every tab together, so at most
//   PARKED_MAX blocking queries are parked at once; when more topics want one, the one parked
//   longest is aborted and queued again (it keeps its index, so nothing is missed).
// - Connection state is the outcome of the last request: a network failure turns it
//   "offline" at once, and while offline only a short probe (every PROBE_MS) asks the agent;
//   the first answer turns it "live" again and every topic retries immediately.
// - "Live updates" off (Consul's "disable blocking queries"): topics fetch once, without
//   blocking, and again only on refresh().

const PARKED_MAX = 4;
const ROTATE_AFTER_MS = 1500;
const PROBE_MS = 1000;
const PROBE_TIMEOUT_MS = 2500;
const PLAIN_TIMEOUT_MS = 8000;
const BACKOFF_MS_MAX = 5000;

export class Hub {
  constructor({ wait = '30s', probePath = '/v1/status/leader' } = {}) {
    this.wait = wait;
    this.probePath = probePath;
    this.topics = new Map(); // key -> topic
    this.subs = new Map(); // subscription id -> topic
    this.live = true;
    this.conn = { state: 'live', error: '', since: Date.now() }; // live | offline | degraded
    this.stateListeners = new Set();
    this.parked = new Set(); // topics holding one of the PARKED_MAX slots
    this.queue = []; // {topic, grant} waiting for a slot
    this.onlineWaiters = [];
    this.probing = false;
    this.stats = { requests: 0, blocking: 0, byPath: {}, recent: [] }; // recent: the last requests' timings
  }

  /** Start delivering `spec` ({path, token, allow404, poll}) to `send(msg)` under `id`. */
  subscribe(id, spec, send) {
    const key = JSON.stringify([spec.path, spec.token || '', !!spec.allow404, spec.poll || 0]);
    let topic = this.topics.get(key);
    if (!topic) {
      topic = { key, path: spec.path, token: spec.token || '', allow404: !!spec.allow404, poll: spec.poll || 0,
        listeners: new Map(), last: null, index: 0, ctrl: null, wake: null, failing: null, errors: 0 };
      this.topics.set(key, topic);
      this.run(topic);
    }
    topic.listeners.set(id, send);
    this.subs.set(id, topic);
    if (topic.last) send(topic.last);
  }

  unsubscribe(id) {
    const topic = this.subs.get(id);
    if (!topic) return;
    this.subs.delete(id);
    topic.listeners.delete(id);
    if (topic.listeners.size === 0) {
      this.topics.delete(topic.key);
      topic.ctrl?.abort('gone');
      topic.wake?.();
      this.setFailing(topic, null);
    }
  }

  onState(fn) {
    this.stateListeners.add(fn);
    fn(this.connection());
    return () => this.stateListeners.delete(fn);
  }

  connection() {
    return { ...this.conn, live: this.live };
  }

  setLive(on) {
    if (this.live === !!on) return;
    this.live = !!on;
    this.refresh();
    this.publishState();
  }

  /** Fetch every topic again now (the "refresh" of paused views, and reconnects). */
  refresh() {
    for (const topic of this.topics.values()) {
      topic.ctrl?.abort('restart');
      topic.wake?.();
    }
  }

  // ---- one topic's loop -------------------------------------------------------------------

  async run(topic) {
    while (this.topics.get(topic.key) === topic) {
      const blocking = !topic.poll && topic.index > 0 && this.live && !topic.failing;
      if (blocking) await this.acquire(topic);
      if (this.topics.get(topic.key) !== topic) { this.release(topic); break; }
      const ctrl = new AbortController();
      topic.ctrl = ctrl;
      topic.parkedSince = Date.now();
      const url = blocking ? withIndex(topic.path, topic.index, this.wait) : topic.path;
      const timer = blocking ? null : setTimeout(() => ctrl.abort('timeout'), topic.poll ? Math.min(PLAIN_TIMEOUT_MS, topic.poll + 1500) : PLAIN_TIMEOUT_MS);
      const started = Date.now();
      let res = null;
      let failure = null;
      try {
        res = await this.fetchText(url, topic.token, ctrl.signal, blocking);
      } catch (err) {
        failure = err;
      }
      clearTimeout(timer);
      this.release(topic);
      topic.ctrl = null;
      if (this.topics.get(topic.key) !== topic) break;
      if (failure) {
        const reason = ctrl.signal.reason;
        if (reason === 'rotate' || reason === 'restart') continue;
        this.markOffline(reason === 'timeout' ? 'the agent did not answer in time' : 'the agent cannot be reached');
        this.emit(topic, { type: 'error', offline: true, status: 0, message: this.conn.error });
        topic.recovering = true;
        // The agent may have restarted with a lower index: a blocking query on the old index
        // would then wait its whole 30 s. Ask afresh (a plain GET) once it answers.
        topic.index = 0;
        await this.whenOnline();
        continue;
      }
      this.markReachable();
      await this.handle(topic, res, started);
    }
  }

  async handle(topic, res, started) {
    if (res.ok || (res.status === 404 && topic.allow404)) {
      const index = res.index;
      const changed = !topic.last || topic.last.type !== 'data' || topic.recovering || topic.failing
        || (index == null ? topic.last.text !== res.text : index !== topic.index || topic.last.status !== res.status);
      // An index that goes backwards (a restarted dev agent, a snapshot restore) restarts from 0.
      topic.index = index == null ? 0 : index;
      topic.recovering = false;
      topic.errors = 0;
      this.setFailing(topic, null);
      if (changed) this.emit(topic, { type: 'data', text: res.text, index, status: res.status, at: Date.now() });
      if (topic.poll) await this.pause(topic, topic.poll);
      else if (!this.live) await this.pause(topic, null);
      else if (index == null) await this.pause(topic, 2000);
      else if (!changed && Date.now() - started < 50) await this.pause(topic, 1000);
      return;
    }
    topic.errors += 1;
    const message = res.text.trim() || `HTTP ${res.status}`;
    this.emit(topic, { type: 'error', status: res.status, message });
    if (res.status >= 500) this.setFailing(topic, message);
    const backoff = res.status === 403 ? 10000 : Math.min(BACKOFF_MS_MAX, 500 * 2 ** topic.errors);
    await this.pause(topic, backoff);
  }

  emit(topic, msg) {
    if (msg.type === 'data' || !topic.last || topic.last.type !== 'data') topic.last = msg;
    for (const send of topic.listeners.values()) send(msg);
  }

  /** Sleep `ms` (forever when null) or until the topic is woken. */
  pause(topic, ms) {
    return new Promise((resolve) => {
      const timer = ms == null ? null : setTimeout(done, ms);
      function done() { clearTimeout(timer); topic.wake = null; resolve(); }
      topic.wake = done;
    });
  }

  async fetchText(url, token, signal, blocking) {
    this.stats.requests += 1;
    if (blocking) this.stats.blocking += 1;
    const path = url.split('?')[0];
    this.stats.byPath[path] = (this.stats.byPath[path] || 0) + 1;
    const started = performance.timeOrigin + performance.now();
    const res = await fetch(url, { signal, cache: 'no-store', headers: token ? { 'X-Consul-Token': token } : {} });
    const text = await res.text();
    this.stats.recent.push({ url, started: Math.round(started), ms: Math.round(performance.timeOrigin + performance.now() - started) });
    if (this.stats.recent.length > 20) this.stats.recent.shift();
    const header = res.headers.get('X-Consul-Index');
    const index = header != null && /^\d+$/.test(header) ? Number(header) : null;
    return { ok: res.ok, status: res.status, index, text };
  }

  // ---- the connection budget ------------------------------------------------------------

  acquire(topic) {
    if (this.parked.size < PARKED_MAX) {
      this.parked.add(topic);
      return Promise.resolve();
    }
    return new Promise((grant) => {
      this.queue.push({ topic, grant });
      this.rotate();
    });
  }

  release(topic) {
    if (!this.parked.delete(topic)) return;
    while (this.queue.length && this.parked.size < PARKED_MAX) {
      const next = this.queue.shift();
      this.parked.add(next.topic);
      next.grant();
    }
  }

  /** Someone waits for a slot: abort the query parked longest (if long enough) to free one. */
  rotate() {
    if (!this.queue.length) return;
    let oldest = null;
    for (const t of this.parked) if (t.ctrl && (!oldest || t.parkedSince < oldest.parkedSince)) oldest = t;
    if (oldest && Date.now() - oldest.parkedSince >= ROTATE_AFTER_MS) oldest.ctrl.abort('rotate');
    else if (!this.rotateTimer) {
      this.rotateTimer = setTimeout(() => { this.rotateTimer = null; this.rotate(); }, ROTATE_AFTER_MS / 3);
    }
  }

  // ---- connection state ---------------------------------------------------------------------

  setFailing(topic, message) {
    const before = topic.failing;
    topic.failing = message;
    if (before !== message) this.recomputeDegraded();
  }

  recomputeDegraded() {
    if (this.conn.state === 'offline') return;
    const failing = [...this.topics.values()].find((t) => t.failing);
    const state = failing ? 'degraded' : 'live';
    const error = failing ? failing.failing : '';
    if (state !== this.conn.state || error !== this.conn.error) {
      this.conn = { state, error, since: Date.now() };
      this.publishState();
    }
  }

  markOffline(error) {
    if (this.conn.state !== 'offline') {
      this.conn = { state: 'offline', error, since: Date.now() };
      this.publishState();
    }
    this.probe();
  }

  markReachable() {
    if (this.conn.state !== 'offline') return;
    this.conn = { state: 'live', error: '', since: Date.now() };
    this.recomputeDegraded();
    this.publishState();
    const waiters = this.onlineWaiters.splice(0);
    for (const resolve of waiters) resolve();
    // Parked queries may sit on connections to the agent that went away: start them afresh.
    for (const t of this.parked) t.ctrl?.abort('restart');
  }

  whenOnline() {
    if (this.conn.state !== 'offline') return Promise.resolve();
    return new Promise((resolve) => this.onlineWaiters.push(resolve));
  }

  async probe() {
    if (this.probing) return;
    this.probing = true;
    while (this.conn.state === 'offline') {
      const ctrl = new AbortController();
      const timer = setTimeout(() => ctrl.abort('timeout'), PROBE_TIMEOUT_MS);
      try {
        await this.fetchText(this.probePath, '', ctrl.signal, false);
        clearTimeout(timer);
        this.markReachable();
        break;
      } catch {
        clearTimeout(timer);
      }
      await new Promise((r) => setTimeout(r, PROBE_MS));
    }
    this.probing = false;
  }

  publishState() {
    const state = this.connection();
    for (const fn of this.stateListeners) fn(state);
  }
}

function withIndex(path, index, wait) {
  return `${path}${path.includes('?') ? '&' : '?'}index=${index}&wait=${wait}`;
}
