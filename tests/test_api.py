"""Practice API: bearer keys, JSON in and out, scoped to the key's practice."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone

from consultations import api_services, services
from consultations.models import Appointment, GuestCode

CREATE_URL = "/api/v1/appointments"
FIELDS = {
    "id",
    "doctor_code",
    "patient_code",
    "guest_codes",
    "join_url",
    "scheduled_at",
    "expires_at",
}


@pytest.fixture(autouse=True)
def _fresh_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def key(practice):
    return services.create_api_key(practice)[1]


@pytest.fixture
def other_key(other_practice):
    return services.create_api_key(other_practice)[1]


def auth(key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def post(client, payload, key=None, **extra):
    body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    headers = auth(key) if key else {}
    return client.post(CREATE_URL, body, content_type="application/json", **headers, **extra)


def in_days(days: float) -> str:
    return (timezone.now() + timedelta(days=days)).isoformat()


def detail_url(appointment_id) -> str:
    return f"/api/v1/appointments/{appointment_id}"


# --- create -----------------------------------------------------------------------------


def test_create_returns_the_fields_of_create_appointment_json(client, key, doctor):
    response = post(client, {"doctor": "doc", "scheduled_at": in_days(1)}, key)
    assert response.status_code == 201
    data = response.json()
    assert set(data) == FIELDS
    assert "no-store" in response["Cache-Control"]
    appointment = Appointment.objects.get(pk=data["id"])
    assert appointment.doctor == doctor
    assert services.find_by_code(data["doctor_code"]).role == "doctor"
    assert services.find_by_code(data["patient_code"]).appointment == appointment
    # the clear codes are nowhere in the database
    stored = json.dumps(list(Appointment.objects.values()), default=str)
    assert data["patient_code"] not in stored and data["doctor_code"].replace("-", "") not in stored


def test_create_with_guest_codes(client, key, doctor):
    response = post(client, {"doctor": "doc", "scheduled_at": in_days(1), "guests": 3}, key)
    assert response.status_code == 201
    data = response.json()
    assert len(data["guest_codes"]) == 3
    for code in data["guest_codes"]:
        match = services.find_by_code(code)
        assert match.role == "guest" and str(match.appointment.pk) == data["id"]
    stored = json.dumps(list(GuestCode.objects.values()), default=str)
    assert all(
        code.replace("-", "") not in stored and code not in stored for code in data["guest_codes"]
    )
    assert (
        post(client, {"doctor": "doc", "scheduled_at": in_days(1)}, key).json()["guest_codes"] == []
    )


@pytest.mark.parametrize("guests", [-1, 8, 2.0, "2", True, None, [1]])
def test_create_refuses_a_bad_number_of_guests(client, key, doctor, guests):
    body = {"doctor": "doc", "scheduled_at": in_days(1), "guests": guests}
    response = post(client, body, key)
    assert response.status_code == 400 and "guests" in response.json()["error"]
    assert not Appointment.objects.exists()


def guests_url(appointment_id) -> str:
    return f"/api/v1/appointments/{appointment_id}/guests"


def codes_url(appointment_id) -> str:
    return f"/api/v1/appointments/{appointment_id}/codes"


def test_add_guest_codes_up_to_seven(client, key, issued):
    codes = []
    for _ in range(7):
        response = client.post(guests_url(issued.appointment.pk), **auth(key))
        assert response.status_code == 201
        assert set(response.json()) == {"guest_code"}
        codes.append(response.json()["guest_code"])
    assert len(set(codes)) == 7
    assert {services.find_by_code(code).appointment for code in codes} == {issued.appointment}
    response = client.post(guests_url(issued.appointment.pk), **auth(key))
    assert response.status_code == 400 and response.json()["error"]
    assert GuestCode.objects.filter(appointment=issued.appointment).count() == 7


def test_guests_and_codes_of_another_practice_are_404(client, other_key, issued):
    for url in (guests_url(issued.appointment.pk), codes_url(issued.appointment.pk)):
        response = client.post(url, **auth(other_key))
        assert response.status_code == 404 and response.json()["error"]
    assert not GuestCode.objects.exists()
    assert services.find_by_code(issued.patient_code) is not None


def test_guests_and_codes_need_a_key_and_post(client, key, issued):
    for url in (guests_url(issued.appointment.pk), codes_url(issued.appointment.pk)):
        assert client.post(url).status_code == 401
        assert client.get(url, **auth(key)).status_code == 405


def test_no_guest_code_for_a_cancelled_appointment(client, key, issued):
    services.cancel_appointment(issued.appointment)
    response = client.post(guests_url(issued.appointment.pk), **auth(key))
    assert response.status_code == 400
    response = client.post(codes_url(issued.appointment.pk), **auth(key))
    assert response.status_code == 400


def test_reissue_through_the_api(client, key, doctor):
    created = post(client, {"doctor": "doc", "scheduled_at": in_days(0), "guests": 2}, key).json()
    response = client.post(codes_url(created["id"]), **auth(key))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    data = response.json()
    assert set(data) == {"doctor_code", "patient_code", "guest_codes"}
    assert len(data["guest_codes"]) == 2
    for old in (created["doctor_code"], created["patient_code"], *created["guest_codes"]):
        assert services.find_by_code(old) is None
    assert services.find_by_code(data["doctor_code"]).role == "doctor"
    assert services.find_by_code(data["patient_code"]).role == "patient"
    assert [services.find_by_code(c).role for c in data["guest_codes"]] == ["guest", "guest"]


def test_create_needs_no_csrf_token(key, doctor):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    response = post(strict, {"doctor": "doc", "scheduled_at": in_days(0)}, key)
    assert response.status_code == 201


def test_naive_time_is_read_in_berlin(client, key, doctor):
    local = (timezone.now() + timedelta(days=2)).astimezone(ZoneInfo("Europe/Berlin"))
    naive = local.replace(tzinfo=None, microsecond=0)
    response = post(client, {"doctor": "doc", "scheduled_at": naive.isoformat()}, key)
    assert response.status_code == 201
    scheduled = Appointment.objects.get().scheduled_at
    assert scheduled == naive.replace(tzinfo=ZoneInfo("Europe/Berlin"))


def test_utc_designator_is_accepted(client, key, doctor):
    moment = (
        (timezone.now() + timedelta(hours=3)).astimezone(ZoneInfo("UTC")).replace(microsecond=0)
    )
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    response = post(client, {"doctor": "doc", "scheduled_at": stamp}, key)
    assert response.status_code == 201
    assert Appointment.objects.get().scheduled_at == moment


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ("[" * 2000 + "]" * 2000, "not valid JSON"),
        ({"scheduled_at": "2030-01-01T10:00:00+01:00"}, "doctor"),
        ({"doctor": "doc"}, "scheduled_at"),
        ({"doctor": "", "scheduled_at": ""}, "doctor, scheduled_at"),
        ({"doctor": 7, "scheduled_at": "2030-01-01T10:00:00+01:00"}, "username"),
        ({"doctor": "doc", "scheduled_at": "tomorrow at ten"}, "ISO 8601"),
        ({"doctor": "doc", "scheduled_at": 1700000000}, "ISO 8601"),
    ],
)
def test_bad_requests_are_refused_with_400(client, key, doctor, body, fragment):
    response = post(client, body, key)
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    assert not Appointment.objects.exists()


def test_more_than_29_days_ahead_is_refused(client, key, doctor):
    response = post(client, {"doctor": "doc", "scheduled_at": in_days(29.1)}, key)
    assert response.status_code == 400
    assert "29 days" in response.json()["error"]
    assert post(client, {"doctor": "doc", "scheduled_at": in_days(28.9)}, key).status_code == 201


@pytest.mark.parametrize("username", ["otherdoc", "mfa", "nobody"])
def test_doctor_must_belong_to_the_keys_practice(
    client, key, doctor, staff, other_practice_doctor, username
):
    response = post(client, {"doctor": username, "scheduled_at": in_days(1)}, key)
    assert response.status_code == 400
    assert response.json() == {"error": f"{username} is not an active doctor of this practice."}
    assert not Appointment.objects.exists()


def test_inactive_doctor_is_refused(client, key, doctor):
    doctor.is_active = False
    doctor.save()
    response = post(client, {"doctor": "doc", "scheduled_at": in_days(1)}, key)
    assert response.status_code == 400


def test_errors_are_english_whatever_the_request_language(client, key, doctor):
    response = post(
        client, {"doctor": "doc", "scheduled_at": in_days(40)}, key, HTTP_ACCEPT_LANGUAGE="de"
    )
    assert response.json()["error"] == "Appointments can be booked at most 29 days in advance."


def test_oversized_body_is_refused(client, key, doctor):
    payload = {"doctor": "doc", "scheduled_at": in_days(1), "note": "x" * 5000}
    response = post(client, payload, key)
    assert response.status_code == 413
    assert "error" in response.json()
    assert not Appointment.objects.exists()


# --- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer rc_unknown", "Token rc_x"],
)
def test_missing_or_unknown_key_gets_401(client, doctor, header):
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}
    response = post(client, {"doctor": "doc", "scheduled_at": in_days(1)}, **extra)
    assert response.status_code == 401
    assert response.json()["error"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not Appointment.objects.exists()


def test_keys_are_stored_only_as_digests(key, practice):
    api_key = practice.api_keys.get()
    assert key not in json.dumps(list(practice.api_keys.values()), default=str)
    assert api_key.digest == services.keyed_digest(key)
    assert key.startswith(api_key.prefix)


def test_failed_key_attempts_lock_the_client_out(client, key, doctor):
    for _ in range(api_services.KEY_FAILURE_LIMIT):
        assert post(client, {}, "rc_wrong").status_code == 401
    # now even the right key is refused from this client …
    response = post(client, {"doctor": "doc", "scheduled_at": in_days(1)}, key)
    assert response.status_code == 429
    assert "error" in response.json()
    # … but not from another one
    other = post(
        client, {"doctor": "doc", "scheduled_at": in_days(1)}, key, REMOTE_ADDR="192.0.2.7"
    )
    assert other.status_code == 201


def test_lockout_ends_after_the_window(client, key, doctor):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        for _ in range(api_services.KEY_FAILURE_LIMIT):
            post(client, {}, "rc_wrong")
        assert post(client, {}, key).status_code == 429
        traveller.shift(timedelta(seconds=api_services.KEY_FAILURE_WINDOW + 1))
        response = post(client, {"doctor": "doc", "scheduled_at": in_days(1)}, key)
        assert response.status_code == 201


@override_settings(PROXY_HEADERS=True)
def test_behind_the_proxy_clients_are_told_apart_by_forwarded_address(client, key, doctor):
    for _ in range(api_services.KEY_FAILURE_LIMIT):
        post(client, {}, "rc_wrong", HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert post(client, {}, key, HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 429
    payload = {"doctor": "doc", "scheduled_at": in_days(1)}
    assert post(client, payload, key, HTTP_X_FORWARDED_FOR="198.51.100.2").status_code == 201


def test_failure_counter_stores_no_address(client, doctor):
    post(client, {}, "rc_wrong", REMOTE_ADDR="203.0.113.99")
    keys = _cache_keys()
    if keys is not None:
        assert keys and not any("203.0.113.99" in k for k in keys)


def _cache_keys() -> list[str] | None:
    """All cache keys, where the backend can list them (locmem and Redis)."""
    if hasattr(cache, "_cache") and isinstance(cache._cache, dict):
        return list(cache._cache)
    client = getattr(cache, "_cache", None)
    if client is not None and hasattr(client, "get_client"):
        return [k.decode() for k in client.get_client().keys("*")]
    return None


# --- methods and transport --------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_collection_allows_only_post(client, key, method):
    response = getattr(client, method)(CREATE_URL, **auth(key))
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "error" in response.json()


@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_item_allows_only_get_and_delete(client, key, issued, method):
    response = getattr(client, method)(detail_url(issued.appointment.pk), **auth(key))
    assert response.status_code == 405
    assert response["Allow"] == "GET, DELETE"


@override_settings(PUBLIC_URL="https://video.example.de", SECURE_SSL_REDIRECT=False)
def test_plain_http_is_refused_on_an_https_deployment(client, key, doctor):
    response = post(client, {"doctor": "doc", "scheduled_at": in_days(1)}, key)
    assert response.status_code == 403
    assert "HTTPS" in response.json()["error"]
    secure = post(client, {"doctor": "doc", "scheduled_at": in_days(1)}, key, secure=True)
    assert secure.status_code == 201


# --- read -------------------------------------------------------------------------------


def test_read_returns_state_without_codes(client, key, issued):
    response = client.get(detail_url(issued.appointment.pk), **auth(key))
    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"id", "scheduled_at", "expires_at", "status"}
    assert data["id"] == str(issued.appointment.pk)
    assert data["status"] == "active"
    assert issued.patient_code not in response.content.decode()


def test_status_follows_the_appointment(client, key, doctor):
    now = timezone.now()
    issued = services.create_appointment(doctor=doctor, scheduled_at=now + timedelta(days=3))
    url = detail_url(issued.appointment.pk)
    assert client.get(url, **auth(key)).json()["status"] == "scheduled"
    with time_machine.travel(now + timedelta(days=3), tick=False):
        assert client.get(url, **auth(key)).json()["status"] == "active"
    with time_machine.travel(now + timedelta(days=4, minutes=1), tick=False):
        assert client.get(url, **auth(key)).json()["status"] == "expired"
    services.cancel_appointment(issued.appointment)
    assert client.get(url, **auth(key)).json()["status"] == "cancelled"


@pytest.mark.parametrize("appointment_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_or_malformed_id_is_404(client, key, appointment_id):
    response = client.get(detail_url(appointment_id), **auth(key))
    assert response.status_code == 404
    assert "error" in response.json()


def test_other_practices_appointment_is_404(client, other_key, issued):
    url = detail_url(issued.appointment.pk)
    assert client.get(url, **auth(other_key)).status_code == 404
    assert client.delete(url, **auth(other_key)).status_code == 404
    issued.appointment.refresh_from_db()
    assert issued.appointment.cancelled_at is None


def test_read_needs_a_key(client, issued):
    assert client.get(detail_url(issued.appointment.pk)).status_code == 401


# --- cancel -----------------------------------------------------------------------------


def test_delete_cancels_and_codes_stop_working_at_once(client, key, issued):
    assert services.find_by_code(issued.patient_code) is not None
    response = client.delete(detail_url(issued.appointment.pk), **auth(key))
    assert response.status_code == 204
    assert response.content == b""
    assert services.find_by_code(issued.patient_code) is None
    assert services.find_by_code(issued.doctor_code) is None
    read = client.get(detail_url(issued.appointment.pk), **auth(key))
    assert read.json()["status"] == "cancelled"


def test_delete_is_idempotent(client, key, issued):
    url = detail_url(issued.appointment.pk)
    assert client.delete(url, **auth(key)).status_code == 204
    first = Appointment.objects.get().cancelled_at
    assert client.delete(url, **auth(key)).status_code == 204
    assert Appointment.objects.get().cancelled_at == first


def test_created_then_cancelled_through_the_api(client, key, doctor):
    created = post(client, {"doctor": "doc", "scheduled_at": in_days(0)}, key).json()
    assert services.find_by_code(created["patient_code"]) is not None
    assert client.delete(detail_url(created["id"]), **auth(key)).status_code == 204
    assert services.find_by_code(created["patient_code"]) is None


def test_parse_time_reads_offsets():
    moment = api_services.parse_time("2030-03-01T10:00:00+02:00")
    assert moment == datetime(2030, 3, 1, 8, 0, tzinfo=ZoneInfo("UTC"))


# --- cancellation closes live calls ---------------------------------------------------


def _join_cookie_header(code: str) -> str:
    """Join through the real form (`POST /`) and return the browser's Cookie header."""
    from django.conf import settings
    from django.test import Client

    browser = Client()
    response = browser.post("/", {"name": "Paula Patientin", "code": code, "consent": "on"})
    assert response.status_code == 302, response.status_code
    assert settings.JOIN_COOKIE_NAME in browser.cookies
    return "; ".join(f"{name}={morsel.value}" for name, morsel in browser.cookies.items())


