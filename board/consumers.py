"""The board's WebSocket `/ws/praxis/`: live status for a practice's doctors and staff.

On connect it checks the login (as for the admin, second factor where enforced), joins
the board group of each of the user's practices and asks every listed appointment's
call group who is there (`call.board_query`). From then on it only listens: the call
consumers report joins, admissions and departures (`board.participant`), and each
change is pushed to the page as one `row` message. The client sends nothing; no polling.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils import timezone

from board import access, live, services
from board.status import Tracker
from consultations.models import Appointment
from redconnect import callcodes
from signaling import presence, protocol

NOT_ALLOWED = callcodes.CLOSE_NOT_ALLOWED


@database_sync_to_async
def _load(user, session):
    if not access.logged_in_session(user, session):
        return None
    practices = list(access.board_practices(user).values_list("pk", flat=True))
    if not practices:
        return None
    appointments = services.board_appointments(user)
    return practices, appointments, services.held_ids(appointments)


@database_sync_to_async
def _status_of(appointment_id: str, practices: list[int]) -> str | None:
    found = Appointment.objects.filter(pk=appointment_id, practice_id__in=practices).first()
    return None if found is None else found.status().value


class BoardConsumer(AsyncWebsocketConsumer):
    practices: list[int] = []
    statuses: dict[str, str] = {}

    async def connect(self) -> None:
        await self.accept()
        loaded = await _load(self.scope.get("user"), self.scope.get("session"))
        if loaded is None:
            await self.close(code=NOT_ALLOWED)
            return
        self.practices, appointments, held = loaded
        self.tracker = Tracker(held=set(held))
        self.statuses = {str(a.pk): a.status().value for a in appointments}
        for practice_id in self.practices:
            await self.channel_layer.group_add(live.board_group(practice_id), self.channel_name)
        for appointment_id, status in self.statuses.items():
            await self._send_row(appointment_id)
            if status in (Appointment.Status.SCHEDULED, Appointment.Status.ACTIVE):
                await self.channel_layer.group_send(
                    presence.group_name(appointment_id), live.query_event(self.channel_name)
                )

    async def disconnect(self, code) -> None:
        for practice_id in self.practices:
            await self.channel_layer.group_discard(live.board_group(practice_id), self.channel_name)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        pass  # the board only listens

    async def board_participant(self, event: dict) -> None:
        appointment_id = str(event.get("appointment", ""))
        # Re-read the appointment: a departure may be a cancellation closing the call.
        status = await _status_of(appointment_id, self.practices)
        if status is None:
            return
        if appointment_id not in self.statuses:
            # Booked after this board was opened: the page reloads to show the new row.
            self.statuses[appointment_id] = status
            await self._send({"type": "reload"})
        self.statuses[appointment_id] = status
        self.tracker.update(appointment_id, str(event.get("channel")), live.participant_of(event))
        await self._send_row(appointment_id)

    async def _send_row(self, appointment_id: str) -> None:
        row = self.tracker.row(appointment_id, self.statuses[appointment_id])
        await self._send({**row.as_message(appointment_id), "now": _now_ms()})

    async def _send(self, message: dict) -> None:
        await self.send(text_data=protocol.encode(message))


def _now_ms() -> int:
    return round(timezone.now().timestamp() * 1000)
