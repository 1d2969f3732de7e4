"""The join page (`GET/POST /`) and the call page (`GET /call/`): contract "HTTP"."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from consultations import joinsession, ratelimit, services
from consultations.forms import INVALID_CODE
from consultations.views import PENDING_COOKIE
from tests.conftest import PASSWORD

PATIENT_NAME = "Paula Patientin"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The personas are created with passwords; the default hasher costs ~0.3 s per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def post_join(client, code, name=PATIENT_NAME, consent=True, **extra):
    data = {"code": code, "name": name}
    if consent:
        data["consent"] = "on"
    return client.post("/", data, **extra)


def login(client, user) -> None:
    assert client.login(username=user.username, password=PASSWORD)


def join_cookie(response):
    return response.cookies[settings.JOIN_COOKIE_NAME]


def errors_of(response) -> str:
    """The text of the form's error lists (field and non-field)."""
    html = response.content.decode()
    return " ".join(re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', html, re.S))


def cache_contents() -> str:
    """Every key and value in the cache, as text (locmem or Redis)."""
    backend = cache._cache if hasattr(cache, "_cache") else None
    if isinstance(backend, dict):  # LocMemCache
        return repr(list(backend.items()))
    client = cache._cache.get_client()
    return repr([(key, client.get(key)) for key in client.keys("*")])


# --- The form -------------------------------------------------------------------------


def test_join_page_is_a_german_form_with_csrf_and_public_links(client, db):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<html lang="de">' in html
    for field in ('name="name"', 'name="code"', 'name="consent"', "csrfmiddlewaretoken"):
        assert field in html
    assert 'type="checkbox"' in html
    for path in ("/nutzungsbedingungen/", "/datenschutz/", "/faq/", "/impressum/"):
        assert f'href="{path}"' in html
    assert "Zugangscode" in html  # German labels from the catalogue
    assert "no-store" in response["Cache-Control"]


def test_join_needs_the_csrf_token(issued):
    strict = Client(enforce_csrf_checks=True)
    assert post_join(strict, issued.patient_code).status_code == 403


# --- Patients -------------------------------------------------------------------------


def test_patient_joins_with_code_name_and_consent(client, issued):
    response = post_join(client, issued.patient_code, name="  Paula Patientin  ")
    assert response.status_code == 302 and response["Location"] == "/call/"
    cookie = join_cookie(response)
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]
    # A browser-session cookie (issue 11 item 2): closing the browser ends the join, so
    # the next user of a shared computer is not let in.
    assert not cookie["max-age"] and not cookie["expires"]
    join = joinsession.read_join(cookie.value)
    assert join.role == "patient" and join.display_name == "Paula Patientin"
    assert join.appointment_id == str(issued.appointment.pk) and join.user_id is None


def test_code_is_normalised(client, issued):
    typed = issued.patient_code.lower().replace("-", " ")
    assert post_join(client, typed).status_code == 302


def test_patient_join_stores_nothing_server_side(client, issued):
    response = post_join(client, issued.patient_code)
    assert response.status_code == 302
    assert client.get("/call/").status_code == 200
    assert Session.objects.count() == 0
    stored = cache_contents()
    assert PATIENT_NAME not in stored and str(issued.appointment.pk) not in stored


def test_join_cookie_is_secure_on_https(client, issued, settings):
    settings.PUBLIC_HTTPS = True
    response = post_join(client, issued.patient_code)
    assert join_cookie(response)["secure"]


@pytest.mark.parametrize("name", ["", "   ", "\t"])
def test_patient_needs_a_name(client, issued, name):
    response = post_join(client, issued.patient_code, name=name)
    assert response.status_code == 200
    assert response.context["form"].has_error("name")
    assert settings.JOIN_COOKIE_NAME not in response.cookies


def test_patient_needs_consent(client, issued):
    response = post_join(client, issued.patient_code, consent=False)
    assert response.status_code == 200
    assert response.context["form"].has_error("consent")
    assert settings.JOIN_COOKIE_NAME not in response.cookies


def test_missing_code_is_a_field_error(client, db):
    response = client.post("/", {"name": PATIENT_NAME, "consent": "on"})
    assert response.status_code == 200 and response.context["form"].has_error("code")


def test_consent_links_to_the_privacy_notice(client, db):
    html = client.get("/").content.decode()
    consent = html[html.index('name="consent"') :]
    assert 'href="/datenschutz/"' in consent[: consent.index("</div>")]


# --- Invalid codes: one message for all -----------------------------------------------


