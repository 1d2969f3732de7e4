"""Issue 11 item 7: the first TOTP device needs a one-time enrolment code from a
superuser (command or admin action), valid at most 24 hours; the password alone is not
enough, and no secret is shown before the code was accepted."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from redconnect import twofactor
from tests.conftest import PASSWORD
from tests.test_admin_2fa import (
    ENROLL,
    INDEX,
    LOGIN,
    admin_reachable,
    code,
    is_logged_in,
    log_in,
    required,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def shows_secret(response) -> bool:
    html = response.content.decode()
    return 'id="otp-secret"' in html or 'id="otp-qr"' in html


def present(client, enrollment_code: str):
    return client.post(ENROLL, {"enrollment_code": enrollment_code}, HTTP_ACCEPT_LANGUAGE="de")


def enrol(client, user) -> TOTPDevice:
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    assert client.post(ENROLL, {"otp_token": code(device)}).status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    return device


@required
def test_the_password_alone_shows_no_secret_and_enrols_nothing(client, clock, doctor):
    assert log_in(client, doctor).status_code == 302
    page = client.get(ENROLL, HTTP_ACCEPT_LANGUAGE="de")
    assert page.status_code == 200
    assert not shows_secret(page)
    assert "Einrichtungscode" in page.content.decode()
    assert not TOTPDevice.objects.filter(user=doctor).exists()
    # a TOTP post without an accepted code does not confirm anything
    assert client.post(ENROLL, {"otp_token": "123456"}).status_code == 200
    assert not TOTPDevice.objects.filter(user=doctor, confirmed=True).exists()
    assert not is_logged_in(client)


@required
def test_a_valid_code_leads_to_the_secret_and_to_the_admin(client, clock, doctor):
    log_in(client, doctor)
    enrollment_code, _ = twofactor.issue_enrollment_code(doctor)
    assert present(client, enrollment_code).status_code == 302
    page = client.get(ENROLL)
    assert shows_secret(page)
    enrol(client, doctor)
    assert admin_reachable(client)


@required
@pytest.mark.parametrize("tamper", ["garbage", "other-user", "truncated"])
def test_invalid_codes_are_refused_in_german(client, clock, doctor, staff, tamper):
    log_in(client, doctor)
    valid, _ = twofactor.issue_enrollment_code(staff if tamper == "other-user" else doctor)
    presented = {"garbage": "ABCD-1234", "other-user": valid, "truncated": valid[:-3]}[tamper]
    response = present(client, presented)
    assert response.status_code == 200
    assert "Einrichtungscode ist ungültig" in response.content.decode()
    assert not shows_secret(response) and not shows_secret(client.get(ENROLL))


@required
def test_a_code_expires_after_24_hours(client, clock, doctor):
    enrollment_code, expires_at = twofactor.issue_enrollment_code(doctor)
    assert expires_at - timezone.now() == timedelta(hours=24)
    clock.shift(timedelta(hours=23, minutes=59))
    assert twofactor.check_enrollment_code(doctor, enrollment_code)
    clock.shift(timedelta(minutes=1, seconds=1))
    log_in(client, doctor)
    assert present(client, enrollment_code).status_code == 200
    assert not shows_secret(client.get(ENROLL))


@required
def test_a_code_works_once(client, clock, doctor):
    enrollment_code, _ = twofactor.issue_enrollment_code(doctor)
    log_in(client, doctor)
    present(client, enrollment_code)
    client.get(ENROLL)
    enrol(client, doctor)
    # The device is lost and removed by an administrator; the old link does not come back.
    TOTPDevice.objects.filter(user=doctor).delete()
    other = Client()
    clock.shift(timedelta(minutes=1))
    log_in(other, doctor)
    assert present(other, enrollment_code).status_code == 200
    assert not shows_secret(other.get(ENROLL))


@required
def test_the_link_opened_before_logging_in_comes_back_after_the_password(client, clock, doctor):
    enrollment_code, _ = twofactor.issue_enrollment_code(doctor)
    link = urlsplit(twofactor.enrollment_link(enrollment_code))
    first = client.get(f"{link.path}?{link.query}")
    assert first.status_code == 302 and first["Location"].startswith(LOGIN)
    next_url = re.search(r"next=([^&]+)", first["Location"]).group(1)
    from urllib.parse import unquote

    login = client.post(
        LOGIN, {"username": "doc", "password": PASSWORD, "otp_token": "", "next": unquote(next_url)}
    )
    assert login.status_code == 302 and login["Location"].startswith(ENROLL + "?code=")
    assert client.get(login["Location"]).status_code == 302  # code accepted, removed from URL
    assert shows_secret(client.get(ENROLL))
    enrol(client, doctor)
    assert client.get(INDEX).status_code == 200


@required
def test_secrets_shown_before_the_code_are_not_reused(client, clock, doctor):
    # An unconfirmed device from the old password-only flow (its secret may be known).
    old = TOTPDevice.objects.create(user=doctor, name="x", confirmed=False)
    log_in(client, doctor)
    present(client, twofactor.issue_enrollment_code(doctor)[0])
    client.get(ENROLL)
    assert not TOTPDevice.objects.filter(pk=old.pk).exists()


def test_optional_mode_voluntary_enrolment_needs_a_code_too(client, clock, doctor):
    assert log_in(client, doctor).status_code == 302  # http default: password only
    assert not shows_secret(client.get(ENROLL))
    present(client, twofactor.issue_enrollment_code(doctor)[0])
    assert shows_secret(client.get(ENROLL))


def test_wrong_codes_count_towards_the_lock_out(client, clock, doctor):
    log_in(client, doctor)
    for _ in range(10):
        present(client, "wrong")
    response = present(client, twofactor.issue_enrollment_code(doctor)[0])
    assert "Zu viele fehlgeschlagene Anmeldeversuche" in response.content.decode()


def test_the_command_issues_a_link(doctor, capsys):
    call_command("issue_enrollment", "doc", "--json")
    payload = json.loads(capsys.readouterr().out)
    assert payload["username"] == "doc"
    assert payload["link"].startswith("http://127.0.0.1:8000/admin/2fa/enroll/?code=")
    assert twofactor.check_enrollment_code(doctor, payload["code"])


def test_the_command_refuses_unknown_users(db):
    with pytest.raises(CommandError):
        call_command("issue_enrollment", "nobody")


def test_the_superuser_admin_action_issues_links(client, superuser, doctor):
    client.force_login(superuser)
    changelist = reverse("admin:auth_user_changelist")
    response = client.post(
        changelist, {"action": "issue_enrollment_links", "_selected_action": [doctor.pk]}
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    link = re.search(r'class="rc-enrollment-link">([^<]+)<', response.content.decode()).group(1)
    enrollment_code = re.search(r"code=([^&]+)", link.replace("&amp;", "&")).group(1)
    from urllib.parse import unquote

    assert twofactor.check_enrollment_code(doctor, unquote(enrollment_code))


def test_the_action_is_for_superusers_only(client, doctor, staff):
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(*Permission.objects.filter(codename__endswith="_user"))
    client.force_login(staff)
    response = client.get(reverse("admin:auth_user_changelist"))
    assert response.status_code == 200
    assert "issue_enrollment_links" not in response.content.decode()
