// The settings screens and the live monitor: business hours, Do-Not-Call lists, SIP agents and
// pools, AI agents, phone numbers, API keys and logins, and the live monitor fed by
// Server-Sent Events. Each screen is drawn from /v1 only; the API decides, the page shows.
// Screens that start timers (business hours' open-now clock, the live monitor) return a
// function to call when the screen is left; they also stop by themselves once their elements
// are no longer in the page.

import {
  api, qs, h, fill, openDialog, confirmDialog, field, showFieldErrors, clearFieldErrors, table, pager,
  badge, fmtTime, fmtDuration, pct, pageHeader, button, guard, toast,
} from "./ui.js";

// ---------------------------------------------------------------------------------------
// Shared helpers.

const PAGE = 50;
const DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const DAY_SHORT = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/** Where a campaign's page is (the router's hash). */
const campaignHref = (id) => `#/campaigns/${id}`;

let seq = 0;
const uid = (prefix) => `${prefix}-${++seq}`;

function isAdmin(ctx) {
  return Boolean(ctx && ctx.session && ctx.session.account && ctx.session.account.role === "admin");
}

function myLogin(ctx) {
  return (ctx && ctx.session && ctx.session.account && ctx.session.account.login) || "";
}

/** An error the page finds before asking the API, shaped like the API's (field + message). */
class FieldError extends Error {
  constructor(fieldName, message) {
    super(message);
    this.field = fieldName;
    this.errors = [];
  }
}

/** Marks the <table> inside a table() wrapper for browser tests. */
function testTable(wrap, testid) {
  const t = wrap.querySelector("table");
  if (t) t.setAttribute("data-testid", testid);
  return wrap;
}

/** A panel with an h2 and its actions. */
function card(title, actions, ...children) {
  const id = uid("h");
  return h(
    "section.card",
    { "aria-labelledby": id },
    h("div.page-header.sub", h("h2", { id }, title), actions && actions.length ? h("div.actions", actions) : null),
    children,
  );
}

/** What to show when a list cannot be read (a 403 says who may). */
function problem(err, what, retry) {
  if (err && err.status === 403) {
    return h("p.muted", { role: "status" }, `Your login may not see ${what}: ${err.message}`);
  }
  return h(
    "div",
    { role: "alert" },
    h("p.form-error", `Could not load ${what}: ${err && err.message ? err.message : String(err)}`),
    retry ? button("Try again", retry, "secondary") : null,
  );
}

/** Every item of a paged list (pages of 1000, at most 10 of them). */
async function all(path, params = {}) {
  const items = [];
  let offset = 0;
  for (let i = 0; i < 10; i++) {
    const page = await api("GET", path + qs({ ...params, limit: 1000, offset }));
    items.push(...page.items);
    offset += page.items.length;
    if (!page.items.length || offset >= page.total) break;
  }
  return items;
}

/** The account's campaigns (for "used by" columns); [] when they cannot be read. */
async function loadCampaigns() {
  try {
    return await all("/v1/campaigns");
  } catch {
    return [];
  }
}

/** Links to campaigns, or a dash. */
function campaignLinks(list, none = "—") {
  if (!list || !list.length) return h("span.muted", none);
  return list.map((c, i) => [i ? ", " : "", h("a", { href: campaignHref(c.id) }, c.name || `Campaign ${c.id}`)]);
}

/** The key of the focused element (data-fk) inside `scope`, to focus its twin after a redraw. */
function focusKey(scope) {
  const a = document.activeElement;
  return a && scope.contains(a) && a.dataset ? a.dataset.fk || "" : "";
}

/** After a redraw (and a dialog's closing), focuses the first of `keys` found when focus fell
 * to the page. */
function restoreFocus(scope, ...keys) {
  requestAnimationFrame(() => {
    const a = document.activeElement;
    if (a && a !== document.body && document.contains(a)) return;
    for (const k of keys) {
      if (!k) continue;
      const el = scope.querySelector(`[data-fk="${CSS.escape(k)}"]`);
      if (el && !el.disabled) {
        el.focus();
        return;
      }
    }
  });
}

/** A pager whose buttons keep the focus across the redraw. */
function keyedPager(opts, label) {
  const p = pager(opts);
  if (label) p.setAttribute("aria-label", label);
  const [prev, next] = p.querySelectorAll("button");
  if (prev) prev.dataset.fk = "pager-prev";
  if (next) next.dataset.fk = "pager-next";
  return p;
}

/** A form dialog: Save runs `onSubmit(form)`; an error is shown at its field and the dialog
 * stays open. */
function formDialog({ title, fields, submitLabel = "Save", onSubmit, wide = false }) {
  const form = h("form", { novalidate: true }, fields);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const primary = form.closest("dialog") && form.closest("dialog").querySelector("footer button.primary");
    if (primary && !primary.disabled) primary.click();
  });
  return openDialog({
    title,
    body: form,
    wide,
    actions: [
      { label: "Cancel" },
      {
        label: submitLabel,
        primary: true,
        onClick: async () => {
          clearFieldErrors(form);
          try {
            await onSubmit(form);
            return true;
          } catch (err) {
            showFieldErrors(form, err);
            return false;
          }
        },
      },
    ],
  });
}

/** A named input's value, trimmed ("" when absent). */
function val(form, name) {
  const el = form.querySelector(`[name="${CSS.escape(name)}"]`);
  if (!el) return "";
  if (el.type === "checkbox") return el.checked;
  return String(el.value || "").trim();
}

/** A fieldset that showFieldErrors() finds by the API's field name. */
function fieldGroup(name, legend, ...children) {
  const errId = uid(`f-${name}-err`);
  return h(
    "fieldset.field",
    { dataset: { field: name }, "aria-describedby": errId },
    h("legend", legend),
    children,
    h("div.field-error", { id: errId, role: "alert" }),
  );
}

function cap(word) {
  const s = String(word || "").replace(/_/g, " ");
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

/** A badge with our own words (colour class from the raw state). */
function stateBadge(state, label) {
  const b = badge(state);
  b.textContent = label || cap(state);
  return b;
}

/** Copies text, with a fallback for pages not served over HTTPS. */
async function copyText(text, input) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* falls back below */
  }
  if (input) {
    input.focus();
    input.select();
    try {
      return document.execCommand("copy");
    } catch {
      return false;
    }
  }
  return false;
}

/** Trunk profile names for a datalist (admins only can read /v1/trunks; [] otherwise). */
async function profileNames(ctx) {
  if (!isAdmin(ctx)) return [];
  try {
    const profiles = await api("GET", "/v1/trunks");
    return (profiles || []).map((p) => p.profile).filter(Boolean);
  } catch {
    return [];
  }
}

function datalist(id, values) {
  return h("datalist", { id }, values.map((v) => h("option", { value: v })));
}

/** Shows a loading line the first time only (later loads keep the old rows until the new). */
function loading(el) {
  if (!el.firstChild) fill(el, h("p.muted", "Loading…"));
}

// ---------------------------------------------------------------------------------------
// Business hours.

/** "HH:MM" → minutes after midnight (null when it is not a time; "24:00" is 1440). */
function minutes(text) {
  const m = /^(\d{1,2}):(\d{2})$/.exec(String(text || "").trim());
  if (!m) return null;
  const hh = Number(m[1]);
  const mm = Number(m[2]);
  if (mm >= 60 || hh > 24 || (hh === 24 && mm !== 0)) return null;
  return hh * 60 + mm;
}

function hhmm(mins) {
  return `${String(Math.floor(mins / 60)).padStart(2, "0")}:${String(mins % 60).padStart(2, "0")}`;
}

/** The wall clock in `tz` now: date (YYYY-MM-DD), weekday (0 = Monday), minutes. */
function zoneNow(tz, date = new Date()) {
  const f = new Intl.DateTimeFormat("en-US", {
    timeZone: tz,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    weekday: "short",
  });
  const p = {};
  for (const part of f.formatToParts(date)) p[part.type] = part.value;
  const hour = Number(p.hour) % 24;
  const minute = Number(p.minute);
  return {
    ymd: `${p.year}-${p.month}-${p.day}`,
    day: DAY_SHORT.indexOf(p.weekday),
    minutes: hour * 60 + minute,
    clock: hhmm(hour * 60 + minute),
  };
}

function addDays(ymd, n) {
  const [y, m, d] = ymd.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}

/** A day's valid intervals as sorted [start, end) minutes. */
function daySpans(schedule, day) {
  return ((schedule.week && schedule.week[day]) || [])
    .map((x) => [minutes(x.start), minutes(x.end)])
    .filter(([a, b]) => a !== null && b !== null && a < b)
    .sort((a, b) => a[0] - b[0]);
}

/**
 * Whether a schedule is open now, computed as the dialer does: its week read in its own zone,
 * closed dates dropping their day's intervals; with when it next closes or opens.
 */
function openState(schedule, date = new Date()) {
  let z;
  try {
    z = zoneNow(schedule.timezone, date);
  } catch {
    return { open: null, text: `unknown time zone ${schedule.timezone}` };
  }
  if (z.day < 0) return { open: null, text: "" };
  const closed = new Set(schedule.closed_dates || []);
  if (!closed.has(z.ymd)) {
    const cur = daySpans(schedule, z.day).find(([a, b]) => a <= z.minutes && z.minutes < b);
    if (cur) {
      let end = cur[1];
      let days = 0;
      // An interval to 24:00 chains into the next day's from 00:00.
      while (end === 1440 && days < 7) {
        const ymd = addDays(z.ymd, days + 1);
        const next = closed.has(ymd) ? null : daySpans(schedule, (z.day + days + 1) % 7).find(([a]) => a === 0);
        if (!next) break;
        days += 1;
        end = next[1];
      }
      let text;
      if (days >= 7) text = "around the clock";
      else if (end === 1440) text = days === 0 ? "until midnight" : `until midnight ${DAY_SHORT[(z.day + days) % 7]}`;
      else text = `until ${days === 0 ? "" : days === 1 ? "tomorrow " : `${DAY_SHORT[(z.day + days) % 7]} `}${hhmm(end)}`;
      return { open: true, text, local: z };
    }
  }
  for (let d = 0; d <= 21; d++) {
    const ymd = addDays(z.ymd, d);
    if (closed.has(ymd)) continue;
    const day = (z.day + d) % 7;
    const next = daySpans(schedule, day).find(([a]) => d > 0 || a > z.minutes);
    if (next) {
      const when = d === 0 ? "today" : d === 1 ? "tomorrow" : d < 7 ? DAY_SHORT[day] : ymd;
      return { open: false, text: `opens ${when} ${hhmm(next[0])}`, local: z };
    }
  }
  return { open: false, text: "no opening ahead", local: z };
}

