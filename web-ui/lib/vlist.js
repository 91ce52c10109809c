// vlist.js — a virtualised table body: of thousands of rows only those near the viewport are
// in the DOM (window scrolling, fixed row height from the table's `--row-h` CSS variable),
// with spacer rows above and below keeping the scrollbar true. Rows must stay one line high
// (the `.vtable` styles make cells nowrap with an ellipsis).

const OVERSCAN = 8;

/**
 * `renderRow(item)` returns a <tr> (built once per item object and reused). `empty()` returns the <tr> shown for no rows. Returns
 * {set(items)}; call set() whenever the rows (or their order) change.
 */
export function virtualBody(table, tbody, { renderRow, empty, columns, signal }) {
  let items = [];
  let first = -1;
  let last = -1;
  let frame = 0;
  const top = spacer(columns);
  const bottom = spacer(columns);
  // Rows already built, by item: a filter keystroke re-shows them instead of rebuilding them.
  // New data means new item objects, so a changed row is always rebuilt.
  const built = new WeakMap();
  let rowH = 0; // read from CSS once, and again on resize (the phone layout changes it)

  const rowHeight = () => rowH || (rowH = parseFloat(getComputedStyle(table).getPropertyValue('--row-h')) || 40);
  const rowFor = (item, i) => {
    if (typeof item !== 'object' || item === null) return renderRow(item, i); // (KV keys: strings)
    let tr = built.get(item);
    if (!tr) { tr = renderRow(item, i); built.set(item, tr); }
    return tr;
  };

  function draw(force) {
    frame = 0;
    if (!items.length) {
      first = last = -1;
      tbody.replaceChildren(empty());
      return;
    }
    const rowH = rowHeight();
    const offset = -tbody.getBoundingClientRect().top;
    const visible = Math.ceil(window.innerHeight / rowH);
    const start = Math.max(0, Math.floor(Math.max(0, offset) / rowH) - OVERSCAN);
    const end = Math.min(items.length, start + visible + 2 * OVERSCAN);
    if (!force && start === first && end === last) return;
    first = start;
    last = end;
    top.firstChild.style.height = `${start * rowH}px`;
    bottom.firstChild.style.height = `${(items.length - end) * rowH}px`;
    const rows = [];
    for (let i = start; i < end; i += 1) rows.push(rowFor(items[i], i));
    tbody.replaceChildren(...(start > 0 ? [top] : []), ...rows, ...(end < items.length ? [bottom] : []));
  }

  const schedule = () => { if (!frame) frame = requestAnimationFrame(() => draw(false)); };
  window.addEventListener('scroll', schedule, { passive: true });
  const resized = () => { rowH = 0; schedule(); };
  window.addEventListener('resize', resized, { passive: true });
  signal?.addEventListener('abort', () => {
    window.removeEventListener('scroll', schedule);
    window.removeEventListener('resize', resized);
    cancelAnimationFrame(frame);
  });
  return {
    set(next) {
      items = next;
      draw(true);
    },
  };
}

function spacer(columns) {
  const tr = document.createElement('tr');
  tr.className = 'spacer';
  tr.setAttribute('aria-hidden', 'true');
  const td = document.createElement('td');
  td.colSpan = columns;
  tr.append(td);
  return tr;
}
