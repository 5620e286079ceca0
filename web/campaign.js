// Campaign screens: the campaigns list (columns, search, status filter, sort, paging, the
// actions menu), the add / edit dialog, and a campaign's page with its tabs (dashboard,
// contacts with import and add, attempts with their CDRs and recordings, exports, goals).
// Everything shown comes from /v1; nothing here decides what the API decides.

import {
  api, qs, h, fill, openDialog, confirmDialog, field, formValues, showFieldErrors, table, pager,
  badge, statusLabel, csrfToken, fmtTime, fmtDuration, pct, pageHeader, button, guard, toast, showError,
} from "./ui.js";

const CAMPAIGN_STATUSES = ["new", "scheduled", "processing", "paused", "finished", "overdue", "canceled"];
const CONTACT_STATUSES = ["pending", "dialing", "on_hold", "called", "retry", "answered", "completed", "rejected", "not_answered", "no_conversation", "failed"];
const GOAL_STATUSES = ["achieved", "partially_achieved", "not_achieved", "unknown"];

/** Which actions each status allows (the guides' rules; the API enforces them). */
const ACTIONS = [
  ["start", "Start", ["new", "overdue", "scheduled"]],
  ["stop", "Stop", ["new", "scheduled", "processing", "paused", "overdue"]],
  ["pause", "Pause", ["processing", "scheduled"]],
  ["resume", "Resume", ["paused"]],
  ["restart", "Restart", ["finished", "canceled"]],
];

const CALL_INTERVALS = [["5", "5 s"], ["10", "10 s"], ["20", "20 s"], ["30", "30 s"], ["60", "1 min"], ["120", "2 min"], ["300", "5 min"], ["600", "10 min"], ["1200", "20 min"], ["1800", "30 min"]];
const RING_TIMEOUTS = [["10", "10 s"], ["15", "15 s"], ["20", "20 s"], ["25", "25 s"], ["30", "30 s"], ["45", "45 s"], ["60", "60 s"]];
const UNITS = [["minutes", "minutes"], ["hours", "hours"], ["days", "days"]];
const AMD_MODES = [["off", "Off"], ["text", "Text-based (fast)"], ["ml", "ML-based (accurate)"], ["auto", "Auto (ML, then text)"], ["heuristic", "Heuristic"]];
const MACHINE_ACTIONS = [["hangup", "Hang up"], ["leave_message", "Leave a voicemail message"], ["connect", "Connect anyway"]];

/** Runs a campaign action, then calls `done`. */
async function runAction(campaign, action, done) {
  if (action === "stop" && !(await confirmDialog("Stop campaign", `Stop “${campaign.name}”? It will be canceled and dial no more.`, "Stop"))) return;
  if (action === "restart" && !(await confirmDialog("Restart campaign", `Restart “${campaign.name}”? Every contact goes back to pending.`, "Restart"))) return;
  await guard(async () => {
    await api("POST", `/v1/campaigns/${campaign.id}/${action}`);
    toast(`${statusLabel(action)}: ${campaign.name}`);
    done();
  });
}

/** The actions menu of one campaign: only what its status allows. */
function actionsMenu(campaign, refresh, navigate) {
  const items = [];
  for (const [action, label, allowed] of ACTIONS) {
    if (allowed.includes(campaign.status)) items.push([label, () => runAction(campaign, action, refresh), action]);
  }
  items.push(["Edit", () => campaignDialog(campaign, refresh), "edit"]);
  if (campaign.status !== "processing") {
    items.push(["Delete", () => deleteCampaign(campaign, refresh), "delete"]);
  }
  const menuId = `menu-${campaign.id}`;
  const list = h(
    "ul.menu-list",
    { id: menuId, role: "menu", hidden: true },
    items.map(([label, fn, action]) =>
      h("li", { role: "none" }, h("button.menu-item", { type: "button", role: "menuitem", dataset: { action }, onclick: () => { close(); fn(); } }, label)),
    ),
  );
  const toggle = h("button.secondary.menu-toggle", { type: "button", "aria-haspopup": "menu", "aria-expanded": "false", "aria-controls": menuId, "aria-label": `Actions for ${campaign.name}` }, "Actions ▾");
  function close() {
    list.hidden = true;
    toggle.setAttribute("aria-expanded", "false");
  }
  toggle.addEventListener("click", (e) => {
    e.stopPropagation();
    const open = list.hidden;
    document.querySelectorAll(".menu-list").forEach((m) => (m.hidden = true));
    list.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) list.querySelector("button")?.focus();
  });
  list.addEventListener("keydown", (e) => {
    const buttons = [...list.querySelectorAll("button")];
    const i = buttons.indexOf(document.activeElement);
    if (e.key === "Escape") { close(); toggle.focus(); }
    else if (e.key === "ArrowDown") { e.preventDefault(); buttons[(i + 1) % buttons.length].focus(); }
    else if (e.key === "ArrowUp") { e.preventDefault(); buttons[(i - 1 + buttons.length) % buttons.length].focus(); }
  });
  document.addEventListener("click", close, { once: true });
  return h("div.menu", toggle, list);
}

async function deleteCampaign(campaign, done) {
  if (!(await confirmDialog("Delete campaign", `Delete “${campaign.name}” with its contacts? This cannot be undone.`))) return;
  await guard(async () => {
    await api("DELETE", `/v1/campaigns/${campaign.id}`);
    toast(`Deleted ${campaign.name}`);
    done(true);
  });
}

function callsCell(c) {
  const calls = c.calls || { answered: 0, not_answered: 0, total: 0 };
  return h("span.calls", { title: "answered / not answered / total" }, h("strong", String(calls.answered)), " / ", String(calls.not_answered), " / ", String(calls.total));
}

