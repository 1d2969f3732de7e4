"""The board's live status over `/ws/praxis/` and the waiting-room notice over `/ws/call/`.

Real consumers (`redconnect.asgi.application`), real join cookies from `POST /`, the
in-process layer and a private Redis (several processes share boards through it).
"""

from __future__ import annotations

import json
import logging

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client, override_settings

from consultations import services
from tests.test_signaling import (  # noqa: F401  (the `layer` fixture)
    ORIGIN,
    PATIENT_NAME,
    closed_with,
    connect,
    disconnect,
    doctor_cookie,
    expect,
    layer,
    login_cookie,
    patient_cookie,
    receive,
    send,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("layer")]


def board_socket(cookie: bytes = b"") -> WebsocketCommunicator:
    from redconnect.asgi import application

    headers = [(b"origin", ORIGIN)] + ([(b"cookie", cookie)] if cookie else [])
    return WebsocketCommunicator(application, "/ws/praxis/", headers=headers)


async def open_board(user) -> tuple[WebsocketCommunicator, dict[str, dict]]:
    """A board connection and the first row of each listed appointment."""
    board = board_socket(await login_cookie(user))
    connected, _ = await board.connect(timeout=5)
    assert connected
    rows = {}
    count = await sync_to_async(_listed_count)(user)
    while len(rows) < count:
        message = await receive(board)
        assert message["type"] == "row", message
        rows[message["id"]] = message
    return board, rows


def _listed_count(user) -> int:
    from board.services import board_appointments

    return len(board_appointments(user))


async def next_row(board: WebsocketCommunicator, appointment, timeout: float = 5) -> dict:
    while True:
        message = await receive(board, timeout)
        if message["type"] == "row" and message["id"] == str(appointment.pk):
            return message


async def row_with_status(board, appointment, status: str) -> dict:
    for _ in range(10):
        row = await next_row(board, appointment)
        if row["status"] == status:
            return row
    raise AssertionError(f"no row with status {status}")


async def test_anonymous_board_socket_is_closed_4003(db):
    board = board_socket()
    connected, _ = await board.connect(timeout=5)
    assert connected
    assert await closed_with(board) == 4003
    await disconnect(board)


@pytest.mark.parametrize("persona", ["auditor", "superuser"])
async def test_auditors_and_non_members_get_no_board(persona, request):
    user = await sync_to_async(request.getfixturevalue)(persona)
    board = board_socket(await login_cookie(user))
    await board.connect(timeout=5)
    assert await closed_with(board) == 4003
    await disconnect(board)


@override_settings(OTP_REQUIRED=True)
async def test_board_socket_needs_the_second_factor_where_enforced(staff, issued):
    board = board_socket(await login_cookie(staff))
    await board.connect(timeout=5)
    assert await closed_with(board) == 4003
    await disconnect(board)


async def test_patient_joining_shows_as_waiting_with_name(staff, issued):
    board, rows = await open_board(staff)
    patient = None
    try:
        assert rows[str(issued.appointment.pk)]["status"] == "scheduled"
        patient, _ = await connect(await patient_cookie(issued.patient_code))
        row = await next_row(board, issued.appointment)
        assert row["status"] == "waiting"
        assert row["waiting"] == [PATIENT_NAME]
        assert isinstance(row["since"], int) and abs(row["since"] - row["now"]) < 5000
    finally:
        await disconnect(board, *([patient] if patient else []))


async def test_other_practices_boards_learn_nothing(issued, other_practice_staff):
    board, rows = await open_board(other_practice_staff)
    assert rows == {}
    patient, _ = await connect(await patient_cookie(issued.patient_code))
    try:
        assert await board.receive_nothing(timeout=0.5)
    finally:
        await disconnect(board, patient)


async def test_a_board_opened_later_finds_the_waiting_patient(staff, issued):
    patient, _ = await connect(await patient_cookie(issued.patient_code))
    board, rows = await open_board(staff)
    try:
        first = rows[str(issued.appointment.pk)]
        row = first if first["status"] == "waiting" else await next_row(board, issued.appointment)
        assert row["status"] == "waiting" and row["waiting"] == [PATIENT_NAME]
    finally:
        await disconnect(board, patient)


async def test_admission_then_departure_shows_in_call_then_ended(staff, doctor, issued):
    board, _rows = await open_board(staff)
    patient, _ = await connect(await patient_cookie(issued.patient_code))
    doc, _ = await connect(await doctor_cookie(issued.doctor_code, doctor))
    try:
        await row_with_status(board, issued.appointment, "waiting")
        await expect(doc, "peer-waiting")
        await send(doc, {"type": "admit"})
        row = await row_with_status(board, issued.appointment, "in_call")
        assert row["doctor"] is True and row["waiting"] == []
        await disconnect(patient)
        row = await row_with_status(board, issued.appointment, "ended")
        assert row["doctor"] is True  # the doctor is still in the room
        await disconnect(doc)
        row = await next_row(board, issued.appointment)
        assert row["status"] == "ended" and row["doctor"] is False
    finally:
        await disconnect(board, patient, doc)


