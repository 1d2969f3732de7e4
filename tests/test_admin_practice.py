"""Issue 11 item 5: the admin creates an appointment in the explicitly chosen practice
(one of the organiser's practices where the doctor works); ambiguous or impossible
choices are refused with a German message and create nothing."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from consultations.models import Appointment, Membership, Practice
from tests.conftest import make_member

pytestmark = pytest.mark.django_db
ADD = reverse("admin:consultations_appointment_add")


@pytest.fixture
def world(db):
    alpha = Practice.objects.create(name="Praxis Alpha")
    beta = Practice.objects.create(name="Praxis Beta")
    gamma = Practice.objects.create(name="Praxis Gamma")
    doctor = make_member(alpha, "doc", Membership.Role.DOCTOR)  # alpha is her first practice
    Membership.objects.create(user=doctor, practice=beta, role=Membership.Role.DOCTOR)
    both = make_member(alpha, "mfa-both", Membership.Role.STAFF)
    Membership.objects.create(user=both, practice=beta, role=Membership.Role.STAFF)
    beta_only = make_member(beta, "mfa-beta", Membership.Role.STAFF)
    alpha_gamma = make_member(gamma, "mfa-ag", Membership.Role.STAFF)
    Membership.objects.create(user=alpha_gamma, practice=alpha, role=Membership.Role.STAFF)
    return {
        "alpha": alpha,
        "beta": beta,
        "gamma": gamma,
        "doctor": doctor,
        "both": both,
        "beta_only": beta_only,
        "alpha_gamma": alpha_gamma,
    }


def post(user, doctor, practice=None):
    client = Client()
    client.force_login(user)
    when = (timezone.localtime() + timezone.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    data = {"doctor": doctor.pk, "scheduled_at": when}
    if practice is not None:
        data["practice"] = practice.pk
    return client.post(ADD, data, HTTP_ACCEPT_LANGUAGE="de")


def practice_errors(response) -> str:
    return " ".join(response.context["adminform"].form.errors.get("practice", []))


def test_the_chosen_practice_is_the_appointments_practice(world):
    response = post(world["both"], world["doctor"], world["beta"])
    assert response.status_code == 200 and "rc-slip" in response.content.decode()
    assert Appointment.objects.get().practice == world["beta"]


def test_a_doctor_in_two_of_my_practices_needs_a_choice(world):
    response = post(world["both"], world["doctor"])
    assert "mehreren Ihrer Praxen" in practice_errors(response)
    assert not Appointment.objects.exists()


def test_without_ambiguity_the_only_common_practice_is_used(world):
    # The doctor's first practice is alpha, but this organiser works only for beta.
    assert post(world["beta_only"], world["doctor"]).status_code == 200
    assert Appointment.objects.get().practice == world["beta"]


def test_a_practice_of_someone_else_cannot_be_chosen(world):
    response = post(world["beta_only"], world["doctor"], world["alpha"])
    assert practice_errors(response)  # not one of the organiser's practices
    assert not Appointment.objects.exists()


def test_a_practice_where_the_doctor_does_not_work_is_refused(world):
    response = post(world["alpha_gamma"], world["doctor"], world["gamma"])
    assert "nicht als aktive Ärztin oder aktiver Arzt" in practice_errors(response)
    assert not Appointment.objects.exists()


def test_the_choice_offers_only_the_organisers_practices(world):
    client = Client()
    client.force_login(world["beta_only"])
    page = client.get(ADD).content.decode()
    select = page[page.index('<select name="practice"') :]
    select = select[: select.index("</select>")]
    assert "Praxis Beta" in select and "Praxis Alpha" not in select
