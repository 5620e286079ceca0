// The page's building blocks: elements, the API client, dialogs, forms with field errors,
// tables, badges and formatting. Nothing here knows a screen; nothing here keeps state
// beyond the session's CSRF token.

let csrf = "";

/** Remembers the CSRF token the session answered (sent on every change). */
export function setCsrf(token) {
  csrf = token || "";
}

/** The session's CSRF token (for requests not made through api()). */
export function csrfToken() {
  return csrf;
}

/** h("tag.class", {attr, onclick}, ...children): one element. */
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = [el.className, v].filter(Boolean).join(" ");
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = Boolean(v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** An answer that was not a success: status, code, message and the field to blame. */
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "";
    this.field = e.field || "";
    this.errors = e.errors || [];
  }
}

/** Calls the API with the session cookie: JSON in, JSON out (null for 204). */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf;
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401 && !path.startsWith("/web/")) {
    window.dispatchEvent(new CustomEvent("outdial:logged-out"));
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: { message: text.slice(0, 200) } };
    }
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** Query string from an object, leaving out empty values. */
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === "" || v === null || v === undefined) continue;
    if (Array.isArray(v)) v.forEach((x) => p.append(k, x));
    else p.set(k, v);
  }
  const s = p.toString();
  return s ? `?${s}` : "";
}

/** A short message at the bottom of the page (role=status, read by screen readers). */
export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  if (!box) return;
  const t = h(`div.toast.${kind}`, { role: kind === "error" ? "alert" : "status" }, message);
  box.append(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 4000);
}

/** Shows an error from the API (or any thrown error) as a toast. */
export function showError(err) {
  toast(err && err.message ? err.message : String(err), "error");
}

/**
 * A modal dialog (<dialog>, Esc closes it, focus stays inside). `actions` are buttons:
 * {label, primary, danger, onClick(close)}; onClick may return a promise: the dialog stays
 * open while it runs and closes when it resolves to anything but false.
 */
export function openDialog({ title, body, actions = [], wide = false, onClose }) {
  const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
  const dlg = h(`dialog${wide ? ".wide" : ""}`, { "aria-labelledby": titleId });
  const close = () => {
    dlg.close();
  };
  dlg.addEventListener("close", () => {
    dlg.remove();
    if (onClose) onClose();
  });
  const buttons = actions.map((a) => {
    const b = h(`button.${a.primary ? "primary" : a.danger ? "danger" : "secondary"}`, { type: "button" }, a.label);
    b.addEventListener("click", async () => {
      if (!a.onClick) return close();
      b.disabled = true;
      try {
        const r = await a.onClick(close);
        if (r !== false) close();
      } catch (err) {
        showError(err);
      } finally {
        b.disabled = false;
      }
    });
    return b;
  });
  dlg.append(
    h("header", h(`h2`, { id: titleId }, title), h("button.icon", { type: "button", "aria-label": "Close", onclick: close }, "×")),
    h("div.dialog-body", body),
    h("footer", buttons),
  );
  document.body.append(dlg);
  dlg.showModal();
  const first = dlg.querySelector("input, select, textarea");
  if (first) first.focus();
  return { dialog: dlg, close };
}

/** Asks before something that cannot be undone; resolves true when confirmed. */
export function confirmDialog(title, text, okLabel = "Delete") {
  return new Promise((resolve) => {
    let answered = false;
    openDialog({
      title,
      body: h("p", text),
      actions: [
        { label: "Cancel" },
        {
          label: okLabel,
          danger: true,
          onClick: () => {
            answered = true;
            resolve(true);
          },
        },
      ],
      onClose: () => {
        if (!answered) resolve(false);
      },
    });
  });
}

let fieldSeq = 0;

/**
 * A labelled form field. kind: text, number, password, email, datetime-local, textarea,
 * select (options: [[value, label]] or [value]), checkbox, file. The input is named `name`
 * (the API's field name) so an API error naming that field is shown under it.
 */
export function field({ label, name, kind = "text", value, options, help, required, attrs = {} }) {
  const id = `f-${name.replace(/[^a-z0-9]/gi, "-")}-${++fieldSeq}`;
  const errId = `${id}-err`;
  const common = { id, name, "aria-describedby": errId, required: required || null, ...attrs };
  let input;
  if (kind === "textarea") input = h("textarea", common, value ?? "");
  else if (kind === "select") {
    input = h(
      "select",
      common,
      (options || []).map((o) => {
        const [v, l] = Array.isArray(o) ? o : [o, o];
        return h("option", { value: v, selected: String(v) === String(value ?? "") }, l);
      }),
    );
  } else if (kind === "checkbox") {
    input = h("input", { ...common, type: "checkbox", checked: Boolean(value) });
  } else {
    input = h("input", { ...common, type: kind, value: value ?? "" });
  }
  return h(
    `div.field${kind === "checkbox" ? ".check" : ""}`,
    { dataset: { field: name } },
    kind === "checkbox" ? [input, h("label", { for: id }, label)] : [h("label", { for: id }, label, required ? h("span.req", { "aria-hidden": "true" }, " *") : null), input],
    help ? h("small.help", help) : null,
    h("div.field-error", { id: errId, role: "alert" }),
  );
}

/** Clears every field error of a form. */
export function clearFieldErrors(form) {
  form.querySelectorAll(".field-error").forEach((e) => (e.textContent = ""));
  form.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
  const general = form.querySelector(".form-error");
  if (general) general.textContent = "";
}

/**
 * Shows an API error at the field it names (its top-level name: `goals[1].value` → the
 * `goals` field), or above the form when no field of the form matches.
 */
