// acl.js — the ACL tab (#/acls/tokens, #/acls/policies, #/acls/roles): the agent's tokens,
// policies and roles, each one blocking query on /v1/acl/<kind>s. A token without
// acl:read sees a clear "permission denied"; an agent with ACLs off says so.

import { h, replace, notice, errorNotice } from '../lib/dom.js';
import { watch } from '../lib/live.js';

const KINDS = {
  tokens: { title: 'Tokens', path: '/v1/acl/tokens', columns: ['Accessor ID', 'Description', 'Policies and roles', 'Scope'],
    row: (t) => [h('code', null, t.AccessorID), t.Description || '—', links(t), t.Local ? 'local' : 'global'], id: (t) => t.AccessorID },
  policies: { title: 'Policies', path: '/v1/acl/policies', columns: ['Name', 'ID', 'Description', 'Datacenters'],
    row: (p) => [h('strong', null, p.Name), h('code', null, p.ID), p.Description || '—', (p.Datacenters || []).join(', ') || 'all'], id: (p) => p.ID },
  roles: { title: 'Roles', path: '/v1/acl/roles', columns: ['Name', 'ID', 'Description', 'Policies'],
    row: (r) => [h('strong', null, r.Name), h('code', null, r.ID), r.Description || '—', links(r)], id: (r) => r.ID },
};

function links(x) {
  const names = [...(x.Policies || []).map((p) => p.Name), ...(x.Roles || []).map((r) => `role ${r.Name}`),
    ...(x.ServiceIdentities || []).map((s) => `service ${s.ServiceName}`), ...(x.NodeIdentities || []).map((n) => `node ${n.NodeName}`),
    ...(x.TemplatedPolicies || []).map((t) => t.TemplateName)];
  return names.length ? names.join(', ') : '—';
}

export function mountAcl(root, { signal, params, setTitle }) {
  const kind = KINDS[params.kind];
  setTitle(kind.title);
  const status = h('div');
  const body = h('div');
  replace(root,
    h('div', { class: 'toolbar' }, h('h1', null, `ACL ${kind.title.toLowerCase()}`)),
    h('nav', { class: 'subtabs', 'aria-label': 'ACL sections' }, Object.entries(KINDS).map(([k, v]) =>
      h('a', { href: `#/acls/${k}`, 'data-testid': `acl-tab-${k}`, class: k === params.kind ? 'active' : null, 'aria-current': k === params.kind ? 'page' : null }, v.title))),
    status, body);
  replace(status, notice(`Loading ${kind.title.toLowerCase()}…`));
  watch(kind.path, (list) => {
    replace(status);
    const items = list || [];
    replace(body, items.length === 0 ? notice(`No ${kind.title.toLowerCase()}.`) : h('div', { class: 'scroll-x' },
      h('table', { class: 'grid', 'data-testid': `acl-${params.kind}` },
        h('thead', null, h('tr', null, kind.columns.map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', null, items.map((x) => h('tr', { 'data-testid': 'acl-row', 'data-id': kind.id(x) }, kind.row(x).map((c) => h('td', null, c))))))));
  }, { signal, onError: (e) => {
    if (e.status === 401 || /ACL support disabled/i.test(e.message)) replace(status, notice('ACLs are disabled on this agent.', 'info', 'acl-disabled'));
    else replace(status, errorNotice(`ACL ${kind.title.toLowerCase()}`, e));
  } });
}
