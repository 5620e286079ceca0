"""outdial's web page in a real browser (Debian's chromium through Playwright).

One admin's day, in order: log in (a wrong key first), create a campaign through the dialog
(a field error first), import the guide's CSV with a bad row, start the campaign against
sipp's far ends, watch the dashboard and the live monitor change without a reload, open a
contact's calls, download an export, log out; then a second account sees none of it. axe-core
checks every screen; a phone-width pass checks nothing overflows; the console stays clean.
Screenshots of every screen go to $OUTDIAL_SHOTS.
"""

import csv
import io
import json
import os
import pathlib
import re
import time

import pytest
from playwright.sync_api import Page, expect

AXE = pathlib.Path(__file__).with_name("node_modules") / "axe-core" / "axe.min.js"

# Console messages that are the browser reporting an answer the step asked for (a wrong key:
# 401, an invalid campaign: 400, a forged change: 403, another account's campaign: 404)
# rather than a fault of the page.
EXPECTED_RESOURCE_ERROR = re.compile(r"Failed to load resource: the server responded with a status of (400|401|403|404)")


class Console:
    """Every console error and uncaught exception of a page."""

    def __init__(self, page: Page):
        self.errors = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def unexpected(self):
        return [e for e in self.errors if not EXPECTED_RESOURCE_ERROR.search(e)]