export function showFieldErrors(form, err) {
  clearFieldErrors(form);
  const problems = err.errors && err.errors.length ? err.errors.map((m) => [m.split(":")[0], m]) : [[err.field, err.message]];
  let shown = false;
  for (const [fieldName, message] of problems) {
    if (!fieldName) continue;
    const candidates = [fieldName, fieldName.split(/[.[]/)[0]];
    for (const n of candidates) {
      const wrap = form.querySelector(`[data-field="${CSS.escape(n)}"]`);
      if (wrap) {
        const slot = wrap.querySelector(".field-error");
        slot.textContent = message;
        const input = wrap.querySelector("input, select, textarea");
        if (input) {
          input.setAttribute("aria-invalid", "true");
          if (!shown) input.focus();
        }
        shown = true;
        break;
      }
    }
  }
  if (!shown) {
    let general = form.querySelector(".form-error");
    if (!general) {
      general = h("div.form-error", { role: "alert" });
      form.prepend(general);
    }
    general.textContent = err.message;
  }
}

/** Reads a form's named inputs: numbers as numbers, checkboxes as booleans, "" left out. */
export function formValues(form) {
  const out = {};
  for (const el of form.querySelectorAll("input[name], select[name], textarea[name]")) {
    if (el.type === "file") continue;
    if (el.type === "checkbox") out[el.name] = el.checked;
    else if (el.value === "") continue;
    else if (el.type === "number") out[el.name] = Number(el.value);
    else out[el.name] = el.value;
  }
  return out;
}

/**
 * A table: columns are {label, render(row) → node|string, sort: key, class, text}; `text`
 * names a column whose label is an element (shown before each cell on a phone). `onSort(key)`
 * is called when a sortable header is chosen; `sort` = {key, desc} marks the current one.
 */
export function table({ columns, rows, empty = "Nothing here yet.", sort, onSort, caption, rowAttrs, label }) {
  const head = h(
    "tr",
    columns.map((c) => {
      if (!c.sort || !onSort) return h("th", { scope: "col", class: c.class }, c.label);
      const active = sort && sort.key === c.sort;
      return h(
        "th",
        { scope: "col", class: c.class, "aria-sort": active ? (sort.desc ? "descending" : "ascending") : "none" },
        h("button.sort", { type: "button", onclick: () => onSort(c.sort) }, c.label, active ? (sort.desc ? " ▼" : " ▲") : ""),
      );
    }),
  );
  const body = rows.length
    ? rows.map((r) => h("tr", rowAttrs ? rowAttrs(r) : null, columns.map((c) => h("td", { class: c.class, "data-label": typeof c.label === "string" ? c.label : c.text || null }, c.render(r)))))
    : [h("tr", h("td.empty", { colspan: columns.length }, empty))];
  // Focusable, so a table wider than the screen can be scrolled with the keyboard.
  return h("div.table-wrap", { tabindex: "0", role: "region", "aria-label": label || caption || "Table" }, h("table", caption ? h("caption", caption) : null, h("thead", head), h("tbody", body)));
}

/** Previous/next paging for a list with `total` rows. */
export function pager({ offset, limit, total, onPage }) {
  const from = total === 0 ? 0 : offset + 1;
  const to = Math.min(offset + limit, total);
  return h(
    "nav.pager",
    { "aria-label": "Pages" },
    h("button.secondary", { type: "button", disabled: offset === 0, onclick: () => onPage(Math.max(0, offset - limit)) }, "‹ Previous"),
    h("span", `${from}–${to} of ${total}`),
    h("button.secondary", { type: "button", disabled: to >= total, onclick: () => onPage(offset + limit) }, "Next ›"),
  );
}

const STATUS_LABELS = {
  new: "New",
  scheduled: "Scheduled",
  processing: "Processing",
  paused: "Paused",
  finished: "Finished",
  overdue: "Overdue",
  canceled: "Canceled",
  pending: "Pending",
  dialing: "Dialing",
  called: "Called",
  retry: "Retry",
  completed: "Completed",
  failed: "Failed",
  no_conversation: "No conversation",
  on_hold: "On hold",
  answered: "Answered",
  rejected: "Rejected",
  not_answered: "Not answered",
  upcoming: "Upcoming",
};

/** A person's word for a status. */
export function statusLabel(status) {
  return STATUS_LABELS[status] || String(status || "").replace(/_/g, " ");
}

/** A coloured status badge (colour and text, never colour alone). */
export function badge(status) {
  return h(`span.badge.s-${String(status || "unknown").replace(/[^a-z_]/g, "")}`, statusLabel(status));
}

/** Date and time of ms since the epoch, in the browser's time zone. */
export function fmtTime(ms) {
  if (ms === null || ms === undefined || ms === 0) return "—";
  const d = new Date(ms);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** Seconds as m:ss or h:mm:ss. */
export function fmtDuration(secs) {
  if (secs === null || secs === undefined) return "—";
  const s = Math.round(secs);
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/** A percentage of `part` in `whole` ("—" when whole is 0). */
export function pct(part, whole) {
  return whole ? `${Math.round((100 * part) / whole)} %` : "—";
}

/** A screen's title row with its actions. */
export function pageHeader(title, ...actions) {
  return h("div.page-header", h("h1", { tabindex: "-1" }, title), h("div.actions", actions));
}

/** A button: kind primary|secondary|danger|link. */
export function button(label, onClick, kind = "secondary", attrs = {}) {
  return h(`button.${kind}`, { type: "button", onclick: onClick, ...attrs }, label);
}

/** Runs `fn` and shows its error, if any, as a toast. */
export async function guard(fn) {
  try {
    return await fn();
  } catch (err) {
    showError(err);
    return undefined;
  }
}
