"""The call page's routing key (redconnect/affinity.py): one key per appointment, shared
by every participant, revealing nothing, and ignored by the server.

That nginx really puts a call's participants on one process by it is proven against
real processes in tests/test_routing.py.
"""

from __future__ import annotations

import re

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from consultations import services
from redconnect import affinity
from tests.test_call_client_logic import JS_DIR, page_stub, run_module

ORIGIN = b"http://127.0.0.1:8000"


def page_query(client: Client, code: str, name: str = "") -> str:
    """The data-ws-query the call page renders after joining with `code`."""
    response = client.post("/", {"code": code, "name": name, "consent": "on"})
    assert response.status_code == 302, response.status_code
    html = client.get("/call/").content.decode()
    (query,) = re.findall(r'data-ws-query="([^"]*)"', html)
    return query


def test_key_is_short_hex_stable_and_per_appointment(doctor):
    first = services.create_appointment(doctor=doctor).appointment
    second = services.create_appointment(doctor=doctor).appointment
    key = affinity.routing_key(first.pk)
    assert re.fullmatch(r"[0-9a-f]{8}", key)
    assert affinity.routing_key(first.pk) == key
    assert affinity.routing_key(second.pk) != key
    assert affinity.socket_query(first.pk) == f"r={key}"


def test_key_depends_on_the_secret_key(doctor, settings):
    """Nobody without SECRET_KEY can compute it from an appointment id (or back)."""
    appointment_id = services.create_appointment(doctor=doctor).appointment.pk
    key = affinity.routing_key(appointment_id)
    settings.SECRET_KEY = "another-secret-key-of-another-deployment-0123456789abcdef"
    assert affinity.routing_key(appointment_id) != key


@pytest.mark.django_db
def test_doctor_patient_and_guest_pages_carry_the_same_key(doctor):
    issued = services.create_appointment(doctor=doctor, guests=1)
    appointment = issued.appointment
    doctor_client = Client()
    doctor_client.force_login(doctor)
    queries = {
        page_query(doctor_client, issued.doctor_code),
        page_query(Client(), issued.patient_code, "Paula Patientin"),
        page_query(Client(), issued.guest_codes[0], "Gisela Gast"),
    }
    assert queries == {affinity.socket_query(appointment.pk)}
    (query,) = queries
    # Nothing of the appointment's id is in it.
    assert str(appointment.pk) not in query and appointment.pk.hex[:8] not in query


@pytest.mark.django_db
def test_another_appointment_gets_another_key(doctor):
    first = services.create_appointment(doctor=doctor)
    second = services.create_appointment(doctor=doctor)
    assert page_query(Client(), first.patient_code, "Paula") != page_query(
        Client(), second.patient_code, "Petra"
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("query", ["", "r=0badc0de", "r=", "r=not-hex&x=1"])
async def test_the_consumer_ignores_the_parameter(doctor, query, settings):
    """With, without or with any other value: the connection is the same (the key only
    steers nginx)."""
    from asgiref.sync import sync_to_async

    from redconnect.asgi import application

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    issued = await sync_to_async(services.create_appointment)(doctor=doctor)

    @sync_to_async
    def cookie() -> bytes:
        client = Client()
        response = client.post("/", {"code": issued.patient_code, "name": "Paula", "consent": "on"})
        assert response.status_code == 302
        return "; ".join(f"{k}={v.value}" for k, v in client.cookies.items() if v.value).encode()

    path = "/ws/call/" + (f"?{query}" if query else "")
    socket = WebsocketCommunicator(
        application, path, headers=[(b"cookie", await cookie()), (b"origin", ORIGIN)]
    )
    connected, _ = await socket.connect(timeout=5)
    try:
        assert connected
        welcome = await socket.receive_json_from(timeout=5)
        assert welcome["type"] == "welcome" and welcome["role"] == "patient"
        assert (await socket.receive_json_from(timeout=5))["type"] == "waiting"
    finally:
        await socket.disconnect()


def socket_url(*args: str) -> str:
    arguments = ", ".join(f"'{a}'" for a in args)
    return run_module(
        page_stub() + f"const {{ Signaling }} = await import('{JS_DIR / 'signaling.js'}');"
        f"console.log(JSON.stringify(new Signaling({arguments}).url));"
    )


def test_the_page_script_appends_the_rendered_query():
    assert socket_url("/ws/call/", "r=1a2b3c4d") == "ws://x/ws/call/?r=1a2b3c4d"
    assert socket_url("/ws/call/") == "ws://x/ws/call/"
    assert socket_url("/ws/call/", "") == "ws://x/ws/call/"


def test_the_call_page_hands_its_query_to_the_socket():
    source = (JS_DIR / "call.js").read_text()
    assert "new Signaling(root.dataset.wsPath, root.dataset.wsQuery)" in source
