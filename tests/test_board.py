"""The practice's board over HTTP: `GET /praxis/`, one-click start, waiting-room messages,
e-mail invitations and the QR code on the slip (contract: "The practice's board")."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from board import access, links, status
from board.status import Participant, Status
from consultations import joinsession, services
from consultations.models import Appointment, Membership
from tests.conftest import make_member
from tests.support.helpers import run_manage

BOARD = "/praxis/"


def start_url(appointment) -> str:
    return f"/praxis/{appointment.pk}/start"


def message_url(appointment) -> str:
    return f"/praxis/{appointment.pk}/message"


# --- status logic (pure) ---------------------------------------------------------------


def person(role="patient", name="Paula", since=100.0, admitted=False) -> Participant:
    return Participant(role, name, since, admitted)


def test_status_without_anybody_is_scheduled_or_ended_after_a_call():
    assert status.compute("scheduled", []).status == Status.SCHEDULED
    assert status.compute("active", [], held=True).status == Status.ENDED


def test_status_waiting_lists_the_names_since_the_earliest_arrival():
    row = status.compute(
        "active", [person(name="Bert", since=200.0), person("guest", "Anna", 150.0)]
    )
    assert row.status == Status.WAITING
    assert row.waiting_names == ("Anna", "Bert")
    assert row.waiting_since == 150.0


def test_a_doctor_alone_is_not_waiting():
    row = status.compute("active", [person("doctor", "Dr. D")])
    assert row.status == Status.SCHEDULED and row.doctor_present


def test_an_admitted_participant_means_in_consultation():
    row = status.compute(
        "active", [person("doctor", "Dr. D"), person(admitted=True), person("guest", "G")]
    )
    assert row.status == Status.IN_CALL
    assert row.waiting_names == ("G",)


@pytest.mark.parametrize("stored", ["cancelled", "expired"])
def test_cancelled_and_expired_win_over_live_connections(stored):
    assert status.compute(stored, [person(admitted=True)]).status == stored


def test_tracker_forgets_a_departed_connection_but_remembers_the_call():
    tracker = status.Tracker()
    tracker.update("a", "ch1", person(admitted=True))
    assert tracker.row("a", "active").status == Status.IN_CALL
    tracker.update("a", "ch1", None)
    assert tracker.row("a", "active").status == Status.ENDED
    assert tracker.row("b", "active").status == Status.SCHEDULED


# --- who may see the board ---------------------------------------------------------------


def test_anonymous_is_sent_to_the_login(client, db):
    response = client.get(BOARD)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert "next=/praxis/" in response["Location"]


@pytest.mark.parametrize("persona", ["auditor", "superuser", "other_practice_auditor"])
def test_auditors_and_non_members_get_403(client, persona, request, practice, other_practice):
    if persona == "other_practice_auditor":
        user = make_member(other_practice, "aud2", Membership.Role.AUDITOR)
    else:
        user = request.getfixturevalue(persona)
    client.force_login(user)
    assert client.get(BOARD).status_code == 403


@pytest.mark.parametrize("persona", ["doctor", "staff"])
def test_doctors_and_staff_see_the_board_in_german(client, persona, request, issued):
    client.force_login(request.getfixturevalue(persona))
    response = client.get(BOARD)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<html lang="de">' in html
    assert "Sprechstunden" in html
    assert "Dora Doktor" in html  # the display name, not the username
    assert ">doc<" not in html
    assert "geplant" in html
    assert 'src="/static/js/board.js"' in html
    assert "Content-Security-Policy" in response.headers


def test_only_the_appointments_own_doctor_sees_the_start_button(
    client, issued, second_doctor, staff
):
    for user, expected in ((issued.appointment.doctor, 1), (second_doctor, 0), (staff, 0)):
        client.force_login(user)
        html = client.get(BOARD).content.decode()
        assert html.count(start_url(issued.appointment)) == expected, user
        assert message_url(issued.appointment) in html


def test_board_lists_today_and_upcoming_of_own_practice_only(
    client, doctor, staff, other_practice_doctor
):
    now = timezone.now()
    today = services.create_appointment(doctor=doctor, scheduled_at=now)
    later = services.create_appointment(doctor=doctor, scheduled_at=now + timedelta(days=3))
    old = services.create_appointment(doctor=doctor, scheduled_at=now - timedelta(days=3))
    foreign = services.create_appointment(doctor=other_practice_doctor, scheduled_at=now)
    client.force_login(staff)
    html = client.get(BOARD).content.decode()
    assert str(today.appointment.pk) in html and str(later.appointment.pk) in html
    assert str(old.appointment.pk) not in html
    assert str(foreign.appointment.pk) not in html


def test_times_on_the_board_are_german_local_time(client, doctor, staff):
    # 09:30 UTC in December is 10:30 in Berlin (CET).
    moment = timezone.now().replace(hour=9, minute=30, second=0, microsecond=0)
    if moment < timezone.now() - timedelta(hours=20):
        moment += timedelta(days=1)
    issued = services.create_appointment(doctor=doctor, scheduled_at=moment)
    client.force_login(staff)
    html = client.get(BOARD).content.decode()
    local = timezone.localtime(moment, timezone.get_default_timezone())
    row = re.search(rf'id="appt-{issued.appointment.pk}".*?</tr>', html, re.S).group(0)
    assert f">{local:%H:%M}</time>" in row


def test_cancelled_and_expired_show_their_status(client, doctor, staff):
    cancelled = services.create_appointment(doctor=doctor)
    services.cancel_appointment(cancelled.appointment)
    client.force_login(staff)
    html = client.get(BOARD).content.decode()
    row = re.search(rf'id="appt-{cancelled.appointment.pk}".*?</tr>', html, re.S).group(0)
    assert 'data-status="cancelled"' in row and "abgesagt" in row


@override_settings(OTP_REQUIRED=True)
def test_where_2fa_is_enforced_a_password_only_session_is_sent_to_the_login(client, staff):
    client.force_login(staff)
    response = client.get(BOARD)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_a_configured_device_is_needed_also_where_2fa_is_optional(client, staff):
    TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    client.force_login(staff)  # password only, no OTP verification in this session
    assert client.get(BOARD).status_code == 302


def test_admin_index_links_to_the_board_for_members_only(client, staff, auditor):
    client.force_login(staff)
    assert 'href="/praxis/"' in client.get("/admin/").content.decode()
    client.force_login(auditor)
    assert 'href="/praxis/"' not in client.get("/admin/").content.decode()


# --- one-click start -----------------------------------------------------------------------


def test_the_doctor_starts_the_call_without_a_code(client, issued, doctor):
    client.force_login(doctor)
    response = client.post(start_url(issued.appointment))
    assert response.status_code == 302 and response["Location"] == "/call/"
    join = joinsession.read_join(response.cookies["rc_join"].value)
    assert join.is_doctor and join.user_id == doctor.pk
    assert join.appointment_id == str(issued.appointment.pk)
    assert join.display_name == "Dora Doktor"
    page = client.get("/call/")
    assert page.status_code == 200 and 'data-participant="doctor"' in page.content.decode()


@pytest.mark.parametrize("persona", ["staff", "second_doctor", "auditor", "superuser"])
def test_anyone_else_gets_403_on_start(client, issued, persona, request):
    client.force_login(request.getfixturevalue(persona))
    response = client.post(start_url(issued.appointment))
    assert response.status_code == 403
    assert "rc_join" not in response.cookies


def test_anonymous_start_is_refused(client, issued):
    assert client.post(start_url(issued.appointment)).status_code == 403


def test_start_needs_post(client, issued, doctor):
    client.force_login(doctor)
    assert client.get(start_url(issued.appointment)).status_code == 405


@pytest.mark.parametrize("how", ["cancelled", "expired"])
def test_start_of_a_cancelled_or_expired_appointment_goes_back_with_a_message(client, doctor, how):
    if how == "cancelled":
        issued = services.create_appointment(doctor=doctor)
        services.cancel_appointment(issued.appointment)
    else:
        issued = services.create_appointment(
            doctor=doctor, scheduled_at=timezone.now() - timedelta(hours=25)
        )
    client.force_login(doctor)
    response = client.post(start_url(issued.appointment), follow=True)
    assert response.redirect_chain == [("/praxis/", 302)]
    word = "abgesagt" if how == "cancelled" else "abgelaufen"
    assert f"Dieser Termin ist {word}" in response.content.decode()


def test_start_of_an_unknown_appointment_is_404(client, doctor):
    client.force_login(doctor)
    assert client.post("/praxis/not-a-uuid/start").status_code == 404


def test_the_doctor_code_keeps_working(client, issued, doctor):
    client.force_login(doctor)
    response = client.post("/", {"code": issued.doctor_code})
    assert response.status_code == 302 and response["Location"] == "/call/"


# --- message to the waiting room (HTTP side; delivery: tests/test_board_live.py) ---------


@pytest.mark.parametrize("persona", ["auditor", "other_practice_staff", "superuser"])
def test_others_may_not_send_messages(client, issued, persona, request):
    client.force_login(request.getfixturevalue(persona))
    assert client.post(message_url(issued.appointment), {"text": "Hallo"}).status_code == 403


def test_anonymous_message_is_refused(client, issued):
    assert client.post(message_url(issued.appointment), {"text": "Hallo"}).status_code == 403


@pytest.mark.parametrize("text", ["", "   ", "x" * 201])
def test_bad_message_text_gives_a_german_error(client, issued, staff, text):
    client.force_login(staff)
    response = client.post(message_url(issued.appointment), {"text": text})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Bitte geben Sie eine Nachricht ein." in html or "höchstens 200 Zeichen" in html


def test_message_of_200_characters_is_accepted(client, issued, staff):
    client.force_login(staff)
    response = client.post(message_url(issued.appointment), {"text": "x" * 200})
    assert response.status_code == 302
    assert response["Location"] == f"/praxis/#appt-{issued.appointment.pk}"


def test_message_text_is_neither_stored_nor_logged(client, issued, staff, caplog):
    secret = "Geheimtext-4711 bitte warten"
    client.force_login(staff)
    with caplog.at_level(logging.DEBUG):
        response = client.post(message_url(issued.appointment), {"text": secret}, follow=True)
    assert response.status_code == 200
    assert secret not in caplog.text
    assert secret not in response.content.decode()  # the confirmation does not repeat it
    assert secret not in database_text()


# --- the QR code on the slip ------------------------------------------------------------


def test_join_link_carries_the_code_in_the_fragment(settings):
    assert links.join_link("7KQ2-M9XD-4TNF") == f"{settings.PUBLIC_URL}/#code=7KQ2-M9XD-4TNF"


def test_slip_shows_a_qr_code_and_still_the_printed_code(client, staff, doctor):
    client.force_login(staff)
    response = client.post(
        "/admin/consultations/appointment/add/",
        {"doctor": doctor.pk, "scheduled_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M")},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'<img class="rc-qr" src="data:image/svg\+xml[^"]+" alt="QR-Code', html)
    assert re.search(r'data-role="patient-code">[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}<', html)


def test_join_page_loads_the_fragment_script(client, db):
    html = client.get("/").content.decode()
    assert re.search(r'<script src="/static/js/join.js" integrity="sha384-[^"]+" defer>', html)


# --- invitation by e-mail -------------------------------------------------------------------

ADDRESS = "erika.mustermann@example.org"


def database_text() -> str:
    """Every value in every table of the database, as one string."""
    parts = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (table names from the DB)
            parts.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(parts)


@pytest.fixture
def locmem_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []
    return mail.outbox


def add_with_invitation(client, doctor, address=ADDRESS, when=None):
    when = when or timezone.localtime() + timedelta(hours=2)
    return client.post(
        "/admin/consultations/appointment/add/",
        {
            "doctor": doctor.pk,
            "scheduled_at": when.strftime("%Y-%m-%dT%H:%M"),
            "invite_email": address,
        },
    )


def test_add_form_offers_the_address_field_and_detail_page_does_not(client, staff, issued):
    client.force_login(staff)
    assert (
        'name="invite_email"'
        in client.get("/admin/consultations/appointment/add/").content.decode()
    )
    detail = client.get(f"/admin/consultations/appointment/{issued.appointment.pk}/change/")
    assert detail.status_code == 200 and "invite_email" not in detail.content.decode()


def test_invitation_is_sent_in_german_with_link_terms_and_calendar(
    client, staff, doctor, locmem_mail, settings
):
    client.force_login(staff)
    when = (timezone.localtime() + timedelta(days=2)).replace(hour=14, minute=30)
    response = add_with_invitation(client, doctor, when=when)
    assert response.status_code == 200
    assert "Die Einladung wurde per E-Mail verschickt." in response.content.decode()
    code = re.search(r'data-role="patient-code">([0-9A-Z-]{14})<', response.content.decode())[1]
    assert len(locmem_mail) == 1
    message = locmem_mail[0]
    assert message.to == [ADDRESS]
    assert message.subject.startswith("Ihre Videosprechstunde am ")
    assert f"{when:%H:%M}" in message.subject
    body = message.body
    assert f"{settings.PUBLIC_URL}/#code={code}" in body
    assert f"{settings.PUBLIC_URL}/nutzungsbedingungen/" in body
    assert f"{settings.PUBLIC_URL}/datenschutz/" in body
    assert "14:30" in body and "deutscher Zeit" in body
    name, ics, mimetype = message.attachments[0]
    assert name.endswith(".ics") and mimetype == "text/calendar"
    assert "BEGIN:VCALENDAR" in ics and "BEGIN:VEVENT" in ics
    start_utc = when.astimezone(timezone.get_fixed_timezone(0))
    assert f"DTSTART:{start_utc:%Y%m%dT%H%M00Z}" in ics
    assert all(len(line.encode()) <= 75 for line in ics.split("\r\n"))


def test_invitation_address_is_stored_nowhere(client, staff, doctor, locmem_mail, caplog, capsys):
    client.force_login(staff)
    with caplog.at_level(logging.DEBUG):
        add_with_invitation(client, doctor)
    assert len(locmem_mail) == 1
    assert ADDRESS not in database_text()
    assert ADDRESS not in caplog.text
    captured = capsys.readouterr()
    assert ADDRESS not in captured.out + captured.err
    assert ADDRESS not in str(dict(client.session))


def test_an_invalid_address_is_refused_and_nothing_is_created(client, staff, doctor, locmem_mail):
    client.force_login(staff)
    response = add_with_invitation(client, doctor, address="not-an-address")
    assert response.status_code == 200
    assert "gültige E-Mail-Adresse" in response.content.decode()
    assert not Appointment.objects.exists()
    assert locmem_mail == []


def test_without_address_no_mail_is_sent(client, staff, doctor, locmem_mail):
    client.force_login(staff)
    add_with_invitation(client, doctor, address="")
    assert Appointment.objects.count() == 1 and locmem_mail == []


def test_a_failing_mail_server_is_reported_without_the_address(
    client, staff, doctor, settings, caplog
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    client.force_login(staff)
    with caplog.at_level(logging.WARNING):
        response = add_with_invitation(client, doctor)
    assert "konnte nicht verschickt werden" in response.content.decode()
    assert "could not send an invitation e-mail" in caplog.text
    assert ADDRESS not in caplog.text
    assert Appointment.objects.count() == 1  # the appointment and its codes stand


def test_guest_role_gets_the_guest_wording(issued, locmem_mail):
    from board.invitations import send_invitation

    assert send_invitation(
        issued.appointment, code=issued.patient_code, role="guest", address=ADDRESS
    )
    assert "Begleitperson" in locmem_mail[0].body


def test_console_backend_prints_neither_address_nor_code(issued, settings, capsys):
    from board.invitations import send_invitation

    settings.EMAIL_BACKEND = "board.mail.PrivateConsoleBackend"
    assert send_invitation(
        issued.appointment, code=issued.patient_code, role="patient", address=ADDRESS
    )
    output = capsys.readouterr().out
    assert "e-mail not sent" in output and "1 recipient(s), 1 attachment(s)" in output
    assert ADDRESS not in output and issued.patient_code not in output


SHOW_MAIL = (
    "from django.conf import settings; "
    "print(settings.EMAIL_BACKEND, settings.EMAIL_HOST, "
    "settings.EMAIL_PORT, settings.EMAIL_USE_TLS)"
)


def test_embedded_default_uses_the_private_console_backend():
    result = run_manage(["shell", "-c", SHOW_MAIL], EMAIL_URL="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split()[0] == "board.mail.PrivateConsoleBackend"


def test_email_url_configures_smtp():
    result = run_manage(
        ["shell", "-c", SHOW_MAIL], EMAIL_URL="smtp+tls://user:pw@mail.example.org:587"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == [
        "django.core.mail.backends.smtp.EmailBackend",
        "mail.example.org",
        "587",
        "True",
    ]


# --- access helper ------------------------------------------------------------------------


def test_inactive_member_has_no_board(practice):
    user = make_member(practice, "gone", Membership.Role.STAFF)
    user.is_active = False
    user.save()
    assert not access.board_practices(user).exists()
    assert get_user_model().objects.filter(username="gone").exists()


def test_create_appointment_command_prints_german_local_time(doctor):
    at = (
        (timezone.now() + timedelta(days=10))
        .astimezone(UTC)
        .replace(hour=9, minute=0, second=0, microsecond=0)
    )
    local = at.astimezone(ZoneInfo("Europe/Berlin"))
    out = StringIO()
    call_command("create_appointment", "--doctor", "doc", "--at", at.isoformat(), stdout=out)
    assert f"{local:%d.%m.%Y, %H:%M} Uhr" in out.getvalue()
    assert at.isoformat() not in out.getvalue()
    out = StringIO()
    call_command(
        "create_appointment", "--doctor", "doc", "--at", at.isoformat(), "--json", stdout=out
    )
    assert json.loads(out.getvalue())["scheduled_at"] == at.isoformat()


def test_add_form_proposes_the_current_local_time(client, staff):
    client.force_login(staff)
    html = client.get("/admin/consultations/appointment/add/").content.decode()
    value = re.search(r'<input type="datetime-local" name="scheduled_at" value="([^"]+)"', html)[1]
    assert value == timezone.localtime().strftime("%Y-%m-%dT%H:%M") or value.startswith(
        timezone.localtime().strftime("%Y-%m-%dT%H")
    )


# --- KBV § 5 Nr. 1 and 2: the compliance checks cover the board's start ------------------


def run_check(check_id: str):
    from compliance import registry

    return registry.run_check(registry.find_check(check_id), registry.Observations())


@pytest.mark.parametrize(
    ("check_id", "requirement"),
    [("board_start_only_own_doctor", 1), ("staff_cannot_start_from_board", 2)],
)
def test_board_start_checks_pass_on_the_real_system(db, check_id, requirement):
    from compliance import registry

    (number,) = [r.number for r in registry.requirements() if check_id in {c.id for c in r.checks}]
    assert number == requirement
    finding = run_check(check_id)
    assert finding.status == "pass", finding
    assert "HTTP 403" in finding.evidence


# The two checks of the board's one-click start (Nr. 1 and Nr. 2).
BOARD_START_CHECKS = ["board_start_only_own_doctor", "staff_cannot_start_from_board"]


@override_settings(ROOT_URLCONF="tests.support.compliance_broken")
@pytest.mark.parametrize("check_id", BOARD_START_CHECKS)
def test_a_board_start_that_lets_anyone_in_fails_the_checks(db, check_id):
    finding = run_check(check_id)
    assert finding.status == "fail", finding
    assert "HTTP 302 → /call/" in finding.evidence


@override_settings(ROOT_URLCONF="tests.support.compliance_broken_noboard")
@pytest.mark.parametrize("check_id", BOARD_START_CHECKS)
def test_a_missing_board_start_fails_the_checks_with_the_reason(db, check_id):
    finding = run_check(check_id)
    assert finding.status == "fail" and "board-start" in finding.evidence, finding


# --- guests: their own QR slips and invitations ---------------------------------------------

GUEST_ADDRESSES = ["gerd.gast@example.org", "dora.dolmetscherin@example.net"]


def add_with_guests(client, doctor, guests: int, guest_emails: str, address: str = ADDRESS):
    when = timezone.localtime() + timedelta(hours=2)
    return client.post(
        "/admin/consultations/appointment/add/",
        {
            "doctor": doctor.pk,
            "scheduled_at": when.strftime("%Y-%m-%dT%H:%M"),
            "guests": str(guests),
            "invite_email": address,
            "guest_emails": guest_emails,
        },
    )


def test_every_guest_slip_has_its_own_qr_code(client, staff, doctor):
    client.force_login(staff)
    html = add_with_guests(client, doctor, 2, "", address="").content.decode()
    guest_codes = re.findall(r'data-role="guest-code">([0-9A-Z-]{14})<', html)
    assert len(guest_codes) == 2
    qrs = re.findall(r'data-role="guest-qr"><img class="rc-qr" src="([^"]+)"', html)
    assert len(qrs) == 2 and len(set(qrs)) == 2
    for code, uri in zip(guest_codes, qrs, strict=True):
        assert uri == links.qr_data_uri(code)  # the QR opens the join page with that code


def test_guests_get_one_invitation_each_with_their_own_code(client, staff, doctor, locmem_mail):
    client.force_login(staff)
    response = add_with_guests(client, doctor, 2, "\n".join(GUEST_ADDRESSES))
    html = response.content.decode()
    assert "Alle 3 Einladungen wurden per E-Mail verschickt." in html
    patient_code = re.search(r'data-role="patient-code">([0-9A-Z-]{14})<', html)[1]
    guest_codes = re.findall(r'data-role="guest-code">([0-9A-Z-]{14})<', html)
    by_address = {message.to[0]: message for message in locmem_mail}
    assert set(by_address) == {ADDRESS, *GUEST_ADDRESSES}
    assert f"#code={patient_code}" in by_address[ADDRESS].body
    assert "Begleitperson" not in by_address[ADDRESS].body
    for address, code in zip(GUEST_ADDRESSES, guest_codes, strict=True):
        body = by_address[address].body
        assert f"#code={code}" in body and "Begleitperson" in body
        assert patient_code not in body
    assert not any(address in database_text() for address in GUEST_ADDRESSES)


def test_fewer_guest_addresses_than_guests_invite_only_those(client, staff, doctor, locmem_mail):
    client.force_login(staff)
    html = add_with_guests(client, doctor, 2, GUEST_ADDRESSES[0], address="").content.decode()
    first_guest_code = re.findall(r'data-role="guest-code">([0-9A-Z-]{14})<', html)[0]
    assert [message.to for message in locmem_mail] == [[GUEST_ADDRESSES[0]]]
    assert f"#code={first_guest_code}" in locmem_mail[0].body


def add_guest_code(client, appointment, **fields):
    return client.post(
        "/admin/consultations/appointment/",
        {"action": "add_guest_code", "_selected_action": [str(appointment.pk)], **fields},
        HTTP_ACCEPT_LANGUAGE="de",
    )


def test_a_guest_code_added_later_can_be_sent_as_an_invitation(client, staff, issued, locmem_mail):
    client.force_login(staff)
    response = add_guest_code(client, issued.appointment, confirm="yes", email=GUEST_ADDRESSES[0])
    html = response.content.decode()
    (code,) = re.findall(r'data-role="guest-code">([0-9A-Z-]{14})<', html)
    assert "Die Einladung wurde per E-Mail verschickt." in html
    assert [message.to for message in locmem_mail] == [[GUEST_ADDRESSES[0]]]
    body = locmem_mail[0].body
    assert f"#code={code}" in body and "Begleitperson" in body
    assert GUEST_ADDRESSES[0] not in database_text()


def test_a_bad_address_for_a_later_guest_code_issues_nothing(client, staff, issued, locmem_mail):
    client.force_login(staff)
    response = add_guest_code(client, issued.appointment, confirm="yes", email="kein-gast")
    assert response.status_code == 200
    assert "gültige E-Mail-Adresse" in response.content.decode()
    assert issued.appointment.guest_codes.count() == 0 and locmem_mail == []


def test_several_appointments_get_guest_codes_without_an_address_field(
    client, staff, doctor, locmem_mail
):
    client.force_login(staff)
    first, second = (services.create_appointment(doctor=doctor) for _ in range(2))
    ids = [str(first.appointment.pk), str(second.appointment.pk)]
    page = client.post(
        "/admin/consultations/appointment/",
        {"action": "add_guest_code", "_selected_action": ids},
        HTTP_ACCEPT_LANGUAGE="de",
    ).content.decode()
    assert 'name="email"' not in page and "jeden dieser 2 Termine" in page
    response = client.post(
        "/admin/consultations/appointment/",
        {"action": "add_guest_code", "_selected_action": ids, "confirm": "yes", "email": ADDRESS},
    )
    assert len(re.findall(r'data-role="guest-code">', response.content.decode())) == 2
    assert locmem_mail == []  # an address belongs to one guest of one appointment


@pytest.mark.parametrize(
    ("guests", "guest_emails", "error"),
    [
        (1, "\n".join(GUEST_ADDRESSES), "Mehr Adressen als Gäste"),
        (0, GUEST_ADDRESSES[0], "Mehr Adressen als Gäste"),
        (2, "gerd.gast@example.org\nkein-gast", "gültige E-Mail-Adresse"),
    ],
)
def test_bad_guest_addresses_are_refused_and_nothing_is_created(
    client, staff, doctor, locmem_mail, guests, guest_emails, error
):
    client.force_login(staff)
    response = add_with_guests(client, doctor, guests, guest_emails)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Appointment.objects.exists()
    assert locmem_mail == []


def test_a_failing_mail_server_is_reported_for_guests_too(client, staff, doctor, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    client.force_login(staff)
    html = add_with_guests(client, doctor, 1, GUEST_ADDRESSES[0]).content.decode()
    assert "2 von 2 Einladungs-E-Mails konnten nicht verschickt werden" in html
    assert not any(address in html for address in (ADDRESS, *GUEST_ADDRESSES))
    assert Appointment.objects.count() == 1
