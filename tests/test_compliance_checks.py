"""Every compliance check passes on the real system and fails when its property breaks.

The pass side runs the whole check set once per module against the real URLconf and
consumer (`baseline`); the fail side breaks one property at a time — settings, a
database row, a static file, a template, a non-compliant join page or relay — and
runs just the affected check.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connection, models
from django.db.models import F
from django.test import override_settings
from django.utils import timezone

from compliance import probes, regions, registry, runner
from compliance.checks import nr07_adaptive_quality as nr07
from consultations import services
from consultations.models import Appointment, GuestCode, Membership, Practice
from signaling import room
from tests.support import compliance_broken

PASS, FAIL, WARN, DECLARED = "pass", "fail", "warn", "declared"
# Checks that cannot pass on the embedded default (http PUBLIC_URL, demo declarations).
NOT_PASS_ON_DEFAULT = {
    "https_settings": {WARN},
    "tls_probe": {WARN},
    "hosting_declaration": {WARN, DECLARED},
    "operator_declaration": {WARN, DECLARED},
}
BROKEN_URLS = override_settings(ROOT_URLCONF="tests.support.compliance_broken")


def run(check_id: str) -> registry.Finding:
    return registry.run_check(registry.find_check(check_id), registry.Observations())


@pytest.fixture(scope="module")
def baseline(django_db_setup, django_db_blocker) -> dict:
    """One full run against the real system (the WebSocket probe commits and cleans up)."""
    with django_db_blocker.unblock():
        return runner.run_checks()


@pytest.fixture
def fast_probes(monkeypatch):
    """Short waits: a broken relay never sends what the probe waits for."""
    monkeypatch.setattr(probes, "TIMEOUT", 0.15)
    monkeypatch.setattr(probes, "QUIET", 0.03)


def by_id(result: dict) -> dict[str, dict]:
    return {c["id"]: c for r in result["requirements"] for c in r["checks"]}


# --- The pass side: the real system -----------------------------------------------------


def test_every_requirement_has_checks_and_a_current_reference():
    requirements = registry.requirements()
    assert [r.number for r in requirements] == list(range(1, 12))
    assert all(r.checks for r in requirements)
    assert all("§" in str(r.current_reference) for r in requirements)
    ids = [item.id for item in registry.all_checks()]
    assert len(ids) == len(set(ids))


def test_one_module_per_requirement():
    names = registry.requirement_module_names()
    assert len(names) == 11
    assert [name.rsplit(".", 1)[-1][:4] for name in names] == [f"nr{n:02d}" for n in range(1, 12)]


@pytest.mark.parametrize("check_id", [item.id for item in registry.all_checks()])
def test_check_passes_on_the_real_system(baseline, check_id):
    result = by_id(baseline)[check_id]
    assert result["status"] in NOT_PASS_ON_DEFAULT.get(check_id, {PASS}), result
    assert len(result["evidence"]) > 20


def test_evidence_is_german_with_concrete_findings(baseline):
    found = by_id(baseline)
    assert "4001" in found["socket_requires_join"]["evidence"]
    assert "HTTP 403" in found["staff_cannot_join"]["evidence"]
    assert "4009" in found["one_doctor_one_patient"]["evidence"]
    assert "insecure-sdp" in found["sdp_requires_dtls"]["evidence"]
    assert "/nutzungsbedingungen/ (200, lang=de" in found["public_pages_german"]["evidence"]
    assert found["https_settings"]["evidence"].startswith("PUBLIC_URL ist")
    assert baseline["requirements"][0]["title"] == "Registrierung des Arztes"


def test_the_probes_leave_nothing_behind(transactional_db):
    User = get_user_model()
    long_ago = timezone.now() - timedelta(hours=1)
    leftover = Practice.objects.create(name=probes.PROBE_PRACTICE_NAME)  # a crashed run
    Practice.objects.filter(pk=leftover.pk).update(created_at=long_ago)
    User.objects.create_user(username=probes.PROBE_USER_PREFIX + "old-doctor")
    User.objects.filter(username__startswith=probes.PROBE_USER_PREFIX).update(date_joined=long_ago)
    running = Practice.objects.create(name=probes.PROBE_PRACTICE_NAME)  # a concurrent run
    models_ = (Practice, User, Membership, Appointment, GuestCode, Session)
    before = {m: m.objects.count() for m in models_}
    assert probes.websocket_probe().error is None
    assert probes.guest_probe().error is None
    assert isinstance(probes.http_probe(), probes.HttpObservations)
    after = {m: m.objects.count() for m in models_}
    assert after[Practice] == before[Practice] - 1 and after[User] == before[User] - 1
    assert after[Appointment] == before[Appointment] == 0
    assert after[Session] == before[Session] and after[Membership] == before[Membership]
    assert after[GuestCode] == before[GuestCode] == 0
    assert not Practice.objects.filter(pk=leftover.pk).exists()
    assert Practice.objects.filter(pk=running.pk).exists()


# --- Nr. 1 / 2: doctors and staff -------------------------------------------------------


def test_doctor_member_check_passes_with_real_appointments(issued):
    assert run("doctor_is_active_member").status == PASS


def test_appointment_of_a_deactivated_doctor_fails(issued, doctor):
    get_user_model().objects.filter(pk=doctor.pk).update(is_active=False)
    finding = run("doctor_is_active_member")
    assert finding.status == FAIL and "1 von 1" in finding.evidence


def test_appointment_of_a_staff_member_fails(issued, doctor):
    assert run("staff_never_doctor").status == PASS
    Membership.objects.filter(user=doctor).update(role=Membership.Role.STAFF)
    assert run("staff_never_doctor").status == FAIL
    assert run("doctor_is_active_member").status == FAIL


@BROKEN_URLS
@pytest.mark.django_db
@pytest.mark.parametrize(
    "check_id",
    [
        "doctor_code_requires_login",
        "staff_cannot_join",
        "code_opens_only_its_appointment",
        "board_start_only_own_doctor",
        "staff_cannot_start_from_board",
    ],
)
def test_a_join_page_that_lets_anyone_in_fails(check_id):
    finding = run(check_id)
    assert finding.status == FAIL, finding


@pytest.mark.django_db(transaction=True)
def test_a_relay_without_join_sessions_fails(monkeypatch, fast_probes):
    monkeypatch.setattr(probes, "websocket_application", compliance_broken.naive_application)
    observations = registry.Observations()
    results = {
        item.id: registry.run_check(item, observations).status
        for item in registry.all_checks()
        if item.id
        in {
            "socket_requires_join",
            "real_name_visible",
            "admission_by_doctor",
            "one_doctor_one_patient",
            "no_events_from_other_calls",
            "relays_signaling_only",
            "sdp_requires_dtls",
        }
    }
    assert set(results.values()) == {FAIL}, results


@pytest.mark.django_db(transaction=True)
def test_a_relay_that_forwards_binary_frames_fails(monkeypatch, fast_probes):
    monkeypatch.setattr(probes, "websocket_application", compliance_broken.binary_application)
    finding = run("relays_signaling_only")
    assert finding.status == FAIL and "Binärframe" in finding.evidence


@pytest.mark.django_db(transaction=True)
def test_a_relay_that_writes_to_the_database_fails(monkeypatch, fast_probes):
    monkeypatch.setattr(probes, "websocket_application", compliance_broken.recording_application)
    finding = run("relay_writes_nothing")
    assert finding.status == FAIL and "Schreibzugriffe" in finding.evidence


# --- Nr. 3: patient access --------------------------------------------------------------


@pytest.mark.django_db
@override_settings(JOIN_FAILURE_LIMIT=0)  # a rate limit that blocks every patient
def test_a_join_page_that_refuses_patients_fails():
    finding = run("anonymous_join")
    assert finding.status == FAIL and "429" in finding.evidence


@pytest.mark.django_db
@override_settings(JOIN_FAILURE_LIMIT=0)  # ... and every doctor
def test_a_join_page_that_refuses_the_own_doctor_fails():
    finding = run("own_doctor_joins")
    assert finding.status == FAIL and "429" in finding.evidence


def test_the_own_doctor_joins_on_the_real_system(baseline):
    evidence = by_id(baseline)["own_doctor_joins"]["evidence"]
    assert "HTTP 302 → /call/" in evidence


def _bypass_validity_constraint(appointment: Appointment) -> None:
    """Store a 40-day validity that the schema's check constraint normally refuses."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA ignore_check_constraints = ON")
        else:
            table = Appointment._meta.db_table
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending FK checks
            cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT validity_at_most_30_days')
    Appointment.objects.filter(pk=appointment.pk).update(
        expires_at=F("created_at") + timedelta(days=40)
    )
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA ignore_check_constraints = OFF")


