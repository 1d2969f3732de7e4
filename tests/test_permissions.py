"""Issue 16 item 3 (roles): one module answers "may organise / conduct / audit" for the
admin, the views, the API, the consumer and the compliance page."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser

from compliance import views as compliance_views
from consultations import permissions, services
from consultations.models import Membership

pytestmark = pytest.mark.django_db

PERSONAS = ["anonymous", "doctor", "second_doctor", "other_doctor", "staff", "auditor", "root"]
# persona: (organise own practice, organise other practice, conduct, audit)
EXPECTED = {
    "anonymous": (False, False, False, False),
    "doctor": (True, False, True, False),
    "second_doctor": (True, False, False, False),
    "other_doctor": (False, True, False, False),
    "staff": (True, False, False, False),
    "auditor": (False, False, False, True),
    "root": (True, True, False, True),
}


@pytest.fixture
def people(request, doctor, second_doctor, other_practice_doctor, staff, auditor, superuser):
    return {
        "anonymous": AnonymousUser(),
        "doctor": doctor,
        "second_doctor": second_doctor,
        "other_doctor": other_practice_doctor,
        "staff": staff,
        "auditor": auditor,
        "root": superuser,
    }


@pytest.mark.parametrize("persona", PERSONAS)
def test_each_role_gets_exactly_its_abilities(people, persona, issued, other_practice):
    user = people[persona]
    own = issued.appointment.practice_id
    got = (
        permissions.may_organise(user, own),
        permissions.may_organise(user, other_practice.pk),
        permissions.may_conduct(user, issued.appointment),
        permissions.may_audit(user),
    )
    assert got == EXPECTED[persona]


def test_a_deactivated_account_may_do_nothing(doctor, issued):
    doctor.is_active = False
    doctor.save()
    assert not permissions.may_organise(doctor)
    assert not permissions.may_conduct(doctor, issued.appointment)


def test_a_doctor_who_left_the_practice_no_longer_conducts(doctor, issued):
    Membership.objects.filter(user=doctor).update(role=Membership.Role.STAFF)
    assert not permissions.may_conduct(doctor, issued.appointment)
    assert not permissions.may_be_booked(doctor, issued.appointment.practice)


def test_the_call_sites_ask_the_one_module():
    assert services.doctor_may_join is permissions.may_conduct
    assert services.practices_of is permissions.practices_of
    assert compliance_views.may_audit is permissions.may_audit
