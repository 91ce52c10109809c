// services.js — the Services tab: the catalog's services with instance counts and health
// (list, #/services) and one service's instances with their checks (#/services/<name>).

import { h, replace, badge, worst, countStatuses, statusCounts, tagList, notice } from '../lib/dom.js';
import { watch, getJSON, coalesce, mapLimit } from '../lib/api.js';

/** Health summary of one service from its /v1/health/service entries. */
function summarize(entries) {
  const checks = entries.flatMap((e) => e.Checks || []);
  return {
    instances: entries.length,
    counts: countStatuses(checks),
    status: worst(entries.map((e) => worst((e.Checks || []).map((c) => c.Status)))),
  };
}

/**
 * #/services. Two blocking watches: /v1/catalog/services (the list of names) and
 * /v1/health/state/any (moves whenever any check changes). Either one firing re-reads
 * /v1/health/service/<name> for each service (plain GETs, 4 at a time).
 */
export function mountServiceList(root, { signal }) {
  let services = null; // name -> tags
  let health = new Map(); // name -> summary
  let error = null;

  const filter = h('input', { type: 'search', class: 'filter', placeholder: 'Filter services by name or tag', 'aria-label': 'Filter services', 'data-testid': 'service-filter', oninput: () => render() });
  const status = h('div');
  const tbody = h('tbody');
  const table = h('table', { class: 'grid', 'data-testid': 'services-table' },
    h('thead', null, h('tr', null, h('th', null, 'Service'), h('th', null, 'Health'), h('th', { class: 'num' }, 'Instances'), h('th', null, 'Tags'))),
    tbody);
  replace(root, h('div', { class: 'toolbar' }, h('h2', null, 'Services'), filter), status, table);

  function render() {
    if (error) replace(status, notice(`Could not load services: ${error}`, 'error'));
    else if (services === null) replace(status, notice('Loading services…'));
    else replace(status);
    const q = filter.value.trim().toLowerCase();
    const names = Object.keys(services || {}).sort()
      .filter((n) => !q || n.toLowerCase().includes(q) || (services[n] || []).some((t) => t.toLowerCase().includes(q)));
    replace(tbody, names.map((name) => {
      const sum = health.get(name);
      return h('tr', { 'data-testid': 'service-row', 'data-service': name },
        h('td', null, h('a', { href: `#/services/${encodeURIComponent(name)}`, class: 'strong' }, name)),
        h('td', null, sum ? [badge(sum.status), ' ', statusCounts(sum.counts)] : badge('unknown', '…')),
        h('td', { class: 'num', 'data-testid': 'instance-count' }, sum ? sum.instances : ''),
        h('td', null, tagList(services[name])));
    }));
    if (services && names.length === 0) tbody.append(h('tr', null, h('td', { colspan: 4, class: 'empty' }, q ? 'No service matches the filter.' : 'No services registered.')));
  }

  const refreshHealth = coalesce(async () => {
    if (!services || signal.aborted) return;
    const names = Object.keys(services);
    try {
      const results = await mapLimit(names, 4, (n) => getJSON(`/v1/health/service/${encodeURIComponent(n)}`, { signal }));
      health = new Map(names.map((n, i) => [n, summarize(results[i] || [])]));
      error = null;
    } catch (err) {
      if (signal.aborted) return;
      error = err.message;
    }
    render();
  });

  watch('/v1/catalog/services', (data) => { services = data || {}; error = null; render(); refreshHealth(); },
    { signal, onError: (e) => { error = e.message; render(); } });
  watch('/v1/health/state/any', () => refreshHealth(), { signal });
  render();
}

/** #/services/<name>: one blocking watch on /v1/health/service/<name>. */
export function mountServiceDetail(root, { signal, params }) {
  const name = params.name;
  const status = h('div');
  const body = h('div', { 'data-testid': 'service-instances' });
  const headBadge = h('span');
  replace(root,
    h('div', { class: 'toolbar' },
      h('h2', null, h('a', { href: '#/services', class: 'crumb' }, 'Services'), ' / ', h('span', { 'data-testid': 'service-name' }, name), ' ', headBadge)),
    status, body);
  replace(status, notice('Loading instances…'));

  const render = (entries) => {
    replace(status);
    replace(headBadge, entries.length ? badge(summarize(entries).status) : null);
    if (entries.length === 0) {
      replace(body, notice(`No instances of “${name}” are registered.`, 'info', 'no-instances'));
      return;
    }
    replace(body, entries.map(instanceCard));
  };

  watch(`/v1/health/service/${encodeURIComponent(name)}`, (data) => render(data || []),
    { signal, onError: (e) => replace(status, notice(`Could not load instances: ${e.message}`, 'error')) });
}

function instanceCard(entry) {
  const svc = entry.Service || {};
  const node = entry.Node || {};
  const checks = entry.Checks || [];
  const addr = `${svc.Address || node.Address || ''}:${svc.Port ?? ''}`;
  return h('section', { class: 'card', 'data-testid': 'instance', 'data-instance': svc.ID, 'data-node': node.Node },
    h('header', { class: 'card-head' },
      h('span', { class: 'strong' }, svc.ID), ' ',
      badge(worst(checks.map((c) => c.Status))),
      h('span', { class: 'muted' }, ' on ', h('a', { href: `#/nodes/${encodeURIComponent(node.Node || '')}` }, node.Node), ' · ', h('code', null, addr)),
      ' ', tagList(svc.Tags)),
    checksTable(checks));
}

/** The checks table shared by the service and node pages. */
export function checksTable(checks) {
  if (!checks.length) return notice('No health checks.', 'info', 'no-checks');
  return h('table', { class: 'grid checks', 'data-testid': 'checks-table' },
    h('thead', null, h('tr', null, h('th', null, 'Check ID'), h('th', null, 'Name'), h('th', null, 'Status'), h('th', null, 'Output'))),
    h('tbody', null, checks.map((c) => h('tr', { 'data-testid': 'check-row', 'data-check': c.CheckID },
      h('td', null, h('code', null, c.CheckID)),
      h('td', null, c.Name, c.ServiceName ? h('span', { class: 'muted' }, ` (${c.ServiceName})`) : null),
      h('td', null, badge(c.Status)),
      h('td', null, c.Output ? h('pre', { class: 'output' }, c.Output) : h('span', { class: 'muted' }, '—'))))));
}