def test_validity_over_30_days_fails(issued):
    assert run("validity_at_most_30_days").status == PASS
    _bypass_validity_constraint(issued.appointment)
    finding = run("validity_at_most_30_days")
    assert finding.status == FAIL and "1 von 1" in finding.evidence


# --- Nr. 5 / 9: ICE servers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("servers", "status"),
    [
        ([], PASS),
        ([{"urls": ["stun:stun.praxis-eu.example:3478"], "country": "DE"}], PASS),
        ([{"urls": ["stun:stun.example.no"], "country": "NO"}], WARN),
        ([{"urls": ["stun:stun.example.org"]}], FAIL),
        ([{"urls": ["turn:turn.example.com"], "country": "US"}], FAIL),
        ([{"urls": ["stun:stun.l.google.com:19302"], "country": "DE"}], FAIL),
        ([{"urls": ["stun:global.stun.twilio.com"], "country": "IE"}], FAIL),
    ],
)
def test_ice_servers_must_stand_in_the_eu(servers, status):
    with override_settings(ICE_SERVERS=servers):
        assert run("ice_servers_in_eu").status == status


@pytest.mark.parametrize(
    ("servers", "secret", "status"),
    [
        ([], None, PASS),
        ([{"urls": ["turns:turn.example.de:5349"], "country": "DE"}], "s3cret", PASS),
        ([{"urls": ["turns:turn.example.de:5349"], "country": "DE"}], None, WARN),
        ([{"urls": ["turn:turn.example.com"], "country": "US"}], "s3cret", FAIL),
    ],
)
def test_turn_relays_must_be_eu_and_time_limited(servers, secret, status):
    with override_settings(ICE_SERVERS=servers, TURN_SECRET=secret):
        assert run("turn_relays_in_eu").status == status