async def test_leaving_the_waiting_room_shows_on_the_board(staff, issued):
    board, _rows = await open_board(staff)
    patient, _ = await connect(await patient_cookie(issued.patient_code))
    try:
        await row_with_status(board, issued.appointment, "waiting")
        await send(patient, {"type": "bye"})
        await disconnect(patient)
        await row_with_status(board, issued.appointment, "scheduled")
    finally:
        await disconnect(board, patient)


async def test_cancelling_during_the_wait_shows_cancelled(staff, issued):
    board, _rows = await open_board(staff)
    patient, _ = await connect(await patient_cookie(issued.patient_code))
    try:
        await row_with_status(board, issued.appointment, "waiting")
        await sync_to_async(services.cancel_appointment)(issued.appointment)
        assert await closed_with(patient) == 4001
        await disconnect(patient)
        await row_with_status(board, issued.appointment, "cancelled")
    finally:
        await disconnect(board, patient)


# --- message to the waiting room --------------------------------------------------------


@sync_to_async
def post_message(user, appointment, text: str) -> int:
    client = Client()
    client.force_login(user)
    return client.post(f"/praxis/{appointment.pk}/message", {"text": text}).status_code


async def test_notice_reaches_the_waiting_patient_only(staff, doctor, issued, caplog):
    text = "Die Sprechstunde beginnt in etwa 10 Minuten."
    patient, _ = await connect(await patient_cookie(issued.patient_code))
    await expect(patient, "waiting")
    doc, _ = await connect(await doctor_cookie(issued.doctor_code, doctor))
    try:
        await expect(doc, "peer-waiting")
        with caplog.at_level(logging.DEBUG):
            assert await post_message(staff, issued.appointment, text) == 302
        assert await expect(patient, "notice") == {"type": "notice", "text": text}
        assert await doc.receive_nothing(timeout=0.3)  # the doctor is not waiting
        assert text not in caplog.text
        # Once admitted, notices are no longer shown to the patient.
        await send(doc, {"type": "admit"})
        await expect(patient, "admitted")
        await expect(doc, "admitted")
        assert await post_message(doctor, issued.appointment, "Noch einen Moment") == 302
        assert await patient.receive_nothing(timeout=0.3)
    finally:
        await disconnect(patient, doc)


async def test_notice_of_another_appointment_does_not_arrive(staff, doctor, issued):
    other = await sync_to_async(services.create_appointment)(doctor=doctor)
    patient, _ = await connect(await patient_cookie(issued.patient_code))
    try:
        await expect(patient, "waiting")
        assert await post_message(staff, other.appointment, "Für jemand anderen") == 302
        assert await patient.receive_nothing(timeout=0.3)
    finally:
        await disconnect(patient)


async def test_refused_notice_is_not_delivered(auditor, issued):
    patient, _ = await connect(await patient_cookie(issued.patient_code))
    try:
        await expect(patient, "waiting")
        assert await post_message(auditor, issued.appointment, "Hallo") == 403
        assert await post_message(auditor, issued.appointment, "x" * 201) == 403
        assert await patient.receive_nothing(timeout=0.3)
    finally:
        await disconnect(patient)


def test_notice_hook_forwards_only_while_waiting():
    from board.live import notice_for
    from signaling.room import Member

    waiting = Member(id="i", channel="c", role="patient", seat="patient", name="P", since=1.0)
    assert notice_for(waiting, {"text": "Hallo"}) == "Hallo"
    assert notice_for(waiting, {"text": "x" * 500}) == "x" * 200
    assert notice_for(waiting, {"text": 5}) is None
    waiting.admitted = True
    assert notice_for(waiting, {"text": "Hallo"}) is None
    guest = Member(id="g", channel="g", role="guest", seat="guest-1", name="G", since=1.0)
    assert notice_for(guest, {"text": "Hallo"}) == "Hallo"
    doctor = Member(id="d", channel="d", role="doctor", seat="doctor", name="D", since=1.0)
    assert notice_for(doctor, {"text": "Hallo"}) is None
    assert notice_for(None, {"text": "Hallo"}) is None


def test_board_row_messages_are_json_serialisable():
    from board.status import Row, Status

    message = Row(Status.WAITING, ("A",), 12.5).as_message("id")
    assert json.loads(json.dumps(message)) == {
        "type": "row",
        "id": "id",
        "status": "waiting",
        "waiting": ["A"],
        "since": 12500,
        "doctor": False,
    }


