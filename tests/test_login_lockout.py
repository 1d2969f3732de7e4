"""Issue 11 item 6: admin logins lock out by (account, client) — django-axes.

After at most 10 failures for one account from one client within 15 minutes that
client gets no login for that account for at least 5 minutes, even with the right
password; other clients are unaffected. A wrong password and a wrong one-time code give
one and the same error. Neither the database nor the cache holds a client address.
"""

from __future__ import annotations

import pickle
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.cache import cache
from django.test import Client

from tests.conftest import PASSWORD
from tests.test_admin_2fa import (
    INDEX,
    add_device,
    code,
    is_logged_in,
    log_in,
    required,
    wrong,
)

pytestmark = pytest.mark.django_db


LIMIT = 10
CLIENT_A = "203.0.113.5"
CLIENT_B = "198.51.100.9"
CLIENT_V6 = "2001:db8:1234:5678::abcd"
LOCKED = "Zu viele fehlgeschlagene Anmeldeversuche"


@pytest.fixture(autouse=True)
def _fresh_counters():
    cache.clear()
    yield
    cache.clear()


def fail(client, user, times: int, address: str = CLIENT_A) -> None:
    for _ in range(times):
        response = log_in(client, user, password="wrong-password-123", REMOTE_ADDR=address)
        assert response.status_code in (200, 429)
        assert not is_logged_in(client)


def test_ten_failures_lock_the_client_out_even_with_the_right_password(client, clock, doctor):
    fail(client, doctor, LIMIT)
    locked = log_in(client, doctor, REMOTE_ADDR=CLIENT_A, HTTP_ACCEPT_LANGUAGE="de")
    assert locked.status_code == 429
    assert LOCKED in locked.content.decode()
    assert not is_logged_in(client)


def test_nine_failures_do_not_lock(client, clock, doctor):
    fail(client, doctor, LIMIT - 1)
    assert log_in(client, doctor, REMOTE_ADDR=CLIENT_A).status_code == 302


def test_another_client_is_not_locked_out_of_the_same_account(client, clock, doctor):
    fail(client, doctor, LIMIT + 3)
    assert log_in(Client(), doctor, REMOTE_ADDR=CLIENT_B).status_code == 302


def test_the_locked_client_may_still_log_in_to_another_account(client, clock, doctor, staff):
    fail(client, doctor, LIMIT)
    assert log_in(client, staff, REMOTE_ADDR=CLIENT_A).status_code == 302


def test_the_lock_lasts_at_least_five_minutes_and_then_ends(client, clock, doctor, settings):
    # The lock lives as long as the count's cache entry (AXES_COOLOFF_TIME): frozen time
    # moves LocMemCache's expiry, not a Redis server's, so this one runs on LocMemCache.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    fail(client, doctor, LIMIT)
    clock.shift(timedelta(minutes=5))
    assert log_in(client, doctor, REMOTE_ADDR=CLIENT_A).status_code == 429
    clock.shift(timedelta(minutes=10, seconds=1))
    assert log_in(client, doctor, REMOTE_ADDR=CLIENT_A).status_code == 302


def test_failures_spread_over_fifteen_minutes_still_lock(client, clock, doctor):
    for _ in range(LIMIT):
        fail(client, doctor, 1)
        clock.shift(timedelta(seconds=90))  # 10 failures within 13.5 minutes
    assert log_in(client, doctor, REMOTE_ADDR=CLIENT_A).status_code == 429


def test_ipv6_clients_of_one_64_count_together(client, clock, doctor):
    # Rotating through the 2^64 addresses of one line does not escape the lock.
    for number in range(LIMIT):
        fail(client, doctor, 1, address=f"2001:db8:1234:5678::{number + 1:x}")
    assert log_in(client, doctor, REMOTE_ADDR=CLIENT_V6).status_code == 429
    assert log_in(client, doctor, REMOTE_ADDR="2001:db8:1234:5679::1").status_code == 302


@required
def test_wrong_one_time_codes_count_as_failures(client, clock, doctor):
    device = add_device(doctor)
    for _ in range(LIMIT):
        clock.shift(timedelta(seconds=60))  # past django-otp's own back-off
        response = log_in(client, doctor, wrong(device), REMOTE_ADDR=CLIENT_A)
        assert response.status_code in (200, 429)  # the tenth failure locks at once
    clock.shift(timedelta(seconds=60))
    assert log_in(client, doctor, code(device), REMOTE_ADDR=CLIENT_A).status_code == 429
    assert not is_logged_in(client)
    assert log_in(Client(), doctor, code(device), REMOTE_ADDR=CLIENT_B).status_code == 302


@required
def test_wrong_password_and_wrong_code_give_the_same_error(client, clock, doctor):
    device = add_device(doctor)
    bad_password = log_in(client, doctor, code(device), password="wrong-password-123")
    clock.shift(timedelta(seconds=60))
    bad_code = log_in(client, doctor, wrong(device))
    clock.shift(timedelta(seconds=60))
    no_code = log_in(client, doctor, "")
    responses = (bad_password, bad_code, no_code)
    errors = [list(r.context["form"].non_field_errors()) for r in responses]
    assert errors[0] == errors[1] == errors[2] and len(errors[0]) == 1
    assert not any(r.context["form"].errors.get("otp_token") for r in responses)


def test_the_database_and_the_cache_hold_no_client_address(client, clock, doctor):
    fail(client, doctor, LIMIT + 1, address=CLIENT_A)
    fail(client, doctor, 2, address=CLIENT_V6)
    assert log_in(Client(), doctor, REMOTE_ADDR=CLIENT_B).status_code == 302
    stored = database_text() + cache_text()
    assert cache_text(), "the lock-out counts are expected in the cache"
    for secret in (CLIENT_A, CLIENT_B, CLIENT_V6, "2001:db8:1234:5678", "203.0.113"):
        assert secret not in stored, secret
    assert "wrong-password-123" not in stored


def database_text() -> str:
    rows = []
    for model in apps.get_models():
        for row in model.objects.all().values_list():
            rows.append(repr(row))
    return "\n".join(rows)


def cache_text() -> str:
    """Every key and value in the cache: LocMemCache's dict, or all of Redis."""
    backend = cache._cache
    if isinstance(backend, dict):  # LocMemCache: {key: pickled value}; our own test data
        values = [pickle.loads(value) for value in backend.values()]  # noqa: S301
        return "\n".join(f"{key}={value!r}" for key, value in zip(backend, values, strict=True))
    client = backend.get_client()
    return "\n".join(
        f"{key.decode()}={backend._serializer.loads(client.get(key))!r}"
        for key in client.keys("*")
        if client.type(key) == b"string"
    )


def test_login_with_password_works_for_the_index(client, doctor):
    assert log_in(client, doctor).status_code == 302
    assert client.get(INDEX).status_code == 200
    assert PASSWORD


def test_a_session_of_the_first_backend_loads_its_user(doctor):
    """Scripts (bench/_provision.py) create sessions naming AUTHENTICATION_BACKENDS[0]."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(doctor.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = doctor.get_session_auth_hash()
    session.create()
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
    assert client.get(INDEX).status_code == 200
