// app.js — entry point of the cairn web dashboard (served at /ui/): the hash router that mounts
// one view at a time (each view's watches stop when it is left), deep links in path form
// (`/ui/kv/config/web/flags.json`, Consul's `/ui/dc1/services/web`) turned into hash routes,
// page titles that name the resource, focus moved to the page heading on navigation, and the
// ACL token login panel shown when the agent answers 403.

import { decodePath } from './lib/dom.js';
import { request, getToken, setToken, onAuth } from './lib/api.js';
import { startLive } from './lib/live.js';
import { initHeader, startHeader } from './lib/header.js';
import { mountOverview } from './views/overview.js';
import { mountServiceList } from './views/services.js';
import { mountServiceDetail, mountInstance } from './views/service.js';
import { mountNodeList } from './views/nodes.js';
import { mountNodeDetail, mountSession } from './views/node.js';
import { mountKv } from './views/kv.js';
import { mountCluster } from './views/cluster.js';
import { mountAcl } from './views/acl.js';

const $ = (id) => document.getElementById(id);
const seg = (m, i) => decodePath(m[i]);

// ---- routing ----------------------------------------------------------------------------

const ROUTES = [
  { re: /^\/overview\/?$/, tab: 'overview', mount: mountOverview },
  { re: /^\/services\/?$/, tab: 'services', mount: mountServiceList },
  { re: /^\/services\/([^/]+)\/instances\/([^/]+)\/(.+)$/, tab: 'services', mount: mountInstance,
    params: (m) => ({ name: seg(m, 1), node: seg(m, 2), id: seg(m, 3) }) },
  { re: /^\/services\/(.+)$/, tab: 'services', mount: mountServiceDetail, params: (m) => ({ name: seg(m, 1) }) },
  { re: /^\/nodes\/?$/, tab: 'nodes', mount: mountNodeList },
  { re: /^\/nodes\/(.+)$/, tab: 'nodes', mount: mountNodeDetail, params: (m) => ({ name: seg(m, 1) }) },
  { re: /^\/sessions\/(.+)$/, tab: 'nodes', mount: mountSession, params: (m) => ({ id: seg(m, 1) }) },
  { re: /^\/kv(?:\/(.*))?$/, tab: 'kv', mount: mountKv, params: (m) => ({ path: decodePath(m[1] || '') }) },
  { re: /^\/cluster\/?$/, tab: 'cluster', mount: mountCluster },
  { re: /^\/acls(?:\/(tokens|policies|roles))?\/?$/, tab: 'acls', mount: mountAcl, params: (m) => ({ kind: m[1] || 'tokens' }) },
];
const TOP = ['overview', 'services', 'nodes', 'kv', 'cluster', 'acls', 'sessions'];
// Consul's UI puts a tab name after a resource (`/services/web/instances`, `/nodes/n1/health-checks`).
const SUBTABS = ['health-checks', 'service-instances', 'instances', 'sessions', 'lock-sessions', 'metadata',
  'intentions', 'routing', 'tags', 'topology', 'services', 'upstreams', 'exposed-paths', 'rtt'];

let current = null; // AbortController of the mounted view
let routedOnce = false;

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

/** Split "#/services?filter=web" into its path and query. */
function hashParts() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const q = raw.indexOf('?');
  return q < 0 ? { path: raw, query: new URLSearchParams() } : { path: raw.slice(0, q), query: new URLSearchParams(raw.slice(q + 1)) };
}

/**
 * Rewrite the URL's query (filters, sorts) without a new history entry or a re-route; a burst
 * of keystrokes writes it once, 200 ms after the last, and never onto another page's URL.
 */
let queryTimer = 0;
function setQuery(params) {
  const { path } = hashParts();
  const qs = new URLSearchParams(Object.entries(params).filter(([, v]) => v != null && v !== '')).toString();
  clearTimeout(queryTimer);
  queryTimer = setTimeout(() => {
    if (hashParts().path === path) history.replaceState(history.state, '', `#${path}${qs ? `?${qs}` : ''}`);
  }, 200);
}