def refused_message(response) -> str:
    assert response.status_code == 200
    assert settings.JOIN_COOKIE_NAME not in response.cookies
    form = response.context["form"]
    assert form.non_field_errors() == [str(INVALID_CODE)]
    return errors_of(response)


def test_unknown_expired_cancelled_and_malformed_codes_get_one_identical_error(client, doctor):
    unknown = refused_message(post_join(client, "7KQ2-M9XD-4TNF"))
    malformed = refused_message(post_join(client, "nonsense"))
    cancelled = services.create_appointment(doctor=doctor)
    services.cancel_appointment(cancelled.appointment)
    cancelled_error = refused_message(post_join(client, cancelled.patient_code))
    expired = services.create_appointment(doctor=doctor)
    with time_machine.travel(expired.appointment.expires_at + timedelta(seconds=1)):
        expired_error = refused_message(post_join(client, expired.patient_code))
    assert unknown == malformed == cancelled_error == expired_error
    assert "ungültig" in unknown or "abgelaufen" in unknown


def test_the_error_does_not_name_the_part_that_was_wrong(client, db):
    message = str(INVALID_CODE).lower()
    for revealing in ("cancel", "storn", "unknown", "unbekannt", "format"):
        assert revealing not in message
    assert "ungültig" in refused_message(post_join(client, "7KQ2-M9XD-4TNF"))


# --- Doctors --------------------------------------------------------------------------


def test_doctor_joins_own_appointment_with_account_name(client, issued, doctor):
    login(client, doctor)
    response = post_join(client, issued.doctor_code, name="", consent=False)
    assert response.status_code == 302 and response["Location"] == "/call/"
    join = joinsession.read_join(join_cookie(response).value)
    assert join.role == "doctor" and join.user_id == doctor.pk
    assert join.display_name == "Dora Doktor"


def test_doctor_name_field_is_ignored(client, issued, doctor):
    login(client, doctor)
    response = post_join(client, issued.doctor_code, name="Somebody Else")
    assert joinsession.read_join(join_cookie(response).value).display_name == "Dora Doktor"


def test_doctor_without_full_name_is_shown_by_username(client, practice):
    from tests.conftest import make_member

    plain = make_member(practice, "drplain", "doctor")
    issued = services.create_appointment(doctor=plain)
    login(client, plain)
    response = post_join(client, issued.doctor_code)
    assert joinsession.read_join(join_cookie(response).value).display_name == "drplain"


def test_doctor_code_without_login_goes_to_login_and_back(client, issued, doctor):
    response = post_join(client, issued.doctor_code, name="")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/"
    assert settings.JOIN_COOKIE_NAME not in response.cookies
    # After the login the doctor lands on the join page, which completes the join.
    response = client.post(
        "/admin/login/?next=/", {"username": "doc", "password": PASSWORD, "next": "/"}
    )
    assert response.status_code == 302 and response["Location"] == "/"
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/call/"
    assert joinsession.read_join(join_cookie(response).value).user_id == doctor.pk
    assert client.get("/call/").status_code == 200


def test_pending_doctor_join_does_not_help_another_user(client, issued, staff):
    post_join(client, issued.doctor_code)
    login(client, staff)
    response = client.get("/")
    assert response.status_code == 200
    assert settings.JOIN_COOKIE_NAME not in response.cookies
    assert response.cookies[PENDING_COOKIE].value == ""  # deleted


@pytest.mark.parametrize(
    "persona", ["staff", "auditor", "second_doctor", "other_practice_doctor", "superuser"]
)
def test_doctor_code_is_refused_for_anyone_but_its_doctor(client, issued, persona, request):
    login(client, request.getfixturevalue(persona))
    response = post_join(client, issued.doctor_code)
    assert response.status_code == 403
    assert settings.JOIN_COOKIE_NAME not in response.cookies


def test_doctor_who_left_the_practice_is_refused(client, issued, doctor):
    doctor.memberships.all().delete()
    login(client, doctor)
    assert post_join(client, issued.doctor_code).status_code == 403


def test_doctor_code_needs_otp_where_2fa_is_mandatory(client, issued, doctor, settings):
    settings.OTP_REQUIRED = True
    login(client, doctor)  # password only, no TOTP device verified
    response = post_join(client, issued.doctor_code)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


# --- Rate limit -----------------------------------------------------------------------


def fail(client, times: int, **extra) -> None:
    for _ in range(times):
        assert post_join(client, "7KQ2-M9XD-4TNF", **extra).status_code == 200