/** The campaigns list: search, status filter, sort, paging, actions. */
export async function renderCampaigns(root, ctx) {
  const state = { q: "", status: "", offset: 0, limit: 25, sort: { key: "updated_at", desc: true } };
  const search = h("input", { type: "search", id: "campaign-search", placeholder: "Search name or description", "aria-label": "Search campaigns" });
  const statusFilter = h("select", { id: "campaign-status", "aria-label": "Status" }, h("option", { value: "" }, "All statuses"), CAMPAIGN_STATUSES.map((s) => h("option", { value: s }, statusLabel(s))));
  const body = h("div");
  let timer;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.q = search.value.trim(); state.offset = 0; load(); }, 250);
  });
  statusFilter.addEventListener("change", () => { state.status = statusFilter.value; state.offset = 0; load(); });

  fill(
    root,
    pageHeader("Campaigns", button("Add campaign", () => campaignDialog(null, load), "primary", { "data-testid": "add-campaign" })),
    h("div.toolbar", search, statusFilter),
    body,
  );

  async function load() {
    const page = await guard(() => api("GET", `/v1/campaigns${qs({ q: state.q, status: state.status, limit: 1000 })}`));
    if (!page) return;
    const rows = [...page.items];
    const { key, desc } = state.sort;
    rows.sort((a, b) => {
      const va = key === "calls" ? a.calls.total : a[key];
      const vb = key === "calls" ? b.calls.total : b[key];
      const r = typeof va === "number" ? va - vb : String(va).localeCompare(String(vb));
      return desc ? -r : r;
    });
    const shown = rows.slice(state.offset, state.offset + state.limit);
    fill(
      body,
      table({
        columns: [
          { label: "Name", sort: "name", render: (c) => h("a", { href: `#/campaigns/${c.id}` }, c.name) },
          { label: "Description", render: (c) => c.description || "" },
          { label: "Calls", sort: "calls", render: callsCell },
          { label: "Status", sort: "status", render: (c) => badge(c.status) },
          { label: "Updated", sort: "updated_at", render: (c) => fmtTime(c.updated_at) },
          { label: "Actions", render: (c) => actionsMenu(c, load, ctx.navigate) },
        ],
        rows: shown,
        empty: state.q || state.status ? "No campaign matches." : "No campaigns yet: add one.",
        sort: state.sort,
        onSort: (k) => { state.sort = { key: k, desc: state.sort.key === k ? !state.sort.desc : false }; load(); },
        rowAttrs: (c) => ({ "data-campaign-id": c.id }),
      }),
      pager({ offset: state.offset, limit: state.limit, total: rows.length, onPage: (o) => { state.offset = o; load(); } }),
    );
    body.querySelector("table").dataset.testid = "campaigns-table";
  }
  await load();
}

/** Options for a select from an API list: [[value, label]], with an empty first choice. */
async function choices(path, label, empty) {
  const data = await api("GET", path).catch(() => ({ items: [] }));
  return [["", empty], ...(data.items || []).map((x) => [String(x.id ?? x.name), label(x)])];
}

