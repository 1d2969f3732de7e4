"""Fixtures for the network tests: one lab, its server and coturn, two browsers in it.

Root only. The lab (tests/support/netlab.py) is built once per session and torn down at the end,
also after failures; every test sets the NAT behaviour it needs and opens a new call.
The doctor's Chromium runs in the "practice" namespace, the patient's in "home".
"""

from __future__ import annotations

import signal

import pytest

from tests.support.live import manage, manage_json
from tests.support.netlab import Lab

DEMO_PASSWORD = "network-demo-password-0123456789"


def pytest_collection_modifyitems(config, items):
    """The impaired-link test last: after its loss and rate limit the NAT routers still
    hold connection-tracking state for a while, and a direct call set up right after it
    may settle on the relay instead of the server-reflexive pair."""
    items.sort(key=lambda item: item.path.name == "test_bad_connection.py")


def _exit_on_sigterm(signum, frame):
    # A terminated test run still unwinds its fixtures: the lab is torn down.
    raise SystemExit(128 + signum)


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with Lab(tmp_path_factory.mktemp("netlab")) as lab:
        lab.start_turn()
        env = lab.server_env(DEMO_PASSWORD=DEMO_PASSWORD)
        manage(env, "migrate", "-v0")
        lab.seed = manage_json(env, "seed_demo")
        lab.env = env
        lab.start_server(env)
        yield lab


@pytest.fixture
def fresh_nat(lab):
    """Both routers back to port-restricted NAT with UDP and no impairment, before and after."""

    def reset():
        lab.lift_impairment()
        lab.restore_direct_path()
        lab.set_nat("pnat", "port-restricted")
        lab.set_nat("hnat", "port-restricted")

    reset()
    yield lab
    reset()


def _launch(playwright, lab, role):
    return playwright.chromium.launch(
        executable_path=lab.chromium_wrapper(role), headless=True, args=lab.chromium_args()
    )


@pytest.fixture(scope="session")
def browsers(lab):
    """(doctor's browser in "practice", patient's browser in "home")."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        practice = _launch(playwright, lab, "practice")
        home = _launch(playwright, lab, "home")
        try:
            yield practice, home
        finally:
            home.close()
            practice.close()
