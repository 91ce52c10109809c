// listing.js — what the list pages (services, nodes) share: the labelled <select> of their
// filter bar, name order, the filter over loaded rows (a health status and a search text), and
// the "N of M" count. Views build their rows with a lowercased `search` string and a `status`.

import { h } from './dom.js';

/** A labelled <select> (the label is for screen readers); `value` falls back to the first option. */
export function select(testid, label, value, options, onchange) {
  const id = `sel-${testid}`;
  const el = h('select', { id, 'data-testid': testid, onchange },
    options.map(([v, text]) => h('option', { value: v }, text)));
  el.value = value;
  if (el.value !== value) el.value = options[0][0];
  return { el, box: h('span', { class: 'select' }, h('label', { for: id, class: 'visually-hidden' }, label), el) };
}

/** Rows ordered by `name`. */
export const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** The rows whose status is `status` (any when empty) and whose search text holds `text`. */
export function filterRows(rows, text, status) {
  const q = text.trim().toLowerCase();
  return (rows || []).filter((row) => (!status || row.status === status) && (!q || row.search.includes(q)));
}

/** "12 services", or "3 of 12 services" while a filter hides some; '' before the first load. */
export function countLabel(shown, rows, noun) {
  if (!rows) return '';
  return shown.length === rows.length ? `${rows.length} ${noun}` : `${shown.length} of ${rows.length} ${noun}`;
}