function openNowCell(schedule) {
  const s = openState(schedule);
  if (s.open === null) return h("span.muted", s.text || "—");
  return h(
    "span",
    { "data-testid": "open-now", "data-open": String(s.open) },
    h(`span.dot.${s.open ? "open" : "closed"}`, { "aria-hidden": "true" }),
    h("strong", s.open ? "Open now" : "Closed"),
    " ",
    h("span.muted", s.text),
    s.local ? h("div.muted", `Local time ${s.local.clock} ${DAY_SHORT[s.local.day] || ""}`) : null,
  );
}

/** "Mon–Fri 09:00–17:00", "Sat–Sun closed": consecutive days with the same hours together. */
function weekSummary(week) {
  const text = DAYS.map((_, i) => {
    const day = (week && week[i]) || [];
    return day.length ? day.map((x) => `${x.start}–${x.end}`).join(", ") : "closed";
  });
  const groups = [];
  for (let i = 0; i < 7; i++) {
    const last = groups[groups.length - 1];
    if (last && last.text === text[i]) last.to = i;
    else groups.push({ from: i, to: i, text: text[i] });
  }
  return groups.map((g) =>
    h("div", `${DAY_SHORT[g.from]}${g.to > g.from ? `–${DAY_SHORT[g.to]}` : ""} ${g.text}`),
  );
}

function closedDatesSummary(schedule) {
  const dates = [...(schedule.closed_dates || [])].sort();
  if (!dates.length) return h("span.muted", "None");
  let today = "";
  try {
    today = zoneNow(schedule.timezone).ymd;
  } catch {
    /* no zone: show them all */
  }
  const ahead = dates.filter((d) => d >= today);
  const shown = ahead.slice(0, 3);
  return [
    shown.length ? shown.map((d) => h("div", d)) : h("div.muted", "None ahead"),
    ahead.length > 3 ? h("div.muted", `+${ahead.length - 3} more`) : null,
    dates.length > ahead.length ? h("div.muted", `${dates.length - ahead.length} past`) : null,
  ];
}

/** The week editor: 7 days, each with its opening intervals. */
function weekEditor(week) {
  const days = DAYS.map((_, i) => ((week && week[i]) || []).map((x) => ({ start: x.start, end: x.end })));
  const rows = h("div.week");
  function draw(focusDay, focusIndex) {
    fill(
      rows,
      DAYS.map((name, d) => {
        const nameId = uid("day");
        return h(
          "div.week-day",
          { role: "group", "aria-labelledby": nameId, dataset: { day: String(d) } },
          h("strong", { id: nameId }, name),
          days[d].length
            ? days[d].map((iv, i) =>
                h(
                  "div.inline.interval",
                  h("input", {
                    type: "text",
                    inputmode: "numeric",
                    size: "5",
                    placeholder: "09:00",
                    "aria-label": `${name} opens (HH:MM)`,
                    value: iv.start,
                    dataset: { day: String(d), i: String(i), edge: "start" },
                    oninput: (e) => (iv.start = e.target.value),
                  }),
                  h("span", { "aria-hidden": "true" }, "–"),
                  h("input", {
                    type: "text",
                    inputmode: "numeric",
                    size: "5",
                    placeholder: "17:00",
                    "aria-label": `${name} closes (HH:MM, 24:00 = midnight)`,
                    value: iv.end,
                    dataset: { day: String(d), i: String(i), edge: "end" },
                    oninput: (e) => (iv.end = e.target.value),
                  }),
                  button("Remove", () => {
                    days[d].splice(i, 1);
                    draw(d, -1);
                  }, "link", { "aria-label": `Remove ${name} hours ${i + 1}` }),
                ),
              )
            : h("span.muted", " Closed "),
          button("Add hours", () => {
            const prev = days[d][days[d].length - 1];
            days[d].push(prev ? { start: prev.end === "24:00" ? "23:00" : prev.end, end: "24:00" } : { start: "09:00", end: "17:00" });
            draw(d, days[d].length - 1);
          }, "link", { "aria-label": `Add hours on ${name}`, dataset: { fk: `add-${d}` } }),
        );
      }),
    );
    if (focusDay !== undefined) {
      const target =
        focusIndex >= 0
          ? rows.querySelector(`input[data-day="${focusDay}"][data-i="${focusIndex}"][data-edge="start"]`)
          : rows.querySelector(`[data-fk="add-${focusDay}"]`);
      if (target) target.focus();
    }
  }
  draw();
  const copy = (targets) => {
    for (const t of targets) days[t] = days[0].map((x) => ({ ...x }));
    draw();
  };
  const el = h(
    "div",
    rows,
    h(
      "div.actions",
      button("Copy Monday to Tuesday–Friday", () => copy([1, 2, 3, 4]), "secondary"),
      button("Copy Monday to every day", () => copy([1, 2, 3, 4, 5, 6]), "secondary"),
    ),
  );
  return {
    el,
    read() {
      return days.map((day, d) =>
        day.map((iv, i) => {
          const start = String(iv.start || "").trim();
          const end = String(iv.end || "").trim();
          const a = minutes(start);
          const b = minutes(end);
          if (a === null || b === null) throw new FieldError("week", `${DAYS[d]} hours ${i + 1}: “${start}–${end}” is not HH:MM–HH:MM`);
          if (a >= b) throw new FieldError("week", `${DAYS[d]} hours ${i + 1}: ${start}–${end} ends before it starts`);
          return { start, end };
        }),
      );
    },
  };
}

/** The closed dates editor: a date picker, Add, and the dates with Remove buttons. */
function datesEditor(dates) {
  const list = [...new Set(dates || [])].sort();
  const inputId = uid("closed-date");
  const input = h("input", { type: "date", id: inputId });
  const ul = h("ul.plain.closed-dates");
  function draw(focusAfter) {
    fill(
      ul,
      list.length
        ? list.map((d, i) =>
            h("li", h("span", d), " ", button("Remove", () => {
              list.splice(i, 1);
              draw(true);
            }, "link", { "aria-label": `Remove closed date ${d}` })),
          )
        : h("li.muted", "No closed dates."),
    );
    if (focusAfter) input.focus();
  }
  draw();
  const add = () => {
    const v = input.value;
    if (!/^\d{4}-\d{2}-\d{2}$/.test(v)) {
      input.focus();
      return;
    }
    if (!list.includes(v)) list.push(v);
    list.sort();
    input.value = "";
    draw(true);
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      add();
    }
  });
  const el = h("div", h("div.inline", h("label", { for: inputId }, "Date"), input, button("Add date", add, "secondary")), ul);
  return { el, read: () => [...list] };
}

function scheduleDialog(schedule, done) {
  const zones = typeof Intl.supportedValuesOf === "function" ? [...Intl.supportedValuesOf("timeZone")] : [];
  if (!zones.includes("UTC")) zones.push("UTC");
  const zonesId = uid("zones");
  const here = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const week = weekEditor(schedule ? schedule.week : [[{ start: "09:00", end: "17:00" }], [{ start: "09:00", end: "17:00" }], [{ start: "09:00", end: "17:00" }], [{ start: "09:00", end: "17:00" }], [{ start: "09:00", end: "17:00" }], [], []]);
  const dates = datesEditor(schedule ? schedule.closed_dates : []);
  formDialog({
    title: schedule ? `Edit ${schedule.name}` : "New schedule",
    wide: true,
    fields: [
      h(
        "div.grid2",
        field({ label: "Name", name: "name", value: schedule ? schedule.name : "", required: true, attrs: { autocomplete: "off" } }),
        field({
          label: "Time zone",
          name: "timezone",
          value: schedule ? schedule.timezone : here,
          required: true,
          help: "IANA zone, e.g. America/New_York; the hours below are read in it.",
          attrs: { list: zonesId, autocomplete: "off" },
        }),
      ),
      datalist(zonesId, zones),
      fieldGroup("week", "Opening hours per weekday (HH:MM–HH:MM; a day without hours is closed)", week.el),
      fieldGroup("closed_dates", "Closed dates (holidays, whole days in the schedule's zone)", dates.el),
    ],
    onSubmit: async (form) => {
      const name = val(form, "name");
      if (!name) throw new FieldError("name", "name: must not be empty");
      const body = { name, timezone: val(form, "timezone"), week: week.read(), closed_dates: dates.read() };
      const saved = schedule ? await api("PUT", `/v1/schedules/${schedule.id}`, body) : await api("POST", "/v1/schedules", body);
      toast(schedule ? `Saved ${saved.name}` : `Created ${saved.name}`);
      await done();
    },
  });
}

