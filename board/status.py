"""The live status of an appointment on the board, computed — never stored.

Input: the appointment's own status (cancelled, expired, valid) and the call
connections that are live right now (role, name, since, admitted), as the call
consumers report them over the channel layer; plus whether a call was held today.
Pure code: the board's consumer feeds it, tests call it directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from django.utils.translation import pgettext_lazy

from consultations.models import Appointment, Membership

DOCTOR = Membership.Role.DOCTOR.value


class Status(StrEnum):
    SCHEDULED = "scheduled"
    WAITING = "waiting"
    IN_CALL = "in_call"
    ENDED = "ended"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


LABELS = {
    Status.SCHEDULED: pgettext_lazy("board status", "scheduled"),
    # %(minutes)s is filled in by the page's script, which counts on without the server.
    Status.WAITING: pgettext_lazy("board status", "waiting for %(minutes)s min."),
    Status.IN_CALL: pgettext_lazy("board status", "in consultation"),
    Status.ENDED: pgettext_lazy("board status", "ended"),
    Status.CANCELLED: pgettext_lazy("board status", "cancelled"),
    Status.EXPIRED: pgettext_lazy("board status", "expired"),
}


# What the board's script says in its status line and to screen readers.
NOTES = {
    "left": pgettext_lazy("board", "%(names)s left the waiting room."),
    "arrived": pgettext_lazy("board", "%(names)s is waiting (%(time)s, %(doctor)s)."),
    "offline": pgettext_lazy("board", "Live status not available. Reconnecting…"),
}


@dataclass(frozen=True)
class Participant:
    """One live call connection as its consumer describes itself."""

    role: str
    name: str | None  # None: not in this report, the board knows it from the introduction
    since: float  # epoch seconds of the connection's start
    admitted: bool = False

    @property
    def is_doctor(self) -> bool:
        return self.role == DOCTOR


@dataclass(frozen=True)
class Row:
    status: Status
    waiting_names: tuple[str, ...] = ()
    waiting_since: float | None = None
    doctor_present: bool = False

    def as_message(self, appointment_id: str) -> dict:
        return {
            "type": "row",
            "id": appointment_id,
            "status": self.status.value,
            "waiting": list(self.waiting_names),
            "since": round(self.waiting_since * 1000) if self.waiting_since else None,
            "doctor": self.doctor_present,
        }


def compute(
    appointment_status: str, participants: Iterable[Participant], held: bool = False
) -> Row:
    """The board's status of one appointment.

    Cancelled and expired win over everything (their connections are being closed).
    Someone admitted: in consultation. Someone connected but not admitted: waiting,
    since the earliest arrival. Nobody: ended if a call was held, else scheduled.
    """
    if appointment_status == Appointment.Status.CANCELLED:
        return Row(Status.CANCELLED)
    if appointment_status == Appointment.Status.EXPIRED:
        return Row(Status.EXPIRED)
    people = list(participants)
    doctor_present = any(p.is_doctor for p in people)
    others = [p for p in people if not p.is_doctor]
    waiting = sorted((p for p in others if not p.admitted), key=lambda p: p.since)
    if any(p.admitted for p in others):
        return Row(Status.IN_CALL, tuple(p.name for p in waiting), None, doctor_present)
    if waiting:
        return Row(Status.WAITING, tuple(p.name for p in waiting), waiting[0].since, doctor_present)
    return Row(Status.ENDED if held else Status.SCHEDULED, doctor_present=doctor_present)


@dataclass
class Tracker:
    """What one board connection knows: appointment id → channel → live participant."""

    live: dict[str, dict[str, Participant]] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)

    def update(self, appointment_id: str, channel: str, participant: Participant | None) -> None:
        connections = self.live.setdefault(appointment_id, {})
        if participant is None:
            connections.pop(channel, None)
            return
        if participant.name is None:
            known = connections.get(channel)
            participant = replace(participant, name=known.name if known else "")
        connections[channel] = participant
        if participant.admitted and not participant.is_doctor:
            self.held.add(appointment_id)

    def participants(self, appointment_id: str) -> list[Participant]:
        return list(self.live.get(appointment_id, {}).values())

    def row(self, appointment_id: str, appointment_status: str) -> Row:
        return compute(
            appointment_status,
            self.participants(appointment_id),
            appointment_id in self.held,
        )
