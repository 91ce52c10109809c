// kv.js — the KV tab: browse folders (#/kv/<prefix>/), create keys, and view, edit or delete
// one key (#/kv/<key>). Keys and values are shown as text only.

import { h, replace, notice, decodeValue, encodePath } from '../lib/dom.js';
import { watch, request } from '../lib/api.js';

const kvHref = (key) => `#/kv/${encodePath(key)}`;
const kvApi = (key) => `/v1/kv/${encodePath(key)}`;

/** The parent folder of a key or folder ("a/b/c" -> "a/b/", "a/b/" -> "a/", "a" -> ""). */
function parentOf(key) {
  const trimmed = key.endsWith('/') ? key.slice(0, -1) : key;
  const i = trimmed.lastIndexOf('/');
  return i < 0 ? '' : trimmed.slice(0, i + 1);
}

/** Breadcrumb links: KV / app / config / */
function crumbs(path) {
  const parts = [h('a', { href: '#/kv/', class: 'crumb', 'data-testid': 'kv-crumb-root' }, 'Key/Value')];
  let acc = '';
  const segs = path.split('/');
  segs.forEach((seg, i) => {
    const last = i === segs.length - 1;
    if (last && seg === '') return;
    acc += last ? seg : `${seg}/`;
    parts.push(' / ', last ? h('span', { 'data-testid': 'kv-current' }, seg) : h('a', { href: kvHref(acc), class: 'crumb' }, seg));
  });
  return h('h2', { class: 'crumbs' }, parts);
}

/** #/kv/<path>: a folder when the path is empty or ends with "/", otherwise one key. */
export function mountKv(root, ctx) {
  const path = ctx.params.path;
  if (path === '' || path.endsWith('/')) mountFolder(root, path, ctx);
  else mountKey(root, path, ctx);
}

/** A folder: one blocking watch on /v1/kv/<prefix>?keys&separator=/ (404 = empty). */
function mountFolder(root, prefix, { signal, navigate }) {
  const status = h('div');
  const tbody = h('tbody');
  const formMsg = h('div', { 'data-testid': 'kv-form-message' });
  const keyInput = h('input', { type: 'text', id: 'kv-new-key', 'data-testid': 'kv-new-key', placeholder: 'name, or folder/ to make a folder', autocomplete: 'off', required: true });
  const valueInput = h('textarea', { id: 'kv-new-value', 'data-testid': 'kv-new-value', rows: 4, placeholder: 'value' });

  async function create(ev) {
    ev.preventDefault();
    const name = keyInput.value;
    if (!name.trim()) { replace(formMsg, notice('Enter a key name.', 'error')); return; }
    const key = prefix + name.replace(/^\/+/, '');
    const body = key.endsWith('/') ? '' : valueInput.value;
    try {
      // cas=0 writes only if the key does not exist yet, so "Create" never overwrites.
      const res = await request('PUT', `${kvApi(key)}?cas=0`, { body });
      if (res.data !== true) { replace(formMsg, notice(`“${key}” already exists.`, 'error')); return; }
      keyInput.value = '';
      valueInput.value = '';
      replace(formMsg, notice(`Created “${key}”.`, 'success'));
    } catch (err) {
      replace(formMsg, notice(`Could not create “${key}”: ${err.message}`, 'error'));
    }
  }

  const deleteFolder = prefix === '' ? null : confirmButton('Delete folder', 'kv-delete-folder', async () => {
    await request('DELETE', `${kvApi(prefix)}?recurse`);
    navigate(kvHref(parentOf(prefix)));
  }, (err) => replace(status, notice(`Could not delete: ${err.message}`, 'error')));

  replace(root,
    h('div', { class: 'toolbar' }, crumbs(prefix), deleteFolder),
    status,
    h('table', { class: 'grid', 'data-testid': 'kv-table' },
      h('thead', null, h('tr', null, h('th', null, 'Key'))), tbody),
    h('form', { class: 'card form', 'data-testid': 'kv-create-form', onsubmit: create },
      h('h3', null, 'Create a key', prefix ? h('span', { class: 'muted' }, ' in ', h('code', null, prefix)) : null),
      h('label', { for: 'kv-new-key' }, 'Key'), keyInput,
      h('label', { for: 'kv-new-value' }, 'Value'), valueInput,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', 'data-testid': 'kv-create' }, 'Create')),
      formMsg));
  replace(status, notice('Loading keys…'));

  watch(`${kvApi(prefix)}?keys&separator=/`, (keys) => {
    replace(status);
    const list = (keys || []).filter((k) => k !== prefix).sort();
    replace(tbody, list.map((k) => {
      const folder = k.endsWith('/');
      return h('tr', { 'data-testid': 'kv-row', 'data-key': k, 'data-kind': folder ? 'folder' : 'key' },
        h('td', null, h('a', { href: kvHref(k), class: folder ? 'kv-folder' : 'kv-key' }, k.slice(prefix.length))));
    }));
    if (list.length === 0) tbody.append(h('tr', null, h('td', { class: 'empty' }, prefix ? 'This folder is empty.' : 'No keys yet.')));
  }, { signal, allow404: true, onError: (e) => replace(status, notice(`Could not list keys: ${e.message}`, 'error')) });
}

