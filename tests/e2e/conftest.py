"""Real Chromium against a real `manage.py serve` (daphne) process.

Everything runs on 127.0.0.1 only; `scripts/run_tests.py` runs these tests inside a
loopback-only network namespace. Chromium is the system one (`/usr/bin/chromium`), with
fake camera and microphone devices and loopback ICE candidates allowed.
"""

from __future__ import annotations

import pytest
from playwright import sync_api

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.deployment import require_tool
from tests.support.live import ServeProcess, embedded_env, manage, manage_json

DEMO_PASSWORD = "e2e-demo-password-0123456789"


@pytest.fixture(scope="module")
def live_site(tmp_path_factory):
    """A migrated, seeded embedded deployment served by daphne; yields (server, seed)."""
    require_tool(CHROMIUM)
    env = embedded_env(tmp_path_factory.mktemp("e2e-site"), DEMO_PASSWORD=DEMO_PASSWORD)
    manage(env, "migrate", "-v0")
    seed = manage_json(env, "seed_demo")
    server = ServeProcess(env).start()
    try:
        yield server, seed
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
