"""Relay-only mode on the server side: the join page's choice, the practice default, the
flag in the signed join cookie and the call page's ICE policy. The browsers' part (only
relay candidates reach the doctor) is proven in tests/network/test_privacy_and_switch.py.
"""

from __future__ import annotations

import pytest

from consultations import joinsession
from tests.test_join import join_cookie, login, post_join

pytestmark = pytest.mark.django_db


def call_page_policy(client) -> str:
    html = client.get("/call/").content.decode()
    return html.split('data-ice-policy="', 1)[1].split('"', 1)[0]


def test_join_page_offers_hiding_the_ip_address_in_german(client):
    html = client.get("/").content.decode()
    assert 'name="hide_ip"' in html
    assert "Meine IP-Adresse gegenüber der Praxis verbergen" in html
    field = html[html.index('name="hide_ip"') :]
    assert 'href="/faq/#relay"' in field[: field.index("</div>")]


def test_patient_who_ticks_it_gets_relay_only(client, issued):
    data = {"code": issued.patient_code, "name": "Paula Patientin", "consent": "on"}
    response = client.post("/", {**data, "hide_ip": "on"})
    assert response.status_code == 302
    assert joinsession.read_join(join_cookie(response).value).hide_ip is True
    assert call_page_policy(client) == "relay"


def test_patient_who_does_not_tick_it_connects_normally(client, issued):
    response = post_join(client, issued.patient_code)
    assert joinsession.read_join(join_cookie(response).value).hide_ip is False
    assert call_page_policy(client) == "all"


def test_practice_default_applies_to_patients_only(client, issued, doctor):
    issued.appointment.practice.hide_patient_ip = True
    issued.appointment.practice.save()
    post_join(client, issued.patient_code)
    assert call_page_policy(client) == "relay"
    doctor_client = type(client)()
    login(doctor_client, doctor)
    post_join(doctor_client, issued.doctor_code, name="", consent=False)
    # The doctor's own address is the practice's business; the doctor's page is unchanged.
    assert call_page_policy(doctor_client) == "all"


def test_flag_is_signed_and_old_cookies_mean_no(issued):
    data = joinsession.JoinData(str(issued.appointment.pk), "patient", "P", None, "j", hide_ip=True)
    assert joinsession.unsign_join(joinsession.sign_join(data)).hide_ip is True
    plain = joinsession.JoinData(str(issued.appointment.pk), "patient", "P", None, "j")
    assert joinsession.unsign_join(joinsession.sign_join(plain)).hide_ip is False
