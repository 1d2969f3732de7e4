"""Issue 11 item 15: every role × every page and API route, in one table.

The routes come from the URL configuration itself (HTTP and WebSocket): a new route
without a row in ROUTES fails `test_every_route_has_a_rule`, so nobody can add a page
and forget to decide who may open it. Each row says, per persona, what a GET gives:

    ok     200               login  302 to the admin login    home  302 to the join page
    deny   403               gone   404                       to    302 somewhere else
    nokey  401 (the API knows no sessions, only keys)         405   method not allowed

Personas: anonymous, patient (joined with a patient code), guest (joined with a guest
code of the same appointment), doctor (the appointment's), other doctor (another
practice), staff and auditor (of the doctor's practice), superuser. The WebSocket
route's actions per persona are the table of tests/test_role_matrix_ws.py; this module
checks that every WebSocket route has such a table.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django_otp.plugins.otp_totp.models import TOTPDevice

from compliance import runner
from consultations import services
from consultations.models import ApiKey, Appointment
from signaling.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db

PERSONAS = ("anonymous", "patient", "guest", "doctor", "other_doctor", "staff", "auditor", "root")
LOGIN = re.compile(r"^/admin/login/")


def row(anonymous, patient, guest, doctor, other_doctor, staff, auditor, root):
    outcomes = (anonymous, patient, guest, doctor, other_doctor, staff, auditor, root)
    return dict(zip(PERSONAS, outcomes, strict=True))


PUBLIC = row(*["ok"] * 8)
ADMIN_LOGGED_IN = row("login", "login", "login", "ok", "ok", "ok", "ok", "ok")
ORGANISERS = row("login", "login", "login", "ok", "ok", "ok", "deny", "ok")
OWN_ORGANISERS = row("login", "login", "login", "ok", "to", "ok", "deny", "ok")
SUPERUSER = row("login", "login", "login", "deny", "deny", "deny", "deny", "ok")
NOBODY = row("login", "login", "login", "deny", "deny", "deny", "deny", "deny")
OWN_ORGANISERS_OR_INDEX = row("login", "login", "login", "ok", "to", "ok", "to", "ok")
LOGGED_IN_REDIRECT = row("login", "login", "login", "to", "to", "to", "to", "to")
AUDITORS = row("login", "login", "login", "deny", "deny", "deny", "ok", "ok")
API_NO_KEY = row(*["nokey"] * 8)

# URL name (or pattern of an unnamed route) → expected outcome per persona.
ROUTES: dict[str, dict[str, str]] = {
    "healthz": PUBLIC,
    "join": PUBLIC,
    "terms": PUBLIC,
    "privacy": PUBLIC,
    "faq": PUBLIC,
    "imprint": PUBLIC,
    "transparency": PUBLIC,
    "javascript-catalog": PUBLIC,
    "set_language": row(*["home"] * 8),  # GET changes nothing; back to the join page
    "call": row("home", "ok", "ok", "home", "home", "home", "home", "home"),
    "api-appointments": row(*["405"] * 8),
    "api-appointment": API_NO_KEY,
    "api-appointment-codes": row(*["405"] * 8),  # POST only (tests/test_api.py)
    "api-appointment-guests": row(*["405"] * 8),  # POST only (tests/test_api.py)
    "compliance-report": AUDITORS,
    "compliance-report-pdf": AUDITORS,
    "admin:login": row("ok", "ok", "ok", "to", "to", "to", "to", "to"),
    "admin:logout": row("to", "to", "to", "405", "405", "405", "405", "405"),  # POST only
    "admin:otp_enroll": row("login", "login", "login", "ok", "ok", "ok", "ok", "ok"),
    "admin:index": ADMIN_LOGGED_IN,
    "admin:password_change": ADMIN_LOGGED_IN,
    "admin:password_change_done": ADMIN_LOGGED_IN,
    "admin:jsi18n": ADMIN_LOGGED_IN,
    "admin:autocomplete": row("login", "login", "login", "deny", "deny", "deny", "deny", "deny"),
    "admin:view_on_site": row("login", "login", "login", "gone", "gone", "gone", "gone", "gone"),
    "admin:app_list": row("login", "login", "login", "ok", "ok", "ok", "gone", "ok"),
    "admin/(?P<url>.*)$": row("login", "login", "login", "gone", "gone", "gone", "gone", "gone"),
    # Appointments: organisers of the appointment's practice (another practice's doctor
    # is sent back to the index: "does not exist"); nobody edits or deletes.
    "admin:consultations_appointment_changelist": ORGANISERS,
    "admin:consultations_appointment_add": ORGANISERS,
    "admin:consultations_appointment_change": OWN_ORGANISERS,
    "admin:consultations_appointment_history": OWN_ORGANISERS_OR_INDEX,
    "admin:consultations_appointment_delete": row(
        "login", "login", "login", "deny", "deny", "deny", "deny", "deny"
    ),
    # The practice's board: members of a practice (each sees its own), not auditors,
    # not superusers without a membership. Start and message are POST only
    # (tests/test_board.py: only the appointment's doctor starts; members send notices).
    "board": row("login", "login", "login", "ok", "ok", "ok", "deny", "deny"),
    "board-start": row(*["405"] * 8),
    "board-message": row(*["405"] * 8),
    # Unnamed `<id>/` routes redirect to `<id>/change/`, which decides (rows above).
    "admin/consultations/appointment/<path:object_id>/": LOGGED_IN_REDIRECT,
}
# Practices, API keys, users, groups, TOTP devices: superusers only.
for model in ("consultations_practice", "consultations_apikey", "auth_user", "auth_group"):
    for view in ("changelist", "add", "history", "change"):
        ROUTES[f"admin:{model}_{view}"] = SUPERUSER
    ROUTES[f"admin:{model}_delete"] = SUPERUSER
    app, name = model.split("_", 1)
    ROUTES[f"admin/{app}/{name}/<path:object_id>/"] = LOGGED_IN_REDIRECT
ROUTES["admin:consultations_apikey_add"] = row(*["login"] * 3, *["deny"] * 5)
ROUTES["admin:auth_user_password_change"] = SUPERUSER
for view in ("changelist", "add", "history", "change", "delete", "config", "qrcode"):
    ROUTES[f"admin:otp_totp_totpdevice_{view}"] = SUPERUSER
# The TOTP secret is shown to nobody, superusers included (OTP_ADMIN_HIDE_SENSITIVE_DATA).
ROUTES["admin:otp_totp_totpdevice_config"] = NOBODY
ROUTES["admin:otp_totp_totpdevice_qrcode"] = NOBODY
ROUTES["admin/otp_totp/totpdevice/<path:object_id>/"] = LOGGED_IN_REDIRECT

WEBSOCKET_ROUTES = {
    "ws-call": "every client action per persona: tests/test_role_matrix_ws.py",
    "ws-board": "members of a practice only: tests/test_board_live.py",
}


def walk(patterns, prefix="", namespace=None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(
                pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace or namespace
            )
        elif isinstance(pattern, URLPattern):
            full = prefix + str(pattern.pattern)
            if pattern.name:
                yield (f"{namespace}:{pattern.name}" if namespace else pattern.name), full
            else:
                yield full, full


def http_routes() -> dict[str, str]:
    return dict(walk(get_resolver().url_patterns))


def test_every_route_has_a_rule():
    routes = http_routes()
    missing = sorted(set(routes) - set(ROUTES))
    assert not missing, f"routes without a rule in ROUTES: {missing}"
    stale = sorted(set(ROUTES) - set(routes))
    assert not stale, f"rules for routes that no longer exist: {stale}"
    websocket = {pattern.name for pattern in websocket_urlpatterns}
    assert websocket == set(WEBSOCKET_ROUTES)


# --- running the table ---------------------------------------------------------------------


@pytest.fixture
def clients(doctor, other_practice_doctor, staff, auditor, superuser, issued):
    patient = Client()
    response = patient.post(
        "/", {"code": issued.patient_code, "name": "Paula Patientin", "consent": "on"}
    )
    assert response.status_code == 302
    # A guest of the same appointment, joined with its own guest code.
    guest = Client()
    response = guest.post(
        "/",
        {"code": services.add_guest_code(issued.appointment), "name": "Gerd Gast", "consent": "on"},
    )
    assert response.status_code == 302 and response["Location"] == "/call/"
    logged = {}
    for name, user in (
        ("doctor", doctor),
        ("other_doctor", other_practice_doctor),
        ("staff", staff),
        ("auditor", auditor),
        ("root", superuser),
    ):
        logged[name] = Client()
        logged[name].force_login(user)
    return {"anonymous": Client(), "patient": patient, "guest": guest, **logged}


def concrete_urls(issued, doctor, practice) -> dict[str, str]:
    """Every route with real arguments (objects of the doctor's practice)."""
    appointment = issued.appointment
    # A device of an account outside the table (the personas log in without one).
    owner = get_user_model().objects.create_user("device-owner", is_staff=True)
    device = TOTPDevice.objects.create(user=owner, name="phone", confirmed=True)
    group = Group.objects.create(name="Gruppe")
    key = ApiKey.objects.create(practice=practice, digest="d" * 64, prefix="rc_xxxxx")
    objects = {
        "consultations/appointment": appointment.pk,
        "consultations/practice": practice.pk,
        "consultations/apikey": key.pk,
        "auth/user": doctor.pk,
        "auth/group": group.pk,
        "otp_totp/totpdevice": device.pk,
    }
    content_type = ContentType.objects.get_for_model(Appointment).pk
    urls = {}
    for name, pattern in http_routes().items():
        path = pattern
        for prefix, pk in objects.items():
            if path.startswith(f"admin/{prefix}/"):
                path = re.sub(r"<[^>]+>", str(pk), path)
        path = path.replace("<path:content_type_id>", str(content_type))
        path = path.replace("<path:object_id>", str(appointment.pk))
        path = path.replace("<str:appointment_id>", str(appointment.pk))
        path = path.replace("<id>", str(doctor.pk))
        path = path.replace("^(?P<app_label>auth|otp_totp|consultations)/$", "consultations/")
        path = path.replace("(?P<url>.*)$", "no-such-page/")
        urls[name] = "/" + path
    return urls


def outcome(response) -> str:
    status = response.status_code
    if status == 302:
        location = response["Location"]
        if LOGIN.match(location):
            return "login"
        return "home" if location == "/" else "to"
    return {200: "ok", 401: "nokey", 403: "deny", 404: "gone", 405: "405"}.get(status, str(status))


def test_each_persona_gets_exactly_its_outcome(clients, issued, doctor, practice, monkeypatch):
    # The compliance page runs every check in a child process (up to 90 s); for the
    # permission question the run may fail fast: the page then shows the error (200).
    def unavailable(*args, **kwargs):
        raise runner.RunError("not run in the permission matrix")

    monkeypatch.setattr(runner, "run_isolated", unavailable)
    urls = concrete_urls(issued, doctor, practice)
    got, wrong = {}, []
    for name, url in sorted(urls.items()):
        for persona in PERSONAS:
            expected = ROUTES[name][persona]
            if name == "compliance-report-pdf" and expected == "ok":
                continue  # renders a PDF of a real run: tests/test_compliance_report.py
            result = outcome(clients[persona].get(url))
            got[(name, persona)] = result
            if result != expected:
                wrong.append(f"{name} {url} as {persona}: {result}, expected {expected}")
    if wrong:
        print("OBSERVED", sorted(got.items()))
    assert not wrong, "\n".join(wrong)
