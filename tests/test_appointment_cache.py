"""The connect's cached appointment state (consultations.appointment_cache): no database
read per connect, and never an accepted connect the database read would have refused."""

from __future__ import annotations

import os

import pytest
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse
from django.test.utils import CaptureQueriesContext

from consultations import appointment_cache, joinsession, services
from consultations.models import Appointment
from tests.support.deployment import skip_other_profile

pytestmark = pytest.mark.django_db(transaction=True)


def _patient_join(appointment: Appointment) -> joinsession.JoinData:
    return joinsession.issue_join_cookie(
        HttpResponse(), appointment=appointment, role=services.PATIENT, display_name="Erika"
    )


def _queries(function, *args):
    with CaptureQueriesContext(connection) as captured:
        result = function(*args)
    return result, len(captured)


def test_the_connect_after_a_join_reads_no_database(issued):
    join = _patient_join(issued.appointment)
    check, queries = _queries(joinsession.check_connect, join, None)
    assert check.ok and check.appointment.pk == issued.appointment.pk
    assert check.appointment.practice_id == issued.appointment.practice_id
    assert queries == 0


def test_a_miss_reads_once_and_leaves_it_for_the_next(issued):
    join = _patient_join(issued.appointment)
    cache.delete(appointment_cache.state_key(issued.appointment.pk))
    assert _queries(joinsession.check_connect, join, None)[1] == 1
    assert _queries(joinsession.check_connect, join, None)[1] == 0


def test_a_cancellation_refuses_the_next_connect(issued):
    join = _patient_join(issued.appointment)
    services.cancel_appointment(issued.appointment)
    check = joinsession.check_connect(join, None)
    assert check.close_code == joinsession.NO_SESSION


def test_reissued_codes_refuse_a_connect_of_the_old_join(issued):
    join = _patient_join(issued.appointment)
    services.reissue_codes(issued.appointment)
    assert joinsession.check_connect(join, None).close_code == joinsession.NO_SESSION


def test_an_old_read_never_covers_a_change(issued):
    """A reader that loaded the appointment before the cancellation adds its state after
    it: the stale marker stays, the connect reads the database and is refused."""
    join = _patient_join(issued.appointment)
    loaded_before = Appointment.objects.get(pk=issued.appointment.pk)
    services.cancel_appointment(issued.appointment)
    appointment_cache.remember(loaded_before)
    assert cache.get(appointment_cache.state_key(issued.appointment.pk)) == appointment_cache.STALE
    check, queries = _queries(joinsession.check_connect, join, None)
    assert check.close_code == joinsession.NO_SESSION and queries == 1


def test_any_save_marks_the_entry_stale(issued):
    _patient_join(issued.appointment)
    assert isinstance(cache.get(appointment_cache.state_key(issued.appointment.pk)), tuple)
    issued.appointment.save()
    assert cache.get(appointment_cache.state_key(issued.appointment.pk)) == appointment_cache.STALE


def test_the_doctor_is_checked_in_the_database(issued, doctor):
    join = joinsession.JoinData(str(issued.appointment.pk), "doctor", "Dr. X", doctor.pk)
    check, queries = _queries(joinsession.check_connect, join, doctor)
    assert check.ok and queries >= 1
    assert isinstance(check.appointment, Appointment)


def test_nothing_personal_is_cached(issued):
    _patient_join(issued.appointment)
    stored = cache.get(appointment_cache.state_key(issued.appointment.pk))
    assert "Erika" not in repr(stored)
    assert issued.patient_code not in repr(stored)


def test_the_embedded_cache_keeps_a_thousand_connections(settings):
    """Django's locmem default (300 entries) would cull live presence entries."""
    import uuid

    from signaling import presence

    if os.environ.get("REDIS_URL"):
        skip_other_profile("the embedded default's cache; production uses Redis")
    assert settings.CACHES["default"]["BACKEND"].endswith("LocMemCache")
    appointments = [uuid.uuid4() for _ in range(1000)]
    for number, appointment in enumerate(appointments):
        presence.announce(appointment, "patient", f"specific.x!{number}")
    found = [presence.connected_channels(a, ("patient",)) for a in appointments]
    assert all(found), sum(1 for f in found if not f)
