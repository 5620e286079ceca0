// The page's shell: the login page, the navigation, and the hash router that draws one
// screen at a time. The session lives in an HttpOnly cookie the page cannot read; the page
// only keeps the CSRF token the server answers with.

import { api, h, fill, field, formValues, showFieldErrors, setCsrf, showError, button } from "./ui.js";
import { renderCampaigns, renderCampaign } from "./campaign.js";
import * as screens from "./screens.js";

const root = () => document.getElementById("app");
let session = null;
let leave = null;

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

const NAV = [
  ["#/campaigns", "Campaigns"],
  ["#/live", "Live monitor"],
  ["#/schedules", "Business hours"],
  ["#/dnc", "Do not call"],
  ["#/agents", "SIP agents"],
  ["#/ai-agents", "AI agents"],
  ["#/numbers", "Numbers"],
  ["#/keys", "API keys"],
];

function shell() {
  const main = h("main", { id: "main" });
  const current = location.hash.split("/").slice(0, 2).join("/") || "#/campaigns";
  const menu = h(
    "ul",
    NAV.map(([href, label]) => h("li", h("a", { href, "aria-current": href === current ? "page" : null }, label))),
  );
  const toggle = h("button.nav-toggle", { type: "button", "aria-expanded": "false", "aria-controls": "nav-menu", "aria-label": "Menu" }, "☰");
  const nav = h("nav", { id: "nav-menu", "aria-label": "Main" }, menu);
  toggle.addEventListener("click", () => {
    const open = !document.body.classList.contains("nav-open");
    document.body.classList.toggle("nav-open", open);
    toggle.setAttribute("aria-expanded", String(open));
  });
  const who = h(
    "div.who",
    h("span", { "data-testid": "who" }, `${session.account.login} · ${session.account.name}`, session.account.role === "admin" ? " (admin)" : ""),
    button("Log out", logout, "secondary", { "data-testid": "logout" }),
  );
  fill(root(), h("header.topbar", h("a.brand", { href: "#/campaigns" }, h("img", { src: "/assets/icon.svg", alt: "", width: "24", height: "24" }), "outdial"), toggle, nav, who), main);
  return main;
}

async function logout() {
  try {
    await api("POST", "/web/logout");
  } catch (err) {
    if (err.status !== 401) showError(err);
  }
  session = null;
  setCsrf("");
  location.hash = "#/login";
  route();
}

function loginPage() {
  document.title = "Log in · outdial";
  const form = h(
    "form.login",
    { novalidate: true },
    h("h1", "Log in"),
    field({ label: "Login", name: "login", required: true, attrs: { autocomplete: "username" } }),
    field({ label: "API Key", name: "api_key", kind: "password", required: true, attrs: { autocomplete: "current-password" } }),
    h("button.primary", { type: "submit" }, "Submit"),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const v = formValues(form);
      session = await api("POST", "/web/login", { login: v.login || "", api_key: v.api_key || "" });
      setCsrf(session.csrf);
      location.hash = "#/campaigns";
      route();
    } catch (err) {
      // Wrong credentials name no field: shown above the form.
      showFieldErrors(form, err.field ? err : { message: err.message });
    } finally {
      submit.disabled = false;
    }
  });
  fill(root(), h("main.login-page", { id: "main" }, h("div.login-brand", h("img", { src: "/assets/icon.svg", alt: "", width: "40", height: "40" }), h("span", "outdial")), form));
  form.querySelector("input").focus();
}

/** Draws the screen the hash names (logging in first when there is no session). */
async function route() {
  if (leave) {
    try { leave(); } catch { /* the old screen is gone either way */ }
    leave = null;
  }
  document.querySelectorAll("dialog").forEach((d) => d.close());
  if (!session) {
    try {
      const answer = await api("GET", "/web/session");
      session = answer && answer.account ? answer : null;
      if (session) setCsrf(session.csrf);
    } catch {
      session = null;
    }
  }
  if (!session) return loginPage();
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  if (!parts.length || parts[0] === "login") {
    location.replace("#/campaigns");
    parts.splice(0, parts.length, "campaigns");
  }
  document.body.classList.remove("nav-open");
  const main = shell();
  const ctx = { session, navigate };
  const [screen, id, tab] = parts;
  const titles = Object.fromEntries(NAV.map(([href, label]) => [href.slice(2), label]));
  document.title = `${titles[screen] || "Campaign"} · outdial`;
  try {
    let cleanup;
    if (screen === "campaigns" && id) cleanup = await renderCampaign(main, ctx, Number(id), tab || "dashboard");
    else if (screen === "campaigns") cleanup = await renderCampaigns(main, ctx);
    else if (screen === "live") cleanup = await screens.renderLive(main, ctx);
    else if (screen === "schedules") cleanup = await screens.renderSchedules(main, ctx);
    else if (screen === "dnc") cleanup = await screens.renderDnc(main, ctx);
    else if (screen === "agents") cleanup = await screens.renderAgents(main, ctx);
    else if (screen === "ai-agents") cleanup = await screens.renderAiAgents(main, ctx);
    else if (screen === "numbers") cleanup = await screens.renderNumbers(main, ctx);
    else if (screen === "keys") cleanup = await screens.renderKeys(main, ctx);
    else fill(main, h("h1", "Not found"), h("p", h("a", { href: "#/campaigns" }, "Back to the campaigns")));
    if (typeof cleanup === "function") leave = cleanup;
  } catch (err) {
    if (err.status === 401) return;
    fill(main, h("h1", "Something went wrong"), h("p.form-error", { role: "alert" }, err.message));
  }
  const heading = main.querySelector("h1");
  if (heading) heading.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
window.addEventListener("outdial:logged-out", () => {
  if (!session) return;
  session = null;
  setCsrf("");
  loginPage();
});
route();
