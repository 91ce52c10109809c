// cluster.js — the Cluster tab (#/cluster): the Raft cluster, live. Every server is a node on a
// ring with its role, term and health; the leader's heartbeats travel to each follower that
// answers, and each follower shows how far its log trails the leader's. A leader change, an
// election or a dead server shows within a second (/v1/internal/ui/raft polled every second;
// /v1/operator/autopilot/health on an agent without it), with a log of what changed.

import { h, replace, badge, notice, errorNotice, ago, durationMs } from '../lib/dom.js';
import { watch } from '../lib/live.js';
import { recordLeader } from '../lib/header.js';

const SVG = 'http://www.w3.org/2000/svg';
const EVENTS_MAX = 12;
const STALE_CONTACT_MS = 1000; // no heartbeat drawn to a follower silent for longer

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** /v1/internal/ui/raft → the view's model. */
function fromRaft(d) {
  return {
    leader: d.Leader || '', term: d.Term, commit: d.CommitIndex, healthy: d.Healthy, tolerance: d.FailureTolerance, servedBy: d.ServedBy,
    servers: (d.Servers || []).map((x) => ({ id: x.ID, name: x.Name, address: x.Address, role: x.Role, term: x.Term,
      lastLog: x.LastLogIndex, commit: x.CommitIndex, applied: x.AppliedIndex, contact: x.LastContact, voter: x.Voter,
      healthy: x.Healthy, serf: x.SerfStatus })),
    changes: (d.LeaderChanges || []).slice().reverse(),
  };
}

/** /v1/operator/autopilot/health → the same model, with fewer figures. */
function fromAutopilot(d) {
  const servers = (d.Servers || []).map((x) => ({ id: x.ID, name: x.Name, address: x.Address,
    role: x.Leader ? 'leader' : x.Voter ? 'follower' : 'non-voter', term: x.LastTerm, lastLog: x.LastIndex, commit: null, applied: null,
    contact: durationMs(x.LastContact), voter: x.Voter, healthy: x.Healthy, serf: x.SerfStatus }));
  const leader = servers.find((x) => x.role === 'leader');
  return { leader: leader?.name || '', term: leader?.term, commit: null, healthy: d.Healthy, tolerance: d.FailureTolerance, servers, changes: [] };
}

/** Health shown for a server: critical when gossip says failed or autopilot says unhealthy. */
function serverHealth(x) {
  if (x.serf && x.serf !== 'alive') return 'critical';
  if (x.healthy === false) return 'critical';
  if (x.role === 'candidate') return 'warning';
  return 'passing';
}

function ring(model) {
  const size = 420;
  const c = size / 2;
  const r = 150;
  const n = Math.max(1, model.servers.length);
  const pos = model.servers.map((_, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
    return [c + r * Math.cos(a), c + r * Math.sin(a)];
  });
  const li = model.servers.findIndex((x) => x.role === 'leader');
  const leader = li >= 0 ? model.servers[li] : null;
  const edges = [];
  if (leader) {
    model.servers.forEach((x, i) => {
      if (i === li) return;
      const alive = serverHealth(x) !== 'critical' && x.contact != null && x.contact < STALE_CONTACT_MS;
      const d = `M${pos[li][0]},${pos[li][1]} L${pos[i][0]},${pos[i][1]}`;
      edges.push(s('path', { d, class: `edge ${alive ? 'edge-live' : 'edge-dead'}`, 'data-to': x.name }));
      if (alive) {
        edges.push(s('circle', { r: 5, class: 'beat' }, s('animateMotion', { dur: '1s', repeatCount: 'indefinite', path: d })));
      }
    });
  }
  const nodes = model.servers.map((x, i) => {
    const [px, py] = pos[i];
    const lag = leader && leader.lastLog != null && x.lastLog != null ? Math.max(0, leader.lastLog - x.lastLog) : null;
    const frac = leader && leader.lastLog ? Math.min(1, (x.lastLog || 0) / leader.lastLog) : 1;
    return s('g', { class: `srv srv-${serverHealth(x)} srv-is-${x.role}`, transform: `translate(${px},${py})` },
      s('circle', { r: 38, class: 'srv-disc' }),
      x.role === 'leader' ? s('circle', { r: 46, class: 'srv-halo' }) : null,
      s('text', { y: -8, class: 'srv-name' }, x.name),
      s('text', { y: 8, class: 'srv-role' }, x.role),
      s('text', { y: 22, class: 'srv-term' }, `term ${x.term ?? '—'}`),
      s('rect', { x: -30, y: 50, width: 60, height: 6, rx: 3, class: 'lag-track' }),
      s('rect', { x: -30, y: 50, width: Math.round(60 * frac), height: 6, rx: 3, class: 'lag-fill' }),
      s('text', { y: 70, class: 'srv-lag' }, lag == null ? '' : lag === 0 ? 'in sync' : `${lag} behind`));
  });
  return s('svg', { viewBox: `0 0 ${size} ${size + 30}`, class: 'raft-ring', role: 'img',
    'aria-label': `Raft ring: ${model.servers.map((x) => `${x.name} ${x.role} ${serverHealth(x)}`).join(', ')}` }, edges, nodes);
}