/** Business hours: the schedules, open now or closed, the campaigns that use each. */
export async function renderSchedules(root, ctx) {
  void ctx;
  const body = h("div");
  const screen = h(
    "div.screen",
    pageHeader("Business hours", button("New schedule", () => scheduleDialog(null, load), "primary", { "data-testid": "add-schedule", "data-fk": "add" })),
    h("p.muted", "Campaigns call only while their schedule is open, in the schedule's own time zone."),
    body,
  );
  fill(root, screen);
  let schedules = [];
  let campaigns = [];
  const nowCells = [];

  async function remove(s) {
    const users = campaigns.filter((c) => c.business_hours_id === s.id);
    const note = users.length ? ` ${users.length} campaign(s) use it; the server refuses while they do.` : "";
    if (!(await confirmDialog("Delete schedule", `Delete the schedule “${s.name}”?${note}`))) return;
    await guard(async () => {
      await api("DELETE", `/v1/schedules/${s.id}`);
      toast(`Deleted ${s.name}`);
      await load();
    });
  }

  function draw() {
    nowCells.length = 0;
    const t = table({
      columns: [
        { label: "Name", render: (s) => h("strong", s.name) },
        { label: "Time zone", render: (s) => s.timezone },
        { label: "Hours", render: (s) => weekSummary(s.week) },
        { label: "Closed dates", render: (s) => closedDatesSummary(s) },
        {
          label: "Now",
          render: (s) => {
            const cell = h("div", openNowCell(s));
            nowCells.push([cell, s]);
            return cell;
          },
        },
        { label: "Used by", render: (s) => campaignLinks(campaigns.filter((c) => c.business_hours_id === s.id)) },
        {
          label: "Actions",
          render: (s) =>
            h(
              "div.row-actions",
              button("Edit", () => scheduleDialog(s, load), "secondary", { "aria-label": `Edit ${s.name}`, "data-fk": `edit-${s.id}` }),
              button("Delete", () => remove(s), "danger", { "aria-label": `Delete ${s.name}`, "data-fk": `del-${s.id}` }),
            ),
        },
      ],
      rows: schedules,
      empty: "No schedules yet: campaigns without one call at any hour (within their contact window).",
      rowAttrs: (s) => ({ "data-id": s.id }),
    });
    fill(body, testTable(t, "schedules-table"));
  }

  async function load() {
    const fk = focusKey(screen);
    loading(body);
    try {
      [schedules, campaigns] = await Promise.all([api("GET", "/v1/schedules"), loadCampaigns()]);
    } catch (err) {
      fill(body, problem(err, "the schedules", load));
      return;
    }
    draw();
    restoreFocus(screen, fk, "add");
  }

  const timer = setInterval(() => {
    if (!screen.isConnected) {
      clearInterval(timer);
      return;
    }
    for (const [cell, s] of nowCells) fill(cell, openNowCell(s));
  }, 20000);
  await load();
  return () => clearInterval(timer);
}

// ---------------------------------------------------------------------------------------
// Do-Not-Call lists.

function dncSection(list, canEdit) {
  const global = list === "global";
  const st = { q: "", offset: 0, limit: PAGE };
  const listQ = global ? "global" : "";
  const out = h("div");
  const searchId = uid("dnc-q");
  const search = h("input", { type: "search", id: searchId, name: "q", autocomplete: "off", placeholder: "+1202…" });
  let debounce = null;
  const run = () => {
    clearTimeout(debounce);
    st.q = search.value.trim();
    st.offset = 0;
    load();
  };
  search.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(run, 350);
  });
  search.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      run();
    }
  });
  const toolbar = h("div.toolbar", { role: "search", "aria-label": global ? "Search the global list" : "Search this account's list" }, h("label", { for: searchId }, "Search number or reason"), search, button("Search", run, "secondary"));
  const addBtn = canEdit
    ? button(global ? "Add to global list" : "Add number", () => addDialog(), "primary", { "data-testid": global ? "add-global-dnc" : "add-dnc", "data-fk": "add" })
    : null;
  const section = card(
    global ? "Global list" : "This account's list",
    addBtn ? [addBtn] : [],
    h(
      "p.muted",
      global
        ? canEdit
          ? "Numbers no campaign of any account calls. Only admins change it."
          : "Numbers no campaign of any account calls. Only admins change it; you can read it."
        : "Numbers this account's campaigns never call (the global list is checked too).",
    ),
    toolbar,
    out,
  );

  function addDialog() {
    formDialog({
      title: global ? "Add to the global DNC list" : "Add to the DNC list",
      fields: [
        field({ label: "Phone number", name: "phone", kind: "tel", required: true, help: "E.164 (+12025550100) or a national number.", attrs: { autocomplete: "off" } }),
        field({ label: "Reason", name: "reason", help: "Optional, e.g. “asked not to be called”." }),
        field({ label: "Country for numbers without +", name: "default_country", help: "Two letters, e.g. US (the default), GB, DE.", attrs: { maxlength: "2", autocomplete: "off" } }),
      ],
      submitLabel: "Add",
      onSubmit: async (form) => {
        const phone = val(form, "phone");
        if (!phone) throw new FieldError("phone", "phone: is required");
        const body = { phone, reason: val(form, "reason") };
        const country = val(form, "default_country");
        if (country) body.default_country = country.toUpperCase();
        if (global) body.list = "global";
        const added = await api("POST", "/v1/dnc", body);
        toast(`${added.phone} added to the ${global ? "global " : ""}DNC list`);
        await load();
      },
    });
  }

  async function remove(entry) {
    if (!(await confirmDialog("Remove from DNC list", `Take ${entry.phone} off the ${global ? "global " : ""}DNC list? Campaigns may call it again.`, "Remove"))) return;
    await guard(async () => {
      await api("DELETE", `/v1/dnc/${encodeURIComponent(entry.phone)}${qs({ list: listQ })}`);
      toast(`${entry.phone} removed`);
      await load();
    });
  }

  async function load() {
    const fk = focusKey(section);
    loading(out);
    let page;
    try {
      page = await api("GET", `/v1/dnc${qs({ list: listQ, q: st.q, limit: st.limit, offset: st.offset })}`);
    } catch (err) {
      fill(out, problem(err, global ? "the global DNC list" : "the DNC list", load));
      return;
    }
    if (!page.items.length && st.offset > 0 && page.total > 0) {
      st.offset = Math.max(0, Math.floor((page.total - 1) / st.limit) * st.limit);
      return load();
    }
    const columns = [
      { label: "Number", render: (e) => h("strong", e.phone) },
      { label: "Reason", render: (e) => e.reason || h("span.muted", "—") },
      { label: "Added", render: (e) => fmtTime(e.created_at) },
    ];
    if (canEdit) {
      columns.push({
        label: "Actions",
        render: (e) => button("Remove", () => remove(e), "danger", { "aria-label": `Remove ${e.phone}`, "data-fk": `del-${e.id}` }),
      });
    }
    const t = table({
      columns,
      rows: page.items,
      empty: st.q ? "No number matches." : "The list is empty.",
      rowAttrs: (e) => ({ "data-phone": e.phone }),
    });
    fill(
      out,
      testTable(t, global ? "global-dnc-table" : "dnc-table"),
      keyedPager({ offset: page.offset, limit: page.limit, total: page.total, onPage: (o) => { st.offset = o; load(); } }, global ? "Pages of the global list" : "Pages of this account's list"),
    );
    restoreFocus(section, fk, "pager-next", "pager-prev", "add");
  }

  return { section, load };
}

/** The account's DNC list and the global one (changed by admins). */
export async function renderDnc(root, ctx) {
  const admin = isAdmin(ctx);
  const own = dncSection("account", true);
  const global = dncSection("global", admin);
  fill(
    root,
    h(
      "div.screen",
      pageHeader("Do not call"),
      h("p.muted", "The dialer skips every number on this account's list and on the global list."),
      own.section,
      global.section,
    ),
  );
  await Promise.all([own.load(), global.load()]);
}

// ---------------------------------------------------------------------------------------
// SIP agents and pools.

const AGENT_STATES = [
  ["available", "Available"],
  ["paused", "Paused"],
  ["busy", "Busy"],
  ["offline", "Offline"],
];
const agentStateLabel = (s) => (AGENT_STATES.find(([v]) => v === s) || [s, cap(s)])[1];

function agentStateCell(a) {
  const extra = a.state === "available" ? (a.free ? "free" : "wrap-up") : "";
  return [stateBadge(a.state, agentStateLabel(a.state)), extra ? h("span.muted", ` ${extra}`) : null];
}

function agentDialog(agent, done, profiles) {
  const listId = uid("profiles");
  formDialog({
    title: agent ? `Edit ${agent.name}` : "New SIP agent",
    fields: [
      field({ label: "Name", name: "name", value: agent ? agent.name : "", required: true, help: "Starts with a letter; letters, digits, _ - . and spaces.", attrs: { autocomplete: "off", maxlength: "64" } }),
      field({ label: "Target", name: "target", value: agent ? agent.target : "", required: true, help: "A sip: URI (sip:alice@pbx.example.com) or a phone number.", attrs: { autocomplete: "off" } }),
      field({ label: "Trunk profile", name: "profile", value: agent ? agent.profile : "", help: "Required when the target is a phone number.", attrs: { list: listId, autocomplete: "off" } }),
      datalist(listId, profiles),
      h(
        "div.grid2",
        field({ label: "State", name: "state", kind: "select", options: AGENT_STATES, value: agent ? agent.state : "offline" }),
        field({ label: "Wrap-up (seconds)", name: "wrap_up_secs", kind: "number", value: agent ? agent.wrap_up_secs : 0, help: "0–3600: no new call for this long after one.", attrs: { min: "0", max: "3600", step: "1" } }),
      ),
    ],
    onSubmit: async (form) => {
      const body = { name: val(form, "name"), target: val(form, "target"), profile: val(form, "profile") };
      // An edit sends the state only when it was changed here: the engine moves agents to
      // busy and back meanwhile, and a stale copy must not undo that.
      if (!agent || val(form, "state") !== agent.state) body.state = val(form, "state");
      const wrap = val(form, "wrap_up_secs");
      if (wrap !== "") {
        if (!/^\d+$/.test(wrap)) throw new FieldError("wrap_up_secs", "wrap_up_secs: a whole number of seconds, 0–3600");
        body.wrap_up_secs = Number(wrap);
      }
      if (!body.name) throw new FieldError("name", "name: is required");
      if (!body.target) throw new FieldError("target", "target: is required");
      const saved = agent ? await api("PATCH", `/v1/agents/sip/${agent.id}`, body) : await api("POST", "/v1/agents/sip", body);
      toast(agent ? `Saved ${saved.name}` : `Created ${saved.name}`);
      await done();
    },
  });
}

function agentStateDialog(agent, done) {
  formDialog({
    title: `State of ${agent.name}`,
    fields: [
      field({ label: "State", name: "state", kind: "select", options: AGENT_STATES, value: agent.state }),
      h("p.muted", `${agentStateLabel(agent.state)} since ${fmtTime(agent.state_since)}.`),
    ],
    submitLabel: "Set state",
    onSubmit: async (form) => {
      const saved = await api("POST", `/v1/agents/sip/${agent.id}/state`, { state: val(form, "state") });
      toast(`${saved.name}: ${agentStateLabel(saved.state)}`);
      await done();
    },
  });
}