function toLocalInput(ms, tz) {
  if (!ms) return "";
  try {
    const parts = new Intl.DateTimeFormat("en-CA", { timeZone: tz || "UTC", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).formatToParts(new Date(ms));
    const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
  } catch {
    return "";
  }
}

/** The add / edit campaign dialog with every field; errors shown at the field the API names. */
export async function campaignDialog(campaign, done) {
  const editing = Boolean(campaign);
  const c = campaign || {};
  const browserTz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const [pools, aiAgents, schedules, numbers, media] = await Promise.all([
    api("GET", "/v1/agents/pools").catch(() => ({ items: [] })),
    choices("/v1/agents/ai", (a) => a.name, "None"),
    choices("/v1/schedules", (s) => s.name, "24/7 (no business hours)"),
    choices(`/v1/numbers${qs({ available: editing ? "" : "true" })}`, (n) => `${n.number}${n.label ? ` — ${n.label}` : ""}`, "None (caller ID below)"),
    api("GET", "/v1/media").catch(() => ({ items: [] })),
  ]);
  const wavs = [["", "None"], ...(media.items || []).map((m) => [m.name, m.name])];
  const connectList = h("datalist", { id: "connect-targets" }, (pools.items || []).map((p) => h("option", { value: p.name }, `Agent pool ${p.name}`)));
  const iv = (x, d) => (x ? x : d);
  const retryInterval = iv(c.retry_interval, { value: 1, unit: "hours" });
  const completion = iv(c.completion_timeout, { value: 1, unit: "days" });
  const form = h(
    "form.campaign-form",
    { novalidate: true },
    h(
      "div.grid2",
      h(
        "fieldset",
        h("legend", "Campaign"),
        field({ label: "Name", name: "name", value: c.name, required: true }),
        editing ? null : field({ label: "Status", name: "status", kind: "select", value: c.status || "new", options: [["new", "New"], ["scheduled", "Scheduled"]] }),
        field({ label: "Description", name: "description", kind: "textarea", value: c.description }),
        field({ label: "Connect to", name: "connect_to", value: c.connect_to, help: "A number (agent, hunt group, auto-attendant), a SIP URI, or an agent pool's name", attrs: { list: "connect-targets" } }),
        connectList,
        field({ label: "AI agent", name: "ai_agent_id", kind: "select", value: c.ai_agent_id ?? "", options: aiAgents }),
        field({ label: "Start (schedule)", name: "schedule_start", kind: "datetime-local", value: toLocalInput(c.schedule_start, c.schedule_timezone || browserTz), help: "Leave empty to start at once" }),
        field({ label: "Time zone", name: "schedule_timezone", value: c.schedule_timezone || browserTz }),
        field({ label: "Business hours", name: "business_hours_id", kind: "select", value: c.business_hours_id ?? "", options: schedules }),
        field({ label: "Billable account", name: "billable_account", value: c.billable_account }),
        editing && c.number ? h("p.muted", `Phone number ${c.number} (cannot be changed after creation)`) : null,
        editing ? null : field({ label: "Phone number", name: "number_id", kind: "select", value: "", options: numbers }),
        field({ label: "Caller ID", name: "caller_id", value: c.number ? "" : c.caller_id, attrs: c.number ? { disabled: true } : {} }),
      ),
      h(
        "fieldset",
        h("legend", "Dialing"),
        field({ label: "Campaign pace (calls per minute)", name: "pace", kind: "number", value: c.pace ?? 10, attrs: { min: "0.1", step: "0.1" } }),
        field({ label: "Concurrent calls at most", name: "max_concurrent", kind: "number", value: c.max_concurrent ?? 10, attrs: { min: "1" } }),
        field({ label: "Call interval", name: "call_interval", kind: "select", value: String(c.call_interval_secs ?? 5), options: CALL_INTERVALS }),
        field({ label: "Ring timeout", name: "ring_timeout", kind: "select", value: String(c.ring_timeout_secs ?? 30), options: RING_TIMEOUTS }),
        field({ label: "Pacing", name: "pacing", kind: "select", value: c.pacing || "progressive", options: [["progressive", "Progressive"], ["predictive", "Predictive (agent pool)"]] }),
        field({ label: "Answering machine detection", name: "amd_mode", kind: "select", value: c.amd_mode || "auto", options: AMD_MODES }),
        field({ label: "On a machine", name: "machine_action", kind: "select", value: c.machine_action || "hangup", options: MACHINE_ACTIONS }),
        field({ label: "Voicemail message", name: "voicemail_message", kind: "select", value: c.voicemail_message ?? "", options: wavs }),
        field({ label: "Message to play", name: "play_message", kind: "select", value: c.play_message ?? "", options: wavs }),
        field({ label: "Max retry attempts (0–10)", name: "max_retries", kind: "number", value: c.max_retries ?? 2, attrs: { min: "0", max: "10" } }),
        h("div.inline", field({ label: "Retry interval", name: "retry_interval_value", kind: "number", value: retryInterval.value, attrs: { min: "1" } }), field({ label: "Unit", name: "retry_interval_unit", kind: "select", value: retryInterval.unit, options: UNITS })),
        h("div.inline", field({ label: "Contact completion timeout", name: "completion_timeout_value", kind: "number", value: completion.value, attrs: { min: "1" } }), field({ label: "Unit", name: "completion_timeout_unit", kind: "select", value: completion.unit, options: UNITS })),
        field({ label: "Record calls", name: "recording", kind: "checkbox", value: c.recording }),
      ),
    ),
    h(
      "details",
      h("summary", "Message plan (JSON steps)"),
      field({ label: "Steps", name: "steps", kind: "textarea", value: c.steps ? JSON.stringify(c.steps, null, 2) : "", help: "Leave empty for the default plan; see the API documentation for step types" }),
    ),
  );
  // The two halves of a retry interval and completion timeout show their API field's errors.
  form.querySelector('[data-field="retry_interval_value"]').dataset.field = "retry_interval";
  form.querySelector('[data-field="completion_timeout_value"]').dataset.field = "completion_timeout";

  openDialog({
    title: editing ? `Edit ${c.name}` : "Add campaign",
    wide: true,
    body: form,
    actions: [
      { label: "Cancel" },
      {
        label: "Save",
        primary: true,
        onClick: async () => {
          const v = formValues(form);
          const body = {
            name: v.name || "",
            description: v.description || "",
            connect_to: v.connect_to || "",
            ai_agent_id: v.ai_agent_id ? Number(v.ai_agent_id) : null,
            schedule_start: v.schedule_start || null,
            schedule_timezone: v.schedule_timezone || "UTC",
            business_hours_id: v.business_hours_id ? Number(v.business_hours_id) : null,
            billable_account: v.billable_account || "",
            pace: v.pace,
            max_concurrent: v.max_concurrent,
            call_interval: Number(v.call_interval),
            ring_timeout: Number(v.ring_timeout),
            pacing: v.pacing,
            amd_mode: v.amd_mode,
            machine_action: v.machine_action,
            voicemail_message: v.voicemail_message || null,
            play_message: v.play_message || null,
            max_retries: v.max_retries,
            retry_interval: { value: v.retry_interval_value, unit: v.retry_interval_unit },
            completion_timeout: { value: v.completion_timeout_value, unit: v.completion_timeout_unit },
            recording: v.recording,
          };
          if (!editing) {
            body.status = v.status;
            if (v.number_id) body.number_id = Number(v.number_id);
          }
          if (!c.number && v.caller_id !== undefined) body.caller_id = v.caller_id;
          if (!c.number && v.caller_id === undefined && !v.number_id) body.caller_id = "";
          if (v.steps) {
            try {
              body.steps = JSON.parse(v.steps);
            } catch (e) {
              showFieldErrors(form, { field: "steps", message: `not JSON: ${e.message}` });
              return false;
            }
          } else body.steps = null;
          try {
            const saved = editing ? await api("PATCH", `/v1/campaigns/${c.id}`, body) : await api("POST", "/v1/campaigns", body);
            toast(editing ? `Saved ${saved.name}` : `Created ${saved.name}`);
            done(saved);
            return true;
          } catch (err) {
            if (err.status === 401) throw err;
            showFieldErrors(form, err);
            return false;
          }
        },
      },
    ],
  });
}

// ------------------------------------------------------------------------------------------
// The campaign's page.

const TABS = [
  ["dashboard", "Dashboard"],
  ["contacts", "Contacts"],
  ["attempts", "Calls"],
  ["exports", "Exports"],
  ["goals", "Goals"],
];

/** One campaign: its header with the actions, and the tab the hash names. */
export async function renderCampaign(root, ctx, id, tab = "dashboard") {
  const campaign = await api("GET", `/v1/campaigns/${id}`);
  const refresh = () => renderCampaign(root, ctx, id, tab);
  const actions = ACTIONS.filter(([, , allowed]) => allowed.includes(campaign.status)).map(([action, label]) =>
    button(label, () => runAction(campaign, action, refresh), action === "start" || action === "resume" ? "primary" : "secondary", { "data-action": action }),
  );
  actions.push(button("Options", () => campaignDialog(campaign, refresh), "secondary", { "data-action": "edit" }));
  if (campaign.status !== "processing") {
    actions.push(button("Delete", () => deleteCampaign(campaign, () => ctx.navigate("#/campaigns")), "danger", { "data-action": "delete" }));
  }
  const panel = h("div.tab-panel", { role: "tabpanel", id: "tab-panel" });
  fill(
    root,
    h("p.crumbs", h("a", { href: "#/campaigns" }, "Campaigns"), " › ", campaign.name),
    pageHeader(campaign.name, actions),
    h("p.muted", badge(campaign.status), " ", campaign.description || "", campaign.number ? ` · calls from ${campaign.number}` : "", campaign.connect_to ? ` · connects to ${campaign.connect_to}` : ""),
    h(
      "nav.tabs",
      { role: "tablist", "aria-label": "Campaign" },
      TABS.map(([key, label]) =>
        h("a", { role: "tab", href: `#/campaigns/${id}/${key}`, "aria-selected": String(key === tab), "aria-controls": "tab-panel", class: key === tab ? "active" : "" }, label),
      ),
    ),
    panel,
  );
  const render = { dashboard: renderDashboard, contacts: renderContacts, attempts: renderAttempts, exports: renderExports, goals: renderGoals }[tab] || renderDashboard;
  return render(panel, ctx, campaign);
}

function stat(label, value, testid) {
  return h("div.stat", { "data-testid": testid }, h("strong", String(value)), h("span", label));
}

/** Dashboard: progress, quick stats, status counts, heat map, calls over time, AMD outcomes, goals. */
async function renderDashboard(panel, ctx, campaign) {
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const body = h("div.dashboard");
  fill(panel, body);
  async function load() {
    const [report, attempts] = await Promise.all([
      api("GET", `/v1/campaigns/${campaign.id}/report${qs({ tz })}`),
      api("GET", `/v1/campaigns/${campaign.id}/attempts${qs({ limit: 1000 })}`),
    ]);
    drawDashboard(body, report, attempts);
  }
  await guard(load);
  // Live: the figures follow the calls without a reload.
  const timer = setInterval(() => { if (document.visibilityState === "visible") load().catch(() => {}); }, 3000);
  return () => clearInterval(timer);
}

function drawDashboard(body, r, attempts) {
  const counts = r.contacts.by_status || {};
  const total = r.contacts.total || 0;
  const heat = r.heat_map;
  const heatTable = h(
    "table.heat",
    { "aria-label": `Answer rate by day and hour (${heat.timezone})` },
    h("thead", h("tr", h("th", { scope: "col" }, h("span.sr-only", "Day")), Array.from({ length: 24 }, (_, i) => h("th", { scope: "col" }, String(i))))),
    h(
      "tbody",
      heat.cells.map((row, d) =>
        h(
          "tr",
          h("th", { scope: "row" }, heat.days[d]),
          row.map((cell, hour) => {
            const level = cell.attempts === 0 ? "none" : Math.min(4, Math.floor((cell.rate * 100) / 7.5));
            return h(`td.heat-cell.l${level}`, { title: `${heat.days[d]} ${hour}:00 — ${cell.answered}/${cell.attempts} answered` }, h("span.sr-only", `${cell.answered} of ${cell.attempts}`));
          }),
        ),
      ),
    ),
  );
  const items = attempts.items || [];
  // Calls over time: the latest attempts in buckets of a sensible width.
  const volume = h("div.volume", { "data-testid": "calls-over-time" });
  if (items.length) {
    const first = Math.min(...items.map((a) => a.started_at));
    const last = Math.max(...items.map((a) => a.started_at));
    const span = Math.max(60_000, last - first + 1);
    const widths = [60_000, 300_000, 900_000, 3_600_000, 21_600_000, 86_400_000];
    const width = widths.find((w) => span / w <= 48) || 86_400_000;
    const start = Math.floor(first / width) * width;
    const n = Math.floor((last - start) / width) + 1;
    const buckets = Array.from({ length: n }, () => ({ total: 0, answered: 0 }));
    for (const a of items) {
      const b = buckets[Math.floor((a.started_at - start) / width)];
      b.total += 1;
      if (a.answer_ms !== null && a.answer_ms !== undefined) b.answered += 1;
    }
    const max = Math.max(...buckets.map((b) => b.total));
    fill(
      volume,
      h(
        "div.bars",
        { role: "img", "aria-label": `Calls over time: ${items.length} calls` },
        buckets.map((b, i) => {
          const bar = h("div.bar", { title: `${fmtTime(start + i * width)}: ${b.total} calls, ${b.answered} answered` });
          bar.style.height = `${Math.round((100 * b.total) / max)}%`;
          const inner = h("div.bar-answered");
          inner.style.height = b.total ? `${Math.round((100 * b.answered) / b.total)}%` : "0";
          bar.append(inner);
          return bar;
        }),
      ),
      h("p.muted", `${fmtTime(start)} — ${fmtTime(start + n * width)}, ${width / 60000} min per bar; darker: answered`),
    );
  } else fill(volume, h("p.muted", "No calls yet."));
  // AMD outcomes among answered calls.
  const amd = {};
  for (const a of items) if (a.answered_by) amd[a.answered_by] = (amd[a.answered_by] || 0) + 1;
  const amdTotal = Object.values(amd).reduce((x, y) => x + y, 0);
  const goal = r.primary_goal || null;
  fill(
    body,
    h(
      "section.card.progress-card",
      h("h2", "Progress"),
      h("div.progress", { role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(Math.round(r.progress.percent)), "aria-label": "Contacts finished" }, (() => { const f = h("div.progress-fill"); f.style.width = `${r.progress.percent}%`; return f; })()),
      h("p", { "data-testid": "progress-text" }, `${r.progress.finished} of ${r.progress.total} contacts finished (${Math.round(r.progress.percent)} %)`),
      h(
        "div.stats",
        stat("answered", r.calls.answered, "stat-answered"),
        stat("not answered", r.calls.not_answered, "stat-not-answered"),
        stat("calls in all", r.calls.total, "stat-total"),
        stat("human answer rate", pct(r.human_answered, r.calls.total), "stat-human-rate"),
        stat("average call", fmtDuration(r.average_duration_secs), "stat-duration"),
        stat("conversations", r.total_conversations, "stat-conversations"),
        stat("primary goal achieved", r.primary_goal_achievement_rate !== undefined ? `${Math.round(r.primary_goal_achievement_rate * 100)} %` : "—", "stat-goal-rate"),
        stat("abandon rate", `${(r.abandons?.rate_pct ?? 0).toFixed(1)} % (cap ${r.abandons?.cap_pct ?? 3} %)`, "stat-abandon"),
      ),
    ),
    h(
      "section.card",
      h("h2", "Contacts by status"),
      h(
        "ul.status-bars",
        { "data-testid": "status-counts" },
        CONTACT_STATUSES.map((s) => {
          const n = counts[s] || 0;
          const bar = h("div.mini-fill");
          bar.style.width = total ? `${(100 * n) / total}%` : "0";
          return h("li", { dataset: { status: s } }, badge(s), h("span.count", String(n)), h("span.muted", pct(n, total)), h("div.mini", bar));
        }),
      ),
    ),
    h("section.card.wide", h("h2", "Answer rate by day and hour"), h("div.heat-wrap", heatTable), h("p.muted", `Time zone ${heat.timezone}; darker is a higher answer rate (0–30 %+).`)),
    h("section.card", h("h2", "Calls over time"), volume),
    h(
      "section.card",
      h("h2", "Answering machine detection"),
      amdTotal
        ? h("ul.plain", { "data-testid": "amd-outcomes" }, Object.entries(amd).map(([k, v]) => h("li", h("strong", k.replace(/_/g, " ")), `: ${v} (${pct(v, amdTotal)})`)))
        : h("p.muted", "No answered call has been classified yet."),
    ),
    h(
      "section.card",
      h("h2", "Goals"),
      goal && goal.name
        ? h("div", h("p", `Primary goal: ${goal.name} — ${goal.analysed_contacts} contacts analysed`), h("ul.plain", (goal.outcomes || []).map((o) => h("li", badge(o.outcome), ` ${o.count} (${Math.round(o.percent)} %)`))))
        : h("p.muted", "No primary goal set (Goals tab)."),
    ),
  );
}

/** Contacts: filters of both guides, add, import, delete pending, manual retry, attempts. */
async function renderContacts(panel, ctx, campaign) {
  const state = { status: "", q: "", tags: "", min_retries: "", max_retries: "", primary_goal_status: "", offset: 0, limit: 50 };
  const selected = new Set();
  const filters = h(
    "form.toolbar",
    { role: "search", onsubmit: (e) => e.preventDefault() },
    h("input", { type: "search", name: "q", placeholder: "Search name or phone", "aria-label": "Search contacts" }),
    h("select", { name: "status", "aria-label": "Contact status" }, h("option", { value: "" }, "All statuses"), CONTACT_STATUSES.map((s) => h("option", { value: s }, statusLabel(s)))),
    h("input", { type: "text", name: "tags", placeholder: "Tags (comma)", "aria-label": "Tags" }),
    h("input", { type: "number", name: "min_retries", min: "0", placeholder: "Min retries", "aria-label": "Min retry attempts" }),
    h("input", { type: "number", name: "max_retries", min: "0", placeholder: "Max retries", "aria-label": "Max retry attempts" }),
    h("select", { name: "primary_goal_status", "aria-label": "Primary goal status" }, h("option", { value: "" }, "Any goal status"), GOAL_STATUSES.map((s) => h("option", { value: s }, statusLabel(s).replace(/_/g, " ")))),
  );
  let timer;
  filters.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      for (const el of filters.elements) if (el.name) state[el.name] = el.value.trim();
      state.offset = 0;
      load();
    }, 250);
  });
  const list = h("div");
  const bulk = h(
    "div.bulk",
    button("Retry selected", () => bulkAction("retry"), "secondary", { "data-testid": "retry-selected" }),
    button("Remove selected", () => bulkAction("remove"), "secondary", { "data-testid": "remove-selected" }),
  );
  fill(
    panel,
    h(
      "div.page-header.sub",
      h("h2", "Contacts"),
      h(
        "div.actions",
        button("Contact", () => contactDialog(campaign, null, load), "primary", { "data-testid": "add-contact" }),
        button("Import contacts", () => importDialog(campaign, load), "secondary", { "data-testid": "import-contacts" }),
        button("Export", () => exportDialog(campaign, state, [...selected]), "secondary", { "data-testid": "export-contacts" }),
      ),
    ),
    filters,
    bulk,
    list,
  );

  async function bulkAction(kind) {
    if (!selected.size) return toast("Select contacts first.");
    if (kind === "remove" && !(await confirmDialog("Remove contacts", `Remove ${selected.size} selected contacts? Only pending ones are removed.`, "Remove"))) return;
    await guard(async () => {
      const r = await api("POST", `/v1/campaigns/${campaign.id}/contacts/${kind}`, { ids: [...selected] });
      toast(kind === "retry" ? `${r.retried} to retry, ${r.skipped} skipped` : `${r.removed} removed, ${r.skipped} kept (not pending)`);
      selected.clear();
      load();
    });
  }

  async function load() {
    const page = await guard(() => api("GET", `/v1/campaigns/${campaign.id}/contacts${qs({ ...state })}`));
    if (!page) return;
    const all = h("input", { type: "checkbox", "aria-label": "Select all on this page", onchange: (e) => { page.items.forEach((c) => (e.target.checked ? selected.add(c.id) : selected.delete(c.id))); load(); } });
    fill(
      list,
      table({
        columns: [
          { label: all, text: "Select", render: (c) => h("input", { type: "checkbox", "aria-label": `Select ${c.name || c.phone}`, checked: selected.has(c.id), onchange: (e) => (e.target.checked ? selected.add(c.id) : selected.delete(c.id)) }) },
          { label: "Name", render: (c) => h("div", c.name || "—", c.tags?.length ? h("div.tags", c.tags.map((t) => h("span.tag", t))) : null) },
          { label: "Phone number", render: (c) => c.phone },
          { label: "Status", render: (c) => badge(c.status) },
          { label: "Goal", render: (c) => (c.primary_goal_status ? badge(c.primary_goal_status) : "—") },
          { label: "Attempts", render: (c) => `${c.attempts} (${c.retries} retries)` },
          { label: "Last called", render: (c) => fmtTime(c.last_attempt_at) },
          { label: "Comments", render: (c) => c.comments || "" },
          {
            label: "Actions",
            render: (c) =>
              h(
                "div.row-actions",
                button("Calls", () => attemptsDialog(campaign, c), "link", { "aria-label": `Calls of ${c.name || c.phone}` }),
                button("Edit", () => contactDialog(campaign, c, load), "link", { "aria-label": `Edit ${c.name || c.phone}` }),
                ["answered", "completed", "rejected", "not_answered", "no_conversation", "failed", "called"].includes(c.status)
                  ? button("Retry", () => guard(async () => { await api("POST", `/v1/campaigns/${campaign.id}/contacts/retry`, { ids: [c.id] }); toast(`${c.phone} will be called again`); load(); }), "link", { "aria-label": `Retry ${c.name || c.phone}` })
                  : null,
                c.status === "pending"
                  ? button("Delete", async () => {
                    if (!(await confirmDialog("Delete contact", `Delete ${c.name || c.phone}?`))) return;
                    await guard(async () => { await api("DELETE", `/v1/campaigns/${campaign.id}/contacts/${c.id}`); load(); });
                  }, "link", { "aria-label": `Delete ${c.name || c.phone}` })
                  : null,
              ),
          },
        ],
        rows: page.items,
        empty: "No contacts match.",
        rowAttrs: (c) => ({ "data-contact-id": c.id, "data-phone": c.phone }),
      }),
      pager({ offset: state.offset, limit: state.limit, total: page.total, onPage: (o) => { state.offset = o; load(); } }),
    );
    list.querySelector("table").dataset.testid = "contacts-table";
  }
  await load();
  const timer2 = setInterval(() => { if (document.visibilityState === "visible" && !document.querySelector("dialog[open]")) load(); }, 5000);
  return () => clearInterval(timer2);
}