# --- more than two participants (guests) ------------------------------------------------

GUEST_NAME = "Gerd Gast"


@pytest.fixture
def mesh(doctor) -> services.IssuedAppointment:
    return services.create_appointment(doctor=doctor, guests=2)


async def drain(*sockets) -> None:
    """Read what the call told these clients so far (peer-waiting, joined, …)."""
    for socket in sockets:
        while not await socket.receive_nothing(timeout=0.2):
            await receive(socket)


async def admit_by_id(doc, socket) -> None:
    await drain(doc)
    await send(doc, {"type": "admit", "id": socket.participant_id})
    await expect(doc, "admitted", id=socket.participant_id)
    await expect(socket, "admitted", id=socket.participant_id)


async def test_guests_show_as_waiting_next_to_a_running_consultation(staff, doctor, mesh):
    board, _rows = await open_board(staff)
    doc, _ = await connect(await doctor_cookie(mesh.doctor_code, doctor))
    patient, _ = await connect(await patient_cookie(mesh.patient_code))
    guest = None
    try:
        await expect(patient, "waiting")
        row = await row_with_status(board, mesh.appointment, "waiting")
        assert row["waiting"] == [PATIENT_NAME] and row["doctor"] is True
        guest, _ = await connect(await patient_cookie(mesh.guest_codes[0], GUEST_NAME))
        await expect(guest, "waiting")
        row = await next_row(board, mesh.appointment)
        assert row["status"] == "waiting" and row["waiting"] == [PATIENT_NAME, GUEST_NAME]
        await admit_by_id(doc, patient)
        row = await row_with_status(board, mesh.appointment, "in_call")
        assert row["waiting"] == [GUEST_NAME]  # the guest still waits, by name
        await admit_by_id(doc, guest)
        row = await next_row(board, mesh.appointment)
        assert row["status"] == "in_call" and row["waiting"] == []
        # The doctor sends the guest back to the waiting room: the board shows it waiting.
        await drain(guest)
        await send(doc, {"type": "remove", "id": guest.participant_id})
        await expect(guest, "waiting")
        row = await next_row(board, mesh.appointment)
        assert row["status"] == "in_call" and row["waiting"] == [GUEST_NAME]
        # The doctor hangs up: everybody waits again.
        await send(doc, {"type": "bye"})
        for _ in range(4):
            row = await next_row(board, mesh.appointment)
            if row["status"] == "waiting" and len(row["waiting"]) == 2:
                break
        assert row["status"] == "waiting" and sorted(row["waiting"]) == sorted(
            [PATIENT_NAME, GUEST_NAME]
        )
    finally:
        await disconnect(board, doc, patient, *([guest] if guest else []))


async def test_a_board_opened_later_finds_every_participant(staff, doctor, mesh):
    doc, _ = await connect(await doctor_cookie(mesh.doctor_code, doctor))
    patient, _ = await connect(await patient_cookie(mesh.patient_code))
    guest, _ = await connect(await patient_cookie(mesh.guest_codes[1], GUEST_NAME))
    board = None
    try:
        await expect(guest, "waiting")
        await expect(patient, "waiting")
        await admit_by_id(doc, patient)
        board, rows = await open_board(staff)
        row = rows[str(mesh.appointment.pk)]
        # Each live connection answers the board's query on its own, in any order (over
        # Redis the doctor's answer may come last): wait for the row that has them all.
        for _ in range(4):
            if row["status"] == "in_call" and row["waiting"] == [GUEST_NAME] and row["doctor"]:
                break
            row = await next_row(board, mesh.appointment)
        assert row["status"] == "in_call" and row["waiting"] == [GUEST_NAME]
        assert row["doctor"] is True
    finally:
        await disconnect(*([board] if board else []), doc, patient, guest)


async def test_notice_reaches_the_waiting_guest_not_the_admitted_patient(staff, doctor, mesh):
    text = "Gleich geht es weiter."
    doc, _ = await connect(await doctor_cookie(mesh.doctor_code, doctor))
    patient, _ = await connect(await patient_cookie(mesh.patient_code))
    guest, _ = await connect(await patient_cookie(mesh.guest_codes[0], GUEST_NAME))
    try:
        await expect(patient, "waiting")
        await expect(guest, "waiting")
        await admit_by_id(doc, patient)
        await drain(doc, patient)  # then the notice alone is tested
        assert await post_message(staff, mesh.appointment, text) == 302
        assert await expect(guest, "notice") == {"type": "notice", "text": text}
        assert await patient.receive_nothing(timeout=0.3)
        assert await doc.receive_nothing(timeout=0.3)
    finally:
        await disconnect(doc, patient, guest)
