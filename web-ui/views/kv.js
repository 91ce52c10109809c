// kv.js — the KV tab: browse and search folders (#/kv/<prefix>/), create keys, and view,
// edit, delete or roll back one key (#/kv/<key>). Values are never corrupted: a binary value
// stays read-only (Save is disabled; it can be downloaded), a save keeps the key's Flags and
// uses ?cas= so it never clobbers a newer write, and JSON/YAML/HCL are checked before saving.

import { h, replace, notice, errorNotice, decodeValue, encodePath, confirmButton } from '../lib/dom.js';
import { request, withQuery } from '../lib/api.js';
import { watch } from '../lib/live.js';
import { virtualBody } from '../lib/vlist.js';
import { codeEditor } from '../lib/editor.js';
import { languageOf, validate } from '../lib/validate.js';
import { select } from '../lib/listing.js';
import { kvHistory } from './kv_history.js';

export const kvHref = (key) => `#/kv/${encodePath(key)}`;
export const kvApi = (key) => `/v1/kv/${encodePath(key)}`;

/** The parent folder of a key or folder ("a/b/c" -> "a/b/", "a/b/" -> "a/", "a" -> ""). */
function parentOf(key) {
  const trimmed = key.endsWith('/') ? key.slice(0, -1) : key;
  const i = trimmed.lastIndexOf('/');
  return i < 0 ? '' : trimmed.slice(0, i + 1);
}

/** Breadcrumb links (Key/Value / app / config /) and the page heading (the last part). */
function heading(path) {
  const parts = [h('a', { href: '#/kv/', class: 'crumb', 'data-testid': 'kv-crumb-root' }, 'Key/Value')];
  let acc = '';
  const segs = path.split('/');
  let last = '';
  segs.forEach((seg, i) => {
    const end = i === segs.length - 1 || (i === segs.length - 2 && segs[i + 1] === '');
    acc += i === segs.length - 1 ? seg : `${seg}/`;
    if (end) { if (seg !== '' || i === 0) last = seg; return; }
    parts.push(' / ', h('a', { href: kvHref(acc), class: 'crumb' }, seg));
  });
  if (path === '') last = 'Key/Value';
  return [h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, path ? [parts, ' / '] : null),
    h('h1', null, h('span', { 'data-testid': 'kv-current' }, last))];
}

/** #/kv/<path>: a folder when the path is empty or ends with "/", otherwise one key. */
export function mountKv(root, ctx) {
  const path = ctx.params.path;
  if (path === '' || path.endsWith('/')) mountFolder(root, path, ctx);
  else mountKey(root, path, ctx);
}

