// editor.js — the KV value editor: a plain <textarea> (so the browser's editing, undo and
// accessibility stay intact) over a highlighted copy of its text, with a line-number gutter.
// The highlighter is a small hand-written tokenizer for JSON, YAML and HCL; values above
// HIGHLIGHT_BYTES_MAX are shown without colours.

import { h } from './dom.js';

const HIGHLIGHT_BYTES_MAX = 200 * 1024;

// One regex per language; each alternative is a named group whose name is the CSS class.
const TOKENS = {
  json: /(?<key>"(?:[^"\\\n]|\\.)*"(?=\s*:))|(?<str>"(?:[^"\\\n]|\\.)*"?)|(?<num>-?\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b)|(?<lit>\b(?:true|false|null)\b)|(?<punc>[{}[\],:])/g,
  yaml: /(?<com>(?:^|(?<=\s))#.*$)|(?<key>^[ \t]*(?:- +)?[^\s#:'"][^:\n]*?(?=:(?:\s|$)))|(?<str>"(?:[^"\\\n]|\\.)*"?|'(?:[^'\n]|'')*'?)|(?<num>\b-?\d+(?:\.\d+)?\b)|(?<lit>\b(?:true|false|null|yes|no|on|off)\b|~)|(?<punc>^[ \t]*-(?= )|[{}[\],]|---)/gm,
  hcl: /(?<com>#.*$|\/\/.*$|\/\*.*?(?:\*\/|$))|(?<str>"(?:[^"\\\n]|\\.)*"?)|(?<key>^[ \t]*[A-Za-z_][\w.-]*(?=\s*=))|(?<lit>\b(?:true|false|null)\b)|(?<num>\b-?\d+(?:\.\d+)?\b)|(?<block>^[ \t]*[A-Za-z_][\w-]*(?=\s*(?:"[^"\n]*"\s*)*\{))|(?<punc>[{}[\]=,()])/gm,
};

/** Highlighted children for `text` in `language` (plain text for none or huge values). */
function highlight(text, language) {
  const re = TOKENS[language];
  if (!re || text.length > HIGHLIGHT_BYTES_MAX) return [text];
  const out = [];
  let at = 0;
  re.lastIndex = 0;
  let m;
  while ((m = re.exec(text))) {
    if (m[0] === '') { re.lastIndex += 1; continue; }
    if (m.index > at) out.push(text.slice(at, m.index));
    const kind = Object.keys(m.groups).find((k) => m.groups[k] !== undefined);
    out.push(h('span', { class: `tok-${kind}` }, m[0]));
    at = m.index + m[0].length;
  }
  if (at < text.length) out.push(text.slice(at));
  return out;
}

/**
 * {el, textarea, setValue(text), setLanguage(lang), setReadOnly(bool)}. `oninput` runs on every
 * edit. The textarea keeps the `id` and `data-testid` given.
 */
export function codeEditor({ id, testid, label, oninput }) {
  let language = '';
  const gutter = h('div', { class: 'gutter', 'aria-hidden': 'true' });
  const shade = h('pre', { class: 'shade', 'aria-hidden': 'true' });
  const textarea = h('textarea', { id, 'data-testid': testid, spellcheck: 'false', wrap: 'off', autocomplete: 'off',
    autocapitalize: 'off', rows: 12, 'aria-label': label });
  const el = h('div', { class: 'editor' }, gutter, h('div', { class: 'code' }, shade, textarea));

  let lines = 0;
  function paint() {
    const text = textarea.value;
    const count = text.split('\n').length;
    if (count !== lines) {
      lines = count;
      gutter.textContent = Array.from({ length: count }, (_, i) => i + 1).join('\n');
    }
    shade.replaceChildren(...highlight(text, language), '\n');
    sync();
  }
  function sync() {
    shade.scrollTop = textarea.scrollTop;
    shade.scrollLeft = textarea.scrollLeft;
    gutter.scrollTop = textarea.scrollTop;
  }
  textarea.addEventListener('input', () => { paint(); oninput?.(); });
  textarea.addEventListener('scroll', sync, { passive: true });
  // Tab indents instead of leaving the field; Escape then Tab still leaves it.
  let escaped = false;
  textarea.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { escaped = true; return; }
    if (e.key === 'Tab' && !escaped && !e.shiftKey && !textarea.readOnly) {
      e.preventDefault();
      document.execCommand('insertText', false, '  ');
    }
    escaped = false;
  });
  return {
    el, textarea,
    setValue(text) { textarea.value = text; paint(); },
    setLanguage(lang) { language = lang; paint(); },
    setReadOnly(on) { textarea.readOnly = on; el.classList.toggle('readonly', on); },
  };
}
