// DataTable: the one table front end behind ModelTable, ExampleBrowser and RunsTable.
//
// Python owns the data: it pages, sorts and filters, and sends one page of rows. This view
// renders typed cells (text, time, badge, icon, thumbnail, number), sends row clicks and
// actions, and moves a keyboard selection. Every string is set as text, never as HTML.
// Pure logic is exported by name and tested by js/data_table.test.js (`node --test js/`).
// @ts-check

/**
 * The DataTable traits (patientml_widgets/widgets/data_table.py).
 * @typedef Model
 * @prop {string} title
 * @prop {Column[]} columns
 * @prop {Row[]} rows the current page
 * @prop {number} total rows on all pages
 * @prop {number} page
 * @prop {number} page_size
 * @prop {Sort} sort ({} = Python's order)
 * @prop {Filter[]} filters
 * @prop {string} active_filter "" = none
 * @prop {Action[]} actions buttons above the table
 * @prop {boolean} loading
 * @prop {string} empty_message
 * @prop {number} poll_seconds 0 = never
 * @prop {string} error
 */

/** @typedef {"text" | "time" | "badge" | "icon" | "thumbnail" | "number"} ColumnType */
/** @typedef {{ key: string, label: string, type: ColumnType, sortable: boolean }} Column */
/** @typedef {{ _id: string, [key: string]: any }} Row a row's cells by column key */
/** @typedef {{ key?: string, descending?: boolean }} Sort */
/** @typedef {{ key: string, label: string, count?: number | null }} Filter */
/** @typedef {{ key: string, label: string, primary?: boolean }} Action */

/**
 * A time string as the user reads it ("2026-11-28 14:02"), in the browser's time zone.
 * @param {string | null | undefined} value an ISO time
 * @returns {string}
 */