# --- Nr. 6: HTTPS settings ------------------------------------------------------------

SECURE = {
    "PUBLIC_URL": "https://video.example.de",
    "SESSION_COOKIE_SECURE": True,
    "CSRF_COOKIE_SECURE": True,
    "SECURE_SSL_REDIRECT": True,
    "SECURE_HSTS_SECONDS": 365 * 24 * 3600,
}


def test_https_settings_pass_when_all_secure():
    with override_settings(**SECURE):
        assert run("https_settings").status == PASS


@pytest.mark.parametrize(
    "broken",
    [{"SESSION_COOKIE_SECURE": False}, {"SECURE_HSTS_SECONDS": 0}, {"SECURE_SSL_REDIRECT": False}],
)
def test_https_settings_fail_when_one_is_off(broken):
    with override_settings(**{**SECURE, **broken}):
        finding = run("https_settings")
    assert finding.status == FAIL and next(iter(broken)) in finding.evidence


def test_https_settings_and_tls_probe_warn_without_https():
    with override_settings(PUBLIC_URL="http://127.0.0.1:8000"):
        assert run("https_settings").status == WARN
        assert run("tls_probe").status == WARN


# --- Nr. 7 / 8 / 11: static files and templates ---------------------------------------


def _static_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        target = tmp_path / "static" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return tmp_path / "static"


GOOD_CLIENT = {
    "js/peer.js": "sender.setParameters({...p, degradationPreference: 'balanced'});",
    "js/quality.js": "const stats = await pc.getStats();",
}
MESH_BUDGET = "export const SHARE_FROM_PARTICIPANTS = 3;\nencoding.maxBitrate = kbps * 1000;\n"


