"""The call WebSocket `/ws/call/`: every rule of the contract, in-memory and on Redis.

The application under test is `redconnect.asgi.application`, so the Origin check and the
auth/cookie middleware are the real ones; join cookies come from real `POST /` requests.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import time
from datetime import timedelta

import pytest
import time_machine
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache import cache, caches
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client

from consultations import services
from signaling import ice, presence, protocol
from tests.support.callclient import make_candidate, make_sdp
from tests.support.deployment import skip_other_profile

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://127.0.0.1:8000"
PATIENT_NAME = "Paula Patientin"
DOCTOR_NAME = "Dora Doktor"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The personas are created with passwords; the default hasher costs ~0.3 s per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(params=["memory", "redis"])
def layer(request, settings):
    """Channel layer and cache: in-process, or a private Redis shared like in production."""
    if request.param == "memory" and os.environ.get("REDIS_URL"):
        skip_other_profile("the production-profile run tests Redis; the first the in-process layer")
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [url], "capacity": 200, "expiry": 30},
            }
        }
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
        }
    else:
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels.layers.InMemoryChannelLayer",
                "CONFIG": {"capacity": 200},
            }
        }
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    return request.param


# --- Joining: real POST / requests -----------------------------------------------------


def _cookie_header(client: Client) -> bytes:
    return "; ".join(f"{k}={v.value}" for k, v in client.cookies.items() if v.value).encode()


@sync_to_async
def patient_cookie(code: str, name: str = PATIENT_NAME) -> bytes:
    client = Client()
    response = client.post("/", {"code": code, "name": name, "consent": "on"})
    assert response.status_code == 302, response.status_code
    return _cookie_header(client)


@sync_to_async
def doctor_cookie(code: str, user) -> bytes:
    client = Client()
    client.force_login(user)
    response = client.post("/", {"code": code})
    assert response.status_code == 302, response.status_code
    return _cookie_header(client)


@sync_to_async
def login_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return _cookie_header(client)


# --- Talking to the consumer -----------------------------------------------------------


def communicator(cookie: bytes = b"", origin: bytes | None = ORIGIN) -> WebsocketCommunicator:
    from redconnect.asgi import application

    headers = [(b"cookie", cookie)] if cookie else []
    if origin is not None:
        headers.append((b"origin", origin))
    return WebsocketCommunicator(application, "/ws/call/", headers=headers)


async def connect(cookie: bytes) -> tuple[WebsocketCommunicator, dict]:
    """Connect and return the communicator with its first message, which must be `welcome`."""
    socket = communicator(cookie)
    connected, _ = await socket.connect(timeout=5)
    assert connected
    welcome = await receive(socket)
    assert welcome["type"] == "welcome", welcome
    socket.participant_id = welcome["id"]  # this connection's id (contract: ≥ 8 characters)
    return socket, welcome


async def receive(socket: WebsocketCommunicator, timeout: float = 5) -> dict:
    return json.loads(await socket.receive_from(timeout))


async def expect(socket: WebsocketCommunicator, kind: str, timeout: float = 5, **fields) -> dict:
    """The next message, of type `kind` and with the given field values."""
    message = await receive(socket, timeout)
    assert message["type"] == kind, f"expected {kind}, got {message}"
    for name, value in fields.items():
        assert message.get(name) == value, f"expected {name}={value!r} in {message}"
    return message


async def expect_left(socket: WebsocketCommunicator, gone: WebsocketCommunicator) -> None:
    """Doctor–patient departure: `participant-left` for its id, then `peer-left` as before."""
    await expect(socket, "participant-left", id=gone.participant_id)
    await expect(socket, "peer-left")


async def expect_error(socket: WebsocketCommunicator, code: str) -> None:
    message = await expect(socket, "error")
    assert message["code"] == code, message
    assert message["message"]


async def send(socket: WebsocketCommunicator, message: dict) -> None:
    await socket.send_to(text_data=json.dumps(message))


async def closed_with(socket: WebsocketCommunicator, timeout: float = 5) -> int:
    """Skip remaining messages until the server closes; return the close code."""
    while True:
        output = await socket.receive_output(timeout)
        if output["type"] == "websocket.close":
            return output["code"]


async def quiet(socket: WebsocketCommunicator) -> bool:
    return await socket.receive_nothing(timeout=0.2)


async def disconnect(*sockets: WebsocketCommunicator) -> None:
    for socket in sockets:
        try:
            await socket.disconnect()
        except Exception:  # noqa: S110  (already closed by the server)
            pass


async def call_parties(issued, doctor, cookie: bytes | None = None):
    """Patient waiting first, then the doctor: both connected, nothing admitted yet."""
    patient, _ = await connect(cookie or await patient_cookie(issued.patient_code))
    await expect(patient, "waiting")
    doc, welcome = await connect(await doctor_cookie(issued.doctor_code, doctor))
    assert welcome["peer"] == {"role": "patient", "name": PATIENT_NAME}
    await expect(doc, "peer-waiting")
    return doc, patient


async def admitted_call(issued, doctor, cookie: bytes | None = None):
    doc, patient = await call_parties(issued, doctor, cookie)
    await send(doc, {"type": "admit"})
    await expect(doc, "admitted")
    await expect(patient, "admitted")
    return doc, patient


# --- Welcome, waiting, admission -------------------------------------------------------


async def test_patient_alone_gets_welcome_then_waiting(layer, issued):
    patient, welcome = await connect(await patient_cookie(issued.patient_code))
    try:
        assert welcome == {
            "type": "welcome",
            "role": "patient",
            "id": welcome["id"],
            "ice_servers": [],
            "peer": None,
            "participants": [],
        }
        assert isinstance(welcome["id"], str) and len(welcome["id"]) >= 8
        await expect(patient, "waiting")
        assert await quiet(patient)
    finally:
        await disconnect(patient)


async def test_doctor_sees_the_waiting_patient_right_after_welcome(layer, issued, doctor):
    doc, patient = await call_parties(issued, doctor)
    try:
        assert await quiet(patient)  # the doctor's arrival does not admit anybody
    finally:
        await disconnect(doc, patient)


async def test_patient_arriving_later_is_announced_to_the_doctor(layer, issued, doctor):
    doc, welcome = await connect(await doctor_cookie(issued.doctor_code, doctor))
    try:
        assert welcome["role"] == "doctor" and welcome["peer"] is None
        patient, welcome = await connect(await patient_cookie(issued.patient_code))
        assert welcome["peer"] == {"role": "doctor", "name": DOCTOR_NAME}
        await expect(patient, "waiting")
        assert (await expect(doc, "peer-waiting"))["name"] == PATIENT_NAME
    finally:
        await disconnect(doc, patient)


async def test_admission_and_relay_of_offer_answer_and_candidates(layer, issued, doctor):
    doc, patient = await admitted_call(issued, doctor)
    try:
        doc_id, patient_id = doc.participant_id, patient.participant_id
        offer = make_sdp("offer")
        await send(doc, {"type": "offer", "sdp": offer})
        assert await expect(patient, "offer") == {"type": "offer", "sdp": offer, "from": doc_id}
        answer = make_sdp("answer")
        await send(patient, {"type": "answer", "sdp": answer})
        assert await expect(doc, "answer") == {"type": "answer", "sdp": answer, "from": patient_id}
        candidate = make_candidate("c1")
        await send(patient, {"type": "candidate", "candidate": candidate, "extra": "dropped"})
        assert await expect(doc, "candidate") == {
            "type": "candidate",
            "candidate": candidate,
            "from": patient_id,
        }
        await send(doc, {"type": "candidate", "candidate": None})
        assert await expect(patient, "candidate") == {
            "type": "candidate",
            "candidate": None,
            "from": doc_id,
        }
        # The patient may start a renegotiation too (perfect negotiation).
        await send(patient, {"type": "offer", "sdp": offer})
        assert (await expect(doc, "offer"))["sdp"] == offer
    finally:
        await disconnect(doc, patient)


async def test_only_the_doctor_may_admit(layer, issued, doctor):
    doc, patient = await call_parties(issued, doctor)
    try:
        await send(patient, {"type": "admit"})
        await expect_error(patient, "forbidden")
        assert await quiet(doc)
        await send(patient, {"type": "candidate", "candidate": None})
        await expect_error(patient, "not-admitted")  # still connected, still waiting
    finally:
        await disconnect(doc, patient)


async def test_admit_without_a_patient_is_nobody_waiting(layer, issued, doctor):
    doc, _ = await connect(await doctor_cookie(issued.doctor_code, doctor))
    try:
        await send(doc, {"type": "admit"})
        await expect_error(doc, "nobody-waiting")
    finally:
        await disconnect(doc)


async def test_nothing_is_relayed_before_admission(layer, issued, doctor):
    doc, patient = await call_parties(issued, doctor)
    try:
        for me, other in ((doc, patient), (patient, doc)):
            for message in (
                {"type": "offer", "sdp": make_sdp()},
                {"type": "answer", "sdp": make_sdp()},
                {"type": "candidate", "candidate": make_candidate()},
            ):
                await send(me, message)
                await expect_error(me, "not-admitted")
            assert await quiet(other)
    finally:
        await disconnect(doc, patient)


# --- Check order and refused frames ----------------------------------------------------


async def test_checks_apply_in_contract_order(layer, issued, doctor):
    doc, patient = await call_parties(issued, doctor)  # patient not admitted
    try:
        # size before JSON: an oversized frame that is not even JSON
        await patient.send_to(text_data="x" * (protocol.MAX_FRAME_BYTES + 1))
        await expect_error(patient, "too-large")
        # size counts UTF-8 bytes: 40 000 characters of two bytes each
        frame = json.dumps({"type": "offer", "sdp": "ä" * 40_000}, ensure_ascii=False)
        assert len(frame) < protocol.MAX_FRAME_BYTES < len(frame.encode())
        await patient.send_to(text_data=frame)
        await expect_error(patient, "too-large")
        # shape before state: a malformed offer from a patient who is not admitted
        await send(patient, {"type": "offer"})
        await expect_error(patient, "bad-message")
        await send(patient, {"type": "teleport"})
        await expect_error(patient, "unknown-type")
        # state before content: an insecure offer from a patient who is not admitted
        await send(patient, {"type": "offer", "sdp": "v=0\r\na=crypto:1 AES_CM_128"})
        await expect_error(patient, "not-admitted")
        # permission before state: admit is forbidden for a patient, whatever the state
        await send(patient, {"type": "admit"})
        await expect_error(patient, "forbidden")
        assert await quiet(doc)
    finally:
        await disconnect(doc, patient)


MALFORMED_FRAMES = [
    "not json",
    "[1, 2]",
    '"offer"',
    "{}",
    '{"type": 7}',
    '{"type": "offer", "sdp": 5}',
    '{"type": "offer", "sdp": ""}',
    '{"type": "candidate"}',
    '{"type": "candidate", "candidate": "a"}',
    '{"type": "candidate", "candidate": {"sdpMid": "0"}}',
    '{"type": "candidate", "candidate": {"candidate": "x", "sdpMLineIndex": "0"}}',
    '{"type": "candidate", "candidate": {"candidate": "x", "sdpMLineIndex": true}}',
]


async def test_malformed_frames_are_bad_messages(layer, issued, doctor):
    doc, patient = await admitted_call(issued, doctor)
    try:
        for frame in MALFORMED_FRAMES:
            await patient.send_to(text_data=frame)
            await expect_error(patient, "bad-message")
        assert await quiet(doc)
    finally:
        await disconnect(doc, patient)


async def test_binary_frames_are_refused(layer, issued, doctor):
    doc, patient = await admitted_call(issued, doctor)
    try:
        await patient.send_to(bytes_data=b"\x00\x01media")
        await expect_error(patient, "bad-message")
        assert await quiet(doc)
    finally:
        await disconnect(doc, patient)


INSECURE_SDPS = [
    "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",  # no DTLS fingerprint
    make_sdp() + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9\r\n",
    make_sdp().replace("a=fingerprint:", "a=fingerprint-x:"),
]


async def test_insecure_sdp_is_refused_and_not_relayed(layer, issued, doctor):
    doc, patient = await admitted_call(issued, doctor)
    try:
        for sdp in INSECURE_SDPS:
            for kind, me in (("offer", doc), ("answer", patient)):
                await send(me, {"type": kind, "sdp": sdp})
                await expect_error(me, "insecure-sdp")
        assert await quiet(doc) and await quiet(patient)
    finally:
        await disconnect(doc, patient)


async def test_refused_frames_do_not_end_the_connection(layer, issued, doctor):
    doc, patient = await admitted_call(issued, doctor)
    try:
        await patient.send_to(text_data="x" * 70_000)
        await expect_error(patient, "too-large")
        await patient.send_to(text_data="{")
        await expect_error(patient, "bad-message")
        await send(patient, {"type": "answer", "sdp": "v=0"})
        await expect_error(patient, "insecure-sdp")
        candidate = make_candidate("after")
        await send(patient, {"type": "candidate", "candidate": candidate})
        assert (await expect(doc, "candidate"))["candidate"] == candidate
    finally:
        await disconnect(doc, patient)


async def test_a_frame_of_exactly_64_kib_is_accepted(layer, issued, doctor):
    doc, patient = await admitted_call(issued, doctor)
    try:
        base = make_sdp()
        frame = json.dumps({"type": "offer", "sdp": base + ""})
        padding = protocol.MAX_FRAME_BYTES - len(frame.encode())
        frame = json.dumps({"type": "offer", "sdp": base + "a" * padding})
        assert len(frame.encode()) == protocol.MAX_FRAME_BYTES
        await patient.send_to(text_data=frame)
        assert len((await expect(doc, "offer"))["sdp"]) == len(base) + padding
    finally:
        await disconnect(doc, patient)


async def test_error_messages_are_german(layer, issued):
    patient, _ = await connect(await patient_cookie(issued.patient_code))
    try:
        await expect(patient, "waiting")
        await send(patient, {"type": "admit"})
        message = await expect(patient, "error")
        assert message["message"] == "Diese Aktion ist in Ihrer Rolle nicht erlaubt."
    finally:
        await disconnect(patient)


# --- Supersede, reconnect, bye, peer-left ----------------------------------------------


async def test_second_patient_connection_supersedes_and_needs_admission(layer, issued, doctor):
    doc, first = await admitted_call(issued, doctor)
    cookie = await patient_cookie(issued.patient_code, "Paula Zweitgerät")
    second, welcome = await connect(cookie)
    try:
        assert await closed_with(first) == protocol.CLOSE_SUPERSEDED
        assert welcome["peer"] == {"role": "doctor", "name": DOCTOR_NAME}
        await expect(second, "waiting")
        await expect_left(doc, first)
        waiting = await expect(doc, "peer-waiting", id=second.participant_id, role="patient")
        assert waiting["name"] == "Paula Zweitgerät"
        await send(second, {"type": "candidate", "candidate": None})
        await expect_error(second, "not-admitted")
        await send(doc, {"type": "offer", "sdp": make_sdp()})
        await expect_error(doc, "not-admitted")
        await send(doc, {"type": "admit"})
        await expect(doc, "admitted")
        await expect(second, "admitted")
        await send(doc, {"type": "candidate", "candidate": None})
        await expect(second, "candidate")
    finally:
        await disconnect(doc, first, second)


async def test_second_doctor_connection_supersedes_and_keeps_the_admission(layer, issued, doctor):
    first, patient = await admitted_call(issued, doctor)
    second, welcome = await connect(await doctor_cookie(issued.doctor_code, doctor))
    try:
        assert await closed_with(first) == protocol.CLOSE_SUPERSEDED
        assert welcome["peer"] == {"role": "patient", "name": PATIENT_NAME}
        # and the doctor's client sends a fresh offer
        await expect(second, "admitted", id=patient.participant_id)
        await expect_left(patient, first)
        await expect(patient, "participant-joined", id=second.participant_id, role="doctor")
        await expect(patient, "admitted", id=patient.participant_id)
        offer = make_sdp("fresh")
        await send(second, {"type": "offer", "sdp": offer})
        assert (await expect(patient, "offer"))["sdp"] == offer
    finally:
        await disconnect(first, second, patient)


async def test_doctor_reconnecting_while_the_patient_is_admitted(layer, issued, doctor):
    first, patient = await admitted_call(issued, doctor)
    await disconnect(first)
    await expect_left(patient, first)
    second, welcome = await connect(await doctor_cookie(issued.doctor_code, doctor))
    try:
        assert welcome["peer"] == {"role": "patient", "name": PATIENT_NAME}
        await expect(second, "admitted", id=patient.participant_id)
        await expect(patient, "participant-joined", id=second.participant_id)
        await expect(patient, "admitted")
        await send(patient, {"type": "candidate", "candidate": None})
        await expect(second, "candidate")
    finally:
        await disconnect(second, patient)


async def test_patient_reconnecting_after_a_drop_resumes_the_admission(layer, issued, doctor):
    cookie = await patient_cookie(issued.patient_code)
    doc, first = await admitted_call(issued, doctor, cookie)
    await disconnect(first)
    await expect_left(doc, first)
    second, welcome = await connect(cookie)  # the same join session reconnects
    try:
        assert welcome["peer"] == {"role": "doctor", "name": DOCTOR_NAME}
        await expect(second, "admitted", id=second.participant_id)
        # the doctor's client sends a fresh offer
        await expect(doc, "admitted", id=second.participant_id)
        offer = make_sdp("again")
        await send(doc, {"type": "offer", "sdp": offer})
        assert (await expect(second, "offer"))["sdp"] == offer
    finally:
        await disconnect(doc, second)


async def test_a_new_join_must_be_admitted_again(layer, issued, doctor):
    doc, first = await admitted_call(issued, doctor)
    await disconnect(first)
    await expect_left(doc, first)
    second, _ = await connect(await patient_cookie(issued.patient_code))  # a new POST /
    try:
        await expect(second, "waiting")
        await expect(doc, "peer-waiting")
        await send(second, {"type": "candidate", "candidate": None})
        await expect_error(second, "not-admitted")
    finally:
        await disconnect(doc, second)


async def test_superseding_with_the_same_join_must_be_admitted_again(layer, issued, doctor):
    cookie = await patient_cookie(issued.patient_code)
    doc, first = await admitted_call(issued, doctor, cookie)
    second, _ = await connect(cookie)  # e.g. a second tab while the first is still open
    try:
        assert await closed_with(first) == protocol.CLOSE_SUPERSEDED
        await expect(second, "waiting")
        await expect_left(doc, first)
        await expect(doc, "peer-waiting")
        await disconnect(second)
        await expect_left(doc, second)
        third, _ = await connect(cookie)  # the admission did not survive the supersede
        await expect(third, "waiting")
        await disconnect(third)
    finally:
        await disconnect(doc, first, second)


async def test_admission_survives_both_sides_reconnecting(layer, issued, doctor):
    cookie = await patient_cookie(issued.patient_code)
    doc, patient = await admitted_call(issued, doctor, cookie)
    await disconnect(doc, patient)
    patient, welcome = await connect(cookie)
    doc, doctor_welcome = await connect(await doctor_cookie(issued.doctor_code, doctor))
    try:
        assert welcome["peer"] is None
        await expect(patient, "admitted", id=patient.participant_id, participants=[])
        assert doctor_welcome["peer"] == {"role": "patient", "name": PATIENT_NAME}
        await expect(doc, "admitted", id=patient.participant_id)
        await expect(patient, "participant-joined", id=doc.participant_id, role="doctor")
        await expect(patient, "admitted")
        await send(patient, {"type": "candidate", "candidate": None})
        await expect(doc, "candidate")
    finally:
        await disconnect(doc, patient)


async def test_peer_left_when_the_other_side_closes(layer, issued, doctor):
    doc, patient = await call_parties(issued, doctor)
    await disconnect(doc)
    try:
        await expect(patient, "peer-left")
        assert await quiet(patient)
    finally:
        await disconnect(patient)


async def test_patient_bye_ends_the_admission(layer, issued, doctor):
    cookie = await patient_cookie(issued.patient_code)
    doc, patient = await admitted_call(issued, doctor, cookie)
    try:
        await send(patient, {"type": "bye"})
        await expect_left(doc, patient)
        # Still connected: back in the waiting room.
        await expect(doc, "peer-waiting", id=patient.participant_id)
        await disconnect(patient)  # leaving after bye: no second peer-left …
        await expect(doc, "participant-left", id=patient.participant_id)  # … off the list
        assert await quiet(doc)
        patient, _ = await connect(cookie)  # coming back after a bye means waiting again
        await expect(patient, "waiting")
        await expect(doc, "peer-waiting")
        await send(patient, {"type": "bye"})
        await expect_left(doc, patient)
        await expect(doc, "peer-waiting", id=patient.participant_id)
        await send(patient, {"type": "candidate", "candidate": None})
        await expect_error(patient, "not-admitted")
        await send(doc, {"type": "candidate", "candidate": None})
        await expect_error(doc, "not-admitted")
        # The patient is still there and may be admitted again.
        await send(doc, {"type": "admit"})
        await expect(doc, "admitted")
        await expect(patient, "admitted")
        await disconnect(patient)
        await expect_left(doc, patient)
    finally:
        await disconnect(doc, patient)


async def test_doctor_bye_tells_the_patient_once(layer, issued, doctor):
    doc, patient = await admitted_call(issued, doctor)
    try:
        await send(doc, {"type": "bye"})
        await expect_left(patient, doc)
        await expect(patient, "waiting")  # the doctor's hang-up ends everybody's admission
        await send(patient, {"type": "offer", "sdp": make_sdp()})
        await expect_error(patient, "not-admitted")
        await disconnect(doc)
        assert await quiet(patient)  # no second peer-left for the same departure
    finally:
        await disconnect(doc, patient)


# --- Rate limit ------------------------------------------------------------------------


async def test_more_than_100_frames_in_10_seconds_close_with_4029(layer, issued):
    patient, _ = await connect(await patient_cookie(issued.patient_code))
    try:
        await expect(patient, "waiting")
        for _ in range(protocol.FLOOD_LIMIT):
            await patient.send_to(text_data="{")  # refused frames count too
        for _ in range(protocol.FLOOD_LIMIT):
            await expect_error(patient, "bad-message")
        await patient.send_to(text_data="{")
        assert await closed_with(patient) == protocol.CLOSE_RATE_LIMIT
    finally:
        await disconnect(patient)


# --- Refused connections ---------------------------------------------------------------


async def test_connection_without_join_cookie_is_closed_with_4001(layer, db):
    socket = communicator()
    connected, _ = await socket.connect()
    try:
        assert connected  # accepted, so that the page can explain
        assert await closed_with(socket) == protocol.CLOSE_NO_SESSION
    finally:
        await disconnect(socket)


async def test_forged_join_cookie_is_closed_with_4001(layer, issued):
    cookie = await patient_cookie(issued.patient_code)
    socket = communicator(cookie[:-3] + b"xyz")
    try:
        assert (await socket.connect())[0]
        assert await closed_with(socket) == protocol.CLOSE_NO_SESSION
    finally:
        await disconnect(socket)


async def test_cancelled_appointment_is_closed_with_4001(layer, issued):
    cookie = await patient_cookie(issued.patient_code)
    await database_sync_to_async(services.cancel_appointment)(issued.appointment)
    socket = communicator(cookie)
    try:
        assert (await socket.connect())[0]
        assert await closed_with(socket) == protocol.CLOSE_NO_SESSION
    finally:
        await disconnect(socket)


async def test_expired_appointment_is_closed_with_4001(layer, issued):
    cookie = await patient_cookie(issued.patient_code)
    socket = communicator(cookie)
    with time_machine.travel(issued.appointment.expires_at + timedelta(seconds=1)):
        try:
            assert (await socket.connect())[0]
            assert await closed_with(socket) == protocol.CLOSE_NO_SESSION
        finally:
            await disconnect(socket)


async def test_doctor_session_needs_the_same_login(layer, issued, doctor, second_doctor):
    cookie = await doctor_cookie(issued.doctor_code, doctor)
    join_only = b"; ".join(c for c in cookie.split(b"; ") if c.startswith(b"rc_join="))
    other_login = await login_cookie(second_doctor)
    for headers in (join_only, join_only + b"; " + other_login):
        socket = communicator(headers)
        try:
            assert (await socket.connect())[0]
            assert await closed_with(socket) == protocol.CLOSE_NOT_ALLOWED
        finally:
            await disconnect(socket)


async def test_foreign_origin_is_refused_at_the_handshake(layer, issued):
    cookie = await patient_cookie(issued.patient_code)
    for origin in (b"http://evil.example", b"http://127.0.0.1.evil.example", None):
        socket = communicator(cookie, origin=origin)
        try:
            connected, _ = await socket.connect()
            assert not connected, origin  # daphne answers this refusal with HTTP 403
        finally:
            await disconnect(socket)


async def test_allowed_origin_on_another_port_is_accepted(layer, issued):
    socket = communicator(await patient_cookie(issued.patient_code), origin=b"https://localhost:9")
    try:
        assert (await socket.connect())[0]
        assert (await receive(socket))["type"] == "welcome"
    finally:
        await disconnect(socket)


async def test_cancelling_closes_live_connections_with_4001(layer, issued, doctor):
    doc, patient = await admitted_call(issued, doctor)
    try:
        await database_sync_to_async(services.cancel_appointment)(issued.appointment)
        assert await closed_with(doc) == protocol.CLOSE_NO_SESSION
        assert await closed_with(patient) == protocol.CLOSE_NO_SESSION
    finally:
        await disconnect(doc, patient)


# --- Isolation, privacy, hot path ------------------------------------------------------


async def test_appointments_do_not_hear_each_other(layer, issued, doctor):
    other = await database_sync_to_async(services.create_appointment)(doctor=doctor)
    doc, patient = await admitted_call(issued, doctor)
    stranger, welcome = await connect(await patient_cookie(other.patient_code, "Fremde"))
    try:
        assert welcome["peer"] is None
        await expect(stranger, "waiting")
        assert await quiet(doc)  # no peer-waiting from another appointment
        await send(doc, {"type": "offer", "sdp": make_sdp()})
        await expect(patient, "offer")
        assert await quiet(stranger)
    finally:
        await disconnect(doc, patient, stranger)


def spy_on_io(monkeypatch) -> dict[str, int]:
    """Count database cursors and cache calls from any thread (spies: the real calls run)."""
    calls = {"db": 0, "cache": 0}

    def counting(kind: str, original):
        def spy(self, *args, **kwargs):
            calls[kind] += 1
            return original(self, *args, **kwargs)

        return spy

    monkeypatch.setattr(BaseDatabaseWrapper, "cursor", counting("db", BaseDatabaseWrapper.cursor))
    backend = type(caches["default"])
    for name in ("get", "get_many", "set", "set_many", "add", "delete", "incr", "touch"):
        monkeypatch.setattr(backend, name, counting("cache", getattr(backend, name)))
    return calls


async def test_relay_path_touches_no_database_and_no_cache(
    layer, issued, doctor, settings, monkeypatch
):
    settings.SIGNALING_HEARTBEAT_INTERVAL = 3600  # keep the heartbeat out of the count
    doc, patient = await admitted_call(issued, doctor)
    calls = spy_on_io(monkeypatch)
    try:
        for round_ in range(5):
            await send(doc, {"type": "offer", "sdp": make_sdp(f"o{round_}")})
            await expect(patient, "offer")
            await send(patient, {"type": "answer", "sdp": make_sdp(f"a{round_}")})
            await expect(doc, "answer")
            await send(patient, {"type": "candidate", "candidate": make_candidate()})
            await expect(doc, "candidate")
            await send(patient, {"type": "offer"})  # refused frames too
            await expect_error(patient, "bad-message")
        assert calls == {"db": 0, "cache": 0}
    finally:
        monkeypatch.undo()
        await disconnect(doc, patient)


async def test_nothing_of_a_call_is_logged_or_stored(layer, issued, doctor, caplog):
    caplog.set_level(logging.DEBUG)
    doc, patient = await admitted_call(issued, doctor)
    try:
        await send(doc, {"type": "offer", "sdp": make_sdp("secretmarker")})
        await expect(patient, "offer")
        await send(patient, {"type": "candidate", "candidate": make_candidate("hostmarker")})
        await expect(doc, "candidate")
    finally:
        await disconnect(doc, patient)
    for marker in ("secretmarker", "hostmarker", PATIENT_NAME):
        assert marker not in caplog.text
    stored = await sync_to_async(_cache_text)()
    assert PATIENT_NAME not in stored and "secretmarker" not in stored


def _cache_text() -> str:
    backend = cache._cache
    if isinstance(backend, dict):
        return repr(list(backend.items()))
    client = backend.get_client()
    return repr(
        [(key, client.get(key)) for key in client.keys("*") if client.type(key) == b"string"]
    )


# --- Failing peers ---------------------------------------------------------------------


async def crash(socket: WebsocketCommunicator) -> None:
    """Stop a consumer without a disconnect event, as a killed server process would."""
    socket.future.cancel()
    try:
        await socket.future
    except (asyncio.CancelledError, Exception):  # noqa: S110
        pass


async def test_a_full_or_vanished_peer_channel_does_not_hurt_the_sender(
    layer, issued, doctor, settings
):
    small = copy.deepcopy(settings.CHANNEL_LAYERS)
    small["default"]["CONFIG"]["capacity"] = 20
    settings.CHANNEL_LAYERS = small
    doc, patient = await admitted_call(issued, doctor)
    await crash(doc)
    try:
        # 60 relays to a channel that nobody reads any more: it fills up (ChannelFull)
        # after 20; the sender is not cut off and its connection keeps working.
        for index in range(60):
            await send(patient, {"type": "candidate", "candidate": make_candidate(f"c{index}")})
        await send(patient, {"type": "teleport"})
        await expect_error(patient, "unknown-type")
    finally:
        await disconnect(patient)


async def test_a_crashed_peer_is_dropped_by_the_heartbeat(layer, issued, doctor, settings):
    settings.SIGNALING_HEARTBEAT_INTERVAL = 0.05
    settings.SIGNALING_PEER_TIMEOUT = 0.3
    doc, patient = await admitted_call(issued, doctor)
    await crash(doc)
    try:
        await expect(patient, "participant-left", timeout=10, id=doc.participant_id)
        await expect(patient, "peer-left")
    finally:
        await disconnect(patient)


async def test_presence_entries_expire_without_heartbeat(layer, issued, doctor, settings):
    settings.SIGNALING_PEER_REPLY_GRACE = 0.1
    doc, _ = await connect(await doctor_cookie(issued.doctor_code, doctor))
    await crash(doc)
    key = presence.presence_key(issued.appointment.pk, "doctor")
    if layer == "redis":
        ttl = await sync_to_async(lambda: cache._cache.get_client().ttl(cache.make_key(key)))()
        assert 0 < ttl <= presence.PRESENCE_TTL
        return
    # A stale entry only delays the welcome (the dead peer never answers) …
    patient, welcome = await connect(await patient_cookie(issued.patient_code))
    assert welcome["peer"] is None
    await disconnect(patient)
    # … and is gone after PRESENCE_TTL.
    with time_machine.travel(presence.PRESENCE_TTL + 1 + time.time()):
        assert await sync_to_async(cache.get)(key) is None


def _turn_config(settings) -> None:
    settings.ICE_SERVERS = [
        {"urls": ["stun:stun.example.de"], "country": "DE"},
        {"urls": ["turn:turn.example.de:3478"], "country": "DE"},
    ]
    settings.TURN_SECRET = "coturn-secret"


def _assert_turn_credentials(servers: list, appointment) -> None:
    stun, turn = servers
    assert stun == {"urls": ["stun:stun.example.de"]}
    assert turn["urls"] == ["turn:turn.example.de:3478"] and "country" not in turn
    expiry, user_id = turn["username"].split(":")
    assert 0 < int(expiry) - time.time() <= 3600 + 1  # coturn REST scheme, at most 1 h
    # The id part is the appointment's, keyed: stable per appointment, reveals nothing.
    assert user_id == ice.turn_user_id(appointment.pk) and len(user_id) >= 8
    assert user_id not in (str(appointment.pk), appointment.pk.hex) and user_id not in str(
        appointment.pk
    ).replace("-", "")
    assert turn["credential"]


async def test_turn_credentials_only_after_admission(issued, doctor, settings):
    """Issue 11 item 14: a waiting participant's welcome has STUN only; its `admitted`
    carries TURN credentials; the doctor's welcome has them."""
    _turn_config(settings)
    patient, welcome = await connect(await patient_cookie(issued.patient_code))
    doc, doctor_welcome = await connect(await doctor_cookie(issued.doctor_code, doctor))
    try:
        assert welcome["ice_servers"] == [{"urls": ["stun:stun.example.de"]}]
        _assert_turn_credentials(doctor_welcome["ice_servers"], issued.appointment)
        await expect(patient, "waiting")
        await expect(doc, "peer-waiting")
        await send(doc, {"type": "admit"})
        await expect(doc, "admitted")
        admitted = await expect(patient, "admitted")
        _assert_turn_credentials(admitted["ice_servers"], issued.appointment)
    finally:
        await disconnect(doc, patient)


async def test_turn_user_ids_differ_between_appointments(issued, doctor):
    other = await database_sync_to_async(services.create_appointment)(doctor=doctor)
    assert ice.turn_user_id(issued.appointment.pk) != ice.turn_user_id(other.appointment.pk)
    assert ice.turn_user_id(issued.appointment.pk) == ice.turn_user_id(issued.appointment.pk)


async def test_a_call_ends_with_4001_when_the_codes_expire(issued, settings):
    settings.SIGNALING_HEARTBEAT_INTERVAL = 0.05
    patient, _ = await connect(await patient_cookie(issued.patient_code))
    try:
        await expect(patient, "waiting")
        with time_machine.travel(issued.appointment.expires_at + timedelta(seconds=1)):
            assert await closed_with(patient) == protocol.CLOSE_NO_SESSION
    finally:
        await disconnect(patient)
