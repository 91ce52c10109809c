// node.js — one node (#/nodes/<node>): address, tagged addresses, meta, its checks
// (maintenance shown with its reason), its services and its sessions with "invalidate";
// and one session (#/sessions/<id>), where a KV lock's session link leads. Each part is one
// blocking query on the public API.

import { h, replace, badge, worstCheck, tagList, kvList, notice, errorNotice, confirmButton, encodePath, durationMs, ago } from '../lib/dom.js';
import { watch } from '../lib/live.js';
import { request } from '../lib/api.js';
import { checksTable, instanceHref } from './service.js';

export function mountNodeDetail(root, { signal, params, setTitle }) {
  const name = params.name;
  const enc = encodePath(name);
  setTitle(name);
  const info = h('div');
  const status = h('div');
  const checksBox = h('div', null, notice('Loading checks…'));
  const servicesBox = h('div');
  const sessionsBox = h('div');
  const headBadge = h('span');
  replace(root,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/nodes' }, 'Nodes'), ' / '),
    h('div', { class: 'toolbar' }, h('h1', null, h('span', { 'data-testid': 'node-detail-name' }, name), ' ', headBadge)),
    status, info,
    h('h2', null, 'Health checks'), checksBox,
    h('h2', null, 'Services'), servicesBox,
    h('h2', null, 'Sessions'), sessionsBox);

  const onError = (e) => replace(status, errorNotice('this node', e));
  watch(`/v1/health/node/${enc}`, (data) => {
    const cs = data || [];
    replace(status);
    replace(headBadge, cs.length ? badge(worstCheck(cs)) : null);
    replace(checksBox, checksTable(cs));
  }, { signal, onError });
  watch(`/v1/catalog/node/${enc}`, (data) => {
    replace(status);
    if (!data || !data.Node) {
      replace(info, notice('This node is not in the catalog.', 'info', 'node-missing'));
      replace(servicesBox);
      return;
    }
    const n = data.Node;
    replace(info,
      h('dl', { class: 'meta', 'data-testid': 'node-facts' },
        h('dt', null, 'Address'), h('dd', null, h('code', { 'data-testid': 'node-address' }, n.Address)),
        h('dt', null, 'Datacenter'), h('dd', null, n.Datacenter),
        n.ID ? [h('dt', null, 'ID'), h('dd', null, h('code', null, n.ID))] : null),
      h('h2', null, 'Tagged addresses'), kvList(n.TaggedAddresses, 'node-tagged-addresses'),
      h('h2', null, 'Meta'), kvList(n.Meta, 'node-meta'));
    const svcs = Object.values(data.Services || {}).sort((a, b) => a.ID.localeCompare(b.ID));
    replace(servicesBox, svcs.length === 0 ? notice('No services on this node.') : h('div', { class: 'scroll-x' },
      h('table', { class: 'grid', 'data-testid': 'node-services' },
        h('thead', null, h('tr', null, ['Service', 'ID', 'Address', 'Tags'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', null, svcs.map((s) => h('tr', { 'data-service': s.Service },
          h('td', null, h('a', { href: `#/services/${encodePath(s.Service)}` }, s.Service)),
          h('td', null, h('a', { href: instanceHref(s.Service, name, s.ID) }, h('code', null, s.ID))),
          h('td', null, h('code', null, `${s.Address || n.Address}:${s.Port}`)),
          h('td', null, tagList(s.Tags))))))));
  }, { signal, onError, allow404: true });
  watch(`/v1/session/node/${enc}`, (data) => {
    const sessions = data || [];
    replace(sessionsBox, sessions.length === 0 ? notice('No sessions on this node.', 'info', 'no-sessions') : h('div', { class: 'scroll-x' },
      h('table', { class: 'grid', 'data-testid': 'node-sessions' },
        h('thead', null, h('tr', null, ['Session', 'Name', 'Behavior', 'TTL', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', null, sessions.map((s) => h('tr', { 'data-session': s.ID },
          h('td', null, h('a', { href: `#/sessions/${encodePath(s.ID)}` }, h('code', null, s.ID))),
          h('td', null, s.Name || h('span', { class: 'muted' }, '—')),
          h('td', null, s.Behavior),
          h('td', null, s.TTL || '—'),
          h('td', null, confirmButton('Invalidate', 'session-invalidate', async () => {
            await request('PUT', `/v1/session/destroy/${encodeURIComponent(s.ID)}`);
          }, (err) => replace(status, notice(`Could not invalidate: ${err.message}`, 'error')), 'Invalidate this session? '))))))));
  }, { signal, onError });
}

export function mountSession(root, { signal, params, setTitle, navigate }) {
  const id = params.id;
  setTitle(`Session ${id}`);
  const status = h('div');
  const body = h('div');
  replace(root,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/nodes' }, 'Nodes'), ' / '),
    h('div', { class: 'toolbar' }, h('h1', null, 'Session ', h('code', { 'data-testid': 'session-id' }, id))),
    status, body);
  replace(status, notice('Loading the session…'));
  watch(`/v1/session/info/${encodeURIComponent(id)}`, (data) => {
    const s = Array.isArray(data) ? data[0] : null;
    replace(status);
    if (!s) {
      replace(body, notice('This session does not exist (it expired or was invalidated).', 'info', 'session-missing'));
      return;
    }
    const checks = [...(s.NodeChecks || s.Checks || []), ...(s.ServiceChecks || []).map((c) => c.ID)];
    replace(body,
      h('dl', { class: 'meta', 'data-testid': 'session-facts' },
        h('dt', null, 'Name'), h('dd', null, s.Name || '—'),
        h('dt', null, 'Node'), h('dd', null, h('a', { href: `#/nodes/${encodePath(s.Node)}`, 'data-testid': 'session-node' }, s.Node)),
        h('dt', null, 'Behavior'), h('dd', null, s.Behavior),
        h('dt', null, 'TTL'), h('dd', null, s.TTL || 'none'),
        h('dt', null, 'Lock delay'), h('dd', null, ago(durationMs(s.LockDelay))),
        h('dt', null, 'Checks'), h('dd', null, checks.length ? checks.join(', ') : 'none'),
        h('dt', null, 'Create index'), h('dd', null, s.CreateIndex)),
      h('div', { class: 'actions' }, confirmButton('Invalidate', 'session-invalidate', async () => {
        await request('PUT', `/v1/session/destroy/${encodeURIComponent(id)}`);
        navigate(`#/nodes/${encodePath(s.Node)}`);
      }, (err) => replace(status, notice(`Could not invalidate: ${err.message}`, 'error')), 'Invalidate this session? Its locks are released. ')));
  }, { signal, allow404: true, onError: (e) => replace(status, errorNotice('the session', e)) });
}