@pytest.mark.parametrize(
    ("check_id", "files"),
    [
        ("no_bitrate_caps", {**GOOD_CLIENT, "js/peer.js": "enc.maxBitrate = 300000;"}),
        # the mesh budget may not start at two people, nor write bandwidth lines
        (
            "no_bitrate_caps",
            {**GOOD_CLIENT, "js/bandwidth.js": MESH_BUDGET.replace("= 3;", "= 2;")},
        ),
        ("no_bitrate_caps", {**GOOD_CLIENT, "js/bandwidth.js": MESH_BUDGET + "sdp += 'b=AS:300';"}),
        ("degradation_preference", {"js/quality.js": "pc.getStats()"}),
        ("no_recording_code", {"js/rec.js": "const r = new MediaRecorder(stream);"}),
        (
            "static_files_no_foreign_urls",
            {"js/x.js": 'import a from "https://cdn.example.com/a.js";'},
        ),
        (
            "static_files_no_foreign_urls",
            {"css/x.css": "@import url('https://fonts.googleapis.com/css');"},
        ),
        ("static_files_no_foreign_urls", {"js/y.js": "fetch('https://ads.example.net/pixel');"}),
    ],
)
def test_offending_static_file_fails(tmp_path, check_id, files):
    with override_settings(STATICFILES_DIRS=[_static_dir(tmp_path, files)]):
        finding = run(check_id)
    assert finding.status == FAIL, finding


def test_clean_static_files_pass(tmp_path):
    files = {
        **GOOD_CLIENT,
        "js/bandwidth.js": MESH_BUDGET,
        "css/site.css": "body { background: url('/static/img/x.svg'); }",
        "js/ns.js": "// see https://example.com/docs\nel = document.createElementNS("
        "'http://www.w3.org/2000/svg', 'svg');",
    }
    with override_settings(STATICFILES_DIRS=[_static_dir(tmp_path, files)]):
        for check_id in (
            "no_bitrate_caps",
            "degradation_preference",
            "no_recording_code",
            "static_files_no_foreign_urls",
        ):
            assert run(check_id).status == PASS, check_id


def test_call_page_without_quality_controls_fails(tmp_path, settings):
    (tmp_path / "tpl" / "consultations").mkdir(parents=True)
    (tmp_path / "tpl" / "consultations" / "call.html").write_text(
        '<div data-role="quality"></div><button data-action="hang-up"></button>'
    )
    templates = [{**settings.TEMPLATES[0], "DIRS": [tmp_path / "tpl"]}]
    with override_settings(TEMPLATES=templates):
        finding = run("quality_controls")
    assert finding.status == FAIL and "audio-only" in finding.evidence


def test_a_model_that_could_hold_content_fails():
    assert run("no_content_fields").status == PASS

    class CallTranscript(models.Model):
        text = models.TextField()

        class Meta:
            app_label = "compliance"

        def __str__(self) -> str:
            return "transcript"

    try:
        finding = run("no_content_fields")
    finally:
        del apps.all_models["compliance"]["calltranscript"]
        apps.clear_cache()
    assert finding.status == FAIL and "compliance.calltranscript.text" in finding.evidence


# --- Nr. 9: retention, purge, logs, hosting ------------------------------------------


def test_retention_over_90_days_fails():
    with override_settings(METADATA_RETENTION_DAYS=120):
        assert run("retention_at_most_90_days").status == FAIL
    with override_settings(METADATA_RETENTION_DAYS=90):
        assert run("retention_at_most_90_days").status == PASS


@override_settings(METADATA_RETENTION_DAYS=7)
def test_a_record_past_retention_fails(doctor):
    recent = timezone.now() - timedelta(days=3)
    with time_machine.travel(recent, tick=False):
        services.create_appointment(doctor=doctor)
    assert run("purge_is_running").status == PASS  # expired 2 days ago: within retention
    old = timezone.now() - timedelta(days=10)
    with time_machine.travel(old, tick=False):
        services.create_appointment(doctor=doctor)
    finding = run("purge_is_running")
    assert finding.status == FAIL and "purge_expired" in finding.evidence


@pytest.mark.django_db
def test_a_log_format_with_client_address_fails(settings):
    logging_config = {
        **settings.LOGGING,
        "formatters": {"plain": {"format": "%(asctime)s %(client_addr)s %(message)s"}},
    }
    with override_settings(LOGGING=logging_config):
        finding = run("no_client_addresses_logged")
    assert finding.status == FAIL and "client_addr" in finding.evidence


