"""Admin login with a TOTP second factor (django-otp), enrollment and login throttling."""

from __future__ import annotations

import re
from base64 import b32encode
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import override_settings
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from redconnect import twofactor
from tests.conftest import PASSWORD

LOGIN = reverse("admin:login")
INDEX = reverse("admin:index")
ENROLL = reverse("admin:otp_enroll")
required = override_settings(OTP_REQUIRED=True)


@pytest.fixture(autouse=True)
def _fresh_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Many logins per test: a cheap hasher (set up before the persona fixtures hash)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def add_device(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def code(device: TOTPDevice) -> str:
    device.refresh_from_db()
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def wrong(device: TOTPDevice) -> str:
    return f"{(int(code(device)) + 1) % 1_000_000:06d}"


def log_in(client, user, token: str = "", password: str = PASSWORD, **extra):
    data = {"username": user.username, "password": password, "otp_token": token, "next": INDEX}
    return client.post(LOGIN, data, **extra)


def authorise(client, user, next_url: str = "") -> None:
    """Present a superuser's enrolment code (as the link does) in this session."""
    code, _expires = twofactor.issue_enrollment_code(user)
    query = {"code": code, **({"next": next_url} if next_url else {})}
    response = client.get(ENROLL, query)
    assert response.status_code == 302, response.status_code


def is_logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def admin_reachable(client) -> bool:
    return client.get(INDEX).status_code == 200


# --- the form -------------------------------------------------------------------------


def test_login_page_has_the_one_time_code_field_in_german(client):
    page = client.get(LOGIN, HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert 'name="otp_token"' in page
    assert "Einmalcode" in page
    assert 'autocomplete="one-time-code"' in page


@pytest.mark.parametrize("missing", ["username", "password"])
def test_incomplete_login_form_shows_field_errors(client, doctor, missing):
    data = {"username": "doc", "password": PASSWORD, "otp_token": ""}
    data[missing] = ""
    response = client.post(LOGIN, data)
    assert response.status_code == 200
    assert missing in response.context["form"].errors
    assert not is_logged_in(client)


# --- mandatory 2FA (https deployments) ------------------------------------------------


@required
@pytest.mark.parametrize("persona", ["doctor", "staff", "auditor"])
def test_login_without_code_is_refused(client, clock, persona, request):
    user = request.getfixturevalue(persona)
    add_device(user)
    response = log_in(client, user)
    assert response.status_code == 200
    assert response.context["form"].errors
    assert not is_logged_in(client)
    assert client.get(INDEX).status_code == 302


@required
@pytest.mark.parametrize("persona", ["doctor", "staff", "auditor", "superuser"])
def test_login_with_valid_code_is_accepted(client, clock, persona, request):
    user = request.getfixturevalue(persona)
    device = add_device(user)
    response = log_in(client, user, code(device))
    assert response.status_code == 302
    assert response["Location"] == INDEX
    assert admin_reachable(client)
    assert client.session["otp_device_id"] == device.persistent_id


@required
def test_wrong_code_is_refused(client, clock, doctor):
    device = add_device(doctor)
    response = log_in(client, doctor, wrong(device), HTTP_ACCEPT_LANGUAGE="de")
    assert response.status_code == 200
    assert "Einmalcode" in response.content.decode()
    assert not is_logged_in(client)


@required
def test_a_code_cannot_be_used_twice(client, clock, doctor):
    device = add_device(doctor)
    token = code(device)
    assert log_in(client, doctor, token).status_code == 302
    client.logout()
    assert log_in(client, doctor, token).status_code == 200
    assert not is_logged_in(client)


@required
def test_code_with_wrong_password_is_refused(client, clock, doctor):
    device = add_device(doctor)
    response = log_in(client, doctor, code(device), password="wrong-password-123")
    assert response.status_code == 200
    assert not is_logged_in(client)


@required
def test_password_only_session_cannot_use_the_admin(client, doctor):
    add_device(doctor)
    client.force_login(doctor)  # a session without the second factor
    response = client.get(INDEX)
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)


# --- enrollment -----------------------------------------------------------------------


@required
def test_first_login_leads_to_enrollment_without_logging_in(client, clock, doctor):
    response = log_in(client, doctor)
    assert response.status_code == 302
    assert response["Location"].startswith(ENROLL)
    # Not logged in yet: a password alone must not open the admin or a call.
    assert not is_logged_in(client)
    assert client.get(INDEX).status_code == 302


@required
def test_enrollment_flow(client, clock, doctor):
    log_in(client, doctor)
    authorise(client, doctor)
    page = client.get(ENROLL, HTTP_ACCEPT_LANGUAGE="de")
    assert page.status_code == 200
    html = page.content.decode()
    device = TOTPDevice.objects.get(user=doctor)
    assert not device.confirmed
    assert re.search(r'<img src="data:image/svg\+xml;[^"]+"', html)
    secret = b32encode(device.bin_key).decode().rstrip("=")
    shown = re.search(r'<code id="otp-secret">([^<]+)</code>', html).group(1)
    assert shown.replace(" ", "") == secret
    assert "Einmalcode" in html
    # reloading shows the same secret (the QR code already scanned stays valid)
    assert secret in client.get(ENROLL).content.decode().replace(" ", "")

    wrong_code = client.post(ENROLL, {"otp_token": wrong(device)})
    assert wrong_code.status_code == 200
    assert not is_logged_in(client)

    clock.shift(timedelta(seconds=30))  # django-otp backs off after a failure
    confirmed = client.post(ENROLL, {"otp_token": code(device), "next": INDEX})
    assert confirmed.status_code == 302
    assert confirmed["Location"] == INDEX
    assert admin_reachable(client)
    device.refresh_from_db()
    assert device.confirmed

    # from now on the login needs the code
    client.logout()
    clock.shift(timedelta(seconds=30))
    assert log_in(client, doctor).status_code == 200
    assert log_in(client, doctor, code(device)).status_code == 302


@required
def test_enrollment_keeps_the_next_url(client, clock, doctor):
    target = reverse("admin:consultations_appointment_changelist")
    response = client.post(
        LOGIN,
        {"username": "doc", "password": PASSWORD, "otp_token": "", "next": target},
    )
    assert "next=" in response["Location"]
    authorise(client, doctor, next_url=target)
    client.get(response["Location"])
    device = TOTPDevice.objects.get(user=doctor)
    confirmed = client.post(response["Location"], {"otp_token": code(device)})
    assert confirmed["Location"] == target


@required
def test_enrollment_refuses_a_foreign_next_url(client, clock, doctor):
    log_in(client, doctor)
    authorise(client, doctor)
    client.get(ENROLL)
    device = TOTPDevice.objects.get(user=doctor)
    confirmed = client.post(ENROLL, {"otp_token": code(device), "next": "https://evil.example/"})
    assert confirmed["Location"] == INDEX


def test_enrollment_page_needs_a_password_check_first(client, doctor):
    response = client.get(ENROLL)
    assert response.status_code == 302
    assert response["Location"] == LOGIN
    assert not TOTPDevice.objects.exists()


@required
def test_pending_enrollment_expires(client, clock, doctor):
    log_in(client, doctor)
    clock.shift(timedelta(seconds=twofactor.PENDING_MAX_AGE + 1))
    assert client.get(ENROLL).status_code == 302


@required
def test_user_with_a_device_cannot_enroll_another_by_password(client, clock, doctor):
    device = add_device(doctor)
    # a pending marker cannot be obtained: the login form demands the code instead
    assert log_in(client, doctor).status_code == 200
    assert client.get(ENROLL).status_code == 302
    assert list(TOTPDevice.objects.filter(user=doctor)) == [device]


@required
def test_session_from_before_2fa_was_mandatory_is_sent_to_enrollment(client, doctor):
    client.force_login(doctor)
    response = client.get(INDEX)
    assert response.status_code == 302
    follow = client.get(response["Location"])
    assert follow.status_code == 302
    assert follow["Location"] == ENROLL


# --- optional 2FA (embedded http default) ---------------------------------------------


def test_optional_mode_logs_in_with_password_only(client, settings, doctor):
    assert settings.OTP_REQUIRED is False
    response = log_in(client, doctor)
    assert response.status_code == 302
    assert admin_reachable(client)
    assert not TOTPDevice.objects.exists()


def test_optional_mode_still_requires_the_code_of_a_configured_device(client, clock, doctor):
    device = add_device(doctor)
    assert log_in(client, doctor).status_code == 200
    assert not is_logged_in(client)
    assert log_in(client, doctor, code(device)).status_code == 302
    assert admin_reachable(client)


def test_optional_mode_logged_in_user_may_enroll(client, clock, doctor):
    log_in(client, doctor)
    authorise(client, doctor)
    assert client.get(ENROLL).status_code == 200
    device = TOTPDevice.objects.get(user=doctor)
    assert client.post(ENROLL, {"otp_token": code(device)}).status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    assert admin_reachable(client)  # the session is now verified
    # enrolled users get no second device by this page
    assert client.get(ENROLL).status_code == 302


# Lock-out after failed logins: tests/test_login_lockout.py.