/**
 * One key: a blocking watch on /v1/kv/<key>. The editor fills from the server until the user
 * types; a change on the server after that is announced instead of overwriting the edit.
 * Save uses ?cas=<ModifyIndex> so it never silently clobbers someone else's write.
 */
function mountKey(root, key, { signal, navigate }) {
  let current = null; // last entry from the server (null = missing)
  let loadedIndex = 0; // ModifyIndex the editor text came from
  let dirty = false;

  const status = h('div');
  const meta = h('dl', { class: 'meta', 'data-testid': 'kv-meta' });
  const msg = h('div', { 'data-testid': 'kv-message' });
  const editor = h('textarea', { id: 'kv-value', 'data-testid': 'kv-value', rows: 10, spellcheck: 'false', oninput: () => { dirty = true; } });
  const saveBtn = h('button', { type: 'submit', class: 'primary', 'data-testid': 'kv-save' }, 'Save');
  const del = confirmButton('Delete', 'kv-delete', async () => {
    await request('DELETE', kvApi(key));
    navigate(kvHref(parentOf(key)));
  }, (err) => replace(msg, notice(`Could not delete: ${err.message}`, 'error')));

  function load(entry) {
    const v = decodeValue(entry?.Value);
    editor.value = v.text;
    editor.readOnly = v.binary;
    loadedIndex = entry?.ModifyIndex ?? 0;
    dirty = false;
    replace(status, v.binary ? notice(`Binary value (${v.size} bytes), shown as base64 and read-only.`) : null);
  }

  async function save(ev) {
    ev.preventDefault();
    try {
      // cas=0 for a key that does not exist (yet); its ModifyIndex otherwise.
      const res = await request('PUT', `${kvApi(key)}?cas=${current ? loadedIndex : 0}`, { body: editor.value });
      if (res.data !== true) {
        replace(msg, notice('Not saved: the key changed on the server since you loaded it. Load the new value and edit again.', 'error'));
        return;
      }
      dirty = false;
      replace(msg, notice('Saved.', 'success'));
    } catch (err) {
      replace(msg, notice(`Could not save: ${err.message}`, 'error'));
    }
  }

  replace(root,
    h('div', { class: 'toolbar' }, crumbs(key)),
    h('code', { class: 'kv-fullkey', 'data-testid': 'kv-key' }, key),
    status,
    h('form', { class: 'card form', 'data-testid': 'kv-edit-form', onsubmit: save },
      h('label', { for: 'kv-value' }, 'Value'), editor,
      h('div', { class: 'actions' }, saveBtn, del),
      msg),
    meta);
  replace(status, notice('Loading…'));

  watch(kvApi(key), (data) => {
    const entry = Array.isArray(data) ? data[0] || null : null;
    current = entry;
    if (!entry) {
      replace(status, notice('This key does not exist. Save to create it.', 'info', 'kv-missing'));
      replace(meta);
      del.hidden = true;
      if (!dirty) load(null);
      return;
    }
    del.hidden = false;
    if (!dirty) load(entry);
    else if (entry.ModifyIndex !== loadedIndex) {
      replace(msg, notice('This key changed on the server while you were editing. ', 'warning', 'kv-conflict'),
        h('button', { type: 'button', 'data-testid': 'kv-reload', onclick: () => { load(current); replace(msg); } }, 'Load server value'));
    }
    replace(meta,
      h('dt', null, 'Flags'), h('dd', null, entry.Flags ?? 0),
      h('dt', null, 'Create index'), h('dd', null, entry.CreateIndex),
      h('dt', null, 'Modify index'), h('dd', { 'data-testid': 'kv-modify-index' }, entry.ModifyIndex),
      h('dt', null, 'Lock index'), h('dd', null, entry.LockIndex ?? 0),
      h('dt', null, 'Session'), h('dd', null, entry.Session || '—'));
  }, { signal, allow404: true, onError: (e) => replace(status, notice(`Could not load key: ${e.message}`, 'error')) });
}

/** A button that asks inline ("Really delete? Yes / Cancel") before running `action`. */
function confirmButton(label, testid, action, onError) {
  const box = h('span', { class: 'confirm' });
  const ask = () => replace(box,
    h('span', { class: 'muted' }, 'Really delete? '),
    h('button', { type: 'button', class: 'danger', 'data-testid': `${testid}-confirm`, onclick: async () => {
      try { await action(); } catch (err) { onError(err); reset(); }
    } }, 'Yes, delete'), ' ',
    h('button', { type: 'button', 'data-testid': `${testid}-cancel`, onclick: () => reset() }, 'Cancel'));
  const reset = () => replace(box, h('button', { type: 'button', class: 'danger', 'data-testid': testid, onclick: ask }, label));
  reset();
  return box;
}