@pytest.mark.django_db
def test_a_middleware_logging_addresses_fails(settings):
    middleware = ["tests.support.compliance_broken.AddressLoggingMiddleware", *settings.MIDDLEWARE]
    with override_settings(MIDDLEWARE=middleware):
        finding = run("no_client_addresses_logged")
    assert finding.status == FAIL, finding
    assert logging.getLogger("redconnect.requests").handlers  # restored after the probe


@pytest.mark.parametrize(
    ("values", "status"),
    [
        ({}, WARN),  # demo values
        ({"HOSTING_PROVIDER": "Beispiel Hosting AG", "HOSTING_COUNTRY": "DE"}, DECLARED),
        ({"HOSTING_PROVIDER": "Example Inc.", "HOSTING_COUNTRY": "US"}, FAIL),
    ],
)
def test_hosting_declaration(settings, values, status):
    defaults = {
        name: settings.DEMO_DECLARATIONS[name] for name in ("HOSTING_PROVIDER", "HOSTING_COUNTRY")
    }
    with override_settings(**{**defaults, **values}):
        finding = run("hosting_declaration")
    assert finding.status == status


def test_hosting_in_the_eea_outside_the_eu_warns():
    with override_settings(HOSTING_PROVIDER="Nordisk Hosting AS", HOSTING_COUNTRY="NO"):
        finding = run("hosting_declaration")
    assert finding.status == WARN and "EWR" in finding.evidence


def test_the_eu_has_27_members_and_one_rating_for_all_checks():
    assert len(regions.EU_COUNTRIES) == 27 and "HU" in regions.EU_COUNTRIES
    assert set(regions.COUNTRY_NAMES) == regions.EU_COUNTRIES | regions.EEA_ONLY_COUNTRIES
    assert regions.country_name("hu") == "Ungarn" and regions.country_name("US") == "US"
    assert regions.country_status("hu") == PASS
    assert regions.country_status("NO") == WARN
    assert regions.country_status("CH") == FAIL and regions.country_status(None) == FAIL
    with override_settings(ICE_SERVERS=[{"urls": ["turn:t.example.no"], "country": "NO"}]):
        assert run("turn_relays_in_eu").status == WARN
        assert run("ice_servers_in_eu").status == WARN


def _admin_entry(user, appointment_id, when, flag=None) -> None:
    from django.contrib.admin.models import ADDITION, LogEntry
    from django.contrib.contenttypes.models import ContentType

    entry = LogEntry.objects.create(
        user=user,
        content_type=ContentType.objects.get_for_model(Appointment),
        object_id=str(appointment_id),
        object_repr="Termin",
        action_flag=flag or ADDITION,
    )
    LogEntry.objects.filter(pk=entry.pk).update(action_time=when)


@override_settings(METADATA_RETENTION_DAYS=7)
def test_admin_history_of_live_appointments_passes(issued, doctor):
    _admin_entry(doctor, issued.appointment.pk, timezone.now() - timedelta(days=3))
    finding = run("purge_is_running")
    assert finding.status == PASS and "(von 1)" in finding.evidence


@override_settings(METADATA_RETENTION_DAYS=7)
def test_admin_history_of_a_deleted_appointment_fails(issued, doctor):
    from django.contrib.admin.models import DELETION

    appointment_id = issued.appointment.pk
    _admin_entry(doctor, appointment_id, timezone.now() - timedelta(days=5))
    issued.appointment.delete()
    _admin_entry(doctor, appointment_id, timezone.now(), DELETION)
    assert run("purge_is_running").status == PASS  # deleted just now: the next purge's job
    from django.contrib.admin.models import LogEntry

    LogEntry.objects.filter(action_flag=DELETION).update(
        action_time=timezone.now() - timedelta(days=2)
    )
    finding = run("purge_is_running")
    assert finding.status == FAIL and "2 Einträge der Admin-Historie" in finding.evidence


@override_settings(METADATA_RETENTION_DAYS=7)
def test_admin_history_older_than_any_appointment_can_live_fails(issued, doctor):
    _admin_entry(doctor, issued.appointment.pk, timezone.now() - timedelta(days=39))
    finding = run("purge_is_running")
    assert finding.status == FAIL and "Admin-Historie" in finding.evidence


