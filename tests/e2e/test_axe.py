"""Accessibility checked by axe-core in real Chromium (WCAG 2.1 A/AA rules).

axe-core comes from `node_modules` (pinned in package.json, installed by `make test` with
`npm ci`) and is injected by the test as an init script — never from a CDN, never served
by the application. Every page people use, in German and English: zero violations of
impact "serious" or "critical". Keyboard-only use of the call controls is tested here,
of the board in tests/e2e/test_board.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_call import (
    admit_and_connect,
    fill_join_form,
    join_as_doctor,
    join_waiting,
    log_in,
    open_participant,
    pass_device_check,
)
from tests.support.live import manage_json

pytestmark = pytest.mark.e2e

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = ("serious", "critical")
PUBLIC_PAGES = [
    "/",
    "/nutzungsbedingungen/",
    "/datenschutz/",
    "/faq/",
    "/impressum/",
    "/transparenz/",
]
LANGUAGES = ["de", "en"]

RUN_AXE = """
async (tags) => {
  const result = await axe.run(document, {runOnly: {type: "tag", values: tags},
                                          resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 4).map((n) => n.target.join(" ") + " — " + n.failureSummary),
  }));
}
"""


def axe_source() -> str:
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing: {AXE} (run `npm ci` in the repository root)")
    return AXE.read_text()


def new_page(browser, base_url: str, language: str):
    """A page with axe-core injected before any page script (CSP does not apply to it)."""
    participant = open_participant(browser, base_url)
    context = participant.page.context
    context.add_cookies([{"name": "django_language", "value": language, "url": base_url}])
    context.add_init_script(script=axe_source())
    return participant


def violations(page) -> list[dict]:
    page.wait_for_function("() => typeof window.axe === 'object'")
    found = page.evaluate(RUN_AXE, TAGS)
    return [v for v in found if v["impact"] in BLOCKING]


def assert_accessible(page, what: str) -> None:
    blocking = violations(page)
    assert not blocking, f"{what}: " + "\n".join(
        f"[{v['impact']}] {v['id']}: {v['help']}\n    " + "\n    ".join(v["nodes"])
        for v in blocking
    )


@pytest.fixture(scope="module")
def site(live_site):
    return live_site


def test_the_harness_finds_a_real_violation(site, browser):
    """A test that cannot fail is a defect: an image without text must be reported."""
    server, _seed = site
    page = new_page(browser, server.url, "de").page
    try:
        page.goto("/faq/")
        page.evaluate(
            "() => { const i = document.createElement('img'); i.src = '/static/img/favicon.svg';"
            " document.querySelector('main').append(i); }"
        )
        assert "image-alt" in {v["id"] for v in violations(page)}
    finally:
        page.context.close()


@pytest.mark.parametrize("language", LANGUAGES)
def test_public_pages_have_no_serious_violations(site, browser, language):
    server, _seed = site
    participant = new_page(browser, server.url, language)
    page = participant.page
    try:
        for path in PUBLIC_PAGES:
            page.goto(path)
            assert page.get_attribute("html", "lang") == language
            assert_accessible(page, f"{path} ({language})")
        # The join form with its errors shown.
        page.goto("/")
        page.locator("form.join-form button[type=submit]").click()
        page.wait_for_selector(".errorlist")
        assert_accessible(page, f"join form with errors ({language})")
        page.goto("/admin/login/")
        assert_accessible(page, f"login ({language})")
    finally:
        page.context.close()


@pytest.mark.parametrize("language", LANGUAGES)
def test_call_pages_have_no_serious_violations(site, browser, language):
    server, seed = site
    appointment = manage_json(server.env, "create_appointment", "--doctor", "demo-arzt")
    patient = new_page(browser, server.url, language)
    doctor = new_page(browser, server.url, language)
    try:
        fill_join_form(patient.page, appointment["patient_code"], "Erika Mustermann")
        patient.page.locator('[data-action="join"]').wait_for(state="visible")
        assert_accessible(patient.page, f"device check ({language})")
        pass_device_check(patient)
        patient.page.locator('[data-view="waiting"]').wait_for(state="visible")
        assert_accessible(patient.page, f"waiting room ({language})")

        log_in(doctor.page, seed["doctor"]["username"])
        doctor.page.goto("/praxis/")
        assert_accessible(doctor.page, f"board ({language})")
        fill_join_form(doctor.page, appointment["doctor_code"])
        pass_device_check(doctor)
        doctor.page.locator('[data-role="admit-box"]').wait_for(state="visible")
        assert_accessible(doctor.page, f"doctor's waiting room with admit box ({language})")
        doctor.page.locator('[data-action="admit"]').click()
        for participant in (doctor, patient):
            participant.wait_state("connection-state", "^connected$")
        for participant, who in ((doctor, "doctor"), (patient, "patient")):
            assert_accessible(participant.page, f"call page, {who} ({language})")
        keyboard_controls(patient.page)
        doctor.page.locator('.controls [data-action="hangup"]').click()
        doctor.page.locator('[data-view="ended"]').wait_for(state="visible")
        assert_accessible(doctor.page, f"call ended ({language})")
    finally:
        for participant in (patient, doctor):
            participant.page.context.close()


@pytest.mark.parametrize("language", LANGUAGES)
def test_call_pages_with_three_people_have_no_serious_violations(site, browser, language):
    """Doctor, patient and a guest (guest code 1) at once.

    First the doctor admits the patient while the guest waits in the waiting room (with
    the practice's notice shown) and shows on the doctor's waiting list; then the doctor
    lets the guest in too. All three pages are checked in both states.
    """
    server, seed = site
    appointment = manage_json(
        server.env, "create_appointment", "--doctor", "demo-arzt", "--guests", "1"
    )
    patient = new_page(browser, server.url, language)
    guest = new_page(browser, server.url, language)
    doctor = new_page(browser, server.url, language)
    try:
        join_waiting(patient, appointment["patient_code"], "Erika Mustermann")
        join_as_doctor(doctor, seed["doctor"]["username"], appointment["doctor_code"])
        admit_and_connect(doctor, patient)

        join_waiting(guest, appointment["guest_codes"][0], "Gerd Gast")
        # The practice's message to the waiting room, as the board sends it.
        board = doctor.page.context.new_page()
        board.goto("/praxis/")
        selector = f'[data-appointment="{appointment["id"]}"]'
        board.locator(f"{selector} summary").click()
        board.locator(f"{selector} .board-free input[name=text]").fill("Gleich geht es weiter.")
        board.locator(f"{selector} .board-free button[type=submit]").click()
        board.wait_for_url("**/praxis/**")
        guest.page.locator('[data-role="notice"]').wait_for(state="visible")
        board.close()

        for participant, who in ((doctor, "doctor"), (patient, "patient"), (guest, "guest")):
            assert_accessible(participant.page, f"call of three, {who} ({language})")

        entry = doctor.page.locator("[data-waiting-entry]", has_text="Gerd Gast")
        entry.locator('[data-action="admit"]').click()
        entry.wait_for(state="detached")
        guest.page.locator('[data-view="waiting"]').wait_for(state="hidden")
        for page in (doctor.page, patient.page):
            page.locator("[data-tile]", has_text="Gerd Gast").wait_for(state="visible")
        for participant, who in ((doctor, "doctor"), (patient, "patient"), (guest, "guest")):
            assert_accessible(participant.page, f"call of three admitted, {who} ({language})")
    finally:
        for participant in (patient, guest, doctor):
            participant.page.context.close()


def tab_to(page, selector: str, limit: int = 80) -> None:
    """Press Tab until the element matching the selector has the focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} cannot be reached with the Tab key")