def axe_check(page: Page, screen: str):
    """Runs axe-core in the page: no serious or critical violation."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    result = page.evaluate("async () => JSON.stringify(await axe.run(document, {resultTypes: ['violations']}))")
    violations = [v for v in json.loads(result)["violations"] if v["impact"] in ("serious", "critical")]
    detail = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in violations]
    assert not violations, f"{screen}: {detail}"


def shot(page: Page, env, name: str):
    page.screenshot(path=str(env["shots"] / f"{name}.png"), full_page=True)


def login(page: Page, env, which: str = ""):
    page.goto(env["OUTDIAL_URL"] + "/")
    page.get_by_label("Login").fill(env[f"OUTDIAL_LOGIN{which}"])
    page.get_by_label("API Key").fill(env[f"OUTDIAL_KEY{which}"])
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("heading", name="Campaigns", level=1)).to_be_visible()


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_an_admins_day(page: Page, env, context):
    console = Console(page)
    base = env["OUTDIAL_URL"]

    # The login page; a wrong key is refused with a message, nothing else shown.
    page.goto(base + "/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    axe_check(page, "login")
    shot(page, env, "01-login")
    page.get_by_label("Login").fill(env["OUTDIAL_LOGIN"])
    page.get_by_label("API Key").fill("odk_wrong")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator(".form-error")).to_contain_text("wrong login or API key")
    # The right key, with the keyboard only.
    page.get_by_label("API Key").fill(env["OUTDIAL_KEY"])
    page.get_by_label("API Key").press("Enter")
    expect(page.get_by_role("heading", name="Campaigns", level=1)).to_be_visible()
    # The session is an HttpOnly, SameSite=Strict cookie: no script can read it.
    cookie = next(c for c in context.cookies() if c["name"] == "outdial_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    assert "outdial_session" not in page.evaluate("() => document.cookie")
    # A change without the CSRF token is refused even with the cookie.
    status = page.evaluate("async () => (await fetch('/v1/campaigns', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({name: 'forged'})})).status")
    assert status == 403, status
    expect(page.get_by_test_id("campaigns-table")).to_contain_text("No campaigns yet")
    axe_check(page, "campaigns (empty)")

    # Add campaign: an empty name is shown at the Name field, then saved.
    page.get_by_test_id("add-campaign").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Add campaign")).to_be_visible()
    axe_check(page, "add campaign dialog")
    shot(page, env, "02-add-campaign")
    dialog.get_by_label("Campaign pace (calls per minute)").fill("60")
    dialog.get_by_label("Call interval").select_option("5")
    dialog.get_by_label("Ring timeout").select_option("15")
    dialog.get_by_label("Max retry attempts (0–10)").fill("0")
    dialog.get_by_label("Message to play").select_option("reminder.wav")
    dialog.get_by_label("Description").fill("Made in the browser")
    dialog.get_by_role("button", name="Save").click()
    name_error = dialog.locator('[data-field="name"] .field-error')
    expect(name_error).to_contain_text("must not be empty")
    expect(dialog.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    shot(page, env, "03-field-error")
    dialog.get_by_label("Name").fill("Browser campaign")
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    row = page.locator("[data-campaign-id]").filter(has_text="Browser campaign")
    expect(row).to_contain_text("New")
    expect(row).to_contain_text("Made in the browser")
    campaign_id = int(row.get_attribute("data-campaign-id"))
    shot(page, env, "04-campaigns")
    # The actions menu offers what New allows: Start, Stop, Edit, Delete — not Resume.
    row.get_by_role("button", name=re.compile("Actions for")).press("Enter")
    menu = row.get_by_role("menu")
    expect(menu.get_by_role("menuitem", name="Start")).to_be_visible()
    expect(menu.get_by_role("menuitem", name="Resume")).to_have_count(0)
    expect(menu.get_by_role("menuitem", name="Restart")).to_have_count(0)
    page.keyboard.press("Escape")
    # Search and status filter.
    page.get_by_label("Search campaigns").fill("nothing like it")
    expect(page.get_by_test_id("campaigns-table")).to_contain_text("No campaign matches")
    page.get_by_label("Search campaigns").fill("browser")
    expect(page.locator("[data-campaign-id]")).to_have_count(1)
    page.get_by_label("Search campaigns").fill("")

    # The campaign's page, Contacts tab: import the guide's CSV with one bad row.
    row.get_by_role("link", name="Browser campaign").click()
    expect(page.get_by_role("heading", name="Browser campaign", level=1)).to_be_visible()
    page.get_by_role("tab", name="Contacts").click()
    expect(page.get_by_test_id("contacts-table")).to_be_visible()
    page.get_by_test_id("import-contacts").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("CSV file").set_input_files(env["OUTDIAL_CSV"])
    axe_check(page, "import dialog")
    dialog.get_by_role("button", name="Import").click()
    counts = dialog.get_by_test_id("import-counts")
    expect(counts).to_contain_text("5 imported")
    expect(counts).to_contain_text("1 rows with errors")
    errors = dialog.get_by_role("table")
    expect(errors).to_contain_text("too short")
    expect(errors.locator("tbody tr")).to_have_count(1)
    shot(page, env, "05-import")
    dialog.get_by_role("button", name="Close").first.click()
    expect(page.locator("[data-contact-id]")).to_have_count(5)
    expect(page.get_by_test_id("contacts-table")).to_contain_text("John Doe")
    axe_check(page, "contacts")
    shot(page, env, "06-contacts")

    # The live monitor in a second tab, open before the campaign starts.
    live = context.new_page()
    live_console = Console(live)
    live.goto(base + "/#/live")
    expect(live.get_by_test_id("live-status")).to_contain_text(re.compile("onnected", re.I))
    axe_check(live, "live monitor")

    # Start it from the campaign page; the dashboard follows without a reload.
    page.get_by_role("tab", name="Dashboard").click()
    progress = page.get_by_test_id("progress-text")
    expect(progress).to_contain_text("0 of 5")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("p.muted .badge").first).to_contain_text(re.compile("Processing|Finished"))
    # A call shows up on the live monitor and moves on.
    first_state = wait_for(lambda: live.locator("[data-call-id]").count() > 0 and live.locator("[data-testid=live-state]").first.inner_text(), 30, "a call on the live monitor")
    shot(live, env, "07-live")
    seen_states = {first_state.strip().lower()}
    deadline = time.time() + 40
    while time.time() < deadline and len(seen_states) < 2:
        for s in live.locator("[data-testid=live-state]").all_inner_texts():
            seen_states.add(s.strip().lower())
        time.sleep(0.2)
    assert len(seen_states) >= 2, f"the live monitor showed only {seen_states}"
    # Every call is made and ends; the page (never reloaded) follows: the busy line is
    # rejected and the mailbox a machine (both final), the three people `called` (they await
    # the campaign's completion timeout, so they are not finished yet).
    expect(page.get_by_test_id("stat-total").locator("strong")).to_have_text("5", timeout=120_000)
    counts = page.get_by_test_id("status-counts")
    expect(counts.locator("[data-status=called] .count")).to_have_text("3", timeout=30_000)
    expect(counts.locator("[data-status=rejected] .count")).to_have_text("1")
    expect(counts.locator("[data-status=no_conversation] .count")).to_have_text("1")
    expect(progress).to_contain_text("2 of 5")
    expect(page.get_by_test_id("amd-outcomes")).to_contain_text("human")
    expect(page.get_by_test_id("calls-over-time").locator(".bar").first).to_be_visible()
    axe_check(page, "dashboard")
    shot(page, env, "08-dashboard")

    # A contact's calls with their CDR.
    page.get_by_role("tab", name="Contacts").click()
    john = page.locator("[data-contact-id]").filter(has_text="John Doe")
    john.get_by_role("button", name=re.compile("^Calls of")).click()
    attempts = page.get_by_test_id("contact-attempts")
    expect(attempts.locator("[data-attempt-id]")).to_have_count(1)
    expect(attempts).to_contain_text("+12025550101")
    axe_check(page, "contact calls")
    shot(page, env, "09-contact-calls")
    page.get_by_role("dialog").get_by_role("button", name="Close", exact=True).last.click()

    # All calls of the campaign.
    page.get_by_role("tab", name="Calls").click()
    expect(page.get_by_test_id("attempts-table").locator("[data-attempt-id]")).to_have_count(5)
    axe_check(page, "calls")

    # Export CSV (comma) and download it from the history.
    page.get_by_role("tab", name="Exports").click()
    page.get_by_test_id("new-export").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Format").select_option("csv_comma")
    dialog.get_by_role("button", name="Export").click()
    link = page.get_by_test_id("exports-table").get_by_role("link")
    expect(link).to_have_count(1, timeout=20_000)
    with page.expect_download() as download:
        link.click()
    body = pathlib.Path(download.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    phones = {cell for r in rows for cell in r}
    assert {"+12025550101", "+12025550102", "+12025550103", "+12025550104", "+12025550106"} <= phones, rows[:5]
    axe_check(page, "exports")
    shot(page, env, "10-exports")

    # Goals tab, and every other screen: axe and a screenshot each.
    page.get_by_role("tab", name="Goals").click()
    expect(page.get_by_role("heading", name="Goals and analyses")).to_be_visible()
    axe_check(page, "goals")
    for hash_, heading, name in [
        ("#/schedules", "Business hours", "11-schedules"),
        ("#/dnc", "Do not call", "12-dnc"),
        ("#/agents", "SIP agents", "13-agents"),
        ("#/ai-agents", "AI agents", "14-ai-agents"),
        ("#/numbers", "Numbers", "15-numbers"),
        ("#/keys", "API keys", "16-keys"),
    ]:
        page.goto(base + "/" + hash_)
        expect(page.locator("h1")).to_contain_text(re.compile(heading.split()[0], re.I))
        page.wait_for_load_state("networkidle")
        axe_check(page, hash_)
        shot(page, env, name)

    # Forms of the other screens: a schedule with its open-now indicator, an agent with its
    # state, a DNC number.
    page.goto(base + "/#/schedules")
    page.get_by_test_id("add-schedule").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill("Office")
    dialog.locator("footer button.primary").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    indicator = page.get_by_test_id("schedules-table").get_by_test_id("open-now")
    expect(indicator).to_have_count(1)
    # The default week is Monday to Friday, 09:00-17:00 in the browser's zone (UTC here).
    now = time.gmtime()
    open_now = now.tm_wday < 5 and 9 <= now.tm_hour < 17
    expect(indicator).to_have_attribute("data-open", "true" if open_now else "false")
    expect(indicator).to_contain_text("Open now" if open_now else "Closed")
    page.goto(base + "/#/agents")
    page.get_by_test_id("add-agent").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill("Alice")
    dialog.get_by_label("Target").fill("sip:alice@127.0.0.1:5999")
    dialog.get_by_label("State").select_option("available")
    dialog.locator("footer button.primary").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.get_by_test_id("agents-table")).to_contain_text("Alice")
    expect(page.get_by_test_id("agents-table")).to_contain_text("Available")
    page.goto(base + "/#/dnc")
    page.get_by_test_id("add-dnc").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Phone number").fill("+12025550199")
    dialog.locator("footer button.primary").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.get_by_test_id("dnc-table")).to_contain_text("+12025550199")

    # Phone width: nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    for hash_ in ["#/campaigns", f"#/campaigns/{campaign_id}", f"#/campaigns/{campaign_id}/contacts"]:
        page.goto(base + "/" + hash_)
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{hash_} is {overflow} px wider than a phone"
    shot(page, env, "17-phone-contacts")
    page.set_viewport_size({"width": 1366, "height": 900})

    # Log out: back to the login page, and the session is gone.
    page.goto(base + "/#/campaigns")
    page.get_by_test_id("logout").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert page.evaluate("async () => (await fetch('/v1/campaigns')).status") == 401
    live.close()

    # A second account sees none of it.
    login(page, env, "2")
    expect(page.get_by_test_id("campaigns-table")).to_contain_text("No campaigns yet")
    page.goto(base + f"/#/campaigns/{campaign_id}")
    expect(page.get_by_role("alert")).to_contain_text("not found")
    assert page.evaluate(f"async () => (await fetch('/v1/campaigns/{campaign_id}/contacts')).status") == 404

    assert not console.unexpected(), console.errors
    assert not live_console.unexpected(), live_console.errors