/** The ordered members of a pool: add from a list, move up/down, remove. */
function membersEditor(agents, ids) {
  const order = [...ids];
  const byId = new Map(agents.map((a) => [a.id, a]));
  const ol = h("ol.members");
  const selectId = uid("pool-add");
  const select = h("select", { id: selectId });
  const addBtn = button("Add agent", () => {
    const id = Number(select.value);
    if (id && !order.includes(id)) order.push(id);
    draw();
    select.focus();
  }, "secondary");
  const name = (id) => (byId.get(id) ? byId.get(id).name : `Agent ${id}`);
  function draw(focusKeyName) {
    fill(
      ol,
      order.length
        ? order.map((id, i) =>
            h(
              "li",
              h("span", name(id)),
              byId.get(id) ? h("span.muted", ` (${agentStateLabel(byId.get(id).state)})`) : null,
              " ",
              h(
                "span.row-actions",
                button("Up", () => {
                  [order[i - 1], order[i]] = [order[i], order[i - 1]];
                  draw(`up-${id}`);
                }, "link", { disabled: i === 0, "aria-label": `Move ${name(id)} up`, "data-fk": `up-${id}` }),
                button("Down", () => {
                  [order[i + 1], order[i]] = [order[i], order[i + 1]];
                  draw(`down-${id}`);
                }, "link", { disabled: i === order.length - 1, "aria-label": `Move ${name(id)} down`, "data-fk": `down-${id}` }),
                button("Remove", () => {
                  order.splice(i, 1);
                  draw();
                  select.focus();
                }, "link", { "aria-label": `Remove ${name(id)} from the pool` }),
              ),
            ),
          )
        : h("li.muted", "No agents yet."),
    );
    const free = agents.filter((a) => !order.includes(a.id));
    fill(select, free.length ? free.map((a) => h("option", { value: a.id }, a.name)) : h("option", { value: "" }, "Every agent is in the pool"));
    select.disabled = !free.length;
    addBtn.disabled = !free.length;
    if (focusKeyName) {
      const el = ol.querySelector(`[data-fk="${focusKeyName}"]`);
      if (el && !el.disabled) el.focus();
      else if (el) (ol.querySelector("button:not([disabled])") || select).focus();
    }
  }
  draw();
  const el = h("div", ol, h("div.inline", h("label", { for: selectId }, "Agent"), select, addBtn));
  return { el, read: () => [...order] };
}

function poolDialog(pool, agents, done) {
  const members = membersEditor(agents, pool ? pool.agent_ids : []);
  formDialog({
    title: pool ? `Edit pool ${pool.name}` : "New agent pool",
    fields: [
      field({ label: "Name", name: "name", value: pool ? pool.name : "", required: true, help: "A campaign's “Connect to” names the pool by this name.", attrs: { autocomplete: "off" } }),
      fieldGroup("agent_ids", "Agents, in order", members.el, h("p.muted", "A caller gets the free agent that has been idle longest; the order breaks ties.")),
    ],
    onSubmit: async (form) => {
      const name = val(form, "name");
      if (!name) throw new FieldError("name", "name: is required");
      const body = { name, agent_ids: members.read() };
      const saved = pool ? await api("PATCH", `/v1/agents/pools/${pool.id}`, body) : await api("POST", "/v1/agents/pools", body);
      toast(pool ? `Saved pool ${saved.name}` : `Created pool ${saved.name}`);
      await done();
    },
  });
}

/** SIP agents (state, create/edit/delete, set state) and agent pools. */
export async function renderAgents(root, ctx) {
  const st = { state: "", offset: 0, limit: PAGE };
  const agentsOut = h("div");
  const poolsOut = h("div");
  let profiles = [];
  let campaigns = [];
  let allAgents = [];
  const stateId = uid("agent-state");
  const stateFilter = h(
    "select",
    { id: stateId, onchange: (e) => { st.state = e.target.value; st.offset = 0; loadAgents(); } },
    h("option", { value: "" }, "Any state"),
    AGENT_STATES.map(([v, l]) => h("option", { value: v }, l)),
  );
  const addAgent = button("New agent", () => agentDialog(null, reloadAll, profiles), "primary", { "data-testid": "add-agent", "data-fk": "add" });
  const addPool = button("New pool", () => poolDialog(null, allAgents, reloadAll), "primary", { "data-testid": "add-pool", "data-fk": "add-pool" });
  const agentsCard = card("SIP agents", [], h("div.toolbar", h("label", { for: stateId }, "State"), stateFilter), agentsOut);
  const poolsCard = card("Agent pools", [addPool], h("p.muted", "A pool is a hunt group: a campaign whose “Connect to” names it bridges answered calls to its free agents."), poolsOut);
  const screen = h("div.screen", pageHeader("SIP agents", addAgent), agentsCard, poolsCard);
  fill(root, screen);

  async function removeAgent(a) {
    if (!(await confirmDialog("Delete agent", `Delete the agent “${a.name}”? It leaves its pools.`))) return;
    await guard(async () => {
      await api("DELETE", `/v1/agents/sip/${a.id}`);
      toast(`Deleted ${a.name}`);
      await reloadAll();
    });
  }

  async function removePool(p, users) {
    const note = users.length ? ` Campaigns that connect to it (${users.map((c) => c.name).join(", ")}) will have no pool to connect to.` : "";
    if (!(await confirmDialog("Delete pool", `Delete the pool “${p.name}”? Its agents stay.${note}`))) return;
    await guard(async () => {
      await api("DELETE", `/v1/agents/pools/${p.id}`);
      toast(`Deleted pool ${p.name}`);
      await reloadAll();
    });
  }

  async function loadAgents() {
    const fk = focusKey(screen);
    loading(agentsOut);
    let page;
    try {
      page = await api("GET", `/v1/agents/sip${qs({ state: st.state, limit: st.limit, offset: st.offset })}`);
    } catch (err) {
      fill(agentsOut, problem(err, "the agents", loadAgents));
      return;
    }
    if (!page.items.length && st.offset > 0 && page.total > 0) {
      st.offset = Math.max(0, Math.floor((page.total - 1) / st.limit) * st.limit);
      return loadAgents();
    }
    const t = table({
      columns: [
        { label: "Name", render: (a) => h("strong", a.name) },
        { label: "Target", render: (a) => [h("div", a.target), a.profile ? h("div.muted", `via ${a.profile}`) : null] },
        { label: "State", render: (a) => agentStateCell(a) },
        { label: "Since", render: (a) => fmtTime(a.state_since) },
        { label: "Calls", render: (a) => String(a.calls), class: "num" },
        { label: "Talk time", render: (a) => fmtDuration((a.talk_ms || 0) / 1000), class: "num" },
        { label: "Wrap-up", render: (a) => `${a.wrap_up_secs} s`, class: "num" },
        {
          label: "Actions",
          render: (a) =>
            h(
              "div.row-actions",
              button("Set state", () => agentStateDialog(a, reloadAll), "secondary", { "aria-label": `Set state of ${a.name}`, "data-fk": `state-${a.id}` }),
              button("Edit", () => agentDialog(a, reloadAll, profiles), "secondary", { "aria-label": `Edit ${a.name}`, "data-fk": `edit-${a.id}` }),
              button("Delete", () => removeAgent(a), "danger", { "aria-label": `Delete ${a.name}`, "data-fk": `del-${a.id}` }),
            ),
        },
      ],
      rows: page.items,
      empty: st.state ? `No agent is ${agentStateLabel(st.state).toLowerCase()}.` : "No SIP agents yet.",
      rowAttrs: (a) => ({ "data-id": a.id, "data-state": a.state }),
    });
    fill(
      agentsOut,
      testTable(t, "agents-table"),
      keyedPager({ offset: page.offset, limit: page.limit, total: page.total, onPage: (o) => { st.offset = o; loadAgents(); } }),
    );
    restoreFocus(screen, fk, "pager-next", "pager-prev", "add");
  }

  async function loadPools() {
    const fk = focusKey(screen);
    loading(poolsOut);
    let pools;
    try {
      [pools, allAgents, campaigns] = await Promise.all([api("GET", "/v1/agents/pools"), all("/v1/agents/sip"), loadCampaigns()]);
    } catch (err) {
      fill(poolsOut, problem(err, "the agent pools", loadPools));
      return;
    }
    const names = new Map(allAgents.map((a) => [a.id, a.name]));
    const users = (p) => campaigns.filter((c) => c.connect_to === p.name || c.connect_to === `pool:${p.name}`);
    const t = table({
      columns: [
        { label: "Name", render: (p) => h("strong", p.name) },
        {
          label: "Agents, in order",
          render: (p) => (p.agent_ids.length ? h("ol.members", p.agent_ids.map((id) => h("li", names.get(id) || `Agent ${id}`))) : h("span.muted", "None")),
        },
        {
          label: "Now",
          render: (p) => {
            const c = p.agents || {};
            return h("span", `${c.free || 0} free · ${c.wrap_up || 0} in wrap-up · ${c.busy || 0} busy · ${c.away || 0} away`);
          },
        },
        { label: "Used by", render: (p) => campaignLinks(users(p)) },
        {
          label: "Actions",
          render: (p) =>
            h(
              "div.row-actions",
              button("Edit", () => poolDialog(p, allAgents, reloadAll), "secondary", { "aria-label": `Edit pool ${p.name}`, "data-fk": `pedit-${p.id}` }),
              button("Delete", () => removePool(p, users(p)), "danger", { "aria-label": `Delete pool ${p.name}`, "data-fk": `pdel-${p.id}` }),
            ),
        },
      ],
      rows: pools,
      empty: "No agent pools yet.",
      rowAttrs: (p) => ({ "data-id": p.id }),
    });
    fill(poolsOut, testTable(t, "pools-table"));
    restoreFocus(screen, fk, "add-pool");
  }

  async function reloadAll() {
    await Promise.all([loadAgents(), loadPools()]);
  }

  profiles = await profileNames(ctx);
  await reloadAll();
}

// ---------------------------------------------------------------------------------------
// AI agents.

const AI_KINDS = [
  ["twilio_ws", "WebSocket — Twilio Media Streams"],
  ["l16_ws", "WebSocket — L16 (jambonz listen)"],
  ["webrtc_smallwebrtc", "WebRTC — SmallWebRTC (pipecat)"],
  ["webrtc_whip", "WebRTC — WHIP"],
];
const aiKindLabel = (k) => (AI_KINDS.find(([v]) => v === k) || [k, k])[1];
const isWebsocketKind = (k) => k === "twilio_ws" || k === "l16_ws";