/** "web · Services · cairn": every page's title names what it shows. */
function setTitle(...parts) {
  document.title = [...parts.filter(Boolean), 'cairn'].join(' · ');
}

function route() {
  if (!$('login').hidden) return; // nothing is mounted until a token is accepted
  const { path, query } = hashParts();
  const match = ROUTES.map((r) => [r, r.re.exec(path)]).find(([, m]) => m);
  if (!match) {
    location.replace('#/overview');
    return;
  }
  const [r, m] = match;
  current?.abort();
  current = new AbortController();
  for (const a of document.querySelectorAll('nav.tabs a')) {
    const active = a.dataset.tab === r.tab;
    a.classList.toggle('active', active);
    if (active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const root = $('view');
  root.replaceChildren();
  root.dataset.view = r.tab;
  const section = document.querySelector(`nav.tabs a[data-tab="${r.tab}"]`).textContent;
  setTitle(section);
  r.mount(root, {
    signal: current.signal, params: r.params ? r.params(m) : {}, query, navigate, setQuery,
    setTitle: (resource) => setTitle(resource, section),
  });
  // Focus the new page's heading, so a screen reader announces it and Tab starts there.
  if (routedOnce) {
    const heading = root.querySelector('h1');
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
    window.scrollTo(0, 0);
  }
  routedOnce = true;
}

/**
 * A deep link in path form (the server answers every /ui/ route with index.html) becomes the
 * hash route: `/ui/kv/a/b.json` → `#/kv/a/b.json`; Consul's `/ui/dc1/services/web/instances`
 * → `#/services/web`; its `?filter=` query is kept.
 */
function adoptPathRoute() {
  const rest = location.pathname.replace(/^\/ui\/?/, '');
  if (!rest) return;
  if (location.hash) {
    history.replaceState(null, '', `/ui/${location.hash}`);
    return;
  }
  let parts = rest.split('/');
  if (!TOP.includes(parts[0]) && TOP.includes(parts[1])) parts = parts.slice(1); // the datacenter
  if (parts[0] === 'services' && parts.length > 2) {
    if (parts[2] === 'instances' && parts.length >= 5) parts = parts.slice(0, 5);
    else if (SUBTABS.includes(parts[2])) parts = parts.slice(0, 2);
  }
  if ((parts[0] === 'nodes' || parts[0] === 'acls') && parts.length > 2 && SUBTABS.includes(parts[2])) parts = parts.slice(0, 2);
  if (parts[0] === 'kv' && parts.length > 2 && parts[parts.length - 1] === 'edit') parts = parts.slice(0, -1);
  history.replaceState(null, '', `/ui/#/${parts.join('/')}${location.search}`);
}

// ---- ACL token login ----------------------------------------------------------------------

let headerCtl = null;

/**
 * The agent refused a request (403). Without a token, or when the agent does not know the
 * token ("ACL not found"), hide every view and ask for one; a known token that merely lacks a
 * permission leaves the views to show their own "permission denied".
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
  setTitle('Log in');
}

function showLoginError(message) {
  const el = $('login-error');
  el.textContent = message;
  el.hidden = !message;
}

function restartHeader() {
  headerCtl?.abort();
  headerCtl = new AbortController();
  startHeader(headerCtl.signal);
}

function leaveLogin() {
  $('login').hidden = true;
  $('view').hidden = false;
  document.querySelector('nav.tabs').hidden = false;
  $('logout').hidden = !getToken();
  restartHeader();
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
  for (const id of ['node-name', 'datacenter']) $(id).textContent = '—';
  restartHeader();
  route();
}

async function main() {
  adoptPathRoute();
  await startLive();
  initHeader();
  $('logout').hidden = !getToken();
  $('logout').addEventListener('click', logout);
  $('login-form').addEventListener('submit', submitLogin);
  onAuth(authRequired);
  restartHeader();
  window.addEventListener('hashchange', route);
  route();
  window.__cairn = { ready: true, live: await import('./lib/live.js') };
}

main();
