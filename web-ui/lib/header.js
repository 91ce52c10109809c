// header.js — the dashboard's top bar: this agent's node, datacenter and Raft state (its raft
// view polled every 2 s through the shared hub, so every tab shares one poll), the connection state
// (never "live" or "leader" while the agent does not answer), the live-updates and theme
// toggles, and the log of leader changes this browser has seen (for the overview).

import { h, replace } from './dom.js';
import { watch, onConnection, liveEnabled, setLiveEnabled, refresh } from './live.js';

const $ = (id) => document.getElementById(id);
const LEADER_LOG_KEY = 'cairn:leader-log';
const LEADER_LOG_MAX = 20;
let lastSelf = null;
let lastRaftView = null; // this server's own raft view, when the agent has one
let viewRendered = false; // the Raft figures come from the raft view, not agent/self
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
  if (connection.state === 'offline' || (viewRendered && cfg.Server)) return;
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
    lastRaftView = null;
    showRole('unknown');
    for (const id of ['raft-leader']) setText(id, null);
  } else if (lastSelf) {
    renderSelf(lastSelf);
    if (lastRaftView) renderRaftView(lastRaftView);
  }
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

/**
 * Start the header's polls; `signal` stops them (log out). The Raft figures come from this
 * server's own raft view (`/v1/internal/ui/raft?stale`, a few bytes, every 2 s), which is also
 * the liveness heartbeat. agent/self (identity, and the figures on an agent without the raft
 * view) is read once, a moment after the page's own data was asked for, then every 30 s: with
 * a large catalog it takes the agent ~0.5 s and stalls its other answers meanwhile.
 */
export function startHeader(signal) {
  const onSelfData = (self) => {
    if (!self) return;
    lastSelf = self;
    renderSelf(self);
    if (lastRaftView) renderRaftView(lastRaftView);
    for (const fn of selfListeners) fn(self);
  };
  const selfLater = setTimeout(() => watch('/v1/agent/self', onSelfData, { signal, poll: 30000 }), 600);
  signal.addEventListener('abort', () => clearTimeout(selfLater));
  const raft = new AbortController();
  signal.addEventListener('abort', () => raft.abort());
  watch('/v1/internal/ui/raft?stale', (view, _index, code) => {
    if (code === 404) {
      // An agent without the raft view: agent/self every 2 s carries the figures.
      raft.abort();
      clearTimeout(selfLater);
      watch('/v1/agent/self', onSelfData, { signal, poll: 2000 });
      return;
    }
    lastRaftView = view;
    if (lastSelf) renderRaftView(view);
  }, { signal: raft.signal, allow404: true, poll: 2000 });
  watch('/v1/status/peers', (peers) => {
    setText('raft-peers', Array.isArray(peers) ? (peers.length ? peers.join(', ') : 'none') : null);
    $('raft-peers').dataset.count = Array.isArray(peers) ? peers.length : '';
  }, { signal, poll: 5000 });
}

/** This server's entry of its own raft view → the header's role, term and indexes. */
function renderRaftView(view) {
  if (!view || !lastSelf?.Config?.Server || connection.state === 'offline') return;
  const me = (view.Servers || []).find((x) => x.Name === lastSelf.Config.NodeName);
  if (!me) return;
  viewRendered = true;
  showRole(me.Role === 'non-voter' ? 'follower' : me.Role);
  setText('raft-term', view.Term ?? me.Term);
  setText('raft-last-index', me.LastLogIndex);
  setText('raft-applied-index', me.AppliedIndex ?? me.CommitIndex);
  const leader = (view.Servers || []).find((x) => x.Name === view.Leader);
  setText('raft-leader', leader?.Address || view.Leader);
  recordLeader(view.Leader, view.Term ?? null);
}
export function initHeader() {
  onConnection(renderConnection);
  startToggles();
}