def test_expired_sessions_fail_and_live_ones_pass(db):
    Session.objects.create(
        session_key="k" * 32, session_data="", expire_date=timezone.now() + timedelta(hours=2)
    )
    Session.objects.create(
        session_key="j" * 32, session_data="", expire_date=timezone.now() - timedelta(hours=3)
    )
    assert run("purge_is_running").status == PASS  # expired hours ago: within the grace day
    Session.objects.create(
        session_key="e" * 32, session_data="", expire_date=timezone.now() - timedelta(days=2)
    )
    finding = run("purge_is_running")
    assert finding.status == FAIL and "1 abgelaufene Sitzungen" in finding.evidence


def test_operator_declaration_is_declared_never_passed(settings):
    demo = {
        name: settings.DEMO_DECLARATIONS[name]
        for name in ("OPERATOR_NAME", "OPERATOR_ADDRESS", "OPERATOR_EMAIL")
    }
    with override_settings(**demo):
        assert run("operator_declaration").status == WARN
    with override_settings(
        OPERATOR_NAME="Praxisnetz Süd GmbH",
        OPERATOR_ADDRESS="Hauptstr. 2, 80331 München",
        OPERATOR_EMAIL="datenschutz@praxisnetz.example",
    ):
        finding = run("operator_declaration")
    assert finding.status == DECLARED and "Praxisnetz Süd GmbH" in finding.evidence


# --- Nr. 10 / 11: public pages and foreign origins -------------------------------------


@BROKEN_URLS
@pytest.mark.django_db
@pytest.mark.parametrize(
    "check_id", ["public_pages_german", "public_pages_linked", "pages_load_nothing_foreign"]
)
def test_english_unlinked_pages_with_ads_fail(check_id):
    finding = run(check_id)
    assert finding.status == FAIL, finding


@pytest.mark.django_db
def test_foreign_origin_in_csp_fails(settings):
    policy = {
        "DIRECTIVES": {
            **settings.CONTENT_SECURITY_POLICY["DIRECTIVES"],
            "script-src": ["'self'", "https://ads.example.com"],
        }
    }
    with override_settings(CONTENT_SECURITY_POLICY=policy):
        finding = run("csp_forbids_foreign_origins")
    assert finding.status == FAIL and "ads.example.com" in finding.evidence


# --- Aggregation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([PASS, PASS], PASS),
        ([PASS, DECLARED], DECLARED),
        ([DECLARED, WARN], WARN),
        ([WARN, FAIL, DECLARED], FAIL),
    ],
)
def test_requirement_status(statuses, expected):
    assert runner.requirement_status(statuses) == expected


def test_overall_never_reports_declared():
    assert runner.overall_status([PASS, DECLARED]) == PASS
    assert runner.overall_status([DECLARED, WARN]) == WARN
    assert runner.overall_status([PASS, FAIL]) == FAIL


def test_a_crashing_check_fails_instead_of_passing():
    item = registry.Check("boom", "boom", lambda: 1 / 0)
    finding = registry.run_check(item, registry.Observations())
    assert finding.status == FAIL and "ZeroDivisionError" in finding.evidence


class _Unreliable:
    """An observation type whose probe always crashes (registered below)."""


@registry.provides(_Unreliable)
def _unreliable_probe() -> _Unreliable:
    raise ConnectionError("probe target gone")


def test_a_crashed_probe_fails_every_check_that_needs_it():
    calls = []

    def needs_it(observation: _Unreliable) -> registry.Finding:
        calls.append(observation)
        return registry.Finding.passed("never")

    item = registry.Check("needs_it", "needs it", needs_it, needs=(_Unreliable,))
    observations = registry.Observations()
    findings = [registry.run_check(item, observations) for _ in range(2)]
    assert {f.status for f in findings} == {FAIL} and calls == []
    assert all("probe target gone" in f.evidence for f in findings)
    assert "Prüfsonde" in findings[0].evidence


def test_checks_are_handed_typed_observations():
    item = registry.find_check("anonymous_join")
    assert item.needs == (probes.HttpObservations,)
    assert registry.find_check("code_opens_only_its_appointment").needs == (
        probes.HttpObservations,
        probes.ConnectPhase,
    )
    assert registry.find_check("validity_at_most_30_days").needs == ()