/** custom_parameters: name/value rows. */
function paramsEditor(params) {
  const rows = Object.entries(params || {}).map(([k, v]) => ({ k, v }));
  const box = h("div");
  function draw(focusLast) {
    fill(
      box,
      rows.length
        ? rows.map((r, i) =>
            h(
              "div.inline.param",
              h("input", { type: "text", value: r.k, "aria-label": `Parameter ${i + 1} name`, autocomplete: "off", oninput: (e) => (r.k = e.target.value), dataset: { i: String(i) } }),
              h("input", { type: "text", value: r.v, "aria-label": `Parameter ${i + 1} value`, autocomplete: "off", oninput: (e) => (r.v = e.target.value) }),
              button("Remove", () => {
                rows.splice(i, 1);
                draw();
                addBtn.focus();
              }, "link", { "aria-label": `Remove parameter ${i + 1}` }),
            ),
          )
        : h("p.muted", "None."),
    );
    if (focusLast) {
      const inputs = box.querySelectorAll("input[data-i]");
      if (inputs.length) inputs[inputs.length - 1].focus();
    }
  }
  const addBtn = button("Add parameter", () => {
    rows.push({ k: "", v: "" });
    draw(true);
  }, "secondary");
  draw();
  return {
    el: h("div", box, addBtn),
    read() {
      const out = {};
      rows.forEach((r, i) => {
        const k = r.k.trim();
        if (!k && !r.v.trim()) return;
        if (!k) throw new FieldError("custom_parameters", `custom_parameters: parameter ${i + 1} has a value but no name`);
        if (k in out) throw new FieldError("custom_parameters", `custom_parameters: ${k} is given twice`);
        out[k] = r.v;
      });
      return out;
    },
  };
}

function aiAgentDialog(agent, pools, done) {
  const params = paramsEditor(agent ? agent.custom_parameters : {});
  const poolsId = uid("pools");
  const kindField = field({ label: "Transport", name: "kind", kind: "select", options: AI_KINDS, value: agent ? agent.kind : "twilio_ws" });
  const urlField = field({ label: "URL", name: "url", kind: "url", value: agent ? agent.url : "", required: true, attrs: { autocomplete: "off", placeholder: "wss://agent.example.com/stream" } });
  const rateField = field({
    label: "Sample rate (Hz)",
    name: "sample_rate",
    kind: "select",
    options: [["8000", "8000"], ["16000", "16000"], ["24000", "24000"]],
    value: agent && agent.sample_rate ? String(agent.sample_rate) : "8000",
    help: "L16 only.",
  });
  const closeField = field({
    label: "When the agent closes",
    name: "on_agent_close",
    kind: "select",
    options: [["hangup", "Hang up"], ["connect", "Connect the person to the hand-off target"]],
    value: agent ? agent.on_agent_close : "hangup",
  });
  const handoffField = field({
    label: "Hand-off target",
    name: "handoff_target",
    value: agent && agent.handoff_target ? agent.handoff_target : "",
    help: "A sip: URI, a number, or an agent pool of this account.",
    attrs: { list: poolsId, autocomplete: "off" },
  });
  const urlHelp = h("small.help");
  urlField.insertBefore(urlHelp, urlField.querySelector(".field-error"));
  const kindSelect = kindField.querySelector("select");
  const closeSelect = closeField.querySelector("select");
  const sync = () => {
    const kind = kindSelect.value;
    rateField.hidden = kind !== "l16_ws";
    urlHelp.textContent = isWebsocketKind(kind) ? "ws:// or wss:// for the WebSocket transports." : "http:// or https:// (the offer/answer endpoint) for WebRTC.";
    urlField.querySelector("input").placeholder = isWebsocketKind(kind) ? "wss://agent.example.com/stream" : "https://agent.example.com/api/offer";
    handoffField.hidden = closeSelect.value !== "connect";
  };
  kindSelect.addEventListener("change", sync);
  closeSelect.addEventListener("change", sync);
  sync();
  formDialog({
    title: agent ? `Edit ${agent.name}` : "New AI agent",
    wide: true,
    fields: [
      h("div.grid2", field({ label: "Name", name: "name", value: agent ? agent.name : "", required: true, attrs: { autocomplete: "off" } }), kindField),
      urlField,
      rateField,
      fieldGroup("custom_parameters", "Custom parameters (sent to the agent with every call)", params.el),
      h(
        "div.grid2",
        field({ label: "Auth header name", name: "auth_header_name", value: agent && agent.auth_header_name ? agent.auth_header_name : "", help: "e.g. Authorization or X-Api-Key.", attrs: { autocomplete: "off" } }),
        field({
          label: "Environment variable with its value",
          name: "auth_header_env",
          value: agent && agent.auth_header_env ? agent.auth_header_env : "",
          help: "The server reads the header's value from this variable when a call starts; the value is never sent to or shown by the page.",
          attrs: { autocomplete: "off" },
        }),
      ),
      h("div.grid2", closeField, handoffField),
      datalist(poolsId, pools.map((p) => p.name)),
    ],
    onSubmit: async (form) => {
      const kind = val(form, "kind");
      const onClose = val(form, "on_agent_close");
      const body = {
        name: val(form, "name"),
        kind,
        url: val(form, "url"),
        custom_parameters: params.read(),
        auth_header_name: val(form, "auth_header_name") || null,
        auth_header_env: val(form, "auth_header_env") || null,
        sample_rate: kind === "l16_ws" ? Number(val(form, "sample_rate") || 8000) : null,
        on_agent_close: onClose,
        handoff_target: onClose === "connect" ? val(form, "handoff_target") || null : null,
      };
      if (!body.name) throw new FieldError("name", "name: is required");
      if (!body.url) throw new FieldError("url", "url: is required");
      if (!agent) {
        // Create: leave the nulls out (nothing to clear).
        for (const k of Object.keys(body)) if (body[k] === null) delete body[k];
      }
      const saved = agent ? await api("PATCH", `/v1/agents/ai/${agent.id}`, body) : await api("POST", "/v1/agents/ai", body);
      toast(agent ? `Saved ${saved.name}` : `Created ${saved.name}`);
      await done();
    },
  });
}

/** AI voice agents: list, create/edit/delete with every field. */
export async function renderAiAgents(root, ctx) {
  void ctx;
  const st = { offset: 0, limit: PAGE };
  const out = h("div");
  let pools = [];
  let campaigns = [];
  const screen = h(
    "div.screen",
    pageHeader("AI agents", button("New AI agent", () => aiAgentDialog(null, pools, load), "primary", { "data-testid": "add-ai-agent", "data-fk": "add" })),
    h("p.muted", "The AI voice agents a campaign can hand answered calls to, over a WebSocket or WebRTC."),
    out,
  );
  fill(root, screen);

  async function remove(a, users) {
    const note = users.length ? ` Campaigns use it (${users.map((c) => c.name).join(", ")}): the server refuses while they do.` : "";
    if (!(await confirmDialog("Delete AI agent", `Delete the AI agent “${a.name}”?${note}`))) return;
    await guard(async () => {
      await api("DELETE", `/v1/agents/ai/${a.id}`);
      toast(`Deleted ${a.name}`);
      await load();
    });
  }

  async function load() {
    const fk = focusKey(screen);
    loading(out);
    let page;
    try {
      [page, pools, campaigns] = await Promise.all([
        api("GET", `/v1/agents/ai${qs({ limit: st.limit, offset: st.offset })}`),
        api("GET", "/v1/agents/pools").catch(() => []),
        loadCampaigns(),
      ]);
    } catch (err) {
      fill(out, problem(err, "the AI agents", load));
      return;
    }
    if (!page.items.length && st.offset > 0 && page.total > 0) {
      st.offset = Math.max(0, Math.floor((page.total - 1) / st.limit) * st.limit);
      return load();
    }
    const users = (a) => campaigns.filter((c) => c.ai_agent_id === a.id);
    const t = table({
      columns: [
        { label: "Name", render: (a) => h("strong", a.name) },
        {
          label: "Transport",
          render: (a) => [h("div", aiKindLabel(a.kind)), a.kind === "l16_ws" && a.sample_rate ? h("div.muted", `${a.sample_rate} Hz`) : null],
        },
        { label: "URL", render: (a) => h("code", a.url) },
        {
          label: "Parameters",
          render: (a) => {
            const keys = Object.keys(a.custom_parameters || {});
            return keys.length ? h("div.tags", keys.map((k) => h("span.tag", k))) : h("span.muted", "—");
          },
        },
        {
          label: "Auth",
          render: (a) =>
            a.auth_header_name
              ? [
                  h("div", `${a.auth_header_name} from $${a.auth_header_env || "?"}`),
                  a.auth_header_env_set === false ? stateBadge("error", "variable not set on the server") : a.auth_header_env_set ? stateBadge("up", "set") : null,
                ]
              : h("span.muted", "None"),
        },
        {
          label: "When it closes",
          render: (a) => (a.on_agent_close === "connect" ? `Connect to ${a.handoff_target || "?"}` : "Hang up"),
        },
        { label: "Used by", render: (a) => campaignLinks(users(a)) },
        {
          label: "Actions",
          render: (a) =>
            h(
              "div.row-actions",
              button("Edit", () => aiAgentDialog(a, pools, load), "secondary", { "aria-label": `Edit ${a.name}`, "data-fk": `edit-${a.id}` }),
              button("Delete", () => remove(a, users(a)), "danger", { "aria-label": `Delete ${a.name}`, "data-fk": `del-${a.id}` }),
            ),
        },
      ],
      rows: page.items,
      empty: "No AI agents yet.",
      rowAttrs: (a) => ({ "data-id": a.id }),
    });
    fill(
      out,
      testTable(t, "ai-agents-table"),
      keyedPager({ offset: page.offset, limit: page.limit, total: page.total, onPage: (o) => { st.offset = o; load(); } }),
    );
    restoreFocus(screen, fk, "pager-next", "pager-prev", "add");
  }

  await load();
}

// ---------------------------------------------------------------------------------------
// Phone numbers.

