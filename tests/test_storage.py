"""What the database holds: never a clear code or key (read the SQLite file itself)."""

import pytest
from django.conf import settings
from django.db import connection

from consultations import services
from tests.support.deployment import skip_other_profile


@pytest.mark.django_db(transaction=True)
def test_database_file_holds_no_clear_code_or_key(doctor, practice):
    if connection.vendor != "sqlite":
        skip_other_profile("reads the SQLite file; the PostgreSQL run checks the same through SQL")
    issued = services.create_appointment(doctor=doctor, guests=2)
    _api_key, key = services.create_api_key(practice)
    connection.close()  # flush everything to the file
    raw = open(settings.DATABASES["default"]["TEST"]["NAME"], "rb").read()
    for secret in (issued.doctor_code, issued.patient_code, *issued.guest_codes):
        assert secret.encode() not in raw
        assert secret.replace("-", "").encode() not in raw
    assert key.encode() not in raw
    assert issued.appointment.patient_code_digest.encode() in raw  # the file was read


@pytest.mark.django_db
def test_no_column_holds_a_clear_code_or_key(doctor, practice):
    issued = services.create_appointment(doctor=doctor, guests=2)
    _api_key, key = services.create_api_key(practice)
    codes = (issued.doctor_code, issued.patient_code, *issued.guest_codes)
    secrets = {key, *codes, *(code.replace("-", "") for code in codes)}
    with connection.cursor() as cursor:
        for table in (
            "consultations_appointment",
            "consultations_apikey",
            "consultations_guestcode",
        ):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 (fixed table names)
            for row in cursor.fetchall():
                for value in row:
                    assert not any(secret in str(value) for secret in secrets)


def test_appointment_model_has_no_patient_fields():
    from consultations.models import Appointment

    names = {field.name for field in Appointment._meta.get_fields()}
    assert names == {
        "id",
        "practice",
        "doctor",
        "scheduled_at",
        "created_at",
        "expires_at",
        "cancelled_at",
        "doctor_code_digest",
        "patient_code_digest",
        "codes_version",  # a counter of re-issues
        "guest_codes",  # the reverse relation to GuestCode (slot and digest only)
    }


def test_guest_code_model_holds_only_a_slot_and_a_digest():
    from consultations.models import GuestCode

    names = {field.name for field in GuestCode._meta.get_fields()}
    assert names == {"id", "appointment", "slot", "digest"}