/** A folder: one blocking watch on ?keys&separator=/ (404 = empty); search in the folder. */
function mountFolder(root, prefix, { signal, navigate, query, setQuery, setTitle }) {
  setTitle(prefix || null);
  let listing = null;
  let everything = null; // every key under the prefix, loaded when searching subfolders
  const status = h('div');
  const formMsg = h('div', { 'data-testid': 'kv-form-message' });
  const keyInput = h('input', { type: 'text', id: 'kv-new-key', 'data-testid': 'kv-new-key', placeholder: 'name, or folder/ to make a folder', autocomplete: 'off', required: true });
  const valueInput = h('textarea', { id: 'kv-new-value', 'data-testid': 'kv-new-value', rows: 4, placeholder: 'value' });
  const search = h('input', { type: 'search', class: 'filter', 'data-testid': 'kv-search', 'aria-label': 'Search keys in this folder',
    placeholder: 'Search in this folder', value: query.get('q') || '', oninput: () => { render(); save(); } });
  const scope = select('kv-search-scope', 'Search scope', query.get('scope') || 'here',
    [['here', 'This level'], ['all', 'Subfolders too']], () => { render(); save(); });
  const tbody = h('tbody');
  const table = h('table', { class: 'grid vtable', 'data-testid': 'kv-table' },
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Key'))), tbody);
  const body = virtualBody(table, tbody, {
    columns: 1, signal,
    renderRow: (k) => {
      const folder = k.endsWith('/');
      return h('tr', { 'data-testid': 'kv-row', 'data-key': k, 'data-kind': folder ? 'folder' : 'key' },
        h('td', null, h('a', { href: kvHref(k), class: folder ? 'kv-folder' : 'kv-key' }, k.slice(prefix.length))));
    },
    empty: () => h('tr', null, h('td', { class: 'empty' }, listing === null ? 'Loading keys…'
      : search.value ? 'No key matches the search.' : prefix ? 'This folder is empty.' : 'No keys yet.')),
  });

  const save = () => setQuery({ q: search.value, scope: scope.el.value === 'here' ? '' : scope.el.value });
  let allCtl = null;
  function render() {
    const q = search.value.trim().toLowerCase();
    const deep = q && scope.el.value === 'all';
    if (deep && !allCtl) {
      allCtl = new AbortController();
      signal.addEventListener('abort', () => allCtl.abort());
      watch(withQuery(kvApi(prefix), { keys: true }), (keys) => { everything = (keys || []).filter((k) => k !== prefix).sort(); render(); },
        { signal: allCtl.signal, allow404: true, onError: (e) => replace(status, errorNotice('keys', e)) });
    } else if (!deep && allCtl) { allCtl.abort(); allCtl = null; everything = null; }
    const source = deep ? (everything || []) : (listing || []);
    body.set(q ? source.filter((k) => k.slice(prefix.length).toLowerCase().includes(q)) : source);
  }

  async function create(ev) {
    ev.preventDefault();
    const name = keyInput.value;
    if (!name.trim()) { replace(formMsg, notice('Enter a key name.', 'error')); return; }
    const key = prefix + name.replace(/^\/+/, '');
    const text = key.endsWith('/') ? '' : valueInput.value;
    try {
      // cas=0 writes only if the key does not exist yet, so "Create" never overwrites.
      const res = await request('PUT', `${kvApi(key)}?cas=0`, { body: text });
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
  }, (err) => replace(status, notice(`Could not delete: ${err.message}`, 'error')), 'Delete this folder and every key in it? ');

  replace(root,
    ...heading(prefix).slice(0, 1),
    h('div', { class: 'toolbar' }, heading(prefix)[1], deleteFolder),
    h('div', { class: 'filters' }, search, scope.box),
    status, table,
    h('form', { class: 'card form', 'data-testid': 'kv-create-form', onsubmit: create },
      h('h2', null, 'Create a key', prefix ? h('span', { class: 'muted' }, ' in ', h('code', null, prefix)) : null),
      h('label', { for: 'kv-new-key' }, 'Key'), keyInput,
      h('label', { for: 'kv-new-value' }, 'Value'), valueInput,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', 'data-testid': 'kv-create' }, 'Create')),
      formMsg));

  watch(`${kvApi(prefix)}?keys&separator=/`, (keys) => {
    replace(status);
    listing = (keys || []).filter((k) => k !== prefix).sort();
    render();
  }, { signal, allow404: true, onError: (e) => replace(status, errorNotice('keys', e)) });
  render();
}

/**
 * One key: a blocking watch on /v1/kv/<key>. The editor fills from the server until the user
 * types; a change on the server after that is announced instead of overwriting the edit.
 */
function mountKey(root, key, { signal, navigate, setTitle }) {
  setTitle(key);
  let current = null; // last entry from the server (null = missing)
  let loaded = null; // the entry the editor text came from
  let binary = false;
  let dirty = false;
  let confirmInvalid = false;

  const status = h('div');
  const meta = h('dl', { class: 'meta', 'data-testid': 'kv-meta' });
  const msg = h('div', { 'data-testid': 'kv-message', 'aria-live': 'polite' });
  const check = h('div', { 'data-testid': 'kv-validation', 'aria-live': 'polite' });
  const editor = codeEditor({ id: 'kv-value', testid: 'kv-value', label: 'Value', oninput: () => { dirty = true; confirmInvalid = false; revalidate(); } });
  const lang = select('kv-language', 'Syntax', 'auto', [['auto', 'Auto'], ['', 'Plain text'], ['json', 'JSON'], ['yaml', 'YAML'], ['hcl', 'HCL']],
    () => { editor.setLanguage(language()); revalidate(); });
  const saveBtn = h('button', { type: 'submit', class: 'primary', 'data-testid': 'kv-save' }, 'Save');
  const download = h('a', { class: 'button', 'data-testid': 'kv-download', download: key.split('/').pop(), hidden: true }, 'Download');
  const del = confirmButton('Delete', 'kv-delete', async () => {
    await request('DELETE', kvApi(key));
    navigate(kvHref(parentOf(key)));
  }, (err) => replace(msg, notice(`Could not delete: ${err.message}`, 'error')));
  const historyBox = h('div');

  const language = () => (lang.el.value === 'auto' ? languageOf(key, editor.textarea.value) : lang.el.value);
  function revalidate() {
    const problem = binary ? null : validate(language(), editor.textarea.value);
    saveBtn.textContent = problem && confirmInvalid ? 'Save anyway' : 'Save';
    replace(check, problem ? notice(`Not valid ${language().toUpperCase()}${problem.line ? ` (line ${problem.line})` : ''}: ${problem.message}`, 'warning', 'kv-invalid') : null);
    return problem;
  }

  function load(entry) {
    const v = decodeValue(entry?.Value);
    binary = v.binary;
    editor.setValue(v.text);
    editor.setLanguage(binary ? '' : language());
    editor.setReadOnly(binary);
    saveBtn.disabled = binary;
    loaded = entry;
    dirty = false;
    confirmInvalid = false;
    if (download.href) URL.revokeObjectURL(download.href);
    download.hidden = !binary;
    if (binary) download.href = URL.createObjectURL(new Blob([v.bytes]));
    replace(status, binary ? notice(`Binary value (${v.size} bytes), shown as base64 and read-only: saving text here would replace its bytes.`, 'info', 'kv-binary') : null);
    revalidate();
  }

  async function save(ev) {
    ev.preventDefault();
    if (binary) return;
    if (revalidate() && !confirmInvalid) {
      confirmInvalid = true;
      revalidate();
      replace(msg, notice('The value is not valid. Fix it, or press “Save anyway”.', 'warning', 'kv-invalid-confirm'));
      return;
    }
    // cas=0 for a key that does not exist (yet); its ModifyIndex otherwise. Flags are kept.
    const params = { cas: current && loaded ? loaded.ModifyIndex : 0, flags: loaded?.Flags || null };
    try {
      const res = await request('PUT', withQuery(kvApi(key), params), { body: editor.textarea.value });
      if (res.data !== true) {
        replace(msg, notice('Not saved: the key changed on the server since you loaded it. Load the new value and edit again.', 'error', 'kv-cas-conflict'),
          h('button', { type: 'button', 'data-testid': 'kv-reload', onclick: () => { load(current); replace(msg); } }, 'Load server value'));
        return;
      }
      dirty = false;
      confirmInvalid = false;
      revalidate();
      replace(msg, notice('Saved.', 'success'));
    } catch (err) {
      replace(msg, notice(`Could not save: ${err.message}`, 'error'));
    }
  }

  const [crumbs, title] = heading(key);
  replace(root, crumbs,
    h('div', { class: 'toolbar' }, title),
    h('code', { class: 'kv-fullkey', 'data-testid': 'kv-key' }, key),
    status,
    h('form', { class: 'card form wide', 'data-testid': 'kv-edit-form', onsubmit: save },
      h('div', { class: 'editor-bar' }, h('label', { for: 'kv-value' }, 'Value'), lang.box),
      editor.el, check,
      h('div', { class: 'actions' }, saveBtn, download, del),
      msg),
    meta, historyBox);
  replace(status, notice('Loading…'));

  watch(kvApi(key), (data) => {
    const entry = Array.isArray(data) ? data[0] || null : null;
    current = entry;
    if (!entry) {
      replace(status, notice('This key does not exist. Save to create it.', 'info', 'kv-missing'));
      replace(meta);
      del.hidden = true;
      if (!dirty) { load(null); replace(status, notice('This key does not exist. Save to create it.', 'info', 'kv-missing')); }
      return;
    }
    del.hidden = false;
    if (!dirty) load(entry);
    else if (entry.ModifyIndex !== loaded?.ModifyIndex) {
      replace(msg, notice('This key changed on the server while you were editing. ', 'warning', 'kv-conflict'),
        h('button', { type: 'button', 'data-testid': 'kv-reload', onclick: () => { load(current); replace(msg); } }, 'Load server value'));
    }
    replace(meta,
      h('dt', null, 'Flags'), h('dd', { 'data-testid': 'kv-flags' }, entry.Flags ?? 0),
      h('dt', null, 'Create index'), h('dd', null, entry.CreateIndex),
      h('dt', null, 'Modify index'), h('dd', { 'data-testid': 'kv-modify-index' }, entry.ModifyIndex),
      h('dt', null, 'Lock index'), h('dd', null, entry.LockIndex ?? 0),
      h('dt', null, 'Session'), h('dd', null, entry.Session
        ? h('a', { href: `#/sessions/${encodePath(entry.Session)}`, 'data-testid': 'kv-session' }, entry.Session) : '—'));
  }, { signal, allow404: true, onError: (e) => replace(status, errorNotice('this key', e)) });

  kvHistory(historyBox, key, { signal, current: () => current, onMessage: (node) => replace(msg, node) });
}
