// service.js — one service (#/services/<name>): its instances with address, tags and checks,
// from one blocking query on /v1/health/service/<name>; and one instance
// (#/services/<name>/instances/<node>/<id>): address, port, tagged addresses, meta, weights and
// every check with its type, interval, notes (a maintenance reason) and output. Also the
// checks table the node page shares.

import { h, replace, badge, worstCheck, checkStatus, isMaintenance, tagList, kvList, notice, errorNotice, encodePath } from '../lib/dom.js';
import { watch } from '../lib/live.js';

const CARDS_SHOWN_MAX = 100;

export const instanceHref = (name, node, id) => `#/services/${encodePath(name)}/instances/${encodePath(node)}/${encodePath(id)}`;

export function mountServiceDetail(root, { signal, params, setTitle }) {
  const name = params.name;
  setTitle(name);
  const status = h('div');
  const body = h('div', { 'data-testid': 'service-instances' });
  const headBadge = h('span');
  const summary = h('p', { class: 'muted', 'data-testid': 'service-summary' });
  let showAll = false;
  let last = [];
  replace(root,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/services' }, 'Services'), ' / '),
    h('div', { class: 'toolbar' }, h('h1', null, h('span', { 'data-testid': 'service-name' }, name), ' ', headBadge)),
    summary, status, body);
  replace(status, notice('Loading instances…'));

  const render = (entries) => {
    last = entries;
    replace(status);
    const checks = entries.flatMap((e) => e.Checks || []);
    replace(headBadge, entries.length ? badge(worstCheck(checks)) : null);
    const nodes = new Set(entries.map((e) => e.Node?.Node));
    replace(summary, `${entries.length} instance${entries.length === 1 ? '' : 's'} on ${nodes.size} node${nodes.size === 1 ? '' : 's'}`);
    if (entries.length === 0) {
      replace(body, notice(`No instances of “${name}” are registered.`, 'info', 'no-instances'));
      return;
    }
    const shown = showAll ? entries : entries.slice(0, CARDS_SHOWN_MAX);
    replace(body, shown.map((e) => instanceCard(name, e)),
      shown.length < entries.length ? h('button', { type: 'button', onclick: () => { showAll = true; render(last); } }, `Show all ${entries.length} instances`) : null);
  };

  watch(`/v1/health/service/${encodePath(name)}`, (data) => render(data || []),
    { signal, onError: (e) => replace(status, errorNotice('the instances', e)) });
}

function address(svc, node) {
  return `${svc.Address || node.Address || ''}:${svc.Port ?? ''}`;
}

function instanceCard(name, entry) {
  const svc = entry.Service || {};
  const node = entry.Node || {};
  const checks = entry.Checks || [];
  return h('section', { class: 'card', 'data-testid': 'instance', 'data-instance': svc.ID, 'data-node': node.Node },
    h('header', { class: 'card-head' },
      h('a', { class: 'strong', href: instanceHref(name, node.Node || '', svc.ID || '') }, svc.ID), ' ',
      badge(worstCheck(checks)),
      h('span', { class: 'muted' }, ' on ', h('a', { href: `#/nodes/${encodePath(node.Node || '')}` }, node.Node), ' · ', h('code', null, address(svc, node))),
      ' ', tagList(svc.Tags)),
    checksTable(checks));
}

export function mountInstance(root, { signal, params, setTitle }) {
  const { name, node, id } = params;
  setTitle(`${id} on ${node}`);
  const status = h('div');
  const body = h('div');
  const headBadge = h('span');
  replace(root,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/services' }, 'Services'), ' / ',
      h('a', { href: `#/services/${encodePath(name)}` }, name), ' / '),
    h('div', { class: 'toolbar' }, h('h1', null, h('span', { 'data-testid': 'instance-id' }, id), ' ', headBadge),
      h('span', { class: 'muted' }, 'on ', h('a', { href: `#/nodes/${encodePath(node)}` }, node))),
    status, body);
  replace(status, notice('Loading the instance…'));
  watch(`/v1/health/service/${encodePath(name)}`, (data) => {
    const entry = (data || []).find((e) => e.Node?.Node === node && e.Service?.ID === id);
    replace(status);
    if (!entry) {
      replace(headBadge);
      replace(body, notice(`No instance “${id}” of “${name}” on node “${node}”.`, 'info', 'no-instance'));
      return;
    }
    const svc = entry.Service;
    const checks = entry.Checks || [];
    replace(headBadge, badge(worstCheck(checks)));
    const w = svc.Weights || {};
    replace(body,
      h('dl', { class: 'meta', 'data-testid': 'instance-facts' },
        h('dt', null, 'Address'), h('dd', null, h('code', { 'data-testid': 'instance-address' }, address(svc, entry.Node))),
        h('dt', null, 'Service address'), h('dd', null, svc.Address || h('span', { class: 'muted' }, 'the node’s')),
        h('dt', null, 'Port'), h('dd', null, svc.Port ?? '—'),
        h('dt', null, 'Node address'), h('dd', null, h('code', null, entry.Node?.Address || '—')),
        h('dt', null, 'Weights'), h('dd', { 'data-testid': 'instance-weights' }, `passing ${w.Passing ?? 1}, warning ${w.Warning ?? 1}`),
        h('dt', null, 'Tags'), h('dd', null, svc.Tags?.length ? tagList(svc.Tags) : h('span', { class: 'muted' }, 'none')),
        svc.Kind ? [h('dt', null, 'Kind'), h('dd', null, svc.Kind)] : null),
      h('h2', null, 'Tagged addresses'),
      kvList(svc.TaggedAddresses, 'instance-tagged-addresses', (v) => (v && typeof v === 'object' ? `${v.Address}:${v.Port}` : String(v))),
      h('h2', null, 'Meta'), kvList(svc.Meta, 'instance-meta'),
      h('h2', null, 'Health checks'), checksTable(checks));
  }, { signal, onError: (e) => replace(status, errorNotice('the instance', e)) });
}

/** The checks table shared by the service, instance and node pages. */
export function checksTable(checks) {
  if (!checks.length) return notice('No health checks.', 'info', 'no-checks');
  return h('div', { class: 'scroll-x' }, h('table', { class: 'grid checks', 'data-testid': 'checks-table' },
    h('thead', null, h('tr', null, ['Check', 'Status', 'Type', 'Interval', 'Notes', 'Output'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, checks.map((c) => {
      const maint = isMaintenance(c);
      return h('tr', { 'data-testid': 'check-row', 'data-check': c.CheckID, 'data-status': checkStatus(c) },
        h('td', null, h('span', { class: 'strong' }, c.Name || c.CheckID), h('br'), h('code', { class: 'muted' }, c.CheckID),
          c.ServiceName ? h('span', { class: 'muted' }, ` (${c.ServiceName})`) : null),
        h('td', null, badge(checkStatus(c)), maint ? h('div', { class: 'muted' }, `status ${c.Status}`) : null),
        h('td', { 'data-testid': 'check-type' }, c.Type || h('span', { class: 'muted' }, '—')),
        h('td', { 'data-testid': 'check-interval' }, c.Interval || c.Definition?.Interval || h('span', { class: 'muted' }, '—')),
        h('td', { 'data-testid': 'check-notes' }, c.Notes ? (maint ? h('strong', null, `Maintenance: ${c.Notes}`) : c.Notes) : h('span', { class: 'muted' }, '—')),
        h('td', null, c.Output ? h('pre', { class: 'output' }, c.Output) : h('span', { class: 'muted' }, '—')));
    }))));
}
