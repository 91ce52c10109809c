// app.js — entry point of the cairn web dashboard (served at /ui/): the header with the
// agent's node, datacenter and live Raft state, the tabs, the hash router that mounts
// one view at a time (each view's blocking queries stop when it is left), and the ACL token
// login panel shown when the agent answers 403.

import { h, replace, decodePath } from './lib/dom.js';
import { getJSON, poll, onConnection, request, getToken, setToken, onAuth } from './lib/api.js';
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
  if (!$('login').hidden) return; // nothing is mounted until a token is accepted
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

// ---- ACL token login ----------------------------------------------------------------------

/**
 * The agent refused a request (403). Without a token, or when the agent does not know the
 * token ("ACL not found"), hide every view and ask for one; a known token that merely lacks a
 * permission leaves the views to show their own error.
 */
function authRequired(message) {
  const token = getToken();
  if (token && !/ACL not found/i.test(message)) return;
  if (!$('login').hidden) return; // already asking: keep what the user is typing
  current?.abort();
  current = null;
  $('view').replaceChildren();
  $('view').hidden = true;
  document.querySelector('nav.tabs').hidden = true;
  $('login').hidden = false;
  showLoginError(token ? message : '');
  $('login-token').value = '';
  $('login-token').focus();
}

function showLoginError(message) {
  const el = $('login-error');
  el.textContent = message;
  el.hidden = !message;
}

function leaveLogin() {
  $('login').hidden = true;
  $('view').hidden = false;
  document.querySelector('nav.tabs').hidden = false;
  $('logout').hidden = !getToken();
  route();
}

async function submitLogin(event) {
  event.preventDefault();
  const token = $('login-token').value.trim();
  if (!token) {
    showLoginError('Enter a token.');
    return;
  }
  const button = $('login-form').querySelector('button');
  button.disabled = true;
  try {
    // token/self answers for any token the agent knows, and 403 "ACL not found" otherwise.
    await request('GET', '/v1/acl/token/self', { token });
  } catch (err) {
    if (err?.status === 403) {
      showLoginError(err.body || 'Permission denied');
      $('login-token').select();
      return;
    }
    // Anything else (no ACL endpoints, agent briefly away) does not judge the token: the
    // views will ask again if the agent refuses it.
  } finally {
    button.disabled = false;
  }
  setToken(token);
  leaveLogin();
}

function logout() {
  setToken('');
  $('logout').hidden = true;
  current?.abort();
  $('view').replaceChildren(); // forget what the token could see, at once
  for (const id of ['node-name', 'datacenter']) setText(id, null);
  route();
}

function startLogin() {
  $('logout').hidden = !getToken();
  $('logout').addEventListener('click', logout);
  $('login-form').addEventListener('submit', submitLogin);
  onAuth(authRequired);
}

adoptPathRoute();
startLogin();
startHeader();
window.addEventListener('hashchange', route);
route();