def keyboard_controls(page) -> None:
    """Mute, camera and audio-only work with the keyboard alone, and say their state."""
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    for action in ("mute", "camera", "audio-only"):
        selector = f'.controls [data-action="{action}"]'
        tab_to(page, selector)
        assert page.get_attribute(selector, "aria-pressed") == "false"
        page.keyboard.press("Enter" if action != "camera" else "Space")
        assert page.get_attribute(selector, "aria-pressed") == "true", action
        page.keyboard.press("Space")
        assert page.get_attribute(selector, "aria-pressed") == "false", action
    # The chat is reachable and usable by keyboard too.
    tab_to(page, "#chat-input")
    page.keyboard.type("Hallo per Tastatur")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('[data-role=chat-log]').textContent.includes('Tastatur')"
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_slip_and_admin_pages_have_no_serious_violations(site, browser, language):
    server, seed = site
    staff = new_page(browser, server.url, language)
    page = staff.page
    try:
        log_in(page, seed["staff"]["username"])
        assert_accessible(page, f"admin index ({language})")
        page.goto("/admin/consultations/appointment/add/")
        assert_accessible(page, f"appointment form ({language})")
        page.locator("select[name=doctor]").select_option(index=1)
        page.locator("input[type=submit][name=_save]").click()
        page.wait_for_selector('[data-role="patient-qr"] img')
        assert_accessible(page, f"codes and slip ({language})")
        page.goto("/praxis/")
        assert_accessible(page, f"board as staff ({language})")
    finally:
        page.context.close()
