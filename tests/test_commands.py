"""Management commands: JSON exactly as in the contract, clear errors and exit codes."""

import json
import re
from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from consultations import services
from consultations.models import ApiKey, Membership, Practice
from tests.test_api import FIELDS

CODE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){2}$")


def run_json(capsys, *args):
    call_command(*args, "--json")
    return json.loads(capsys.readouterr().out)


@pytest.mark.django_db
def test_seed_demo_is_idempotent(capsys, monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "demo-password-123")
    first = run_json(capsys, "seed_demo")
    assert set(first) == {"practice", "doctor", "staff", "auditor"}
    assert set(first["practice"]) == {"id", "name"}
    assert first["doctor"] == {"username": "demo-arzt", "password": "demo-password-123"}
    assert first["staff"]["username"] == "demo-mfa"
    assert first["auditor"]["username"] == "demo-pruefer"
    second = run_json(capsys, "seed_demo")
    assert second["practice"] == first["practice"]
    assert second["doctor"]["password"] is None
    assert Practice.objects.count() == 1 and Membership.objects.count() == 3
    roles = dict(Membership.objects.values_list("user__username", "role"))
    assert roles == {"demo-arzt": "doctor", "demo-mfa": "staff", "demo-pruefer": "auditor"}


@pytest.mark.django_db
def test_seed_demo_users_can_log_in_to_the_admin(client, capsys, monkeypatch):
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    users = run_json(capsys, "seed_demo")
    for key in ("doctor", "staff", "auditor"):
        response = client.post(
            "/admin/login/",
            {"username": users[key]["username"], "password": users[key]["password"]},
        )
        assert response.status_code == 302, key
        client.logout()


@pytest.mark.django_db
def test_create_practice(capsys):
    out = run_json(capsys, "create_practice", "--name", "Praxis Süd")
    assert out == {"id": Practice.objects.get().pk, "name": "Praxis Süd"}


def test_create_appointment_json(capsys, doctor):
    out = run_json(capsys, "create_appointment", "--doctor", doctor.username)
    assert set(out) == FIELDS  # the contract: the API answers with the same fields
    assert out["guest_codes"] == []
    assert CODE.match(out["doctor_code"]) and CODE.match(out["patient_code"])
    assert out["join_url"] == "http://127.0.0.1:8000/"
    scheduled = datetime.fromisoformat(out["scheduled_at"])
    assert datetime.fromisoformat(out["expires_at"]) - scheduled == timedelta(hours=24)
    assert services.find_by_code(out["patient_code"]).appointment.pk.hex == out["id"].replace(
        "-", ""
    )


@pytest.mark.parametrize("guests", [1, 7])
def test_create_appointment_with_guest_codes(capsys, doctor, guests):
    out = run_json(
        capsys, "create_appointment", "--doctor", doctor.username, "--guests", str(guests)
    )
    assert len(out["guest_codes"]) == guests and all(CODE.match(c) for c in out["guest_codes"])
    codes = {out["doctor_code"], out["patient_code"], *out["guest_codes"]}
    assert len(codes) == guests + 2
    for code in out["guest_codes"]:
        match = services.find_by_code(code)
        assert match.role == "guest" and str(match.appointment.pk) == out["id"]
    assert {services.find_by_code(c).guest_slot for c in out["guest_codes"]} == set(range(guests))


@pytest.mark.parametrize("guests", ["-1", "8", "x"])
def test_create_appointment_refuses_a_bad_number_of_guests(doctor, guests):
    with pytest.raises(CommandError):
        call_command("create_appointment", "--doctor", doctor.username, "--guests", guests)
    assert not services.Appointment.objects.exists()


def test_create_appointment_at_a_given_time(capsys, doctor):
    at = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    out = run_json(
        capsys, "create_appointment", "--doctor", doctor.username, "--at", at.isoformat()
    )
    assert datetime.fromisoformat(out["scheduled_at"]) == at


def test_create_appointment_in_the_past_is_allowed(capsys, doctor):
    at = (timezone.now() - timedelta(days=3)).isoformat()
    out = run_json(capsys, "create_appointment", "--doctor", doctor.username, "--at", at)
    assert services.find_by_code(out["patient_code"]) is None


@pytest.mark.parametrize("bad", ["nobody", "mfa"])
def test_create_appointment_refuses_unknown_or_non_doctor(capsys, staff, bad):
    with pytest.raises(CommandError):
        call_command("create_appointment", "--doctor", bad, "--json")


def test_create_appointment_refuses_more_than_29_days_ahead(doctor):
    at = (timezone.now() + timedelta(days=30)).isoformat()
    with pytest.raises(CommandError, match="29"):
        call_command("create_appointment", "--doctor", doctor.username, "--at", at)


def test_create_appointment_refuses_malformed_time(doctor):
    with pytest.raises(CommandError, match="ISO"):
        call_command("create_appointment", "--doctor", doctor.username, "--at", "tomorrow")


def test_create_api_key(capsys, practice):
    out = run_json(capsys, "create_api_key", "--practice", str(practice.pk))
    assert set(out) == {"practice", "key", "prefix"}
    assert out["practice"] == practice.pk and len(out["key"]) >= 32
    assert out["key"].startswith(out["prefix"])
    stored = ApiKey.objects.get()
    assert stored.digest != out["key"] and out["key"] not in stored.digest
    assert services.authenticate_api_key(out["key"]) == stored


@pytest.mark.django_db
def test_create_api_key_for_unknown_practice():
    with pytest.raises(CommandError):
        call_command("create_api_key", "--practice", "999")


@pytest.mark.django_db(transaction=True)
def test_commands_exit_1_with_a_message():
    from tests.support.helpers import run_manage, test_database_env

    result = run_manage(
        ["create_appointment", "--doctor", "nobody-here", "--json"], **test_database_env()
    )
    assert result.returncode == 1
    assert "nobody-here" in result.stderr
    assert "Traceback" not in result.stderr
    assert get_user_model().objects.filter(username="nobody-here").count() == 0