# A public deployment on https (the proxy's part differs per test).
HTTPS_SITE = {
    "PUBLIC_URL": "https://video.example.de",
    "PUBLIC_HTTPS": True,
    "ALLOWED_HOSTS": ["video.example.de"],
    "SECURE_SSL_REDIRECT": True,
    "SESSION_COOKIE_SECURE": True,
    "CSRF_COOKIE_SECURE": True,
    "OTP_REQUIRED": True,
}


def assert_checks_pass(*check_ids: str) -> None:
    """Run the checks on one set of observations; each must pass."""
    observations = registry.Observations()
    for check_id in check_ids:
        finding = registry.run_check(registry.find_check(check_id), observations)
        assert finding.status == PASS, (check_id, finding)


@pytest.mark.django_db
@override_settings(
    **HTTPS_SITE,
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
    PROXY_HEADERS=True,
)
def test_http_probes_reach_the_app_as_behind_the_https_proxy():
    """Behind nginx the probes must send what the proxy adds, or every page redirects."""
    assert_checks_pass(
        "doctor_code_requires_login",
        "staff_cannot_join",
        "anonymous_join",
        "public_pages_german",
        "public_pages_linked",
    )


@pytest.mark.django_db
@override_settings(**HTTPS_SITE, PROXY_HEADERS=False)
def test_http_probes_use_https_without_a_proxy():
    """Daphne terminating TLS itself: the probes must still speak https, not meet a 301."""
    assert_checks_pass("anonymous_join", "public_pages_german", "public_pages_linked")


# --- Calls with guests (Nr. 3, 4, 5) and the network evidence (Nr. 7) ---------------------


def test_guest_checks_pass_with_concrete_evidence(baseline):
    found = by_id(baseline)
    assert (
        "Alle 5 Patienten- und Gastcodes"
        in found["guest_codes_open_only_their_appointment"]["evidence"]
    )
    mesh = found["mesh_relays_only_between_admitted"]["evidence"]
    assert "no-such-participant" in mesh and "doctor→guest" in mesh
    assert "participant-joined" in found["waiting_people_hear_nothing"]["evidence"]


@pytest.mark.django_db(transaction=True)
def test_guest_codes_matched_by_slot_fail(monkeypatch):
    monkeypatch.setattr(services, "find_by_code", compliance_broken.find_guest_by_slot)
    finding = run("guest_codes_open_only_their_appointment")
    assert finding.status == FAIL, finding
    assert "A guest 1, B guest 1" in finding.evidence


@pytest.mark.django_db(transaction=True)
def test_admissions_announced_to_waiting_people_fail(monkeypatch, fast_probes):
    monkeypatch.setattr(room.Room, "on_joined", compliance_broken.announce_to_everyone)
    finding = run("waiting_people_hear_nothing")
    assert finding.status == FAIL and "participant-joined" in finding.evidence, finding


@pytest.mark.django_db(transaction=True)
def test_relays_to_waiting_guests_fail(monkeypatch, fast_probes):
    monkeypatch.setattr(room.Room, "_relay", compliance_broken.relay_to_anyone)
    monkeypatch.setattr(room.Room, "on_relay", compliance_broken.deliver_to_anyone)
    observations = registry.Observations()
    mesh = registry.run_check(
        registry.find_check("mesh_relays_only_between_admitted"), observations
    )
    assert mesh.status == FAIL and "wartenden Gast" in mesh.evidence, mesh
    waiting = registry.run_check(registry.find_check("waiting_people_hear_nothing"), observations)
    assert waiting.status == FAIL and "candidate" in waiting.evidence, waiting


def test_network_evidence_passes_on_the_documented_results():
    finding = run("network_lab_evidence")
    assert finding.status == PASS and "docs/evidence-network.md" in finding.evidence
    assert registry.find_check("network_lab_evidence").static


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        (None, "fehlt"),
        ("Calls through NAT and coturn, 400 kbit/s with 10 % loss.", "recovery"),
    ],
)
def test_missing_or_incomplete_network_evidence_fails(tmp_path, monkeypatch, text, missing):
    document = tmp_path / "evidence-network.md"
    if text is not None:
        document.write_text(text, encoding="utf-8")
    monkeypatch.setattr(nr07, "_network_evidence_path", lambda: document)
    finding = run("network_lab_evidence")
    assert finding.status == FAIL and missing in finding.evidence, finding
