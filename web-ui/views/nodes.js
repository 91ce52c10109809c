// nodes.js — the Nodes tab (#/nodes): every node with its address, health (its node-level checks) and service count,
// from ONE blocking query on /v1/internal/ui/nodes (Consul's node dump with services and
// checks). Filter, health filter and sort run in the browser and live in the URL; the table
// is virtualised, so 500 nodes cost a screenful of rows. Without the endpoint it falls back to
// /v1/catalog/nodes + /v1/health/state/any.

import { h, replace, badge, worstCheck, countStatuses, statusCounts, notice, errorNotice, encodePath } from '../lib/dom.js';
import { watch } from '../lib/live.js';
import { virtualBody } from '../lib/vlist.js';
import { select, byName, filterRows, countLabel } from '../lib/listing.js';

const RANK = { maintenance: 0, critical: 1, warning: 2, passing: 3 };

/** A node's health is its node-level checks' (serfHealth, maintenance), as the overview counts. */
function nodeRow(node, allChecks, services) {
  const checks = allChecks.filter((c) => !c.ServiceID);
  const status = worstCheck(checks);
  const meta = Object.entries(node.Meta || {}).map(([k, v]) => `${k}=${v}`).join(' ');
  return { name: node.Node, address: node.Address, status, counts: countStatuses(checks), services, meta,
    search: `${node.Node}\n${node.Address}\n${meta}`.toLowerCase() };
}

export function mountNodeList(root, { signal, query, setQuery, setTitle }) {
  let rows = null;
  let error = null;
  let fallback = false;
  setTitle(null);

  const filter = h('input', { type: 'search', class: 'filter', placeholder: 'Filter by name, address or meta', 'aria-label': 'Filter nodes',
    'data-testid': 'node-filter', value: query.get('filter') || '', oninput: () => { apply(); saveQuery(); } });
  const statusSel = select('node-status-filter', 'Health', query.get('status') || '',
    [['', 'All health'], ['passing', 'Passing'], ['warning', 'Warning'], ['critical', 'Critical'], ['maintenance', 'Maintenance']], () => { apply(); saveQuery(); });
  const sortSel = select('node-sort', 'Sort', query.get('sort') || 'name',
    [['name', 'Name A–Z'], ['health', 'Health (worst first)'], ['services', 'Most services']], () => { sortRows(); apply(); saveQuery(); });
  const count = h('span', { class: 'muted', 'data-testid': 'node-count', 'aria-live': 'polite' });
  const status = h('div');
  const tbody = h('tbody');
  const table = h('table', { class: 'grid vtable', 'data-testid': 'nodes-table' },
    h('colgroup', null, h('col', { class: 'w-name' }), h('col', { class: 'w-addr opt' }), h('col', { class: 'w-health' }), h('col', { class: 'w-num' })),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Node'), h('th', { scope: 'col', class: 'opt' }, 'Address'),
      h('th', { scope: 'col' }, 'Health'), h('th', { scope: 'col', class: 'num' }, 'Services'))),
    tbody);
  replace(root, h('div', { class: 'toolbar' }, h('h1', null, 'Nodes'), count),
    h('div', { class: 'filters' }, filter, statusSel.box, sortSel.box), status, table);

  const body = virtualBody(table, tbody, {
    columns: 4, signal,
    renderRow: (n) => h('tr', { 'data-testid': 'node-row', 'data-node': n.name, 'data-status': n.status },
      h('td', null, h('a', { href: `#/nodes/${encodePath(n.name)}`, class: 'strong' }, n.name)),
      h('td', { class: 'opt' }, h('code', null, n.address)),
      h('td', null, badge(n.status), ' ', statusCounts(n.counts)),
      h('td', { class: 'num', 'data-testid': 'node-service-count' }, n.services ?? '—')),
    empty: () => h('tr', null, h('td', { colspan: 4, class: 'empty' },
      rows === null ? 'Loading nodes…' : (filter.value || statusSel.el.value ? 'No node matches the filter.' : 'No nodes.'))),
  });

  function saveQuery() {
    setQuery({ filter: filter.value, status: statusSel.el.value, sort: sortSel.el.value === 'name' ? '' : sortSel.el.value });
  }

  function sortRows() {
    if (!rows) return;
    const by = sortSel.el.value;
    if (by === 'health') rows.sort((a, b) => RANK[a.status] - RANK[b.status] || byName(a, b));
    else if (by === 'services') rows.sort((a, b) => (b.services ?? 0) - (a.services ?? 0) || byName(a, b));
    else rows.sort(byName);
  }

  function apply() {
    const shown = filterRows(rows, filter.value, statusSel.el.value);
    count.textContent = countLabel(shown, rows, 'nodes');
    body.set(shown);
    if (error) replace(status, errorNotice('nodes', error));
    else if (fallback) replace(status, notice('This agent has no /v1/internal/ui/nodes: service counts are not shown.', 'info', 'fallback-notice'));
    else replace(status);
  }

  const onError = (err) => { error = err; apply(); };
  const dump = new AbortController();
  signal.addEventListener('abort', () => dump.abort());
  watch('/v1/internal/ui/nodes', (data, _index, code) => {
    if (code === 404) { dump.abort(); startFallback(); return; }
    rows = (data || []).map((n) => nodeRow(n, n.Checks || [], (n.Services || []).length));
    error = null;
    sortRows();
    apply();
  }, { signal: dump.signal, allow404: true, onError });

  function startFallback() {
    fallback = true;
    let nodes = null;
    let checks = null;
    const recompute = () => {
      if (!nodes || !checks) return;
      const byNode = new Map();
      for (const c of checks) (byNode.get(c.Node) || byNode.set(c.Node, []).get(c.Node)).push(c);
      rows = nodes.map((n) => nodeRow(n, byNode.get(n.Node) || [], null));
      error = null;
      sortRows();
      apply();
    };
    watch('/v1/catalog/nodes', (data) => { nodes = data || []; recompute(); }, { signal, onError });
    watch('/v1/health/state/any', (data) => { checks = data || []; recompute(); }, { signal, onError });
  }
  apply();
}
