"""Practice admin: scoped to the user's practices, codes shown exactly once."""

import re

import pytest
from django.urls import reverse

from consultations import services
from consultations.models import Appointment
from tests.conftest import PASSWORD

ADD_URL = reverse("admin:consultations_appointment_add")
LIST_URL = reverse("admin:consultations_appointment_changelist")
CODE = re.compile(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}")


def login(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


def add_form_data(doctor, when="2030-01-01T10:00"):
    return {"doctor": doctor.pk, "scheduled_at": when}


@pytest.fixture
def now_local():
    from django.utils import timezone

    return timezone.localtime().replace(second=0, microsecond=0)


def test_staff_creates_appointment_and_sees_codes_once(client, staff, doctor, now_local):
    login(client, staff)
    response = client.post(ADD_URL, add_form_data(doctor, now_local.strftime("%Y-%m-%dT%H:%M")))
    assert response.status_code == 200
    html = response.content.decode()
    codes = CODE.findall(html)
    assert len(set(codes)) == 2
    assert "no-store" in response["Cache-Control"]
    appointment = Appointment.objects.get()
    doctor_code = re.search(r'data-role="doctor-code">([^<]+)<', html).group(1)
    patient_code = re.search(r'data-role="patient-code">([^<]+)<', html).group(1)
    assert services.find_by_code(doctor_code).role == "doctor"
    assert services.find_by_code(patient_code).appointment == appointment
    assert "nutzungsbedingungen" in html and "datenschutz" in html  # the slip
    # never again: neither in the list nor on the detail page
    for url in (LIST_URL, reverse("admin:consultations_appointment_change", args=[appointment.pk])):
        page = client.get(url).content.decode()
        assert doctor_code not in page and patient_code not in page


def test_list_shows_german_status(client, staff, issued):
    login(client, staff)
    page = client.get(LIST_URL, HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert "aktiv" in page
    services.cancel_appointment(issued.appointment)
    assert "abgesagt" in client.get(LIST_URL).content.decode()


def test_staff_member_cannot_be_chosen_as_doctor(client, staff, doctor):
    login(client, staff)
    page = client.get(ADD_URL).content.decode()
    form = re.search(r'<select name="doctor".*?</select>', page, re.S).group(0)
    assert f'value="{doctor.pk}"' in form
    assert f'value="{staff.pk}"' not in form
    response = client.post(ADD_URL, add_form_data(staff))
    assert response.status_code == 200 and not Appointment.objects.exists()


def test_staff_cannot_choose_another_practices_doctor(client, staff, other_practice_doctor):
    login(client, staff)
    client.post(ADD_URL, add_form_data(other_practice_doctor))
    assert not Appointment.objects.exists()


def test_staff_of_practice_a_cannot_see_practice_b(client, other_practice_staff, issued):
    login(client, other_practice_staff)
    assert issued.appointment.practice.name not in client.get(LIST_URL).content.decode()
    detail = reverse("admin:consultations_appointment_change", args=[issued.appointment.pk])
    assert client.get(detail).status_code in (302, 403, 404)


def test_staff_of_practice_b_cannot_cancel_practice_a(client, other_practice_staff, issued):
    login(client, other_practice_staff)
    client.post(
        LIST_URL, {"action": "cancel_selected", "_selected_action": [str(issued.appointment.pk)]}
    )
    issued.appointment.refresh_from_db()
    assert issued.appointment.cancelled_at is None


def test_cancel_action(client, staff, issued):
    login(client, staff)
    client.post(
        LIST_URL, {"action": "cancel_selected", "_selected_action": [str(issued.appointment.pk)]}
    )
    assert services.find_by_code(issued.patient_code) is None


def test_reissue_action_shows_new_codes_once(client, staff, issued):
    login(client, staff)
    response = client.post(
        LIST_URL, {"action": "reissue_codes", "_selected_action": [str(issued.appointment.pk)]}
    )
    html = response.content.decode()
    new_patient = re.search(r'data-role="patient-code">([^<]+)<', html).group(1)
    assert new_patient != issued.patient_code
    assert services.find_by_code(issued.patient_code) is None
    assert services.find_by_code(new_patient).appointment == issued.appointment


def test_auditor_sees_no_appointments(client, auditor, issued):
    login(client, auditor)
    assert client.get(LIST_URL).status_code == 403
    assert client.get(ADD_URL).status_code == 403


def test_appointments_cannot_be_edited_or_deleted(client, staff, issued):
    login(client, staff)
    delete = reverse("admin:consultations_appointment_delete", args=[issued.appointment.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert Appointment.objects.filter(pk=issued.appointment.pk).exists()


def test_doctor_can_organise_appointments(client, doctor):
    login(client, doctor)
    assert client.get(ADD_URL).status_code == 200


def test_booking_more_than_29_days_ahead_is_refused_in_the_form(client, staff, doctor):
    login(client, staff)
    response = client.post(ADD_URL, add_form_data(doctor, "2099-01-01T10:00"))
    assert response.status_code == 200
    assert "29" in response.content.decode()
    assert not Appointment.objects.exists()


def test_superuser_sees_all_practices(client, superuser, issued, other_practice_doctor):
    services.create_appointment(doctor=other_practice_doctor)
    login(client, superuser)
    page = client.get(LIST_URL).content.decode()
    assert "Praxis Dr. Alpha" in page and "Praxis Dr. Beta" in page


# --- Guests (issue 12) -----------------------------------------------------------------


def _codes(html: str, role: str) -> list[str]:
    return re.findall(rf'data-role="{role}">([^<]+)<', html)


def test_add_form_asks_for_the_number_of_guests(client, staff, doctor, now_local):
    login(client, staff)
    form = client.get(ADD_URL, HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert 'name="guests"' in form and "Anzahl der Gäste" in form
    data = {**add_form_data(doctor, now_local.strftime("%Y-%m-%dT%H:%M")), "guests": "2"}
    response = client.post(ADD_URL, data, HTTP_ACCEPT_LANGUAGE="de")
    html = response.content.decode()
    guests = _codes(html, "guest-code")
    assert len(set(guests)) == 2 and len(_codes(html, "patient-code")) == 1
    appointment = Appointment.objects.get()
    for code in guests:
        match = services.find_by_code(code)
        assert match.role == "guest" and match.appointment == appointment
    # One printable slip per guest, in German.
    assert html.count('class="rc-slip"') == 3
    assert "Gastzettel 1" in html and "Gastzettel 2" in html and "Gastzugang" in html
    page = client.get(reverse("admin:consultations_appointment_change", args=[appointment.pk]))
    assert all(code not in page.content.decode() for code in guests)


@pytest.mark.parametrize("guests", ["8", "-1", "x"])
def test_add_form_refuses_a_bad_number_of_guests(client, staff, doctor, guests):
    login(client, staff)
    response = client.post(ADD_URL, {**add_form_data(doctor), "guests": guests})
    assert response.status_code == 200 and not Appointment.objects.exists()


def test_add_guest_code_action(client, staff, issued):
    login(client, staff)
    action = {"action": "add_guest_code", "_selected_action": [str(issued.appointment.pk)]}
    # First a confirmation page (with the optional address): nothing issued yet.
    confirm = client.post(LIST_URL, action, HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert "Gastcode ausgeben" in confirm and 'name="email"' in confirm
    assert issued.appointment.guest_codes.count() == 0
    action["confirm"] = "yes"
    response = client.post(LIST_URL, action, HTTP_ACCEPT_LANGUAGE="de")
    html = response.content.decode()
    (guest,) = _codes(html, "guest-code")
    assert services.find_by_code(guest).role == "guest"
    assert not _codes(html, "patient-code") and not _codes(html, "doctor-code")
    assert "no-store" in response["Cache-Control"]
    for _ in range(6):
        client.post(LIST_URL, action)
    response = client.post(LIST_URL, action, HTTP_ACCEPT_LANGUAGE="de", follow=True)
    assert "keinen weiteren Gastcode" in response.content.decode()
    assert issued.appointment.guest_codes.count() == 7


def test_add_guest_code_is_in_german_in_the_action_list(client, staff, issued):
    login(client, staff)
    page = client.get(LIST_URL, HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert "Gastcode hinzufügen" in page


def test_reissue_action_renews_guest_codes_and_ends_old_joins(client, staff, doctor):
    issued = services.create_appointment(doctor=doctor, guests=2)
    patient = type(client)()
    assert (
        patient.post("/", {"code": issued.patient_code, "name": "P", "consent": "on"}).status_code
        == 302
    )
    assert patient.get("/call/").status_code == 200
    login(client, staff)
    response = client.post(
        LIST_URL, {"action": "reissue_codes", "_selected_action": [str(issued.appointment.pk)]}
    )
    html = response.content.decode()
    assert len(_codes(html, "guest-code")) == 2
    for old in issued.guest_codes:
        assert services.find_by_code(old) is None
    for new in _codes(html, "guest-code"):
        assert services.find_by_code(new).appointment == issued.appointment
    # The join made with the old patient code is over.
    response = patient.get("/call/")
    assert response.status_code == 302 and response["Location"] == "/"


# --- The practice is chosen explicitly (issue 11 item 5) --------------------------------


def soon() -> str:
    from django.utils import timezone

    return (timezone.localtime() + timezone.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def doctor_in_two_practices(doctor, other_practice):
    from consultations.models import Membership

    Membership.objects.create(user=doctor, practice=other_practice, role=Membership.Role.DOCTOR)
    return doctor


def test_an_ambiguous_practice_must_be_chosen(client, superuser, doctor_in_two_practices):
    login(client, superuser)
    response = client.post(
        ADD_URL, add_form_data(doctor_in_two_practices, soon()), HTTP_ACCEPT_LANGUAGE="de"
    )
    assert response.status_code == 200 and not Appointment.objects.exists()
    assert "mehreren Ihrer Praxen" in response.content.decode()


def test_the_chosen_practice_is_used(client, superuser, doctor_in_two_practices, other_practice):
    login(client, superuser)
    data = {**add_form_data(doctor_in_two_practices, soon()), "practice": other_practice.pk}
    assert client.post(ADD_URL, data).status_code == 200
    assert Appointment.objects.get().practice == other_practice


def test_a_single_practice_needs_no_choice(client, staff, doctor_in_two_practices, practice):
    """The staff member organises only the first practice: that one, without asking."""
    login(client, staff)
    assert client.post(ADD_URL, add_form_data(doctor_in_two_practices, soon())).status_code == 200
    assert Appointment.objects.get().practice == practice


def test_a_practice_the_organiser_does_not_run_is_refused(
    client, staff, doctor_in_two_practices, other_practice
):
    login(client, staff)
    data = {**add_form_data(doctor_in_two_practices, soon()), "practice": other_practice.pk}
    client.post(ADD_URL, data)
    assert not Appointment.objects.exists()