function table(model) {
  const cols = ['Server', 'Role', 'Health', 'Term', 'Last log', 'Commit', 'Applied', 'Last contact', 'Voter', 'Gossip'];
  return h('div', { class: 'scroll-x' }, h('table', { class: 'grid', 'data-testid': 'raft-servers' },
    h('thead', null, h('tr', null, cols.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, model.servers.map((x) => h('tr', { 'data-testid': 'raft-server', 'data-name': x.name, 'data-role': x.role, 'data-health': serverHealth(x) },
      h('td', null, h('strong', null, x.name), h('br'), h('code', { class: 'muted' }, x.address)),
      h('td', { 'data-testid': 'raft-server-role' }, x.role),
      h('td', null, badge(serverHealth(x), serverHealth(x) === 'critical' ? (x.serf && x.serf !== 'alive' ? x.serf : 'unhealthy') : serverHealth(x) === 'warning' ? 'electing' : 'healthy', 'raft-server-health')),
      h('td', null, x.term ?? '—'), h('td', null, x.lastLog ?? '—'), h('td', null, x.commit ?? '—'), h('td', null, x.applied ?? '—'),
      h('td', null, x.role === 'leader' ? '—' : ago(x.contact)),
      h('td', null, x.voter ? 'yes' : 'no'), h('td', null, x.serf || '—'))))));
}

export function mountCluster(root, { signal, setTitle }) {
  setTitle(null);
  const status = h('div');
  const summary = h('dl', { class: 'meta', 'data-testid': 'cluster-summary' });
  const picture = h('div', { class: 'ring-box', 'data-testid': 'raft-ring' });
  const details = h('div');
  const log = h('ol', { class: 'changes', 'data-testid': 'cluster-events', 'aria-live': 'polite' });
  replace(root, h('div', { class: 'toolbar' }, h('h1', null, 'Cluster')), status, summary,
    h('div', { class: 'cluster' }, picture, h('div', null, h('h2', null, 'What happened'), log)),
    h('h2', null, 'Servers'), details);
  replace(status, notice('Loading the Raft view…'));

  let prev = null;
  const events = [];
  const note = (text, kind) => {
    events.unshift({ at: new Date(), text, kind });
    events.length = Math.min(events.length, EVENTS_MAX);
    replace(log, events.map((e) => h('li', { 'data-testid': 'cluster-event', 'data-kind': e.kind }, h('time', null, e.at.toLocaleTimeString()), ' ', e.text)));
  };

  function show(model, source) {
    replace(status, source === 'autopilot' ? notice('This agent has no /v1/internal/ui/raft: figures come from autopilot health (no commit or applied index).', 'info', 'fallback-notice') : null);
    if (prev) {
      if (prev.leader !== model.leader) note(model.leader ? `Leader is now ${model.leader} (term ${model.term ?? '?'}), was ${prev.leader || 'none'}` : `No leader (was ${prev.leader}): election under way`, 'leader');
      for (const x of model.servers) {
        const was = prev.servers.find((p) => p.name === x.name);
        if (was && serverHealth(was) !== serverHealth(x)) note(`${x.name} is ${serverHealth(x) === 'critical' ? `down (${x.serf !== 'alive' ? x.serf : 'unhealthy'})` : serverHealth(x) === 'warning' ? 'a candidate' : 'healthy again'}`, 'health');
        if (!was) note(`${x.name} joined`, 'member');
      }
      for (const p of prev.servers) if (!model.servers.find((x) => x.name === p.name)) note(`${p.name} left the configuration`, 'member');
    }
    prev = model;
    if (model.leader) recordLeader(model.leader, model.term ?? null);
    replace(summary,
      h('dt', null, 'Leader'), h('dd', { 'data-testid': 'cluster-leader' }, model.leader || h('span', { class: 'muted' }, 'none (election)')),
      h('dt', null, 'Term'), h('dd', { 'data-testid': 'cluster-term' }, model.term ?? '—'),
      h('dt', null, 'Commit index'), h('dd', null, model.commit ?? '—'),
      h('dt', null, 'Failure tolerance'), h('dd', { 'data-testid': 'cluster-tolerance' }, model.tolerance ?? '—'),
      h('dt', null, 'Health'), h('dd', null, model.healthy == null ? '—' : badge(model.healthy ? 'passing' : 'critical', model.healthy ? 'healthy' : 'degraded', 'cluster-health')));
    replace(picture, model.servers.length ? ring(model) : notice('No servers known.'));
    replace(details, table(model));
  }

  const raft = new AbortController();
  signal.addEventListener('abort', () => raft.abort());
  const onError = (e) => replace(status, errorNotice('the Raft view', e));
  watch('/v1/internal/ui/raft', (data, _i, code) => {
    if (code === 404) { raft.abort(); fallback(); return; }
    if (data) show(fromRaft(data), 'raft');
  }, { signal: raft.signal, allow404: true, poll: 1000, onError });
  function fallback() {
    watch('/v1/operator/autopilot/health', (data) => { if (data) show(fromAutopilot(data), 'autopilot'); }, { signal, poll: 1000, onError });
  }
}