function numberDialog(number, profiles, done) {
  const listId = uid("profiles");
  formDialog({
    title: number ? `Edit ${number.number}` : "Add a phone number",
    fields: [
      number
        ? field({ label: "Number", name: "number", value: number.number, help: "A number's digits never change: delete it and add the new one.", attrs: { readonly: true } })
        : field({ label: "Number", name: "number", kind: "tel", required: true, help: "E.164: +, then up to 15 digits (e.g. +12025550100).", attrs: { autocomplete: "off", placeholder: "+12025550100" } }),
      field({ label: "Label", name: "label", value: number && number.label ? number.label : "", help: "Optional, e.g. Sales.", attrs: { autocomplete: "off" } }),
      field({ label: "SIP profile", name: "sip_profile", value: number && number.sip_profile ? number.sip_profile : "", help: "The trunk profile the number is reached on (optional).", attrs: { list: listId, autocomplete: "off" } }),
      datalist(listId, profiles),
    ],
    submitLabel: number ? "Save" : "Add",
    onSubmit: async (form) => {
      let saved;
      if (number) {
        saved = await api("PATCH", `/v1/numbers/${number.id}`, { label: val(form, "label") || null, sip_profile: val(form, "sip_profile") || null });
      } else {
        const n = val(form, "number");
        if (!n) throw new FieldError("number", "number: is required");
        const body = { number: n };
        if (val(form, "label")) body.label = val(form, "label");
        if (val(form, "sip_profile")) body.sip_profile = val(form, "sip_profile");
        saved = await api("POST", "/v1/numbers", body);
      }
      toast(number ? `Saved ${saved.number}` : `Added ${saved.number}`);
      await done();
    },
  });
}

/** The account's phone numbers and the campaigns that use them. */
export async function renderNumbers(root, ctx) {
  const st = { available: false, offset: 0, limit: PAGE };
  const out = h("div");
  let profiles = [];
  let campaigns = [];
  const availId = uid("avail");
  const avail = h("input", {
    type: "checkbox",
    id: availId,
    onchange: (e) => {
      st.available = e.target.checked;
      st.offset = 0;
      load();
    },
  });
  const screen = h(
    "div.screen",
    pageHeader("Phone numbers", button("Add number", () => numberDialog(null, profiles, load), "primary", { "data-testid": "add-number", "data-fk": "add" })),
    h("p.muted", "A campaign created with a number calls from it; a number is held by at most one scheduled, processing or paused campaign."),
    h("div.toolbar", h("div.field.check", avail, h("label", { for: availId }, "Only numbers a new campaign may take"))),
    out,
  );
  fill(root, screen);

  async function remove(n) {
    const note = n.campaign_id ? " A campaign holds it: the server refuses until that campaign finishes." : "";
    if (!(await confirmDialog("Delete number", `Delete ${n.number}${n.label ? ` (${n.label})` : ""}?${note}`))) return;
    await guard(async () => {
      await api("DELETE", `/v1/numbers/${n.id}`);
      toast(`Deleted ${n.number}`);
      await load();
    });
  }

  async function load() {
    const fk = focusKey(screen);
    loading(out);
    let page;
    try {
      [page, campaigns] = await Promise.all([
        api("GET", `/v1/numbers${qs({ available: st.available ? "true" : "", limit: st.limit, offset: st.offset })}`),
        loadCampaigns(),
      ]);
    } catch (err) {
      fill(out, problem(err, "the phone numbers", load));
      return;
    }
    if (!page.items.length && st.offset > 0 && page.total > 0) {
      st.offset = Math.max(0, Math.floor((page.total - 1) / st.limit) * st.limit);
      return load();
    }
    const byId = new Map(campaigns.map((c) => [c.id, c]));
    const t = table({
      columns: [
        { label: "Number", render: (n) => h("strong", n.number) },
        { label: "Label", render: (n) => n.label || h("span.muted", "—") },
        { label: "SIP profile", render: (n) => n.sip_profile || h("span.muted", "—") },
        {
          label: "Campaign",
          render: (n) => {
            const others = campaigns.filter((c) => c.number_id === n.id && c.id !== n.campaign_id);
            const holder = n.campaign_id ? byId.get(n.campaign_id) || { id: n.campaign_id, name: `Campaign ${n.campaign_id}` } : null;
            return [
              holder ? h("div", stateBadge("processing", "In use"), " ", campaignLinks([holder])) : h("div", stateBadge("available", "Available")),
              others.length ? h("div.muted", "Also named by: ", campaignLinks(others)) : null,
            ];
          },
        },
        { label: "Added", render: (n) => fmtTime(n.created_at) },
        {
          label: "Actions",
          render: (n) =>
            h(
              "div.row-actions",
              button("Edit", () => numberDialog(n, profiles, load), "secondary", { "aria-label": `Edit ${n.number}`, "data-fk": `edit-${n.id}` }),
              button("Delete", () => remove(n), "danger", { "aria-label": `Delete ${n.number}`, "data-fk": `del-${n.id}` }),
            ),
        },
      ],
      rows: page.items,
      empty: st.available ? "No number is free." : "No phone numbers yet.",
      rowAttrs: (n) => ({ "data-id": n.id }),
    });
    fill(
      out,
      testTable(t, "numbers-table"),
      keyedPager({ offset: page.offset, limit: page.limit, total: page.total, onPage: (o) => { st.offset = o; load(); } }),
    );
    restoreFocus(screen, fk, "pager-next", "pager-prev", "add");
  }

  profiles = await profileNames(ctx);
  await load();
}

// ---------------------------------------------------------------------------------------
// API keys and logins.

function showSecret(made) {
  const inputId = uid("secret");
  const input = h("input", { id: inputId, type: "text", readonly: true, value: made.secret, autocomplete: "off", spellcheck: "false", "data-testid": "new-key" });
  const status = h("span.muted", { role: "status" });
  const copyBtn = button("Copy", async () => {
    const ok = await copyText(made.secret, input);
    status.textContent = ok ? "Copied." : "Select the key and copy it by hand.";
  }, "secondary", { "data-testid": "copy-key" });
  openDialog({
    title: "Your new API key",
    body: h(
      "div",
      h("p", h("strong", "Copy this key now: it is shown once and cannot be read again.")),
      h("div.field", h("label", { for: inputId }, `Key for ${made.key.login || "this login"}${made.key.label ? ` (${made.key.label})` : ""}`), h("div.inline", input, copyBtn), status),
      h("p.muted", "Log in with the login and this key, or send it as Authorization: Bearer … to the API."),
    ),
    actions: [{ label: "Done", primary: true }],
  });
  input.focus();
  input.select();
}

function keyDialog(logins, ctx, done, loginId) {
  const mine = logins.find((l) => l.login === myLogin(ctx));
  const fields = [field({ label: "Label", name: "label", help: "To tell keys apart, e.g. “CRM integration”.", attrs: { autocomplete: "off" } })];
  if (logins.length) {
    fields.push(
      field({
        label: "For login",
        name: "login_id",
        kind: "select",
        options: logins.map((l) => [String(l.id), `${l.login} (${l.role})`]),
        value: String(loginId || (mine ? mine.id : logins[0].id)),
      }),
    );
  }
  formDialog({
    title: "New API key",
    fields,
    submitLabel: "Create key",
    onSubmit: async (form) => {
      const body = { label: val(form, "label") };
      const lid = val(form, "login_id");
      if (lid) body.login_id = Number(lid);
      const made = await api("POST", "/v1/keys", body);
      await done();
      // After this dialog closes.
      setTimeout(() => showSecret(made), 0);
    },
  });
}

