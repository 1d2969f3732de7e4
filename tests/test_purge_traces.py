"""Issue 11 item 4: no trace of an appointment outlives its retention — the admin's
history entries about purged appointments and expired login sessions go too."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from django.contrib.admin.models import LogEntry
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from consultations.models import Appointment

pytestmark = pytest.mark.django_db
ADD = reverse("admin:consultations_appointment_add")


def create_in_admin(staff, doctor, at) -> Appointment:
    """The way a practice creates an appointment: the admin form (writes a history row)."""
    client = Client()
    client.force_login(staff)
    local = timezone.localtime(at).strftime("%Y-%m-%dT%H:%M")
    response = client.post(ADD, {"doctor": doctor.pk, "scheduled_at": local})
    assert response.status_code == 200, response.status_code
    return Appointment.objects.latest("created_at")


def test_purge_deletes_the_admin_history_of_purged_appointments(settings, staff, doctor):
    settings.METADATA_RETENTION_DAYS = 7
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        old = create_in_admin(staff, doctor, start + timedelta(hours=1))
    with time_machine.travel(start + timedelta(days=8, hours=2), tick=False):
        kept = create_in_admin(staff, doctor, timezone.now() + timedelta(hours=1))
        assert LogEntry.objects.filter(object_id=str(old.pk)).exists()
        dry = call_json("--dry-run")
        assert dry["would_delete"]["appointments"] == 1
        assert dry["would_delete"]["admin_log_entries"] == 1
        assert LogEntry.objects.filter(object_id=str(old.pk)).exists()
        done = call_json()
    assert done["deleted"]["appointments"] == 1 and done["deleted"]["admin_log_entries"] == 1
    assert not Appointment.objects.filter(pk=old.pk).exists()
    assert not LogEntry.objects.filter(object_id=str(old.pk)).exists()
    # nothing in the history still names the purged appointment's time
    assert not LogEntry.objects.filter(object_repr=str(old)).exclude(object_id=str(kept.pk))
    assert LogEntry.objects.filter(object_id=str(kept.pk)).exists()


def test_history_of_appointments_deleted_earlier_is_purged_too(staff, doctor):
    appointment = create_in_admin(staff, doctor, timezone.now() + timedelta(hours=1))
    Appointment.objects.filter(pk=appointment.pk).delete()  # e.g. by an older purge
    assert LogEntry.objects.filter(object_id=str(appointment.pk)).exists()
    assert call_json()["deleted"]["admin_log_entries"] == 1
    assert not LogEntry.objects.exists()


def test_purge_deletes_expired_sessions_only(doctor, staff):
    live, stale = Client(), Client()
    live.force_login(doctor)
    stale.force_login(staff)
    Session.objects.filter(session_key=stale.session.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    result = call_json()
    assert result["deleted"]["sessions"] == 1
    assert list(Session.objects.values_list("session_key", flat=True)) == [live.session.session_key]


def call_json(*args: str) -> dict:
    import io

    out = io.StringIO()
    call_command("purge_expired", "--json", *args, stdout=out)
    return json.loads(out.getvalue())