function contactDialog(campaign, contact, done) {
  const c = contact || {};
  const form = h(
    "form",
    { novalidate: true },
    field({ label: "Phone number", name: "phone", value: c.phone, required: true, kind: "tel" }),
    field({ label: "Name", name: "name", value: c.name }),
    field({ label: "Comments", name: "comments", kind: "textarea", value: c.comments }),
    field({ label: "Tags (comma separated)", name: "tags", value: (c.tags || []).join(", ") }),
    field({ label: "Status", name: "status", kind: "select", value: c.status || "pending", options: CONTACT_STATUSES.map((s) => [s, statusLabel(s)]) }),
  );
  openDialog({
    title: contact ? `Edit ${c.name || c.phone}` : "Add contact",
    body: form,
    actions: [
      { label: "Cancel" },
      {
        label: "Save",
        primary: true,
        onClick: async () => {
          const v = formValues(form);
          const body = { phone: v.phone || "", name: v.name || "", comments: v.comments || "", tags: (v.tags || "").split(",").map((t) => t.trim()).filter(Boolean), status: v.status };
          try {
            if (contact) await api("PATCH", `/v1/campaigns/${campaign.id}/contacts/${c.id}`, body);
            else await api("POST", `/v1/campaigns/${campaign.id}/contacts`, body);
            done();
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

/** Import: upload a CSV, watch it go, see the per-row errors and the counts. */
function importDialog(campaign, done) {
  const file = h("input", { type: "file", id: "import-file", name: "file", accept: ".csv,text/csv", required: true });
  const country = h("input", { type: "text", id: "import-country", value: campaign.default_country || "US", maxlength: "2", size: "3" });
  const progress = h("progress", { max: "100", value: "0", hidden: true, "aria-label": "Upload progress" });
  const result = h("div.import-result", { "data-testid": "import-result", "aria-live": "polite" });
  const form = h(
    "form",
    h("p", "A CSV with the phone number first, then name and comments (a header row is optional):"),
    h("pre.example", "12025550101,John Doe,Google Ads\n12025550102,Jane Smith,Website visitor"),
    h("div.field", h("label", { for: "import-file" }, "CSV file"), file),
    h("div.field", h("label", { for: "import-country" }, "Country of numbers without +"), country),
    progress,
    result,
  );
  openDialog({
    title: "Import contacts",
    body: form,
    actions: [
      { label: "Close" },
      {
        label: "Import",
        primary: true,
        onClick: () =>
          new Promise((resolve) => {
            if (!file.files.length) {
              fill(result, h("p.form-error", "Choose a CSV file first."));
              return resolve(false);
            }
            const data = new FormData();
            data.append("file", file.files[0]);
            // XMLHttpRequest: the only browser API that reports upload progress.
            const xhr = new XMLHttpRequest();
            xhr.open("POST", `/v1/campaigns/${campaign.id}/contacts/import${qs({ default_country: country.value.trim() })}`);
            xhr.setRequestHeader("X-CSRF-Token", csrfToken());
            xhr.setRequestHeader("Accept", "application/json");
            progress.hidden = false;
            xhr.upload.onprogress = (e) => { if (e.lengthComputable) progress.value = Math.round((100 * e.loaded) / e.total); };
            xhr.onload = () => {
              progress.value = 100;
              let body = null;
              try { body = JSON.parse(xhr.responseText); } catch { body = null; }
              if (xhr.status >= 200 && xhr.status < 300 && body) {
                fill(
                  result,
                  h("p", { "data-testid": "import-counts" }, `${body.inserted} imported, ${body.duplicates} duplicates, ${body.error_count} rows with errors (${body.rows} rows read)`),
                  body.errors && body.errors.length
                    ? table({ columns: [{ label: "Line", render: (e) => String(e.line) }, { label: "Value", render: (e) => e.value }, { label: "Problem", render: (e) => e.reason }], rows: body.errors, caption: "Rows not imported" })
                    : null,
                );
                done();
              } else {
                fill(result, h("p.form-error", { role: "alert" }, (body && body.error && body.error.message) || `Import failed (HTTP ${xhr.status})`));
              }
              resolve(false);
            };
            xhr.onerror = () => { fill(result, h("p.form-error", "The upload failed.")); resolve(false); };
            xhr.send(data);
          }),
      },
    ],
  });
}

/** Export: scope and format, then the job is queued (history on the Exports tab). */
function exportDialog(campaign, filterState, selection) {
  const form = h(
    "form",
    field({ label: "Scope", name: "scope", kind: "select", value: "all", options: [["all", "Entire campaign"], ["filtered", "Filtered contacts"], ...(selection.length ? [["selection", `Current selection (${selection.length})`]] : [])] }),
    field({ label: "Format", name: "format", kind: "select", value: "xlsx", options: [["xlsx", "XLSX (recommended)"], ["csv_comma", "CSV comma-separated"], ["csv_semicolon", "CSV semicolon-separated"]] }),
  );
  openDialog({
    title: "Export contacts",
    body: form,
    actions: [
      { label: "Cancel" },
      {
        label: "Export",
        primary: true,
        onClick: async () => {
          const v = formValues(form);
          const filter = {};
          for (const k of ["status", "tags", "q", "primary_goal_status"]) if (filterState[k]) filter[k] = filterState[k];
          for (const k of ["min_retries", "max_retries"]) if (filterState[k] !== "") filter[k] = Number(filterState[k]);
          try {
            await api("POST", `/v1/campaigns/${campaign.id}/exports`, { format: v.format, scope: v.scope, filter, ids: v.scope === "selection" ? selection : [] });
          } catch (err) {
            showFieldErrors(form, err);
            return false;
          }
          toast("Export queued: see the Exports tab");
          return true;
        },
      },
    ],
  });
}

function attemptRows(items) {
  return table({
    columns: [
      { label: "#", render: (a) => String(a.attempt_number) },
      { label: "Started", render: (a) => fmtTime(a.started_at) },
      { label: "To", render: (a) => a.destination },
      { label: "Outcome", render: (a) => h("span", badge(a.outcome), a.sip_code ? ` ${a.sip_code}` : "", a.reason ? h("div.muted", a.reason) : null) },
      { label: "AMD", render: (a) => (a.answered_by ? `${a.answered_by}${a.amd_decision_ms ? ` in ${(a.amd_decision_ms / 1000).toFixed(1)} s` : ""}` : "—") },
      { label: "Duration", render: (a) => fmtDuration(a.duration_ms / 1000) },
      { label: "Agent", render: (a) => a.agent_name || a.bridge_target || "—" },
      { label: "Ended by", render: (a) => a.ended_by || "—" },
      { label: "Digits", render: (a) => a.digits || "" },
      { label: "Recording", render: (a) => (a.recording_url ? h("audio", { controls: true, preload: "none", src: a.recording_url, "aria-label": `Recording of attempt ${a.attempt_number}` }) : "—") },
    ],
    rows: items,
    empty: "No calls yet.",
    rowAttrs: (a) => ({ "data-attempt-id": a.id }),
  });
}

/** A contact's attempts (CDRs) with their recordings. */
async function attemptsDialog(campaign, contact) {
  const page = await guard(() => api("GET", `/v1/campaigns/${campaign.id}/attempts${qs({ contact_id: contact.id, limit: 200 })}`));
  if (!page) return;
  const body = h("div", { "data-testid": "contact-attempts" }, attemptRows(page.items));
  openDialog({ title: `Calls of ${contact.name || contact.phone}`, body, wide: true, actions: [{ label: "Close" }] });
}

/** Every call of the campaign (CDRs), filtered, paged. */
async function renderAttempts(panel, ctx, campaign) {
  const state = { outcome: "", q: "", offset: 0, limit: 50 };
  const list = h("div");
  const q = h("input", { type: "search", placeholder: "Search name or phone", "aria-label": "Search calls" });
  const outcome = h("input", { type: "text", placeholder: "Outcome (e.g. answered)", "aria-label": "Outcome" });
  let timer;
  for (const el of [q, outcome]) {
    el.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { state.q = q.value.trim(); state.outcome = outcome.value.trim(); state.offset = 0; load(); }, 250);
    });
  }
  fill(panel, h("h2", "Calls"), h("div.toolbar", q, outcome), list);
  async function load() {
    const page = await guard(() => api("GET", `/v1/campaigns/${campaign.id}/attempts${qs(state)}`));
    if (!page) return;
    fill(list, attemptRows(page.items), pager({ offset: state.offset, limit: state.limit, total: page.total, onPage: (o) => { state.offset = o; load(); } }));
    list.querySelector("table").dataset.testid = "attempts-table";
  }
  await load();
}

/** Export history with downloads; refreshed while a job runs. */
async function renderExports(panel, ctx, campaign) {
  const list = h("div");
  fill(panel, h("div.page-header.sub", h("h2", "Exports"), h("div.actions", button("New export", () => exportDialog(campaign, {}, []), "primary", { "data-testid": "new-export" }))), list);
  async function load() {
    const page = await guard(() => api("GET", `/v1/exports${qs({ campaign_id: campaign.id, limit: 100 })}`));
    if (!page) return;
    fill(
      list,
      table({
        columns: [
          { label: "Requested", render: (j) => fmtTime(j.created_at) },
          { label: "Format", render: (j) => j.format_label || j.format },
          { label: "Scope", render: (j) => j.scope },
          { label: "Status", render: (j) => badge(j.status) },
          { label: "Rows", render: (j) => String(j.row_count) },
          { label: "File", render: (j) => (j.download_url ? h("a", { href: j.download_url, download: j.file_name }, j.file_name) : j.error || "—") },
        ],
        rows: page.items,
        empty: "No exports yet.",
        rowAttrs: (j) => ({ "data-export-id": j.id }),
      }),
    );
    list.querySelector("table").dataset.testid = "exports-table";
  }
  await load();
  const timer = setInterval(() => { if (document.visibilityState === "visible") load(); }, 2000);
  return () => clearInterval(timer);
}

/** Goals and analyses: the primary goal, secondary goals, analysis questions. */
async function renderGoals(panel, ctx, campaign) {
  const list = h("div");
  fill(
    panel,
    h("div.page-header.sub", h("h2", "Goals and analyses"), h("div.actions", button("Add goal", () => questionDialog(campaign, "goals", load), "primary"), button("Add analysis", () => questionDialog(campaign, "analyses", load), "secondary"))),
    list,
  );
  async function load() {
    const [goals, analyses] = await Promise.all([
      api("GET", `/v1/campaigns/${campaign.id}/goals${qs({ archived: "true" })}`).catch(() => api("GET", `/v1/campaigns/${campaign.id}/goals`)),
      api("GET", `/v1/campaigns/${campaign.id}/analyses${qs({ archived: "true" })}`).catch(() => api("GET", `/v1/campaigns/${campaign.id}/analyses`)),
    ]);
    const rows = (items, kind) =>
      table({
        columns: [
          { label: "Name", render: (g) => h("div", g.name, g.question ? h("div.muted", g.question) : null) },
          { label: "Kind", render: (g) => (kind === "goals" ? statusLabel(g.kind) : g.active === false ? "Inactive" : "Active") },
          { label: "Type", render: (g) => String(g.type || "").replace(/_/g, " ") },
          { label: "State", render: (g) => (g.archived ? "Archived" : "Live") },
          {
            label: "Actions",
            render: (g) =>
              h(
                "div.row-actions",
                button(g.archived ? "Restore" : "Archive", () => guard(async () => { await api("POST", `/v1/campaigns/${campaign.id}/${kind}/${g.id}/${g.archived ? "restore" : "archive"}`); load(); }), "link", { "aria-label": `${g.archived ? "Restore" : "Archive"} ${g.name}` }),
                kind === "analyses" && !g.archived
                  ? button(g.active === false ? "Turn on" : "Turn off", () => guard(async () => { await api("PATCH", `/v1/campaigns/${campaign.id}/analyses/${g.id}`, { active: g.active === false }); load(); }), "link", { "aria-label": `Toggle ${g.name}` })
                  : null,
              ),
          },
        ],
        rows: items,
        empty: kind === "goals" ? "No goals yet." : "No analyses yet.",
      });
    fill(list, h("h3", "Goals"), rows(goals.items || [], "goals"), h("h3", "Analyses"), rows(analyses.items || [], "analyses"));
  }
  await guard(load);
}

function questionDialog(campaign, kind, done) {
  const form = h(
    "form",
    field({ label: "Name", name: "name", required: true }),
    field({ label: "Question", name: "question", kind: "textarea", help: "What the analysis answers about each conversation" }),
    field({ label: "Type", name: "type", kind: "select", value: "yes_no", options: [["yes_no", "Yes/No"], ["open_text", "Open text"], ["rating", "Rating scale (1–5)"]] }),
    kind === "goals" ? field({ label: "Goal", name: "kind", kind: "select", value: "secondary", options: [["primary", "Primary (one at most)"], ["secondary", "Secondary"]] }) : null,
  );
  openDialog({
    title: kind === "goals" ? "Add goal" : "Add analysis",
    body: form,
    actions: [
      { label: "Cancel" },
      {
        label: "Save",
        primary: true,
        onClick: async () => {
          try {
            await api("POST", `/v1/campaigns/${campaign.id}/${kind}`, formValues(form));
            done();
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

export { CONTACT_STATUSES, showError };
