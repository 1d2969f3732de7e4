"""The practice's day in real Chromium: the board's live status, one-click start,
messages to the waiting room, leaving the waiting room, the QR slip joining through the
URL fragment, and the e-mail invitation through a real SMTP connection.

Everything on 127.0.0.1 (a loopback-only namespace in `make test`).
"""

from __future__ import annotations

import email
import re
import socketserver
import threading
from email import policy
from io import BytesIO

import pytest
import zxingcpp
from PIL import Image

from tests.e2e.conftest import DEMO_PASSWORD
from tests.e2e.test_call import fill_join_form, log_in, open_participant, pass_device_check
from tests.support.live import ServeProcess, embedded_env, manage, manage_json

pytestmark = pytest.mark.e2e

PATIENT_NAME = "Erika Mustermann"
PRESET = "Die Sprechstunde beginnt in etwa 10 Minuten."
FREE_TEXT = "Bitte noch kurz Geduld – Frau Doktor telefoniert."
ADDRESS = "erika.mustermann@example.org"


def open_board(page) -> None:
    page.goto("/praxis/")
    page.wait_for_function(
        "() => document.querySelector('[data-board]').dataset.wsState === 'open'"
    )


def row(appointment_id: str) -> str:
    return f"#appt-{appointment_id}"


def wait_status(page, appointment_id: str, status: str, timeout: int = 10_000) -> None:
    page.wait_for_function(
        "([id, status]) => { const r = document.getElementById('appt-' + id);"
        " return r && r.dataset.status === status; }",
        arg=[appointment_id, status],
        timeout=timeout,
    )


def patient_waiting(browser, server, code: str, name: str = PATIENT_NAME):
    patient = open_participant(browser, server.url)
    fill_join_form(patient.page, code, name)
    pass_device_check(patient)
    patient.wait_state("ws-state", "^open$")
    patient.page.locator('[data-view="waiting"]').wait_for(state="visible")
    return patient


def tab_to(page, selector: str, limit: int = 120) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} cannot be reached with the Tab key")


@pytest.fixture
def staff_board(live_site, browser):
    server, seed = live_site
    staff = open_participant(browser, server.url)
    log_in(staff.page, seed["staff"]["username"])
    yield staff
    staff.page.context.close()
    assert not staff.problems, staff.problems


def test_board_shows_the_waiting_patient_within_two_seconds(live_site, browser, staff_board):
    server, _seed = live_site
    appointment = manage_json(server.env, "create_appointment", "--doctor", "demo-arzt")
    board = staff_board.page
    open_board(board)
    selector = row(appointment["id"])
    assert board.get_attribute(selector, "data-status") == "scheduled"
    assert "geplant" in board.text_content(selector)
    assert "Anna Beispiel" in board.text_content(selector)  # the display name
    assert "demo-arzt" not in board.text_content(selector)  # not the username

    patient = open_participant(browser, server.url)
    try:
        fill_join_form(patient.page, appointment["patient_code"], PATIENT_NAME)
        patient.page.locator('[data-action="join"]').wait_for(state="visible")
        patient.page.wait_for_function(
            "() => !document.querySelector('[data-action=join]').disabled"
        )
        patient.page.locator('[data-action="join"]').click()
        # The contract: the board shows "wartet" within 2 s of the patient's joining.
        wait_status(board, appointment["id"], "waiting", timeout=2_000)
        text = board.text_content(selector)
        assert "wartet seit 0 Min." in text and PATIENT_NAME in text
        board.wait_for_function(
            "(name) => document.querySelector('[data-role=announce]').textContent.includes(name)",
            arg=PATIENT_NAME,
        )

        # The patient leaves the waiting room; the board shows it.
        patient.page.locator('[data-view="waiting"] [data-action="hangup"]').click()
        patient.page.locator('[data-view="ended"]').wait_for(state="visible")
        wait_status(board, appointment["id"], "scheduled")
        board.wait_for_function(
            "() => document.querySelector('[data-role=announce]').textContent"
            ".includes('hat das Wartezimmer verlassen')"
        )
    finally:
        patient.page.context.close()
    assert PATIENT_NAME not in server.output()
    assert not patient.problems, patient.problems