/** API keys (an admin: all of the account's; an operator: its own) and, for admins, logins. */
export async function renderKeys(root, ctx) {
  const admin = isAdmin(ctx);
  const keysOut = h("div");
  const loginsOut = h("div");
  let keys = [];
  let logins = [];
  const addKey = admin ? button("New API key", () => keyDialog(logins, ctx, load), "primary", { "data-testid": "add-key", "data-fk": "add" }) : null;
  const addLogin = admin ? button("New login", () => loginDialog(), "primary", { "data-testid": "add-login", "data-fk": "add-login" }) : null;
  const keysCard = card(
    "API keys",
    [],
    h("p.muted", admin ? "Every key of the account. A key is shown once, when it is made; revoking one ends the sessions opened with it at once." : "Your login's keys. Only an admin makes new keys; you may revoke your own."),
    keysOut,
  );
  const loginsCard = card("Logins", addLogin ? [addLogin] : [], loginsOut);
  const screen = h("div.screen", pageHeader("API keys", addKey), keysCard, loginsCard);
  fill(root, screen);

  function loginDialog() {
    formDialog({
      title: "New login",
      fields: [
        field({ label: "Login", name: "login", required: true, help: "Unique over the whole server.", attrs: { autocomplete: "off" } }),
        field({ label: "Role", name: "role", kind: "select", options: [["operator", "Operator"], ["admin", "Admin"]], value: "operator", help: "Admins also manage logins, every key and the global DNC list." }),
      ],
      submitLabel: "Add login",
      onSubmit: async (form) => {
        const login = val(form, "login");
        if (!login) throw new FieldError("login", "login: is required");
        const made = await api("POST", "/v1/logins", { login, role: val(form, "role") });
        toast(`Added ${made.login}: give it a key to log in with`);
        await load();
        setTimeout(() => keyDialog(logins, ctx, load, made.id), 0);
      },
    });
  }

  async function revoke(k) {
    const mine = k.login === myLogin(ctx);
    const text = `Revoke ${k.prefix}${k.label ? ` (${k.label})` : ""}? It and every session opened with it stop working at once.${mine ? " If you logged in with this key, you will be logged out." : ""}`;
    if (!(await confirmDialog("Revoke API key", text, "Revoke"))) return;
    await guard(async () => {
      await api("DELETE", `/v1/keys/${k.id}`);
      toast(`Revoked ${k.prefix}`);
      await load();
    });
  }

  async function removeLogin(l) {
    const self = l.login === myLogin(ctx);
    const text = `Delete the login “${l.login}” with its keys and sessions?${self ? " This is your own login: you will be logged out." : ""}`;
    if (!(await confirmDialog("Delete login", text))) return;
    await guard(async () => {
      await api("DELETE", `/v1/logins/${l.id}`);
      toast(`Deleted ${l.login}`);
      await load();
    });
  }

  function drawKeys() {
    const cols = [
      { label: "Key", render: (k) => h("code", k.prefix) },
      { label: "Label", render: (k) => k.label || h("span.muted", "—") },
      { label: "Login", render: (k) => k.login || h("span.muted", "—") },
      { label: "Created", render: (k) => fmtTime(k.created_at) },
      { label: "Last used", render: (k) => (k.last_used_at ? fmtTime(k.last_used_at) : h("span.muted", "Never")) },
      { label: "Status", render: (k) => (k.revoked_at ? [stateBadge("canceled", "Revoked"), h("div.muted", fmtTime(k.revoked_at))] : stateBadge("available", "Active")) },
      {
        label: "Actions",
        render: (k) =>
          k.revoked_at || (!admin && k.login !== myLogin(ctx))
            ? h("span.muted", "—")
            : button("Revoke", () => revoke(k), "danger", { "aria-label": `Revoke ${k.prefix}${k.label ? ` ${k.label}` : ""}`, "data-fk": `rev-${k.id}` }),
      },
    ];
    const t = table({ columns: cols, rows: keys, empty: "No API keys.", rowAttrs: (k) => ({ "data-id": k.id, "data-revoked": k.revoked_at ? "true" : "false" }) });
    fill(keysOut, testTable(t, "keys-table"));
  }

  function drawLogins() {
    const active = (l) => keys.filter((k) => k.login_id === l.id && !k.revoked_at).length;
    const t = table({
      columns: [
        { label: "Login", render: (l) => [h("strong", l.login), l.login === myLogin(ctx) ? h("span.muted", " (you)") : null] },
        { label: "Role", render: (l) => stateBadge(l.role === "admin" ? "scheduled" : "unknown", cap(l.role)) },
        { label: "Active keys", render: (l) => String(active(l)), class: "num" },
        { label: "Created", render: (l) => fmtTime(l.created_at) },
        {
          label: "Actions",
          render: (l) =>
            h(
              "div.row-actions",
              button("New key", () => keyDialog(logins, ctx, load, l.id), "secondary", { "aria-label": `New key for ${l.login}`, "data-fk": `key-${l.id}` }),
              button("Delete", () => removeLogin(l), "danger", { "aria-label": `Delete login ${l.login}`, "data-fk": `ldel-${l.id}` }),
            ),
        },
      ],
      rows: logins,
      empty: "No logins.",
      rowAttrs: (l) => ({ "data-id": l.id }),
    });
    fill(loginsOut, testTable(t, "logins-table"));
  }

  async function load() {
    const fk = focusKey(screen);
    loading(keysOut);
    if (admin) loading(loginsOut);
    const [k, l] = await Promise.allSettled([api("GET", "/v1/keys"), admin ? api("GET", "/v1/logins") : Promise.resolve(null)]);
    if (k.status === "fulfilled") {
      keys = k.value || [];
      drawKeys();
    } else fill(keysOut, problem(k.reason, "the API keys", load));
    if (!admin) {
      fill(loginsOut, h("p.muted", { role: "status" }, "Only an admin login sees and manages the account's logins."));
    } else if (l.status === "fulfilled") {
      logins = l.value || [];
      drawLogins();
    } else {
      logins = [];
      fill(loginsOut, problem(l.reason, "the logins", load));
    }
    restoreFocus(screen, fk, "add", "add-login");
  }

  await load();
}

// ---------------------------------------------------------------------------------------
// Live monitor.

/** Call events the stream sends by kind (each also updates the calls table). */
const CALL_EVENTS = ["initiated", "ringing", "early_media", "answered", "amd", "machine_end", "dtmf", "bridged", "unbridged", "agent_event", "abandoned", "completed"];
const OTHER_EVENTS = ["campaign_status", "callback"];

const CALL_STATES = {
  dialing: ["dialing", "Dialing"],
  ringing: ["ringing", "Ringing"],
  answered: ["listening", "Answered · AMD listening"],
  human: ["answered", "Human answered"],
  machine: ["amd", "Machine"],
  bridged: ["bridged", "Bridged"],
};

let liveStop = null;

/** Stops the live monitor (closes its stream and timers), if one runs. */
export function stopLive() {
  if (liveStop) {
    const f = liveStop;
    liveStop = null;
    f();
  }
}

function parseData(e) {
  try {
    return JSON.parse(e.data);
  } catch {
    return null;
  }
}

/** [[status, n]] or {status: n} → {status: n}. */
function statusCounts(contacts) {
  const out = {};
  if (!contacts) return out;
  const pairs = Array.isArray(contacts.by_status) ? contacts.by_status : Object.entries(contacts.by_status || {});
  for (const p of pairs) {
    if (Array.isArray(p)) out[p[0]] = p[1];
  }
  return out;
}

