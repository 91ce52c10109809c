// app.js — entry point of the cairn web dashboard (served at /ui/): the header with the
// agent's node, datacenter and live Raft state, the tabs, and the hash router that mounts
// one view at a time (each view's blocking queries stop when it is left).

import { h, replace, decodePath } from './lib/dom.js';
import { getJSON, poll, onConnection } from './lib/api.js';
import { mountServiceList, mountServiceDetail } from './views/services.js';
import { mountNodeList, mountNodeDetail } from './views/nodes.js';
import { mountKv } from './views/kv.js';

const $ = (id) => document.getElementById(id);

// ---- routing ----------------------------------------------------------------------------

const ROUTES = [
  { re: /^\/services\/?$/, tab: 'services', mount: mountServiceList },
  { re: /^\/services\/(.+)$/, tab: 'services', mount: mountServiceDetail, params: (m) => ({ name: decodePath(m[1]) }) },
  { re: /^\/nodes\/?$/, tab: 'nodes', mount: mountNodeList },
  { re: /^\/nodes\/(.+)$/, tab: 'nodes', mount: mountNodeDetail, params: (m) => ({ name: decodePath(m[1]) }) },
  { re: /^\/kv(?:\/(.*))?$/, tab: 'kv', mount: mountKv, params: (m) => ({ path: decodePath(m[1] || '') }) },
];

let current = null; // AbortController of the mounted view
let tabLabel = 'Services';

function setTitle() {
  const node = $('node-name').textContent;
  document.title = node && node !== '—' ? `${tabLabel} · ${node} · cairn` : `${tabLabel} · cairn`;
}

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  const path = location.hash.replace(/^#/, '') || '/';
  const match = ROUTES.map((r) => [r, r.re.exec(path)]).find(([, m]) => m);
  if (!match) {
    location.replace('#/services');
    return;
  }
  const [r, m] = match;
  current?.abort();
  current = new AbortController();
  for (const a of document.querySelectorAll('nav.tabs a')) {
    a.classList.toggle('active', a.dataset.tab === r.tab);
    if (a.dataset.tab === r.tab) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const root = $('view');
  root.replaceChildren();
  root.dataset.view = r.tab;
  r.mount(root, { signal: current.signal, params: r.params ? r.params(m) : {}, navigate });
  tabLabel = document.querySelector(`nav.tabs a[data-tab="${r.tab}"]`).textContent;
  setTitle();
}

// A deep link like /ui/services/web (the server answers it with index.html) becomes #/services/web.
function adoptPathRoute() {
  const rest = location.pathname.replace(/^\/ui\/?/, '');
  if (rest && !location.hash) history.replaceState(null, '', `/ui/#/${rest}`);
}

// ---- header: agent identity and Raft state ---------------------------------------------

function setText(id, value) {
  const el = $(id);
  const text = value == null || value === '' ? '—' : String(value);
  if (el.textContent !== text) el.textContent = text;
}

function renderSelf(self, peers) {
  const cfg = self.Config || {};
  const raft = self.Stats?.raft;
  const consul = self.Stats?.consul || {};
  setText('node-name', cfg.NodeName);
  setText('datacenter', cfg.Datacenter);
  setTitle();
  const role = raft?.state ? raft.state.toLowerCase() : (cfg.Server ? 'unknown' : 'client');
  const roleEl = $('raft-role');
  setText('raft-role', role);
  roleEl.className = `role role-${['leader', 'follower', 'candidate', 'client'].includes(role) ? role : 'unknown'}`;
  roleEl.dataset.role = role;
  setText('raft-term', raft?.term);
  setText('raft-last-index', raft?.last_log_index);
  setText('raft-applied-index', raft?.applied_index);
  setText('raft-leader', consul.leader_addr);
  setText('raft-peers', Array.isArray(peers) ? (peers.length ? peers.join(', ') : 'none') : null);
  $('raft-peers').dataset.count = Array.isArray(peers) ? peers.length : '';
}

function startHeader() {
  // agent/self has no X-Consul-Index to block on: poll it (and the peer list) every 2 s.
  poll(async (signal) => {
    const [self, peers] = await Promise.all([
      getJSON('/v1/agent/self', { signal }),
      getJSON('/v1/status/peers', { signal }).catch(() => null),
    ]);
    renderSelf(self, peers);
  }, { interval: 2000 });

  let ticker = null;
  onConnection((state) => {
    const el = $('conn-status');
    clearInterval(ticker);
    el.dataset.state = state.ok ? 'live' : 'error';
    if (state.ok) {
      replace(el, h('span', { class: 'dot' }), 'live');
      el.title = 'Connected: views update through blocking queries';
      return;
    }
    const tick = () => {
      const secs = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
      replace(el, h('span', { class: 'dot' }), secs > 0 ? `reconnecting in ${secs}s` : 'reconnecting…');
    };
    el.title = state.error;
    tick();
    ticker = setInterval(tick, 500);
  });
}

adoptPathRoute();
startHeader();
window.addEventListener('hashchange', route);
route();