def test_message_reaches_the_waiting_room_by_button_and_by_keyboard(
    live_site, browser, staff_board
):
    server, _seed = live_site
    appointment = manage_json(server.env, "create_appointment", "--doctor", "demo-arzt")
    patient = patient_waiting(browser, server, appointment["patient_code"])
    board = staff_board.page
    notice = patient.page.locator('[data-role="notice"]')
    try:
        open_board(board)
        wait_status(board, appointment["id"], "waiting")
        selector = row(appointment["id"])
        board.locator(f"{selector} summary").click()
        board.locator(f"{selector} .board-presets button", has_text=PRESET).click()
        board.wait_for_url("**/praxis/**")
        notice.wait_for(state="visible", timeout=5_000)
        assert notice.text_content() == PRESET

        # Keyboard only: open the message box, type a free text, send with Enter.
        open_board(board)
        board.evaluate("() => document.activeElement && document.activeElement.blur()")
        tab_to(board, f"{selector} summary")
        board.keyboard.press("Enter")
        tab_to(board, f"{selector} .board-free input[name=text]")
        board.keyboard.type(FREE_TEXT)
        board.keyboard.press("Enter")
        board.wait_for_url("**/praxis/**")
        patient.page.wait_for_function(
            "(text) => document.querySelector('[data-role=notice]').textContent === text",
            arg=FREE_TEXT,
        )
        assert "Die Nachricht wird allen angezeigt" in board.text_content(".board-messages")
    finally:
        patient.page.context.close()
    log = server.output()
    assert PRESET not in log and FREE_TEXT not in log
    assert not patient.problems, patient.problems


def test_doctor_starts_with_one_click_by_keyboard_and_admits(live_site, browser, staff_board):
    server, seed = live_site
    appointment = manage_json(server.env, "create_appointment", "--doctor", "demo-arzt")
    patient = patient_waiting(browser, server, appointment["patient_code"])
    doctor = open_participant(browser, server.url)
    board = staff_board.page
    try:
        open_board(board)
        wait_status(board, appointment["id"], "waiting")
        # Staff see the status but no start button.
        assert board.locator(f"{row(appointment['id'])} [data-role=start]").count() == 0

        log_in(doctor.page, seed["doctor"]["username"])
        open_board(doctor.page)
        start = f"{row(appointment['id'])} [data-role=start] button"
        doctor.page.evaluate("() => document.activeElement && document.activeElement.blur()")
        tab_to(doctor.page, start)
        doctor.page.keyboard.press("Enter")
        doctor.page.wait_for_url("**/call/")
        assert doctor.state("participant") == "doctor"
        pass_device_check(doctor)
        doctor.page.locator('[data-role="admit-box"]').wait_for(state="visible")
        assert doctor.page.text_content('[data-role="waiting-name"]') == PATIENT_NAME
        doctor.page.locator('[data-action="admit"]').click()
        for participant in (doctor, patient):
            participant.wait_state("connection-state", "^connected$")
        wait_status(board, appointment["id"], "in_call")
        assert "im Gespräch" in board.text_content(row(appointment["id"]))
        # Admitted: a message is no longer shown to the patient.
        board.locator(f"{row(appointment['id'])} summary").click()
        board.locator(f"{row(appointment['id'])} .board-presets button", has_text=PRESET).click()
        board.wait_for_url("**/praxis/**")
        patient.page.wait_for_timeout(500)
        assert patient.page.locator('[data-role="notice"]').is_hidden()
    finally:
        for participant in (patient, doctor):
            participant.page.context.close()
    assert appointment["doctor_code"] not in server.output()
    assert not doctor.problems, doctor.problems


def test_staff_cannot_start_a_call(live_site, browser, staff_board):
    server, _seed = live_site
    appointment = manage_json(server.env, "create_appointment", "--doctor", "demo-arzt")
    board = staff_board.page
    open_board(board)
    token = board.locator(f"{row(appointment['id'])} form input[name=csrfmiddlewaretoken]").first
    response = board.request.post(
        f"/praxis/{appointment['id']}/start",
        form={"csrfmiddlewaretoken": token.get_attribute("value")},
        headers={"Origin": server.url},
        max_redirects=0,
    )
    assert response.status == 403


# --- QR code on the slip: the code travels in the fragment only ------------------------


def create_on_admin(page, address: str = "") -> str:
    """Create an appointment in the admin form as staff; return the patient code."""
    page.goto("/admin/consultations/appointment/add/")
    page.locator("select[name=doctor]").select_option(index=1)
    if address:
        page.fill("input[name=invite_email]", address)
    page.locator("input[type=submit][name=_save]").click()
    page.wait_for_selector('[data-role="patient-code"]')
    return page.text_content('[data-role="patient-code"]').strip()


