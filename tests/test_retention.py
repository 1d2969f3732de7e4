"""Retention: purge removes exactly what is past METADATA_RETENTION_DAYS."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.test import override_settings

from consultations import services
from consultations.models import Appointment

NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)


def make(doctor, scheduled_at, cancelled_at=None):
    with time_machine.travel(scheduled_at - timedelta(hours=1), tick=False):
        issued = services.create_appointment(doctor=doctor, scheduled_at=scheduled_at)
    if cancelled_at:
        services.cancel_appointment(issued.appointment, now=cancelled_at)
    return issued.appointment


@override_settings(METADATA_RETENTION_DAYS=7)
def test_purge_removes_exactly_what_is_past_retention(doctor):
    # expires_at = scheduled + 24 h; cutoff = NOW - 7 days
    past = make(doctor, NOW - timedelta(days=8, hours=1))  # expired 7d1h ago → purge
    boundary = make(doctor, NOW - timedelta(days=7, hours=23))  # expired 6d23h ago → keep
    recent = make(doctor, NOW - timedelta(days=1))  # expired now-ish → keep
    cancelled_old = make(doctor, NOW + timedelta(days=1), cancelled_at=NOW - timedelta(days=8))
    cancelled_new = make(doctor, NOW + timedelta(days=1), cancelled_at=NOW - timedelta(days=2))
    with time_machine.travel(NOW, tick=False):
        assert services.purge_expired(dry_run=True)["appointments"] == 2
        assert Appointment.objects.count() == 5
        assert services.purge_expired()["appointments"] == 2
    remaining = set(Appointment.objects.values_list("pk", flat=True))
    assert remaining == {boundary.pk, recent.pk, cancelled_new.pk}
    assert past.pk not in remaining and cancelled_old.pk not in remaining


@override_settings(METADATA_RETENTION_DAYS=0)
def test_zero_retention_purges_every_expired_record(doctor):
    make(doctor, NOW - timedelta(days=1, minutes=1))
    with time_machine.travel(NOW, tick=False):
        assert services.purge_expired()["appointments"] == 1


def test_purge_command_json(doctor, capsys):
    make(doctor, NOW - timedelta(days=30))
    with time_machine.travel(NOW, tick=False):
        call_command("purge_expired", "--dry-run", "--json")
        dry = json.loads(capsys.readouterr().out)
        assert dry["would_delete"]["appointments"] == 1 and dry["dry_run"] is True
        call_command("purge_expired", "--json")
        done = json.loads(capsys.readouterr().out)
    assert done["deleted"]["appointments"] == 1
    assert not Appointment.objects.exists()


@pytest.mark.parametrize("days", ["91", "120"])
def test_retention_above_90_days_stops_start_up(days):
    from tests.support.helpers import run_manage

    result = run_manage(["check"], METADATA_RETENTION_DAYS=days)
    assert result.returncode != 0
    assert "METADATA_RETENTION_DAYS" in result.stderr


def test_retention_of_90_days_is_accepted():
    from tests.support.helpers import run_manage

    result = run_manage(["check"], METADATA_RETENTION_DAYS="90")
    assert result.returncode == 0, result.stderr
