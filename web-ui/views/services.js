// services.js — the Services tab (#/services): every service with its instance count and
// health, from ONE blocking query on /v1/internal/ui/services (Consul's per-service health
// summaries), so a change anywhere costs one request. Filter (name or tag), health filter and
// sort run in the browser over the loaded summary and live in the URL
// (`?filter=web&status=critical&sort=health`); the table is virtualised. On an agent without
// the endpoint it falls back to /v1/catalog/services + /v1/health/state/any (two queries).

import { h, replace, badge, statusCounts, tagList, notice, errorNotice, encodePath } from '../lib/dom.js';
import { watch } from '../lib/live.js';
import { virtualBody } from '../lib/vlist.js';
import { select, byName, filterRows, countLabel } from '../lib/listing.js';

const RANK = { critical: 0, warning: 1, passing: 2 };
const TAGS_SHOWN_MAX = 6;

/** Consul's ServiceSummary → {name, tags, instances, counts, status, search}. */
function fromSummary(s) {
  const counts = { passing: s.ChecksPassing || 0, warning: s.ChecksWarning || 0, critical: s.ChecksCritical || 0 };
  return row(s.Name, s.Tags || [], s.InstanceCount ?? 0, counts, s.Kind || '');
}

function row(name, tags, instances, counts, kind) {
  const status = counts.critical > 0 ? 'critical' : counts.warning > 0 ? 'warning' : 'passing';
  return { name, tags, instances, counts, status, kind, search: `${name}\n${tags.join('\n')}`.toLowerCase() };
}

/** The fallback: summaries computed from the catalog's names and every check. */
function fromChecks(services, checks) {
  const byNode = new Map();
  for (const c of checks) if (!c.ServiceID) (byNode.get(c.Node) || byNode.set(c.Node, []).get(c.Node)).push(c);
  const acc = new Map(Object.keys(services).map((n) => [n, { instances: new Set(), counts: { passing: 0, warning: 0, critical: 0 } }]));
  for (const c of checks) {
    const a = c.ServiceName && acc.get(c.ServiceName);
    if (!a) continue;
    const inst = `${c.Node}\u0000${c.ServiceID}`;
    if (!a.instances.has(inst)) {
      a.instances.add(inst);
      for (const nc of byNode.get(c.Node) || []) a.counts[nc.Status in a.counts ? nc.Status : 'critical'] += 1;
    }
    a.counts[c.Status in a.counts ? c.Status : 'critical'] += 1;
  }
  return Object.keys(services).map((n) => row(n, services[n] || [], acc.get(n).instances.size, acc.get(n).counts, ''));
}

export function mountServiceList(root, { signal, query, setQuery, setTitle }) {
  let rows = null; // every service, sorted by the current sort
  let error = null;
  let source = 'summary';
  setTitle(null);

  const filter = h('input', { type: 'search', class: 'filter', placeholder: 'Filter by name or tag', 'aria-label': 'Filter services by name or tag',
    'data-testid': 'service-filter', value: query.get('filter') || '', oninput: () => { apply(); saveQuery(); } });
  const statusSel = select('service-status-filter', 'Health', query.get('status') || '',
    [['', 'All health'], ['passing', 'Passing'], ['warning', 'Warning'], ['critical', 'Critical']], () => { apply(); saveQuery(); });
  const sortSel = select('service-sort', 'Sort', query.get('sort') || 'name',
    [['name', 'Name A–Z'], ['-name', 'Name Z–A'], ['health', 'Health (worst first)'], ['instances', 'Most instances']], () => { sortRows(); apply(); saveQuery(); });
  const count = h('span', { class: 'muted', 'data-testid': 'service-count', 'aria-live': 'polite' });
  const status = h('div');
  const tbody = h('tbody');
  const table = h('table', { class: 'grid vtable', 'data-testid': 'services-table' },
    h('colgroup', null, h('col', { class: 'w-name' }), h('col', { class: 'w-health' }), h('col', { class: 'w-num' }), h('col', { class: 'w-tags opt' })),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Service'), h('th', { scope: 'col' }, 'Health'),
      h('th', { scope: 'col', class: 'num' }, 'Instances'), h('th', { scope: 'col', class: 'opt' }, 'Tags'))),
    tbody);
  replace(root,
    h('div', { class: 'toolbar' }, h('h1', null, 'Services'), count),
    h('div', { class: 'filters' }, filter, statusSel.box, sortSel.box),
    status, table);

  const body = virtualBody(table, tbody, {
    columns: 4, signal,
    renderRow: (s) => h('tr', { 'data-testid': 'service-row', 'data-service': s.name, 'data-status': s.status },
      h('td', null, h('a', { href: `#/services/${encodePath(s.name)}`, class: 'strong' }, s.name),
        s.kind ? h('span', { class: 'muted' }, ` (${s.kind})`) : null),
      h('td', null, badge(s.status), ' ', statusCounts(s.counts)),
      h('td', { class: 'num', 'data-testid': 'instance-count' }, s.instances),
      h('td', { class: 'opt' }, tagList(s.tags.slice(0, TAGS_SHOWN_MAX)), s.tags.length > TAGS_SHOWN_MAX ? ` +${s.tags.length - TAGS_SHOWN_MAX}` : null)),
    empty: () => h('tr', null, h('td', { colspan: 4, class: 'empty' },
      rows === null ? 'Loading services…' : (filter.value || statusSel.el.value ? 'No service matches the filter.' : 'No services registered.'))),
  });

  function saveQuery() {
    setQuery({ filter: filter.value, status: statusSel.el.value, sort: sortSel.el.value === 'name' ? '' : sortSel.el.value });
  }

  function sortRows() {
    if (!rows) return;
    const by = sortSel.el.value;
    if (by === '-name') rows.sort((a, b) => byName(b, a));
    else if (by === 'health') rows.sort((a, b) => RANK[a.status] - RANK[b.status] || b.counts.critical - a.counts.critical || byName(a, b));
    else if (by === 'instances') rows.sort((a, b) => b.instances - a.instances || byName(a, b));
    else rows.sort(byName);
  }

  function apply() {
    const shown = filterRows(rows, filter.value, statusSel.el.value);
    count.textContent = countLabel(shown, rows, 'services');
    body.set(shown);
    if (error) replace(status, errorNotice('services', error));
    else if (source === 'fallback') replace(status, notice('This agent has no /v1/internal/ui/services: health is summed from every check (instances without checks are not counted).', 'info', 'fallback-notice'));
    else replace(status);
  }

  const onError = (err) => { error = err; apply(); };
  const summaries = new AbortController();
  signal.addEventListener('abort', () => summaries.abort());
  watch('/v1/internal/ui/services', (data, _index, code) => {
    if (code === 404) { summaries.abort(); startFallback(); return; }
    rows = (data || []).filter((s) => !s.PeerName).map(fromSummary);
    error = null;
    sortRows();
    apply();
  }, { signal: summaries.signal, allow404: true, onError });

  function startFallback() {
    source = 'fallback';
    let services = null;
    let checks = null;
    const recompute = () => { if (services && checks) { rows = fromChecks(services, checks); error = null; sortRows(); apply(); } };
    watch('/v1/catalog/services', (data) => { services = data || {}; recompute(); }, { signal, onError });
    watch('/v1/health/state/any', (data) => { checks = data || []; recompute(); }, { signal, onError });
  }
  apply();
}