def test_qr_code_on_the_slip_joins_with_the_code_in_the_fragment(live_site, browser, staff_board):
    server, _seed = live_site
    slip = staff_board.page
    code = create_on_admin(slip)
    png = slip.locator('[data-role="patient-qr"] img').screenshot()
    decoded = zxingcpp.read_barcodes(Image.open(BytesIO(png)))
    assert len(decoded) == 1
    link = decoded[0].text
    assert link.endswith(f"/#code={code}")
    target = server.url + link[link.index("/#code=") :]

    patient = open_participant(browser, server.url)
    requests: list[str] = []
    patient.page.on("request", lambda request: requests.append(request.url))
    try:
        patient.page.goto(target)
        field = patient.page.locator("form.join-form input[name=code]")
        patient.page.wait_for_function(
            "(code) => document.querySelector('form.join-form input[name=code]').value === code",
            arg=code,
        )
        assert field.input_value() == code
        assert patient.page.url == server.url + "/"  # removed from the address bar
        assert patient.page.evaluate("() => window.location.hash") == ""
        assert patient.page.evaluate("() => document.activeElement.name") == "name"
        # No request line carried the code: the fragment never leaves the browser.
        assert requests and not any(code in url or "code=" in url for url in requests)
        log = server.output()
        assert code not in log and code.replace("-", "") not in log
        patient.page.fill("form.join-form input[name=name]", PATIENT_NAME)
        patient.page.check("form.join-form input[name=consent]")
        patient.page.locator("form.join-form button[type=submit]").click()
        patient.page.wait_for_url("**/call/")
    finally:
        patient.page.context.close()
    assert code not in server.output()
    assert not patient.problems, patient.problems


# --- Invitation by e-mail through a real SMTP connection ----------------------------------


class SmtpSink(socketserver.ThreadingTCPServer):
    """A minimal SMTP server on 127.0.0.1 that keeps what it receives in memory."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _SmtpHandler)
        self.messages: list[bytes] = []
        self.recipients: list[str] = []

    @property
    def port(self) -> int:
        return self.server_address[1]


class _SmtpHandler(socketserver.StreamRequestHandler):
    def reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 sink ESMTP")
        lines: list[bytes] | None = None
        while line := self.rfile.readline():
            if lines is not None:
                if line.rstrip(b"\r\n") == b".":
                    self.server.messages.append(b"".join(lines))
                    lines = None
                    self.reply("250 OK")
                else:
                    lines.append(line[1:] if line.startswith(b"..") else line)
                continue
            command = line.strip().decode(errors="replace")
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250-sink")
                self.reply("250 8BITMIME")
            elif verb == "RCPT":
                self.server.recipients.append(command)
                self.reply("250 OK")
            elif verb == "DATA":
                lines = []
                self.reply("354 End data with <CR><LF>.<CR><LF>")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("250 OK")


@pytest.fixture(scope="module")
def mail_site(tmp_path_factory):
    sink = SmtpSink()
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    workdir = tmp_path_factory.mktemp("e2e-mail")
    env = embedded_env(
        workdir, DEMO_PASSWORD=DEMO_PASSWORD, EMAIL_URL=f"smtp://127.0.0.1:{sink.port}"
    )
    manage(env, "migrate", "-v0")
    seed = manage_json(env, "seed_demo")
    server = ServeProcess(env).start()
    try:
        yield server, seed, sink, workdir
    finally:
        server.stop()
        sink.shutdown()
        sink.server_close()


def test_invitation_email_is_sent_and_the_address_stored_nowhere(mail_site, browser):
    server, seed, sink, workdir = mail_site
    staff = open_participant(browser, server.url)
    patient = open_participant(browser, server.url)
    try:
        log_in(staff.page, seed["staff"]["username"])
        code = create_on_admin(staff.page, ADDRESS)
        assert "Die Einladung wurde per E-Mail verschickt." in staff.page.text_content("body")
        assert len(sink.messages) == 1
        message = email.message_from_bytes(sink.messages[0], policy=policy.default)
        assert ADDRESS in message["To"] and ADDRESS in sink.recipients[0]
        assert str(message["Subject"]).strip().startswith("Ihre Videosprechstunde am ")
        body = message.get_body(preferencelist=("plain",)).get_content()
        assert f"/#code={code}" in body
        assert "/nutzungsbedingungen/" in body and "/datenschutz/" in body
        assert "(deutscher Zeit)" in body
        ics = next(part for part in message.iter_attachments())
        assert ics.get_content_type() == "text/calendar"
        assert "BEGIN:VEVENT" in ics.get_content()

        # The link in the e-mail joins like the QR code.
        link = re.search(r"https?://\S+/#code=\S+", body)[0]
        patient.page.goto(server.url + link[link.index("/#code=") :])
        patient.page.wait_for_function(
            "(code) => document.querySelector('form.join-form input[name=code]').value === code",
            arg=code,
        )
    finally:
        for participant in (staff, patient):
            participant.page.context.close()
    assert ADDRESS not in server.output()
    for path in workdir.glob("db.sqlite3*"):
        assert ADDRESS.encode() not in path.read_bytes(), path
