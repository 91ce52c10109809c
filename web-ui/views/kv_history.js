// kv_history.js — a key's earlier versions (cairn keeps `kv_history_versions` per key, read
// with GET /v1/kv/<key>?history, newest first, the live one included) and "Restore": the old
// bytes and flags written back with ?cas=<current ModifyIndex>, so a newer write is never lost.
// Shown only when the agent keeps more than one version.

import { h, replace, notice, decodeValue, confirmButton } from '../lib/dom.js';
import { request, withQuery } from '../lib/api.js';
import { watch } from '../lib/live.js';

const PREVIEW_CHARS_MAX = 120;

export function kvHistory(box, key, { signal, current, onMessage }) {
  const api = `/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`;
  watch(withQuery(api, { history: true }), (versions) => {
    const older = (versions || []).slice(1);
    if (!older.length) { replace(box); return; }
    replace(box, h('h2', null, 'History'),
      h('p', { class: 'muted' }, `${older.length} earlier version${older.length === 1 ? '' : 's'} kept by the agent (kv_history_versions).`),
      h('div', { class: 'scroll-x' }, h('table', { class: 'grid', 'data-testid': 'kv-history' },
        h('thead', null, h('tr', null, ['Modify index', 'Flags', 'Size', 'Value', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', null, older.map((v) => {
          const value = decodeValue(v.Value);
          const preview = value.binary ? `binary, ${value.size} bytes` : value.text.slice(0, PREVIEW_CHARS_MAX) + (value.text.length > PREVIEW_CHARS_MAX ? '…' : '');
          return h('tr', { 'data-testid': 'kv-version', 'data-index': v.ModifyIndex },
            h('td', null, v.ModifyIndex),
            h('td', null, v.Flags ?? 0),
            h('td', null, `${value.size} B`),
            h('td', null, h('code', { class: value.binary ? 'muted' : '' }, preview)),
            h('td', null, confirmButton('Restore', 'kv-restore', async () => {
              const live = current();
              const res = await request('PUT', withQuery(api, { cas: live ? live.ModifyIndex : 0, flags: v.Flags || null }), { body: value.bytes });
              onMessage(res.data === true
                ? notice(`Restored the version of index ${v.ModifyIndex}.`, 'success', 'kv-restored')
                : notice('Not restored: the key changed meanwhile. Look again and retry.', 'error', 'kv-cas-conflict'));
            }, (err) => onMessage(notice(`Could not restore: ${err.message}`, 'error')), 'Write this version back? ')));
        }))))); 
  }, { signal, allow404: true, onError: () => replace(box) });
}
