// overview.js — the Overview tab (#/overview): datacenter, leader, servers with the failure
// tolerance autopilot computes, totals of services, nodes and checks by health (one blocking
// query on /v1/internal/ui/catalog-overview), and recent leader changes (the raft view's, or
// those this browser saw). Each total links to its list filtered by that health.

import { h, replace, notice, errorNotice, badge } from '../lib/dom.js';
import { watch } from '../lib/live.js';
import { onSelf, leaderLog } from '../lib/header.js';

function sum(entries) {
  const out = { total: 0, passing: 0, warning: 0, critical: 0 };
  for (const e of entries || []) {
    out.total += e.Total || 0;
    out.passing += e.Passing || 0;
    out.warning += e.Warning || 0;
    out.critical += e.Critical || 0;
  }
  return out;
}

function tile(title, counts, href, testid, unit) {
  return h('section', { class: 'card tile', 'data-testid': testid },
    h('h2', null, h('a', { href }, title)),
    h('p', { class: 'big', 'data-testid': `${testid}-total` }, counts.total),
    h('ul', { class: 'tile-counts' }, ['passing', 'warning', 'critical'].map((s) =>
      h('li', { 'data-count': s }, h('a', { href: unit ? `${href}?status=${s}` : href }, badge(s, `${counts[s]} ${s}`, `${testid}-${s}`))))));
}

export function mountOverview(root, { signal, setTitle }) {
  setTitle(null);
  const facts = h('dl', { class: 'meta', 'data-testid': 'overview-facts' });
  const totals = h('div', { class: 'tiles', 'data-testid': 'overview-totals' }, notice('Loading totals…'));
  const servers = h('div', { 'data-testid': 'overview-servers' }, notice('Loading servers…'));
  const changes = h('div', { 'data-testid': 'overview-leader-changes' });
  const status = h('div');
  replace(root, h('div', { class: 'toolbar' }, h('h1', null, 'Overview')), status, facts,
    h('h2', null, 'Catalog health'), totals,
    h('h2', null, 'Servers'), servers,
    h('h2', null, 'Recent leader changes'), changes);

  let self = null;
  let leader = null;
  let health = null;
  const renderFacts = () => replace(facts,
    h('dt', null, 'Datacenter'), h('dd', { 'data-testid': 'overview-dc' }, self?.Config?.Datacenter ?? '—'),
    h('dt', null, 'This agent'), h('dd', null, self ? `${self.Config.NodeName} (${self.Config.Server ? 'server' : 'client'})` : '—'),
    h('dt', null, 'Leader'), h('dd', { 'data-testid': 'overview-leader' }, leader || h('span', { class: 'muted' }, 'none known')),
    h('dt', null, 'Failure tolerance'), h('dd', { 'data-testid': 'overview-tolerance' },
      health ? `${health.FailureTolerance} server${health.FailureTolerance === 1 ? '' : 's'} may fail` : '—'),
    h('dt', null, 'Cluster health'), h('dd', null, health ? badge(health.Healthy ? 'passing' : 'critical', health.Healthy ? 'healthy' : 'unhealthy', 'overview-healthy') : '—'));
  const off = onSelf((s) => { self = s; renderFacts(); });
  signal.addEventListener('abort', off);
  renderFacts();

  watch('/v1/status/leader', (data) => { leader = data || ''; renderFacts(); }, { signal, poll: 3000 });
  watch('/v1/operator/autopilot/health', (data) => {
    health = data;
    renderFacts();
    const list = data?.Servers || [];
    replace(servers, h('div', { class: 'scroll-x' }, h('table', { class: 'grid', 'data-testid': 'overview-server-table' },
      h('thead', null, h('tr', null, ['Server', 'Address', 'Role', 'Health', 'Last contact'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, list.map((s) => h('tr', { 'data-server': s.Name },
        h('td', null, s.Name), h('td', null, h('code', null, s.Address)),
        h('td', null, s.Leader ? 'leader' : s.Voter ? 'voter' : 'non-voter'),
        h('td', null, badge(s.Healthy ? 'passing' : 'critical', s.Healthy ? 'healthy' : `unhealthy (${s.SerfStatus})`)),
        h('td', null, s.LastContact || '—')))))));
  }, { signal, poll: 3000, onError: (e) => replace(servers, errorNotice('the servers (autopilot health)', e)) });

  const overview = new AbortController();
  signal.addEventListener('abort', () => overview.abort());
  watch('/v1/internal/ui/catalog-overview', (data, _i, code) => {
    if (code === 404) { overview.abort(); fallbackTotals(); return; }
    replace(status);
    replace(totals,
      tile('Services', sum(data?.Services), '#/services', 'total-services', true),
      tile('Nodes', sum(data?.Nodes), '#/nodes', 'total-nodes', true),
      tile('Checks', sum(data?.Checks), '#/services', 'total-checks', false));
  }, { signal: overview.signal, allow404: true, onError: (e) => replace(totals, errorNotice('the catalog totals', e)) });

  function fallbackTotals() {
    watch('/v1/health/state/any', (checks) => {
      const c = { total: 0, passing: 0, warning: 0, critical: 0 };
      for (const x of checks || []) { c.total += 1; c[x.Status in c ? x.Status : 'critical'] += 1; }
      replace(totals, tile('Checks', c, '#/services', 'total-checks', false),
        notice('This agent has no /v1/internal/ui/catalog-overview: only check totals are shown.', 'info', 'fallback-notice'));
    }, { signal, onError: (e) => replace(totals, errorNotice('the checks', e)) });
  }

  const renderChanges = (list) => replace(changes, list.length ? h('ol', { class: 'changes' }, list.map((c) =>
    h('li', { 'data-testid': 'leader-change' }, h('time', null, new Date(c.at).toLocaleString()), ' ', h('strong', null, c.leader || 'no leader'),
      c.term != null ? h('span', { class: 'muted' }, ` (term ${c.term})`) : null)))
    : notice('No leader change seen yet.'));
  const raft = new AbortController();
  signal.addEventListener('abort', () => raft.abort());
  watch('/v1/internal/ui/raft', (data, _i, code) => {
    if (code === 404 || !data) { raft.abort(); renderChanges(leaderLog()); return; }
    renderChanges((data.LeaderChanges || []).slice().reverse().map((c) => ({ at: Date.parse(c.Time), leader: c.Leader, term: c.Term })));
  }, { signal: raft.signal, allow404: true, poll: 3000, onError: () => renderChanges(leaderLog()) });
}