def test_twenty_failures_block_the_client_even_for_valid_codes(client, issued):
    fail(client, settings.JOIN_FAILURE_LIMIT)
    response = post_join(client, issued.patient_code)
    assert response.status_code == 429
    assert settings.JOIN_COOKIE_NAME not in response.cookies
    assert post_join(client, "7KQ2-M9XD-4TNF").status_code == 429


def test_nineteen_failures_do_not_block(client, issued):
    fail(client, settings.JOIN_FAILURE_LIMIT - 1)
    assert post_join(client, issued.patient_code).status_code == 302


def test_valid_codes_do_not_count_as_failures(client, issued):
    for _ in range(settings.JOIN_FAILURE_LIMIT + 5):
        assert post_join(client, issued.patient_code).status_code == 302


def test_a_blocked_client_does_not_block_others(client, issued):
    fail(client, settings.JOIN_FAILURE_LIMIT)
    assert post_join(client, issued.patient_code).status_code == 429
    other = Client(REMOTE_ADDR="198.51.100.7")
    assert post_join(other, issued.patient_code).status_code == 302


def test_block_ends_when_the_window_has_passed(client, issued):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        fail(client, settings.JOIN_FAILURE_LIMIT)
        clock.shift(settings.JOIN_FAILURE_WINDOW - 5)
        assert post_join(client, issued.patient_code).status_code == 429
        clock.shift(6)
        assert post_join(client, issued.patient_code).status_code == 302


def test_window_slides_with_the_failures(client, issued):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        fail(client, settings.JOIN_FAILURE_LIMIT - 1)
        clock.shift(9 * 60)
        fail(client, 1)  # 20 failures within 10 minutes
        assert post_join(client, issued.patient_code).status_code == 429
        clock.shift(61)  # the first 19 have left the window, the last one has not
        assert post_join(client, issued.patient_code).status_code == 302


def test_blocked_page_is_german(client, db):
    fail(client, settings.JOIN_FAILURE_LIMIT)
    response = post_join(client, "7KQ2-M9XD-4TNF")
    assert response.status_code == 429 and "Versuche" in errors_of(response)


def test_behind_proxy_the_last_forwarded_address_tells_clients_apart(client, issued, settings):
    settings.PROXY_HEADERS = True
    fail(client, settings.JOIN_FAILURE_LIMIT, HTTP_X_FORWARDED_FOR="10.1.1.1, 203.0.113.5")
    # A forged left part does not escape the limit …
    forged = {"HTTP_X_FORWARDED_FOR": "10.9.9.9, 203.0.113.5"}
    assert post_join(client, issued.patient_code, **forged).status_code == 429
    # … while another client behind the same proxy is unaffected.
    other = {"HTTP_X_FORWARDED_FOR": "10.1.1.1, 203.0.113.6"}
    assert post_join(client, issued.patient_code, **other).status_code == 302


def test_without_proxy_headers_forwarded_for_is_ignored(client, issued):
    fail(client, settings.JOIN_FAILURE_LIMIT, HTTP_X_FORWARDED_FOR="203.0.113.5")
    other = {"HTTP_X_FORWARDED_FOR": "203.0.113.6"}
    assert post_join(client, issued.patient_code, **other).status_code == 429


def test_counters_hold_a_keyed_hash_never_the_address(client, db):
    fail(client, 3, REMOTE_ADDR="192.0.2.44")
    stored = cache_contents()
    assert "192.0.2.44" not in stored
    request = Client(REMOTE_ADDR="192.0.2.44").get("/").wsgi_request
    assert ratelimit.client_id(request) in stored
    with_other_key = settings.SECRET_KEY + "x"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(settings, "SECRET_KEY", with_other_key)
        assert ratelimit.client_id(request) not in stored


# --- The call page --------------------------------------------------------------------


def test_call_page_needs_a_join_session(client, db):
    response = client.get("/call/")
    assert response.status_code == 302 and response["Location"] == "/"


def test_call_page_refuses_a_forged_cookie(client, issued):
    post_join(client, issued.patient_code)
    value = client.cookies[settings.JOIN_COOKIE_NAME].value
    client.cookies[settings.JOIN_COOKIE_NAME] = value[:-2] + ("AA" if value[-2:] != "AA" else "BB")
    assert client.get("/call/")["Location"] == "/"


