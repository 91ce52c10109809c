// header.js — the dashboard's top bar: this agent's node, datacenter and Raft state (agent/self
// polled every 2 s through the shared hub, so every tab shares one poll), the connection state
// (never "live" or "leader" while the agent does not answer), the live-updates and theme
// toggles, and the log of leader changes this browser has seen (for the overview).

import { h, replace } from './dom.js';
import { watch, onConnection, liveEnabled, setLiveEnabled, refresh } from './live.js';

const $ = (id) => document.getElementById(id);
const LEADER_LOG_KEY = 'cairn:leader-log';
const LEADER_LOG_MAX = 20;
let lastSelf = null;
let connection = { state: 'live' };
const selfListeners = new Set();

/** The last agent/self answer (or null), and a subscription to new ones. */
export const agentSelf = () => lastSelf;
export function onSelf(fn) {
  selfListeners.add(fn);
  if (lastSelf) fn(lastSelf);
  return () => selfListeners.delete(fn);
}

/** Leader changes seen by this browser, newest first: [{at, leader, term}]. */
export function leaderLog() {
  try { return JSON.parse(localStorage.getItem(LEADER_LOG_KEY) || '[]'); } catch { return []; }
}

/** Note `leader` (an address or name) at `term`; a change from the last entry is logged. */
export function recordLeader(leader, term) {
  if (!leader) return;
  const log = leaderLog();
  const head = log[0];
  if (head && head.leader === leader && (head.term === term || term == null || head.term == null)) return;
  log.unshift({ at: Date.now(), leader, term: term ?? null });
  try { localStorage.setItem(LEADER_LOG_KEY, JSON.stringify(log.slice(0, LEADER_LOG_MAX))); } catch { /* memory only */ }
}

function setText(id, value) {
  const el = $(id);
  const text = value == null || value === '' ? '—' : String(value);
  if (el.textContent !== text) el.textContent = text;
}

function showRole(role) {
  const el = $('raft-role');
  setText('raft-role', role);
  el.className = `role role-${['leader', 'follower', 'candidate', 'client'].includes(role) ? role : 'unknown'}`;
  el.dataset.role = role;
}

function renderSelf(self) {
  const cfg = self.Config || {};
  const raft = self.Stats?.raft;
  setText('node-name', cfg.NodeName);
  setText('datacenter', cfg.Datacenter);
  if (connection.state === 'offline') return;
  showRole(raft?.state ? raft.state.toLowerCase() : (cfg.Server ? 'unknown' : 'client'));
  setText('raft-term', raft?.term);
  setText('raft-last-index', raft?.last_log_index);
  setText('raft-applied-index', raft?.applied_index);
  const leader = self.Stats?.consul?.leader_addr;
  setText('raft-leader', leader);
  recordLeader(leader, raft?.term != null ? Number(raft.term) : null);
}

function renderConnection(state) {
  connection = state;
  const el = $('conn-status');
  const live = state.live !== false;
  let text = live ? 'live' : 'paused';
  let kind = live ? 'live' : 'paused';
  if (state.state === 'offline') { kind = 'error'; text = 'agent unreachable, reconnecting…'; }
  else if (state.state === 'degraded') { kind = 'degraded'; text = /leader/i.test(state.error) ? 'no cluster leader' : 'agent errors'; }
  el.dataset.state = kind;
  el.title = state.error || (live ? 'Connected: views update through blocking queries' : 'Live updates are off');
  replace(el, h('span', { class: 'dot' }), text);
  if (state.state === 'offline') {
    // What the agent was is no longer known: never keep claiming "leader".
    showRole('unknown');
    for (const id of ['raft-leader']) setText(id, null);
  } else if (lastSelf) renderSelf(lastSelf);
}

function startToggles() {
  const liveBtn = $('live-toggle');
  const showLive = () => {
    const on = liveEnabled();
    liveBtn.setAttribute('aria-pressed', String(on));
    liveBtn.textContent = on ? 'Live updates: on' : 'Live updates: off';
    $('refresh').hidden = on;
  };
  liveBtn.addEventListener('click', () => { setLiveEnabled(!liveEnabled()); showLive(); });
  window.addEventListener('storage', (e) => { if (e.key === 'cairn:live') showLive(); });
  $('refresh').addEventListener('click', () => refresh());
  showLive();

  const themeBtn = $('theme-toggle');
  const order = ['auto', 'light', 'dark'];
  const current = () => document.documentElement.dataset.theme || 'auto';
  const showTheme = () => { themeBtn.textContent = `Theme: ${current()}`; };
  themeBtn.addEventListener('click', () => {
    const next = order[(order.indexOf(current()) + 1) % order.length];
    if (next === 'auto') delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = next;
    try { if (next === 'auto') localStorage.removeItem('cairn:theme'); else localStorage.setItem('cairn:theme', next); } catch { /* this page only */ }
    showTheme();
  });
  showTheme();
}

/** Start the header's polls; `signal` stops them (log out). */
export function startHeader(signal) {
  watch('/v1/agent/self', (self) => {
    if (!self) return;
    lastSelf = self;
    renderSelf(self);
    for (const fn of selfListeners) fn(self);
  }, { signal, poll: 2000 });
  watch('/v1/status/peers', (peers) => {
    setText('raft-peers', Array.isArray(peers) ? (peers.length ? peers.join(', ') : 'none') : null);
    $('raft-peers').dataset.count = Array.isArray(peers) ? peers.length : '';
  }, { signal, poll: 5000 });
}

export function initHeader() {
  onConnection(renderConnection);
  startToggles();
}
