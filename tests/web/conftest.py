"""Browser tests of outdial's web page: pytest-playwright driving Debian's chromium.

tests/web_page.rs starts `outdial serve` (and sipp as the carrier's far end) and runs this
suite with the page's address, two accounts' keys, a CSV and a folder for screenshots in
the environment. Playwright's own browser download does not work here: the system chromium
is launched instead.
"""

import os
import pathlib

import pytest
from playwright.sync_api import expect

# A loaded 2-core CI machine runs serve's debug build next to chromium: give each expectation
# more than Playwright's default 5 s.
expect.set_options(timeout=20_000)

CHROMIUM = os.environ.get("OUTDIAL_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1366, "height": 900}, "accept_downloads": True}


@pytest.fixture(scope="session")
def env():
    need = ["OUTDIAL_URL", "OUTDIAL_LOGIN", "OUTDIAL_KEY", "OUTDIAL_LOGIN2", "OUTDIAL_KEY2", "OUTDIAL_CSV", "OUTDIAL_SHOTS"]
    missing = [k for k in need if not os.environ.get(k)]
    if missing:
        pytest.fail(f"run through tests/web_page.rs: missing {missing}")
    shots = pathlib.Path(os.environ["OUTDIAL_SHOTS"])
    shots.mkdir(parents=True, exist_ok=True)
    return {k: os.environ[k] for k in need} | {"shots": shots}