def test_call_page_shows_role_name_and_appointment(client, issued):
    post_join(client, issued.patient_code)
    response = client.get("/call/")
    assert response.status_code == 200
    assert response.context["role"] == "patient"
    assert response.context["display_name"] == PATIENT_NAME
    assert response.context["appointment"] == issued.appointment
    assert response.context["ws_path"] == "/ws/call/"
    assert "no-store" in response["Cache-Control"]


def test_call_page_ends_with_a_cancelled_appointment(client, issued):
    post_join(client, issued.patient_code)
    services.cancel_appointment(issued.appointment)
    assert client.get("/call/")["Location"] == "/"


def test_call_page_ends_with_an_expired_appointment(client, issued):
    post_join(client, issued.patient_code)
    with time_machine.travel(issued.appointment.expires_at + timedelta(seconds=1)):
        assert client.get("/call/")["Location"] == "/"


def test_doctor_call_page_is_bound_to_the_doctor_login(client, issued, doctor, staff):
    login(client, doctor)
    post_join(client, issued.doctor_code)
    assert client.get("/call/").status_code == 200
    client.logout()
    assert client.get("/call/")["Location"] == "/"


def test_doctor_join_cookie_does_not_work_for_another_login(client, issued, doctor, staff):
    login(client, doctor)
    cookie = post_join(client, issued.doctor_code).cookies[settings.JOIN_COOKIE_NAME].value
    other = Client()
    login(other, staff)
    other.cookies[settings.JOIN_COOKIE_NAME] = cookie
    assert other.get("/call/")["Location"] == "/"


# --- Guests and re-issue (issues 11 and 12) --------------------------------------------


@pytest.fixture
def with_guests(doctor) -> services.IssuedAppointment:
    return services.create_appointment(doctor=doctor, guests=2)


def test_guest_code_joins_as_guest_on_its_own_seat(client, with_guests):
    response = post_join(client, with_guests.guest_codes[1], name="  Gerd Gast ")
    assert response.status_code == 302 and response["Location"] == "/call/"
    join = joinsession.read_join(join_cookie(response).value)
    assert join.role == "guest" and join.display_name == "Gerd Gast"
    assert join.guest_slot == 1 and join.seat == "guest-1" and join.user_id is None
    assert client.get("/call/").status_code == 200


@pytest.mark.parametrize("name", ["", "   "])
def test_guest_needs_a_name_and_consent(client, with_guests, name):
    assert post_join(client, with_guests.guest_codes[0], name=name).status_code == 200
    assert post_join(client, with_guests.guest_codes[0], consent=False).status_code == 200
    assert settings.JOIN_COOKIE_NAME not in client.cookies


def test_guest_codes_of_one_appointment_do_not_open_another(client, doctor, with_guests):
    other = services.create_appointment(doctor=doctor, guests=1)
    match = services.find_by_code(other.guest_codes[0])
    assert match.appointment == other.appointment
    post_join(client, with_guests.guest_codes[0])
    join = joinsession.read_join(client.cookies[settings.JOIN_COOKIE_NAME].value)
    assert join.appointment_id == str(with_guests.appointment.pk)


def test_guest_codes_die_with_the_appointment(client, with_guests):
    services.cancel_appointment(with_guests.appointment)
    response = post_join(client, with_guests.guest_codes[0])
    assert response.status_code == 200 and "ungültig" in errors_of(response)
    with time_machine.travel(with_guests.appointment.expires_at + timedelta(seconds=1)):
        assert services.find_by_code(with_guests.guest_codes[1]) is None


def test_reissue_ends_patient_and_guest_joins_but_not_the_doctors(client, with_guests, doctor):
    patient, guest = Client(), Client()
    post_join(patient, with_guests.patient_code)
    post_join(guest, with_guests.guest_codes[0])
    login(client, doctor)
    assert post_join(client, with_guests.doctor_code, name="").status_code == 302
    issued = services.reissue_codes(with_guests.appointment)
    for browser in (patient, guest):
        response = browser.get("/call/")
        assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/call/").status_code == 200  # bound to the doctor's login
    # A new join with the new codes works, a forged "old version" cookie does not.
    fresh = Client()
    assert post_join(fresh, issued.patient_code).status_code == 302
    assert fresh.get("/call/").status_code == 200
    join = joinsession.read_join(fresh.cookies[settings.JOIN_COOKIE_NAME].value)
    assert join.codes_version == 2
    stale = joinsession.JoinData(join.appointment_id, "patient", "P", join_id="x", codes_version=1)
    assert joinsession.check_join(stale, None).close_code == 4001