export function formatTime(value) {
  if (!value) return "";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const pad = (/** @type {number} */ n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/**
 * Numbers: integers as they are, others with up to 3 decimals; null as blank.
 * @param {unknown} value
 * @returns {string}
 */
export function formatNumber(value) {
  if (value === null || value === undefined || value === "") return "";
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  return Number.isInteger(n) ? n.toLocaleString("en-US") : n.toFixed(3);
}

/**
 * "1-50 of 1,234" for a page.
 * @param {number} page
 * @param {number} pageSize
 * @param {number} total
 * @returns {string}
 */
export function pageLabel(page, pageSize, total) {
  if (!total) return "0 of 0";
  const first = page * pageSize + 1;
  const last = Math.min(total, (page + 1) * pageSize);
  return `${first.toLocaleString("en-US")}-${last.toLocaleString("en-US")} of ${total.toLocaleString("en-US")}`;
}

/**
 * The last page index for a total.
 * @param {number} pageSize
 * @param {number} total
 * @returns {number}
 */
export function lastPage(pageSize, total) {
  return Math.max(0, Math.ceil(total / pageSize) - 1);
}

/**
 * The sort after clicking a column header: a new column sorts ascending, the same one flips.
 * @param {Sort | null | undefined} current
 * @param {string} key
 * @returns {{ key: string, descending: boolean }}
 */
export function nextSort(current, key) {
  if (current && current.key === key) return { key, descending: !current.descending };
  return { key, descending: false };
}

/**
 * Move a keyboard selection within a page, clamped.
 * @param {number} selected the selected row, or -1
 * @param {number} delta
 * @param {number} rowCount
 * @returns {number} the selected row, or -1 on an empty page
 */
export function moveSelection(selected, delta, rowCount) {
  if (rowCount === 0) return -1;
  if (selected < 0) return delta > 0 ? 0 : rowCount - 1;
  return Math.max(0, Math.min(rowCount - 1, selected + delta));
}

const ICON_SVG = '<svg width="18" height="18" viewBox="0 0 24 24" role="img"></svg>';

/** @type {Record<string, string>} */
const ICONS = {
  "check-circle": '<circle cx="12" cy="12" r="9" fill="#1e8e3e"/><path d="M7.5 12.5l3 3 6-6.5" stroke="#fff" stroke-width="2.2" fill="none"/>',
  circle: '<circle cx="12" cy="12" r="8" fill="none" stroke="#5f6368" stroke-width="2"/>',
  succeeded: '<circle cx="12" cy="12" r="9" fill="#1e8e3e"/><path d="M7.5 12.5l3 3 6-6.5" stroke="#fff" stroke-width="2.2" fill="none"/>',
  failed: '<circle cx="12" cy="12" r="9" fill="#d93025"/><path d="M8.5 8.5l7 7M15.5 8.5l-7 7" stroke="#fff" stroke-width="2.2"/>',
  cancelled: '<circle cx="12" cy="12" r="9" fill="#9aa0a6"/><path d="M8 12h8" stroke="#fff" stroke-width="2.2"/>',
  queued: '<circle cx="12" cy="12" r="8" fill="none" stroke="#9aa0a6" stroke-width="2" stroke-dasharray="3 3"/>',
  running: '<circle cx="12" cy="12" r="8" fill="none" stroke="#dadce0" stroke-width="3"/><path d="M12 4a8 8 0 0 1 8 8" stroke="#1a73e8" stroke-width="3" fill="none"><animateTransform attributeName="transform" type="rotate" from="0 12 12" to="360 12 12" dur="1s" repeatCount="indefinite"/></path>',
};

const CSS = `
.pml-table { font: 13px system-ui, sans-serif; color: #202124; }
.pml-table .top { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin-bottom: 6px; }
.pml-table .title { font-weight: 600; font-size: 14px; margin-right: 8px; }
.pml-table .spacer { flex: 1; }
.pml-table button { border: 1px solid #c4c4c4; background: #fafafa; border-radius: 4px; padding: 3px 9px; cursor: pointer; font: inherit; }
.pml-table button[aria-pressed="true"] { background: #e8f0fe; border-color: #1a73e8; color: #174ea6; }
.pml-table button:disabled { opacity: .45; cursor: default; }
.pml-table button.primary { background: #1a73e8; border-color: #1a73e8; color: #fff; }
.pml-table .wrap { position: relative; overflow-x: auto; outline: none; }
.pml-table table { border-collapse: collapse; width: 100%; }
.pml-table th { text-align: left; font-weight: 600; color: #5f6368; border-bottom: 1px solid #dadce0; padding: 6px 8px; white-space: nowrap; user-select: none; }
.pml-table th.sortable { cursor: pointer; }
.pml-table th .arrow { color: #1a73e8; }
.pml-table td { border-bottom: 1px solid #f1f3f4; padding: 5px 8px; vertical-align: middle; }
.pml-table tbody tr { cursor: pointer; }
.pml-table tbody tr:hover { background: #f8f9fa; }
.pml-table tbody tr.selected { background: #e8f0fe; }
.pml-table td.number { text-align: right; font-variant-numeric: tabular-nums; }
.pml-table .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 500; }
.pml-table .badge.green { background: #e6f4ea; color: #137333; }
.pml-table .badge.gray { background: #f1f3f4; color: #5f6368; }
.pml-table .badge.red { background: #fce8e6; color: #c5221f; }
.pml-table .badge.blue { background: #e8f0fe; color: #174ea6; }
.pml-table span.icon { display: inline-flex; align-items: center; gap: 6px; }
.pml-table img.thumb { width: 48px; height: 48px; object-fit: cover; border-radius: 3px; display: block; }
.pml-table .empty { padding: 24px; text-align: center; color: #5f6368; }
.pml-table .loading { position: absolute; inset: 0; background: rgba(255,255,255,.6); display: none; align-items: center; justify-content: center; color: #5f6368; }
.pml-table.is-loading .loading { display: flex; }
.pml-table .pager { display: flex; gap: 6px; align-items: center; justify-content: flex-end; margin-top: 6px; color: #5f6368; }
`;

/**
 * A DOM element with attributes (`class`, `on<event>` listeners, the rest as attributes) and children.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, any>} [attrs]
 * @param {...(Node | string)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) el.append(c);
  return el;
}

/**
 * A status icon (constant SVG) by name; an unknown name gives an empty span.
 * @param {string} name
 */
function icon(name) {
  const span = h("span", { class: "icon" });
  if (typeof name !== "string" || !Object.prototype.hasOwnProperty.call(ICONS, name)) return span; // a name from Python: only the constant icons are drawn
  span.innerHTML = ICON_SVG; // constant markup only
  const svg = /** @type {SVGElement} */ (span.firstElementChild);
  svg.innerHTML = ICONS[name]; // constant markup only
  svg.setAttribute("aria-label", name);
  return span;
}

/**
 * One typed cell. A thumbnail's object URL is added to `urls` (revoked at the next page).
 * @param {Column} column
 * @param {any} value
 * @param {string[]} urls
 * @returns {HTMLTableCellElement}
 */
function cell(column, value, urls) {
  const td = h("td", { class: column.type });
  if (value === null || value === undefined) return td;
  switch (column.type) {
    case "time":
      td.textContent = formatTime(value);
      td.title = String(value);
      break;
    case "number":
      td.textContent = formatNumber(value);
      break;
    case "badge":
      td.append(h("span", { class: `badge ${["green", "gray", "red", "blue"].includes(value.tone) ? value.tone : "gray"}` }, String(value.text ?? "")));
      break;
    case "icon": {
      const name = typeof value === "string" ? value : value.name;
      const span = icon(name);
      if (typeof value === "object" && value.text) span.append(String(value.text));
      span.setAttribute("data-icon", name || "none");
      td.append(span);
      break;
    }
    case "thumbnail": {
      if (value && value.byteLength) {
        const url = URL.createObjectURL(new Blob([value], { type: "image/jpeg" }));
        urls.push(url);
        td.append(h("img", { class: "thumb", src: url, alt: "" }));
      }
      break;
    }
    default:
      td.textContent = String(value);
  }
  return td;
}

/** @typedef {import("@anywidget/types").AnyModel<Model>} TableModel */

/**
 * What the parts of one rendered table share: its model, its elements, the thumbnails' object
 * URLs and the keyboard selection.
 * @typedef {ReturnType<typeof layout>} Table
 */

/** @type {import("@anywidget/types").Render<Model>} */
function render({ model, el }) {
  const style = document.createElement("style");
  style.textContent = CSS;
  const s = layout(model);
  el.append(style, s.root);
  s.wrap.addEventListener("keydown", (e) => keyDown(s, e));
  const listeners = traitListeners(s);
  for (const [event, fn] of Object.entries(listeners)) model.on(event, fn);
  // Ask Python every few seconds whether the project changed (other kernels, training workers).
  const poll = setInterval(() => {
    if (s.root.isConnected && model.get("poll_seconds") > 0) model.send({ kind: "poll" });
  }, Math.max(1, model.get("poll_seconds") || 2) * 1000);

  drawTop(s);
  drawHeader(s);
  drawRows(s);
  s.errorLine.textContent = model.get("error");
  s.root.classList.toggle("is-loading", model.get("loading"));
  return () => {
    clearInterval(poll);
    for (const [event, fn] of Object.entries(listeners)) model.off(event, fn);
    s.urls.forEach((u) => URL.revokeObjectURL(u));
  };
}

/**
 * The title, filter and action buttons, the table, the pager and the error line.
 * @param {TableModel} model
 */
function layout(model) {
  const root = h("div", { class: "pml-table" });
  const title = h("span", { class: "title" });
  const filters = h("span", { class: "filters" });
  const actions = h("span", { class: "actions" });
  const top = h("div", { class: "top" }, title, filters, h("span", { class: "spacer" }), actions);
  const thead = h("thead");
  const tbody = h("tbody");
  const table = h("table", {}, thead, tbody);
  const empty = h("div", { class: "empty" });
  const wrap = h("div", { class: "wrap", tabindex: "0", "data-lm-suppress-shortcuts": "true" }, table, empty, h("div", { class: "loading" }, "Loading..."));
  const prev = h("button", { "aria-label": "Previous page", onclick: () => setPage(s, model.get("page") - 1) }, "‹ Prev");
  const next = h("button", { "aria-label": "Next page", onclick: () => setPage(s, model.get("page") + 1) }, "Next ›");
  const position = h("span", { class: "position" });
  const pager = h("div", { class: "pager" }, position, prev, next);
  const errorLine = h("div", { class: "error", style: "color:#c5221f;white-space:pre-wrap" });
  root.append(top, wrap, pager, errorLine);
  /** @type {string[]} */
  const urls = [];
  const s = { model, root, title, filters, actions, thead, tbody, empty, wrap, prev, next, position, errorLine, urls, selected: -1 };
  return s;
}

/**
 * @param {Table} s
 * @param {number} page
 */
function setPage(s, page) {
  const { model } = s;
  const last = lastPage(model.get("page_size"), model.get("total"));
  page = Math.max(0, Math.min(last, page));
  if (page === model.get("page")) return;
  model.set("page", page);
  model.save_changes();
}

/** @param {Table} s */
function drawHeader(s) {
  const { model } = s;
  const sort = model.get("sort");
  const row = h("tr");
  for (const column of model.get("columns")) {
    const th = h("th", { class: column.sortable ? "sortable" : "", scope: "col" }, String(column.label));
    if (column.sortable) {
      const active = sort && sort.key === column.key;
      th.setAttribute("aria-sort", active ? (sort.descending ? "descending" : "ascending") : "none");
      if (active) th.append(h("span", { class: "arrow" }, sort.descending ? " ↓" : " ↑"));
      th.addEventListener("click", () => {
        model.set("sort", nextSort(model.get("sort"), column.key));
        model.set("page", 0);
        model.save_changes();
      });
    }
    row.append(th);
  }
  s.thead.replaceChildren(row);
}

/** @param {Table} s */
function drawRows(s) {
  const { model } = s;
  s.urls.forEach((u) => URL.revokeObjectURL(u));
  s.urls = [];
  const columns = model.get("columns");
  const rows = model.get("rows");
  s.tbody.replaceChildren(
    ...rows.map((r, i) => {
      const tr = h("tr", { "data-id": String(r._id), class: i === s.selected ? "selected" : "" });
      for (const c of columns) tr.append(cell(c, r[c.key], s.urls));
      tr.addEventListener("click", () => open(s, i));
      return tr;
    }),
  );
  s.empty.textContent = rows.length ? "" : model.get("empty_message");
  s.empty.style.display = rows.length ? "none" : "block";
  const total = model.get("total");
  s.position.textContent = pageLabel(model.get("page"), model.get("page_size"), total);
  s.prev.disabled = model.get("page") <= 0;
  s.next.disabled = model.get("page") >= lastPage(model.get("page_size"), total);
}

/** @param {Table} s */
function drawTop(s) {
  const { model } = s;
  s.title.textContent = model.get("title");
  const active = model.get("active_filter");
  s.filters.replaceChildren(
    ...model.get("filters").map((f) =>
      h(
        "button",
        {
          "aria-pressed": String(f.key === active),
          "data-filter": String(f.key),
          onclick: () => {
            model.set("active_filter", f.key === active ? "" : f.key);
            model.set("page", 0);
            model.save_changes();
          },
        },
        f.count === undefined || f.count === null ? String(f.label) : `${f.label} (${formatNumber(f.count)})`,
      ),
    ),
  );
  s.actions.replaceChildren(
    ...model.get("actions").map((a) =>
      h("button", { class: a.primary ? "primary" : "", "data-action": String(a.key), onclick: () => model.send({ kind: "action", key: a.key }) }, String(a.label)),
    ),
  );
}

/**
 * Select row `i` of the page and tell Python it was clicked.
 * @param {Table} s
 * @param {number} i
 */
function open(s, i) {
  const rows = s.model.get("rows");
  if (i < 0 || i >= rows.length) return;
  s.selected = i;
  s.model.send({ kind: "row_click", id: rows[i]._id });
}

/**
 * Arrows move the selection, Enter opens it, PageDown / PageUp page.
 * @param {Table} s
 * @param {KeyboardEvent} e
 */
function keyDown(s, e) {
  const { model } = s;
  const rows = model.get("rows");
  let handled = true;
  if (e.key === "ArrowDown") s.selected = moveSelection(s.selected, 1, rows.length);
  else if (e.key === "ArrowUp") s.selected = moveSelection(s.selected, -1, rows.length);
  else if (e.key === "Enter") open(s, s.selected);
  else if (e.key === "PageDown") setPage(s, model.get("page") + 1);
  else if (e.key === "PageUp") setPage(s, model.get("page") - 1);
  else handled = false;
  if (handled) {
    e.preventDefault();
    e.stopPropagation();
    [...s.tbody.children].forEach((tr, i) => tr.classList.toggle("selected", i === s.selected));
  }
}

/**
 * What to redraw when a trait changes.
 * @param {Table} s
 * @returns {Record<string, () => void>}
 */
function traitListeners(s) {
  const { model } = s;
  return {
    "change:rows": () => {
      s.selected = Math.min(s.selected, model.get("rows").length - 1);
      drawRows(s);
    },
    "change:total": () => drawRows(s),
    "change:page": () => drawRows(s),
    "change:columns": () => {
      drawHeader(s);
      drawRows(s);
    },
    "change:sort": () => drawHeader(s),
    "change:filters": () => drawTop(s),
    "change:active_filter": () => drawTop(s),
    "change:actions": () => drawTop(s),
    "change:title": () => drawTop(s),
    "change:loading": () => s.root.classList.toggle("is-loading", model.get("loading")),
    "change:error": () => (s.errorLine.textContent = model.get("error")),
  };
}

export default { render };
