// nodes.js — the Nodes tab: catalog nodes with their health checks (#/nodes) and one node's
// checks and services (#/nodes/<node>).

import { h, replace, badge, worst, countStatuses, statusCounts, tagList, notice } from '../lib/dom.js';
import { watch, getJSON, coalesce, mapLimit } from '../lib/api.js';
import { checksTable } from './services.js';

/**
 * #/nodes. Blocking watches on /v1/catalog/nodes and /v1/health/state/any; either firing
 * re-reads /v1/health/node/<node> for every node (plain GETs, 4 at a time).
 */
export function mountNodeList(root, { signal }) {
  let nodes = null;
  let checks = new Map(); // node -> checks[]
  let error = null;

  const status = h('div');
  const tbody = h('tbody');
  replace(root,
    h('div', { class: 'toolbar' }, h('h2', null, 'Nodes')),
    status,
    h('table', { class: 'grid', 'data-testid': 'nodes-table' },
      h('thead', null, h('tr', null, h('th', null, 'Node'), h('th', null, 'Address'), h('th', null, 'Datacenter'), h('th', null, 'Health'), h('th', null, 'Checks'))),
      tbody));

  function render() {
    if (error) replace(status, notice(`Could not load nodes: ${error}`, 'error'));
    else if (nodes === null) replace(status, notice('Loading nodes…'));
    else replace(status);
    const list = [...(nodes || [])].sort((a, b) => a.Node.localeCompare(b.Node));
    replace(tbody, list.map((n) => {
      const cs = checks.get(n.Node);
      return h('tr', { 'data-testid': 'node-row', 'data-node': n.Node },
        h('td', null, h('a', { href: `#/nodes/${encodeURIComponent(n.Node)}`, class: 'strong' }, n.Node)),
        h('td', null, h('code', null, n.Address)),
        h('td', null, n.Datacenter),
        h('td', null, cs ? [badge(worst(cs.map((c) => c.Status))), ' ', statusCounts(countStatuses(cs))] : badge('unknown', '…')),
        h('td', null, cs ? h('ul', { class: 'checklist' }, cs.map((c) =>
          h('li', { 'data-check': c.CheckID }, badge(c.Status, c.Status, 'check-badge'), ' ', c.Name || c.CheckID))) : ''));
    }));
    if (nodes && list.length === 0) tbody.append(h('tr', null, h('td', { colspan: 5, class: 'empty' }, 'No nodes.')));
  }

  const refreshChecks = coalesce(async () => {
    if (!nodes || signal.aborted) return;
    try {
      const names = nodes.map((n) => n.Node);
      const results = await mapLimit(names, 4, (n) => getJSON(`/v1/health/node/${encodeURIComponent(n)}`, { signal }));
      checks = new Map(names.map((n, i) => [n, results[i] || []]));
      error = null;
    } catch (err) {
      if (signal.aborted) return;
      error = err.message;
    }
    render();
  });

  watch('/v1/catalog/nodes', (data) => { nodes = data || []; error = null; render(); refreshChecks(); },
    { signal, onError: (e) => { error = e.message; render(); } });
  watch('/v1/health/state/any', () => refreshChecks(), { signal });
  render();
}

/** #/nodes/<node>: blocking watches on /v1/health/node/<node> and /v1/catalog/node/<node>. */
export function mountNodeDetail(root, { signal, params }) {
  const name = params.name;
  const enc = encodeURIComponent(name);
  const info = h('div', { class: 'muted' });
  const status = h('div');
  const checksBox = h('div', null, notice('Loading checks…'));
  const servicesBox = h('div');
  const headBadge = h('span');
  replace(root,
    h('div', { class: 'toolbar' },
      h('h2', null, h('a', { href: '#/nodes', class: 'crumb' }, 'Nodes'), ' / ', h('span', { 'data-testid': 'node-detail-name' }, name), ' ', headBadge)),
    info, status,
    h('h3', null, 'Health checks'), checksBox,
    h('h3', null, 'Services'), servicesBox);

  const onError = (e) => replace(status, notice(`Could not load node: ${e.message}`, 'error'));
  watch(`/v1/health/node/${enc}`, (data) => {
    const cs = data || [];
    replace(status);
    replace(headBadge, cs.length ? badge(worst(cs.map((c) => c.Status))) : null);
    replace(checksBox, checksTable(cs));
  }, { signal, onError });
  watch(`/v1/catalog/node/${enc}`, (data) => {
    replace(status);
    if (!data || !data.Node) {
      replace(info, 'This node is not in the catalog.');
      replace(servicesBox);
      return;
    }
    replace(info, 'Address ', h('code', null, data.Node.Address), ' · datacenter ', data.Node.Datacenter);
    const svcs = Object.values(data.Services || {}).sort((a, b) => a.ID.localeCompare(b.ID));
    replace(servicesBox, svcs.length === 0 ? notice('No services on this node.') :
      h('table', { class: 'grid', 'data-testid': 'node-services' },
        h('thead', null, h('tr', null, h('th', null, 'Service'), h('th', null, 'ID'), h('th', null, 'Port'), h('th', null, 'Tags'))),
        h('tbody', null, svcs.map((s) => h('tr', { 'data-service': s.Service },
          h('td', null, h('a', { href: `#/services/${encodeURIComponent(s.Service)}` }, s.Service)),
          h('td', null, h('code', null, s.ID)),
          h('td', null, s.Port),
          h('td', null, tagList(s.Tags)))))));
  }, { signal, onError, allow404: true });
}
