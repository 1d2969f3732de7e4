"""More than two participants on `/ws/call/` (contract: "More than two participants",
"Re-issue, admission and credentials"), through the real ASGI application.

Doctor, patient and guests join with real `POST /` requests; guests by their own codes.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import time_machine
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.test import Client

from consultations import services
from signaling import protocol
from tests.support.callclient import make_candidate, make_sdp
from tests.test_signaling import (
    DOCTOR_NAME,
    PATIENT_NAME,
    closed_with,
    communicator,
    connect,
    disconnect,
    doctor_cookie,
    expect,
    expect_error,
    layer,  # noqa: F401  (fixture)
    patient_cookie,
    quiet,
    receive,
    send,
)

pytestmark = pytest.mark.django_db(transaction=True)

GUEST_NAME = "Gerd Gast"


@pytest.fixture
def mesh(doctor) -> services.IssuedAppointment:
    """An appointment for now with all seven guest codes."""
    return services.create_appointment(doctor=doctor, guests=7)


def entry(socket, role: str, name: str, admitted: bool) -> dict:
    return {"id": socket.participant_id, "role": role, "name": name, "admitted": admitted}


async def join_waiting(cookie: bytes):
    socket, welcome = await connect(cookie)
    await expect(socket, "waiting")
    return socket, welcome


async def admit(doc, socket, others=()) -> dict:
    """The doctor admits `socket` by id; `others` (admitted) hear `participant-joined`."""
    await send(doc, {"type": "admit", "id": socket.participant_id})
    await expect(doc, "admitted", id=socket.participant_id)
    admitted = await expect(socket, "admitted", id=socket.participant_id)
    for other in others:
        await expect(other, "participant-joined", id=socket.participant_id)
    return admitted


async def three(mesh, doctor):
    """Doctor, then a waiting patient and a waiting guest (guest code 1)."""
    doc, _ = await connect(await doctor_cookie(mesh.doctor_code, doctor))
    patient, _ = await join_waiting(await patient_cookie(mesh.patient_code))
    await expect(doc, "peer-waiting", id=patient.participant_id, role="patient")
    guest, welcome = await join_waiting(await patient_cookie(mesh.guest_codes[0], GUEST_NAME))
    await expect(doc, "peer-waiting", id=guest.participant_id, role="guest", name=GUEST_NAME)
    return doc, patient, guest, welcome


# --- Joining and admission by id --------------------------------------------------------


async def test_a_guest_code_joins_as_guest_and_learns_only_of_the_doctor(layer, mesh, doctor):  # noqa: F811
    doc, patient, guest, welcome = await three(mesh, doctor)
    try:
        assert welcome["role"] == "guest"
        assert welcome["peer"] == {"role": "doctor", "name": DOCTOR_NAME}
        # A waiting person learns nothing about who else is there (the patient is).
        assert welcome["participants"] == [entry(doc, "doctor", DOCTOR_NAME, True)]
        assert await quiet(patient)  # the patient hears nothing of the guest
        await send(doc, {"type": "admit", "id": guest.participant_id})
        await expect(doc, "admitted", id=guest.participant_id)
        admitted = await expect(guest, "admitted", id=guest.participant_id)
        assert admitted["participants"] == [entry(doc, "doctor", DOCTOR_NAME, True)]
        assert await quiet(patient)  # still waiting: no participant-joined
        # `admit` without id admits the patient as before.
        await send(doc, {"type": "admit"})
        await expect(doc, "admitted", id=patient.participant_id)
        admitted = await expect(patient, "admitted", id=patient.participant_id)
        assert admitted["participants"] == [
            entry(doc, "doctor", DOCTOR_NAME, True),
            entry(guest, "guest", GUEST_NAME, True),
        ]
        joined = await expect(guest, "participant-joined", id=patient.participant_id)
        assert joined == {
            "type": "participant-joined",
            "id": patient.participant_id,
            "role": "patient",
            "name": PATIENT_NAME,
        }
    finally:
        await disconnect(doc, patient, guest)


async def test_the_doctors_welcome_lists_everybody_and_their_state(mesh, doctor):
    patient, _ = await join_waiting(await patient_cookie(mesh.patient_code))
    guest, _ = await join_waiting(await patient_cookie(mesh.guest_codes[3], GUEST_NAME))
    doc, welcome = await connect(await doctor_cookie(mesh.doctor_code, doctor))
    try:
        assert welcome["peer"] == {"role": "patient", "name": PATIENT_NAME}
        assert sorted(welcome["participants"], key=lambda e: e["role"]) == [
            entry(guest, "guest", GUEST_NAME, False),
            entry(patient, "patient", PATIENT_NAME, False),
        ]
        waiting = {(await expect(doc, "peer-waiting"))["id"] for _ in range(2)}
        assert waiting == {patient.participant_id, guest.participant_id}
    finally:
        await disconnect(doc, patient, guest)


async def test_admit_refusals(mesh, doctor):
    doc, _ = await connect(await doctor_cookie(mesh.doctor_code, doctor))
    guest, _ = await join_waiting(await patient_cookie(mesh.guest_codes[0], GUEST_NAME))
    await expect(doc, "peer-waiting")
    try:
        # Without id: the patient — not waiting, even though a guest waits.
        await send(doc, {"type": "admit"})
        await expect_error(doc, "nobody-waiting")
        await send(doc, {"type": "admit", "id": "no-such-id-at-all"})
        await expect_error(doc, "nobody-waiting")
        await send(doc, {"type": "admit", "id": 7})
        await expect_error(doc, "bad-message")
        await send(guest, {"type": "admit", "id": guest.participant_id})
        await expect_error(guest, "forbidden")
        await admit(doc, guest)
        await send(doc, {"type": "admit", "id": guest.participant_id})  # not waiting now
        await expect_error(doc, "nobody-waiting")
    finally:
        await disconnect(doc, guest)


# --- Addressed relays -----------------------------------------------------------------


async def test_relays_are_addressed_and_carry_the_sender(layer, mesh, doctor):  # noqa: F811
    doc, patient, guest, _ = await three(mesh, doctor)
    try:
        await admit(doc, patient)
        await admit(doc, guest, others=[patient])
        offer = make_sdp("guest-to-patient")
        # Between two non-doctors the one admitted earlier (the patient) offers.
        await send(patient, {"type": "offer", "sdp": offer, "to": guest.participant_id})
        assert await expect(guest, "offer") == {
            "type": "offer",
            "sdp": offer,
            "from": patient.participant_id,
        }
        await send(guest, {"type": "answer", "sdp": make_sdp("a"), "to": patient.participant_id})
        await expect(patient, "answer", **{"from": guest.participant_id})
        assert await quiet(doc)  # a relay goes to its addressee only
        # Without `to`: a guest's message goes to the doctor, the doctor's to the patient.
        await send(guest, {"type": "candidate", "candidate": make_candidate("g")})
        await expect(doc, "candidate", **{"from": guest.participant_id})
        await send(doc, {"type": "candidate", "candidate": None})
        await expect(patient, "candidate", **{"from": doc.participant_id})
        await send(doc, {"type": "offer", "sdp": offer, "to": guest.participant_id})
        await expect(guest, "offer", **{"from": doc.participant_id})
        assert await quiet(patient) and await quiet(guest)
    finally:
        await disconnect(doc, patient, guest)


async def test_relay_refusals_in_contract_order(mesh, doctor):
    doc, patient, guest, _ = await three(mesh, doctor)
    try:
        await admit(doc, patient)  # the guest still waits
        insecure = make_sdp().replace("a=fingerprint:", "a=fingerprint-x:")
        # A waiting sender: not-admitted first, whatever the target and the content.
        await send(guest, {"type": "offer", "sdp": insecure, "to": "nobody-at-all"})
        await expect_error(guest, "not-admitted")
        # An unknown target, a waiting target, oneself: no-such-participant, before content.
        for target in ("nobody-at-all", guest.participant_id, patient.participant_id):
            await send(patient, {"type": "offer", "sdp": insecure, "to": target})
            await expect_error(patient, "no-such-participant")
        await send(doc, {"type": "candidate", "candidate": None, "to": guest.participant_id})
        await expect_error(doc, "no-such-participant")
        # Content after the target: an admitted target, an insecure SDP.
        await send(patient, {"type": "offer", "sdp": insecure, "to": doc.participant_id})
        await expect_error(patient, "insecure-sdp")
        for bad in (None, 5, ["x"], {"id": "x"}):
            await send(patient, {"type": "candidate", "candidate": None, "to": bad})
            await expect_error(patient, "bad-message")
        assert await quiet(doc) and await quiet(guest)
    finally:
        await disconnect(doc, patient, guest)


async def test_a_guest_without_doctor_is_dropped_silently(mesh, doctor):
    doc, patient, guest, _ = await three(mesh, doctor)
    await admit(doc, patient)
    await admit(doc, guest, others=[patient])
    await disconnect(doc)
    await expect(guest, "participant-left", id=doc.participant_id)
    await expect(patient, "participant-left", id=doc.participant_id)
    await expect(patient, "peer-left")
    try:
        await send(guest, {"type": "candidate", "candidate": None})  # nobody: no error
        assert await quiet(guest)
        # The two others stay admitted and keep talking.
        await send(guest, {"type": "candidate", "candidate": None, "to": patient.participant_id})
        await expect(patient, "candidate", **{"from": guest.participant_id})
    finally:
        await disconnect(patient, guest)


# --- Remove, leave, supersede -----------------------------------------------------------


async def test_remove_sends_back_to_the_waiting_room(layer, mesh, doctor):  # noqa: F811
    doc, patient, guest, _ = await three(mesh, doctor)
    try:
        await admit(doc, patient)
        await admit(doc, guest, others=[patient])
        await send(patient, {"type": "remove", "id": "nobody-at-all"})
        await expect_error(patient, "forbidden")  # checked before the target
        await send(doc, {"type": "remove", "id": "nobody-at-all"})
        await expect_error(doc, "no-such-participant")
        await send(doc, {"type": "remove"})
        await expect_error(doc, "bad-message")
        await send(doc, {"type": "remove", "id": guest.participant_id})
        await expect(doc, "participant-left", id=guest.participant_id)
        await expect(doc, "peer-waiting", id=guest.participant_id, role="guest")
        await expect(guest, "waiting")
        await expect(patient, "participant-left", id=guest.participant_id)
        await send(guest, {"type": "candidate", "candidate": None, "to": patient.participant_id})
        await expect_error(guest, "not-admitted")
        await send(patient, {"type": "candidate", "candidate": None, "to": guest.participant_id})
        await expect_error(patient, "no-such-participant")
        await send(doc, {"type": "remove", "id": guest.participant_id})  # waiting already
        await expect_error(doc, "no-such-participant")
        # Admitted again: everything as for a new admission.
        admitted = await admit(doc, guest, others=[patient])
        assert {e["id"] for e in admitted["participants"]} == {
            doc.participant_id,
            patient.participant_id,
        }
        await send(guest, {"type": "candidate", "candidate": None, "to": patient.participant_id})
        await expect(patient, "candidate")
    finally:
        await disconnect(doc, patient, guest)


async def test_leaving_and_bye_of_a_guest(mesh, doctor):
    doc, patient, guest, _ = await three(mesh, doctor)
    second_cookie = await patient_cookie(mesh.guest_codes[1], "Zweiter Gast")
    try:
        await admit(doc, patient)
        await admit(doc, guest, others=[patient])
        other, _ = await join_waiting(second_cookie)
        await expect(doc, "peer-waiting", id=other.participant_id)
        await send(guest, {"type": "bye"})
        await expect(doc, "participant-left", id=guest.participant_id)
        await expect(doc, "peer-waiting", id=guest.participant_id)  # still connected
        await expect(patient, "participant-left", id=guest.participant_id)
        await send(guest, {"type": "candidate", "candidate": None, "to": patient.participant_id})
        await expect_error(guest, "not-admitted")
        await disconnect(guest)
        await expect(doc, "participant-left", id=guest.participant_id)  # off the waiting list
        assert await quiet(patient)  # it was no longer admitted: nothing new for the patient
        await disconnect(other)  # a waiting guest leaves: the doctor only
        await expect(doc, "participant-left", id=other.participant_id)
        assert await quiet(patient) and await quiet(doc)  # no peer-left for guests
    finally:
        await disconnect(doc, patient, guest)


async def test_waiting_people_hear_nothing_of_the_call(mesh, doctor):
    doc, patient, guest, _ = await three(mesh, doctor)
    try:
        await admit(doc, patient)
        other, _ = await join_waiting(await patient_cookie(mesh.guest_codes[1], "Dritter"))
        await expect(doc, "peer-waiting", id=other.participant_id)
        await admit(doc, other, others=[patient])
        await send(patient, {"type": "offer", "sdp": make_sdp(), "to": other.participant_id})
        await expect(other, "offer")
        await disconnect(other)
        await expect(doc, "participant-left", id=other.participant_id)
        await expect(patient, "participant-left", id=other.participant_id)
        assert await quiet(guest)  # no participant-joined/left, no relays while waiting
    finally:
        await disconnect(doc, patient, guest)


async def test_a_second_connection_to_a_guest_seat_supersedes(layer, mesh, doctor):  # noqa: F811
    doc, patient, guest, _ = await three(mesh, doctor)
    try:
        await admit(doc, patient)
        await admit(doc, guest, others=[patient])
        second, welcome = await connect(await patient_cookie(mesh.guest_codes[0], "Gerd Neu"))
        assert await closed_with(guest) == protocol.CLOSE_SUPERSEDED
        await expect(second, "waiting")  # must be admitted again
        await expect(doc, "participant-left", id=guest.participant_id)
        await expect(doc, "peer-waiting", id=second.participant_id, name="Gerd Neu")
        await expect(patient, "participant-left", id=guest.participant_id)
        assert welcome["participants"] == [entry(doc, "doctor", DOCTOR_NAME, True)]
        # Another guest code is another seat: no supersede.
        third, _ = await join_waiting(await patient_cookie(mesh.guest_codes[1], "Dritter"))
        await expect(doc, "peer-waiting", id=third.participant_id)
        assert await quiet(second)
        await disconnect(third)
    finally:
        await disconnect(doc, patient, guest, second)


# --- Cancel and re-issue ----------------------------------------------------------------


async def test_cancelling_closes_everybody(mesh, doctor):
    doc, patient, guest, _ = await three(mesh, doctor)
    await admit(doc, guest)
    try:
        await database_sync_to_async(services.cancel_appointment)(mesh.appointment)
        for socket in (doc, patient, guest):
            assert await closed_with(socket) == protocol.CLOSE_NO_SESSION
    finally:
        await disconnect(doc, patient, guest)


@sync_to_async
def call_page_status(cookie: bytes) -> tuple[int, str]:
    client = Client()
    for part in cookie.decode().split("; "):
        name, _, value = part.partition("=")
        client.cookies[name] = value
    response = client.get("/call/")
    return response.status_code, response.get("Location", "")


async def test_reissue_closes_patient_and_guests_and_keeps_the_doctor(layer, mesh, doctor):  # noqa: F811
    patient_join = await patient_cookie(mesh.patient_code)
    guest_join = await patient_cookie(mesh.guest_codes[0], GUEST_NAME)
    doc, _ = await connect(await doctor_cookie(mesh.doctor_code, doctor))
    patient, _ = await join_waiting(patient_join)
    await expect(doc, "peer-waiting")
    guest, _ = await join_waiting(guest_join)
    await expect(doc, "peer-waiting")
    await admit(doc, patient)
    await admit(doc, guest, others=[patient])
    try:
        reissued = await database_sync_to_async(services.reissue_codes)(mesh.appointment)
        assert await closed_with(patient) == protocol.CLOSE_NO_SESSION
        assert await closed_with(guest) == protocol.CLOSE_NO_SESSION
        told = [await receive(doc) for _ in range(3)]
        assert sorted((m["type"], m.get("id")) for m in told) == sorted(
            [
                ("participant-left", patient.participant_id),
                ("participant-left", guest.participant_id),
                ("peer-left", None),
            ]
        )
        kinds = [m["type"] for m in told]
        assert kinds.index("peer-left") > told.index(
            {"type": "participant-left", "id": patient.participant_id}
        )
        assert await quiet(doc)  # the doctor's login-bound join stays
        # A reconnect with the old joins is closed like for a cancelled appointment …
        for cookie in (patient_join, guest_join):
            socket = communicator(cookie)
            assert (await socket.connect())[0]
            assert await closed_with(socket) == protocol.CLOSE_NO_SESSION
            await disconnect(socket)
            assert await call_page_status(cookie) == (302, "/")
        # … the old codes no longer join, the new ones do.
        assert await sync_to_async(services.find_by_code)(mesh.patient_code) is None
        assert await sync_to_async(services.find_by_code)(mesh.guest_codes[0]) is None
        assert len(reissued.guest_codes) == 7
        newcomer, _ = await join_waiting(await patient_cookie(reissued.guest_codes[0], "Neu"))
        await expect(doc, "peer-waiting", id=newcomer.participant_id, role="guest")
        await disconnect(newcomer)
    finally:
        await disconnect(doc, patient, guest)


# --- Resuming an admission ------------------------------------------------------------


async def test_a_guest_resumes_within_a_minute_but_not_later(mesh, doctor):
    cookie = await patient_cookie(mesh.guest_codes[2], GUEST_NAME)
    doc, _ = await connect(await doctor_cookie(mesh.doctor_code, doctor))
    patient, _ = await join_waiting(await patient_cookie(mesh.patient_code))
    await expect(doc, "peer-waiting")
    await admit(doc, patient)
    guest, _ = await join_waiting(cookie)
    await expect(doc, "peer-waiting")
    await admit(doc, guest, others=[patient])
    try:
        await disconnect(guest)
        await expect(doc, "participant-left", id=guest.participant_id)
        await expect(patient, "participant-left", id=guest.participant_id)
        again, _ = await connect(cookie)  # same join, right away: resumes, with a new id
        assert again.participant_id != guest.participant_id
        admitted = await expect(again, "admitted", id=again.participant_id)
        assert {e["id"] for e in admitted["participants"]} == {
            doc.participant_id,
            patient.participant_id,
        }
        await expect(doc, "admitted", id=again.participant_id)
        await expect(patient, "participant-joined", id=again.participant_id)
        await disconnect(again)
        await expect(doc, "participant-left", id=again.participant_id)
        await expect(patient, "participant-left", id=again.participant_id)
        with time_machine.travel(timedelta(seconds=61)):
            late, _ = await connect(cookie)
            await expect(late, "waiting")  # more than 60 s after it was last seen
            await expect(doc, "peer-waiting", id=late.participant_id)
            assert await quiet(patient)
            await disconnect(late)
    finally:
        await disconnect(doc, patient, guest)


async def test_the_doctor_reconnecting_with_several_admitted(mesh, doctor):
    doc, patient, guest, _ = await three(mesh, doctor)
    await admit(doc, patient)
    await admit(doc, guest, others=[patient])
    await disconnect(doc)
    await expect(patient, "participant-left", id=doc.participant_id)
    await expect(patient, "peer-left")
    await expect(guest, "participant-left", id=doc.participant_id)
    again, _ = await connect(await doctor_cookie(mesh.doctor_code, doctor))
    try:
        admitted = {(await expect(again, "admitted"))["id"] for _ in range(2)}
        assert admitted == {patient.participant_id, guest.participant_id}
        for socket in (patient, guest):
            await expect(socket, "participant-joined", id=again.participant_id, role="doctor")
        await expect(patient, "admitted", id=patient.participant_id)  # as before
        assert await quiet(guest)
    finally:
        await disconnect(again, patient, guest)


# --- Nine people ------------------------------------------------------------------------


async def test_nine_people_in_one_call(mesh, doctor, settings):
    settings.SIGNALING_PEER_REPLY_GRACE = 0.5
    doc, _ = await connect(await doctor_cookie(mesh.doctor_code, doctor))
    codes = [mesh.patient_code, *mesh.guest_codes]
    people = []
    try:
        for index, code in enumerate(codes):
            socket, _ = await join_waiting(await patient_cookie(code, f"Person {index}"))
            await expect(doc, "peer-waiting", id=socket.participant_id)
            admitted = await admit(doc, socket, others=people)
            assert len(admitted["participants"]) == index + 1  # the doctor and the earlier
            people.append(socket)
        assert len(people) == 8
        # A full mesh: every pair exchanges one addressed message, nobody else hears it.
        everybody = [doc, *people]
        for sender in everybody:
            for target in everybody:
                if target is sender:
                    continue
                await send(
                    sender,
                    {"type": "candidate", "candidate": None, "to": target.participant_id},
                )
                await expect(target, "candidate", **{"from": sender.participant_id})
        for socket in everybody:
            assert await quiet(socket)
        # One leaves: the eight others hear it once.
        await disconnect(people[-1])
        for socket in everybody[:-1]:
            await expect(socket, "participant-left", id=people[-1].participant_id)
    finally:
        await disconnect(doc, *people)


async def test_no_eighth_guest_seat(mesh):
    with pytest.raises(services.AppointmentError):
        await database_sync_to_async(services.add_guest_code)(mesh.appointment)


# --- Hot path and privacy with several participants -----------------------------------


async def test_addressed_relays_touch_no_database_and_no_cache(
    layer,  # noqa: F811
    mesh,
    doctor,
    settings,
    monkeypatch,
):
    from tests.test_signaling import spy_on_io

    settings.SIGNALING_HEARTBEAT_INTERVAL = 3600  # keep the heartbeat out of the count
    doc, patient, guest, _ = await three(mesh, doctor)
    await admit(doc, patient)
    await admit(doc, guest, others=[patient])
    calls = spy_on_io(monkeypatch)
    try:
        for sender, target in ((patient, guest), (guest, patient), (doc, guest), (guest, doc)):
            await send(sender, {"type": "offer", "sdp": make_sdp(), "to": target.participant_id})
            await expect(target, "offer")
        await send(patient, {"type": "offer", "sdp": make_sdp(), "to": "nobody-at-all"})
        await expect_error(patient, "no-such-participant")
        assert calls == {"db": 0, "cache": 0}
    finally:
        monkeypatch.undo()
        await disconnect(doc, patient, guest)


async def test_names_travel_only_in_introductions(mesh, doctor, settings, monkeypatch):
    """Issue 11 item 3: heartbeats, relays, departures carry no name through the layer."""
    from channels.layers import InMemoryChannelLayer

    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {}}
    }
    settings.SIGNALING_HEARTBEAT_INTERVAL = 0.05
    events: list[dict] = []
    original_send, original_group_send = InMemoryChannelLayer.send, InMemoryChannelLayer.group_send

    async def spy_send(self, channel, message):
        events.append(message)
        return await original_send(self, channel, message)

    async def spy_group_send(self, group, message):
        events.append(message)
        return await original_group_send(self, group, message)

    monkeypatch.setattr(InMemoryChannelLayer, "send", spy_send)
    monkeypatch.setattr(InMemoryChannelLayer, "group_send", spy_group_send)
    doc, patient, guest, _ = await three(mesh, doctor)
    try:
        await admit(doc, patient)
        await admit(doc, guest, others=[patient])
        await send(patient, {"type": "candidate", "candidate": None, "to": guest.participant_id})
        await expect(guest, "candidate")
        await asyncio.sleep(0.3)  # a few heartbeats
        await send(guest, {"type": "bye"})
        await expect(patient, "participant-left")
    finally:
        await disconnect(doc, patient, guest)
    kinds = {event["type"] for event in events}
    assert {"call.ping", "call.relay", "call.bye", "call.left"} <= kinds
    for event in events:
        if event["type"] in ("call.hello", "call.here", "call.admit"):
            continue
        if event["type"] == "board.participant" and event["intro"]:
            continue  # the board's introduction: the practice's board shows waiting names
        text = repr(event)
        assert PATIENT_NAME not in text and GUEST_NAME not in text, event
