"""Two `manage.py serve` processes, one PostgreSQL, one Redis: one call across both.

DESIGN "Scale": several daphne processes behind nginx share rooms through Redis. The
doctor is served by process A, the patient by process B; admission, offer/answer and
candidates must cross the process boundary, and so must a supersede (4009).
"""

from __future__ import annotations

import pytest

from tests.support.callclient import (
    CallSocket,
    HttpSession,
    admit_and_negotiate,
    exchange_candidates,
)
from tests.support.deployment import skip_in_production_run, two_servers
from tests.support.live import manage_json

pytestmark = [pytest.mark.redis, skip_in_production_run()]

PATIENT_NAME = "Petra Prozess"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    with two_servers(tmp_path_factory.mktemp("multiprocess")) as deployment:
        yield deployment


def joined_sessions(deployment) -> tuple[HttpSession, HttpSession]:
    """Doctor joined through process A, patient through process B (plain HTTP + CSRF)."""
    server_a, server_b = deployment.servers
    appointment = deployment.appointment()
    doctor = HttpSession(server_a.url)
    doctor.login(deployment.doctor, deployment.seed["doctor"]["password"])
    response = doctor.join(appointment["doctor_code"])
    assert response.status == 302 and response.location.endswith("/call/"), response
    patient = HttpSession(server_b.url)
    response = patient.join(appointment["patient_code"], PATIENT_NAME)
    assert response.status == 302 and response.location.endswith("/call/"), response
    assert patient.get("/call/").status == 200
    return doctor, patient


def test_both_processes_share_database_and_layer(deployment):
    for server in deployment.servers:
        assert HttpSession(server.url).get("/healthz").status == 200


async def test_call_across_two_processes(deployment):
    doctor_http, patient_http = joined_sessions(deployment)
    doctor, patient = CallSocket(doctor_http), CallSocket(patient_http)
    try:
        welcome = await doctor.connect()
        assert welcome["type"] == "welcome" and welcome["role"] == "doctor"
        assert welcome["peer"] is None

        welcome = await patient.connect()
        assert welcome["role"] == "patient"
        assert welcome["peer"]["role"] == "doctor"
        await patient.expect("waiting")
        # The patient's typed name reached the doctor on the other process.
        assert (await doctor.expect("peer-waiting"))["name"] == PATIENT_NAME

        await admit_and_negotiate(doctor, patient, "mp1")
    finally:
        await doctor.close()
        await patient.close()


async def test_patient_reconnect_on_other_process_supersedes(deployment):
    server_a, _server_b = deployment.servers
    doctor_http, patient_http = joined_sessions(deployment)
    doctor = CallSocket(doctor_http)
    first = CallSocket(patient_http)  # through process B
    second = CallSocket(patient_http, base_url=server_a.url)  # same session, process A
    try:
        await doctor.connect()
        await first.connect()
        await first.expect("waiting")
        await doctor.expect("peer-waiting")
        await admit_and_negotiate(doctor, first, "mp2")

        welcome = await second.connect()
        assert welcome["role"] == "patient"
        assert await first.closed_with() == 4009
        # A superseded patient must be admitted again (contract).
        await second.expect("waiting")
        await doctor.expect("peer-waiting", skip=("peer-left", "participant-left"))
        await doctor.send({"type": "admit"})
        await doctor.expect("admitted")
        await second.expect("admitted")
        await exchange_candidates(doctor, second, "mp3")
    finally:
        for socket in (doctor, first, second):
            await socket.close()


async def test_three_people_across_two_processes(deployment):
    """Presence and the room's events hold N participants across processes (issue 12)."""
    server_a, server_b = deployment.servers
    appointment = manage_json(
        deployment.env, "create_appointment", "--doctor", deployment.doctor, "--guests", "1"
    )
    doctor_http = HttpSession(server_a.url)
    doctor_http.login(deployment.doctor, deployment.seed["doctor"]["password"])
    assert doctor_http.join(appointment["doctor_code"]).status == 302
    patient_http = HttpSession(server_b.url)
    assert patient_http.join(appointment["patient_code"], PATIENT_NAME).status == 302
    guest_http = HttpSession(server_a.url)
    assert guest_http.join(appointment["guest_codes"][0], "Gisela Gast").status == 302
    doctor, patient, guest = (CallSocket(s) for s in (doctor_http, patient_http, guest_http))
    try:
        await doctor.connect()
        patient_id = (await patient.connect())["id"]
        await patient.expect("waiting")
        await doctor.expect("peer-waiting")
        guest_welcome = await guest.connect()
        guest_id = guest_welcome["id"]
        assert guest_welcome["role"] == "guest" and len(guest_welcome["participants"]) == 1
        await guest.expect("waiting")
        assert (await doctor.expect("peer-waiting"))["id"] == guest_id
        await doctor.send({"type": "admit"})
        await doctor.expect("admitted")
        await patient.expect("admitted")
        await doctor.send({"type": "admit", "id": guest_id})
        await doctor.expect("admitted")
        admitted = await guest.expect("admitted")
        assert patient_id in {p["id"] for p in admitted["participants"]}
        assert (await patient.expect("participant-joined"))["id"] == guest_id
        await patient.send({"type": "candidate", "candidate": None, "to": guest_id})
        assert (await guest.expect("candidate"))["from"] == patient_id
        await guest.close()
        assert (await doctor.expect("participant-left"))["id"] == guest_id
        assert (await patient.expect("participant-left"))["id"] == guest_id
    finally:
        for socket in (doctor, patient, guest):
            await socket.close()