/** The live monitor: calls in progress, agents and campaign counters from GET /v1/live. */
export async function renderLive(root, ctx) {
  void ctx;
  stopLive();
  let stopped = false;
  let es = null;
  let retryTimer = null;
  let backoff = 2000;
  let clockOffset = 0; // server ms − browser ms
  const serverNow = () => Date.now() + clockOffset;

  const calls = new Map(); // call_id → {data, tr, cells}
  let campaigns = new Map(); // id → campaign with counters
  const names = new Map(); // campaign id → name (every campaign of the account)
  let agents = [];

  // Connection indicator.
  const dot = h("span.dot.closed", { "aria-hidden": "true" });
  const statusText = h("span", "Connecting…");
  const status = h("span.live-status", { "data-testid": "live-status", "data-state": "connecting", role: "status" }, dot, statusText);
  function setStatus(state) {
    if (status.dataset.state === state) return;
    status.dataset.state = state;
    dot.className = `dot ${state === "connected" ? "open" : "closed"}`;
    statusText.textContent = { connected: "Connected", connecting: "Connecting…", reconnecting: "Reconnecting…", offline: "Disconnected" }[state] || state;
  }

  // Counters.
  const statEls = {};
  const stat = (key, label) => {
    const strong = h("strong", "0");
    statEls[key] = strong;
    return h("div.stat", { "data-testid": `live-stat-${key}` }, strong, h("span", label));
  };
  const stats = h(
    "div.stats",
    stat("calls", "Calls in progress"),
    stat("ringing", "Dialing or ringing"),
    stat("answered", "Answered, not bridged"),
    stat("bridged", "Bridged"),
    stat("available", "Agents available"),
    stat("busy", "Agents busy"),
    stat("away", "Agents paused or offline"),
  );

  // Calls table (rows updated in place).
  const callsHeadingId = uid("h");
  const callsBody = h("tbody");
  const emptyRow = h("tr", h("td.empty", { colspan: "5" }, "No calls in progress."));
  const CALL_COLS = ["Campaign", "Number", "State", "Duration", "Talk time"];
  const callsTable = h(
    "div.table-wrap",
    h("table", { "data-testid": "live-calls", "aria-labelledby": callsHeadingId }, h("thead", h("tr", CALL_COLS.map((c) => h("th", { scope: "col" }, c)))), callsBody),
  );
  callsBody.append(emptyRow);

  const agentsOut = h("div");
  const campaignsOut = h("div");
  const log = h("ol.plain.live-log", { "data-testid": "live-log" });

  const screen = h(
    "div.screen",
    pageHeader("Live monitor", status),
    stats,
    h(
      "section.card",
      { "aria-labelledby": callsHeadingId },
      h("div.page-header.sub", h("h2", { id: callsHeadingId }, "Calls in progress")),
      callsTable,
    ),
    h("div.grid2", card("Agents", [], agentsOut), card("Campaigns", [], campaignsOut)),
    card("Recent events", [], h("p.muted", "The latest 50, newest first."), log),
  );
  fill(root, screen);

  const campaignName = (id) => {
    if (id === null || id === undefined) return "—";
    const c = campaigns.get(id);
    return (c && c.name) || names.get(id) || `Campaign ${id}`;
  };

  function callStateCell(c) {
    const [cls, label] = CALL_STATES[c.state] || ["unknown", cap(c.state)];
    return [
      stateBadge(cls, label),
      c.state === "bridged" && c.bridged_to ? h("span", " to ", h("span.target", c.bridged_to)) : null,
      c.answered_by && c.state !== "bridged" ? h("div.muted", `answered by ${c.answered_by.replace(/_/g, " ")}`) : null,
    ];
  }

  function tickCall(row) {
    const c = row.data;
    const now = serverNow();
    row.cells.duration.textContent = fmtDuration(Math.max(0, now - (c.started_at || now)) / 1000);
    row.cells.talk.textContent = c.answered_at ? fmtDuration(Math.max(0, now - c.answered_at) / 1000) : "—";
  }

  function drawCall(row) {
    const c = row.data;
    row.tr.dataset.state = c.state;
    row.cells.state.dataset.state = c.state;
    fill(row.cells.campaign, c.campaign_id ? h("a", { href: campaignHref(c.campaign_id) }, campaignName(c.campaign_id)) : "—");
    fill(
      row.cells.number,
      c.to || h("span.muted", "—"),
      c.direction === "inbound" ? h("span.muted", " (callback)") : null,
      c.contact_id ? h("div.muted", `contact #${c.contact_id}`) : null,
    );
    fill(row.cells.state, callStateCell(c));
    tickCall(row);
  }

  function upsertCall(data) {
    let row = calls.get(data.call_id);
    if (!row) {
      const td = (label, extra = {}) => h("td", { "data-label": label, ...extra });
      const cells = {
        campaign: td("Campaign"),
        number: td("Number"),
        state: td("State", { "data-testid": "live-state" }),
        duration: td("Duration", { class: "num" }),
        talk: td("Talk time", { class: "num", "data-testid": "live-talk" }),
      };
      const tr = h("tr", { "data-call-id": data.call_id }, Object.values(cells));
      row = { data, tr, cells };
      calls.set(data.call_id, row);
      if (emptyRow.parentNode) emptyRow.remove();
      callsBody.append(tr);
    } else {
      row.data = data;
    }
    drawCall(row);
    return row;
  }

  function removeCall(id) {
    const row = calls.get(id);
    if (!row) return;
    row.tr.remove();
    calls.delete(id);
    if (!calls.size) callsBody.append(emptyRow);
  }

  function reconcileCalls(list) {
    const seen = new Set();
    for (const c of list || []) {
      if (!c || !c.call_id) continue;
      seen.add(c.call_id);
      upsertCall({ ...c });
    }
    for (const id of [...calls.keys()]) if (!seen.has(id)) removeCall(id);
  }

  /** The same steps as the server's live board (src/observe/live.rs). */
  function applyEvent(ev) {
    const id = ev.call_id;
    const d = ev.detail || {};
    if (ev.kind === "completed") {
      removeCall(id);
      return;
    }
    const prev = calls.get(id);
    const c = prev
      ? { ...prev.data }
      : { call_id: id, campaign_id: ev.campaign_id, contact_id: ev.contact_id, direction: null, to: null, state: "dialing", started_at: ev.at, answered_at: null, answered_by: null, bridged_to: null };
    switch (ev.kind) {
      case "initiated":
        c.direction = d.direction || null;
        c.to = d.to || null;
        c.started_at = ev.at;
        break;
      case "ringing":
      case "early_media":
        if (!c.answered_at) c.state = "ringing";
        break;
      case "answered":
        c.state = "answered";
        c.answered_at = ev.at;
        break;
      case "amd":
      case "machine_end":
        c.answered_by = d.answered_by || null;
        if (c.state !== "bridged") {
          if (d.verdict === "human") c.state = "human";
          else if (d.verdict === "machine" || d.verdict === "fax" || ev.kind === "machine_end") c.state = "machine";
        }
        break;
      case "bridged":
        c.state = "bridged";
        c.bridged_to = d.target || "transfer";
        break;
      case "unbridged":
        c.state = "human";
        c.bridged_to = null;
        break;
      default:
        break;
    }
    upsertCall(c);
  }

  function logEvent(ev) {
    const d = ev.detail || {};
    let what = cap(ev.kind);
    if (ev.kind === "amd") what = `AMD: ${d.verdict || "?"}`;
    else if (ev.kind === "bridged") what = `Bridged to ${d.target || "transfer"}`;
    else if (ev.kind === "completed") what = `Completed: ${String(d.outcome || "").replace(/_/g, " ")}${d.reason ? ` (${d.reason})` : ""}`;
    else if (ev.kind === "dtmf") what = `Key ${d.digit || "?"}`;
    else if (ev.kind === "campaign_status") what = `Campaign ${d.from || "?"} → ${d.to || "?"}`;
    else if (ev.kind === "ringing") what = `Ringing${d.code ? ` (${d.code})` : ""}`;
    const row = calls.get(ev.call_id);
    const to = (row && row.data.to) || (ev.kind === "initiated" && d.to) || "";
    const at = new Date(ev.at || Date.now()).toLocaleTimeString();
    log.prepend(
      h(
        "li",
        { "data-kind": ev.kind },
        h("time", { datetime: new Date(ev.at || Date.now()).toISOString() }, at),
        " · ",
        h("strong", what),
        to ? ` · ${to}` : "",
        ev.campaign_id ? ` · ${campaignName(ev.campaign_id)}` : "",
      ),
    );
    while (log.children.length > 50) log.lastChild.remove();
  }

  // Agents and campaigns: redrawn from the counters (and on call changes, at most once a frame).
  const agentSince = [];
  function drawAgents() {
    agentSince.length = 0;
    const t = table({
      columns: [
        { label: "Agent", render: (a) => h("strong", a.name) },
        { label: "State", render: (a) => stateBadge(a.state, agentStateLabel(a.state)) },
        {
          label: "For",
          render: (a) => {
            const span = h("span");
            agentSince.push([span, a]);
            span.textContent = a.state_since ? fmtDuration(Math.max(0, serverNow() - a.state_since) / 1000) : "—";
            return span;
          },
        },
      ],
      rows: agents,
      empty: "No SIP agents.",
      rowAttrs: (a) => ({ "data-agent-id": a.id, "data-state": a.state }),
    });
    fill(agentsOut, testTable(t, "live-agents"));
  }

  function drawCampaigns() {
    const inProgress = new Map();
    for (const row of calls.values()) {
      const id = row.data.campaign_id;
      const e = inProgress.get(id) || { all: 0, bridged: 0 };
      e.all += 1;
      if (row.data.state === "bridged") e.bridged += 1;
      inProgress.set(id, e);
    }
    const rows = [...campaigns.values()];
    const t = table({
      columns: [
        { label: "Campaign", render: (c) => h("a", { href: campaignHref(c.id) }, c.name) },
        { label: "Status", render: (c) => badge(c.status) },
        {
          label: "Calls now",
          render: (c) => {
            const e = inProgress.get(c.id) || { all: 0, bridged: 0 };
            return `${e.all} (${e.bridged} bridged)`;
          },
        },
        {
          label: "Contacts",
          render: (c) => {
            const by = statusCounts(c.contacts);
            const total = (c.contacts && c.contacts.total) || 0;
            const pending = (by.pending || 0) + (by.retry || 0);
            return [h("div", `${pending} to call of ${total}`), h("div.muted", `${by.dialing || 0} dialing`)];
          },
        },
        {
          label: "Calls made",
          render: (c) => {
            const k = c.calls || {};
            return [h("div", `${k.answered || 0} answered of ${k.total || 0}`), h("div.muted", `answer rate ${pct(k.answered || 0, k.total || 0)}`)];
          },
        },
      ],
      rows,
      empty: "No campaign is scheduled, processing or paused.",
      rowAttrs: (c) => ({ "data-campaign-id": c.id }),
    });
    fill(campaignsOut, testTable(t, "live-campaigns"));
  }

  function drawStats() {
    const by = { dialing: 0, ringing: 0, answered: 0, human: 0, machine: 0, bridged: 0 };
    for (const row of calls.values()) by[row.data.state] = (by[row.data.state] || 0) + 1;
    const ag = { available: 0, busy: 0, away: 0 };
    for (const a of agents) {
      if (a.state === "available") ag.available += 1;
      else if (a.state === "busy") ag.busy += 1;
      else ag.away += 1;
    }
    statEls.calls.textContent = String(calls.size);
    statEls.ringing.textContent = String(by.dialing + by.ringing);
    statEls.answered.textContent = String(by.answered + by.human + by.machine);
    statEls.bridged.textContent = String(by.bridged);
    statEls.available.textContent = String(ag.available);
    statEls.busy.textContent = String(ag.busy);
    statEls.away.textContent = String(ag.away);
  }

  let drawPending = false;
  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    setTimeout(() => {
      drawPending = false;
      if (stopped) return;
      drawStats();
      drawCampaigns();
    }, 100);
  }

  function onCounters(data) {
    if (!data) return;
    if (typeof data.at === "number") clockOffset = data.at - Date.now();
    if (Array.isArray(data.campaigns)) {
      campaigns = new Map(data.campaigns.map((c) => [c.id, c]));
      for (const c of data.campaigns) names.set(c.id, c.name);
    }
    if (Array.isArray(data.agents)) agents = data.agents;
    if (Array.isArray(data.calls)) reconcileCalls(data.calls);
    drawAgents();
    drawStats();
    drawCampaigns();
  }

  function onEvent(ev) {
    if (!ev) return;
    // Logged first: a completed call leaves the table, and the log names its number.
    if (ev.kind !== "agent_event") logEvent(ev);
    if (ev.kind === "campaign_status") {
      const c = campaigns.get(ev.campaign_id);
      if (c && ev.detail && ev.detail.to) c.status = ev.detail.to;
    } else if (ev.call_id && CALL_EVENTS.includes(ev.kind)) {
      applyEvent(ev);
    }
    scheduleDraw();
  }

  function connect() {
    if (stopped) return;
    clearTimeout(retryTimer);
    const source = new EventSource("/v1/live");
    es = source;
    source.addEventListener("open", () => {
      if (source !== es) return;
      backoff = 2000;
      setStatus("connected");
    });
    source.addEventListener("error", () => {
      if (stopped || source !== es) return;
      setStatus("reconnecting");
      // CLOSED: the server refused (not the stream ending): try again later, ourselves.
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        retryLater();
      }
    });
    source.addEventListener("snapshot", (e) => {
      if (source !== es) return;
      setStatus("connected");
      onCounters(parseData(e));
    });
    source.addEventListener("counters", (e) => {
      if (source !== es) return;
      onCounters(parseData(e));
    });
    for (const kind of [...CALL_EVENTS, ...OTHER_EVENTS]) {
      source.addEventListener(kind, (e) => {
        if (source !== es) return;
        const ev = parseData(e);
        if (ev && !ev.kind) ev.kind = kind;
        onEvent(ev);
      });
    }
    source.addEventListener("lagged", (e) => {
      if (source !== es) return;
      const d = parseData(e) || {};
      log.prepend(h("li", { "data-kind": "lagged" }, h("strong", `Fell behind: ${d.missed || "some"} events missed; reloading the snapshot.`)));
      // A fresh connection sends a fresh snapshot.
      source.close();
      setStatus("reconnecting");
      connect();
    });
  }

  function retryLater() {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(async () => {
      if (stopped) return;
      try {
        await api("GET", "/v1/me");
      } catch (err) {
        if (err && err.status === 401) {
          setStatus("offline");
          cleanup();
          return;
        }
      }
      connect();
    }, backoff);
    backoff = Math.min(backoff * 2, 30000);
  }

  const ticker = setInterval(() => {
    if (!screen.isConnected) {
      cleanup();
      return;
    }
    for (const row of calls.values()) tickCall(row);
    for (const [span, a] of agentSince) span.textContent = a.state_since ? fmtDuration(Math.max(0, serverNow() - a.state_since) / 1000) : "—";
  }, 1000);

  function cleanup() {
    if (stopped) return;
    stopped = true;
    clearInterval(ticker);
    clearTimeout(retryTimer);
    if (es) es.close();
    es = null;
    if (liveStop === cleanup) liveStop = null;
  }
  liveStop = cleanup;

  fill(agentsOut, h("p.muted", "Waiting for the live stream…"));
  fill(campaignsOut, h("p.muted", "Waiting for the live stream…"));
  // Names of campaigns not in the counters (a callback of a finished one): best effort.
  loadCampaigns().then((list) => {
    if (stopped) return;
    for (const c of list) if (!names.has(c.id)) names.set(c.id, c.name);
    for (const row of calls.values()) drawCall(row);
  });
  connect();
  return cleanup;
}