@pytest.mark.django_db(transaction=True)
async def test_delete_closes_live_call_connections_with_4001(practice, doctor):
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.test import Client

    from redconnect.asgi import application

    issued = await sync_to_async(services.create_appointment)(doctor=doctor)
    key = (await sync_to_async(services.create_api_key)(practice))[1]
    cookie = await sync_to_async(_join_cookie_header)(issued.patient_code)

    socket = WebsocketCommunicator(
        application,
        "/ws/call/",
        headers=[(b"origin", b"http://127.0.0.1:8000"), (b"cookie", cookie.encode())],
    )
    connected, _subprotocol = await socket.connect()
    assert connected
    welcome = json.loads(await socket.receive_from(timeout=20))
    assert welcome["type"] == "welcome" and welcome["role"] == "patient"

    url = detail_url(issued.appointment.pk)
    response = await sync_to_async(Client().delete)(url, **auth(key))
    assert response.status_code == 204

    # (timeouts only bound the wait on a loaded machine)
    # Skip whatever the consumer sent meanwhile (e.g. "waiting"): the close must follow.
    while True:
        output = await socket.receive_output(timeout=20)
        if output["type"] == "websocket.close":
            break
        assert output["type"] == "websocket.send"
    assert output["code"] == 4001
    await socket.disconnect()

    # and the code no longer opens a new connection either
    again = WebsocketCommunicator(
        application,
        "/ws/call/",
        headers=[(b"origin", b"http://127.0.0.1:8000"), (b"cookie", cookie.encode())],
    )
    connected, _subprotocol = await again.connect()
    assert connected
    assert (await again.receive_output(timeout=20)) == {"type": "websocket.close", "code": 4001}
    await again.disconnect()
