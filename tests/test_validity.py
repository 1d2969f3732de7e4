"""Validity window, lead time, cancellation, re-issue and the 30-day database constraint."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import IntegrityError, transaction

from consultations import services
from consultations.models import Appointment

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def test_code_works_until_24_hours_after_the_appointment(doctor, frozen):
    issued = services.create_appointment(doctor=doctor, scheduled_at=NOW + timedelta(days=2))
    assert issued.appointment.expires_at == NOW + timedelta(days=3)
    frozen.move_to(NOW + timedelta(days=3) - timedelta(seconds=1))
    assert services.find_by_code(issued.patient_code) is not None
    frozen.move_to(NOW + timedelta(days=3))
    assert services.find_by_code(issued.patient_code) is None
    assert services.find_by_code(issued.doctor_code) is None


def test_code_works_from_creation(doctor, frozen):
    issued = services.create_appointment(doctor=doctor, scheduled_at=NOW + timedelta(days=5))
    assert services.find_by_code(issued.patient_code) is not None


def test_validity_never_exceeds_30_days_after_issue(doctor, frozen):
    issued = services.create_appointment(doctor=doctor, scheduled_at=NOW + timedelta(days=29))
    assert issued.appointment.expires_at == NOW + timedelta(days=30)
    frozen.move_to(NOW + timedelta(days=30))
    assert services.find_by_code(issued.patient_code) is None


def test_booking_more_than_29_days_ahead_is_refused(doctor, frozen):
    with pytest.raises(services.AppointmentError, match="29"):
        services.create_appointment(doctor=doctor, scheduled_at=NOW + timedelta(days=29, seconds=1))
    assert not Appointment.objects.exists()


def test_past_appointments_may_be_created_and_are_already_expired(doctor, frozen):
    issued = services.create_appointment(doctor=doctor, scheduled_at=NOW - timedelta(days=2))
    assert issued.appointment.status() == Appointment.Status.EXPIRED
    assert services.find_by_code(issued.patient_code) is None


def test_cancelled_codes_stop_working_at_once(issued):
    assert services.cancel_appointment(issued.appointment)
    assert services.find_by_code(issued.patient_code) is None
    assert services.find_by_code(issued.doctor_code) is None
    assert issued.appointment.status() == Appointment.Status.CANCELLED
    assert not services.cancel_appointment(issued.appointment)


def test_reissue_invalidates_old_codes_and_keeps_the_window(issued):
    expires = issued.appointment.expires_at
    fresh = services.reissue_codes(issued.appointment)
    assert services.find_by_code(issued.patient_code) is None
    assert services.find_by_code(issued.doctor_code) is None
    assert services.find_by_code(fresh.patient_code).appointment == issued.appointment
    assert fresh.appointment.expires_at == expires


def test_staff_member_cannot_be_an_appointments_doctor(staff):
    with pytest.raises(services.AppointmentError):
        services.create_appointment(doctor=staff)
    assert not Appointment.objects.exists()


def test_inactive_doctor_cannot_get_appointments(doctor):
    doctor.is_active = False
    doctor.save()
    with pytest.raises(services.AppointmentError):
        services.create_appointment(doctor=doctor)


def test_database_refuses_validity_over_30_days(issued):
    appointment = issued.appointment
    with pytest.raises(IntegrityError), transaction.atomic():
        Appointment.objects.filter(pk=appointment.pk).update(
            expires_at=appointment.created_at + timedelta(days=30, seconds=1)
        )


def test_status_labels(doctor, frozen):
    later = services.create_appointment(doctor=doctor, scheduled_at=NOW + timedelta(days=1))
    assert later.appointment.status() == Appointment.Status.SCHEDULED
    frozen.move_to(NOW + timedelta(days=1))
    assert later.appointment.status() == Appointment.Status.ACTIVE
