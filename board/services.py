"""What the board lists, and the one-click start of a call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db.models import Q
from django.http import HttpResponse
from django.utils import timezone

from board import access, live
from board.status import Status
from consultations import joinsession, services
from consultations.models import Appointment

# How far ahead the board looks: as far as appointments can be booked.
HORIZON = services.MAX_LEAD_TIME + timedelta(days=1)
MAX_ROWS = 300


def start_of_today(now: datetime | None = None) -> datetime:
    local = timezone.localtime(now or timezone.now())
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def board_appointments(user, now: datetime | None = None) -> list[Appointment]:
    """Today's and upcoming appointments of the user's practices, earliest first.

    Also those of earlier days whose codes still work (yesterday evening's, valid 24 h).
    """
    now = now or timezone.now()
    today = start_of_today(now)
    return list(
        Appointment.objects.filter(practice__in=access.board_practices(user))
        .filter(Q(scheduled_at__gte=today) | Q(cancelled_at__isnull=True, expires_at__gt=now))
        .filter(scheduled_at__lt=now + HORIZON)
        .select_related("doctor", "practice")
        .order_by("scheduled_at")[:MAX_ROWS]
    )


def held_ids(appointments) -> set[str]:
    """Appointments with a call held today (a content-free cache flag, see board.live)."""
    keys = {live.held_key(a.pk): str(a.pk) for a in appointments}
    try:
        found = cache.get_many(list(keys))
    except Exception:
        return set()
    return {keys[key] for key in found}


@dataclass(frozen=True)
class BoardEntry:
    """One row as the page renders it before the live status arrives."""

    appointment: Appointment
    status: Status
    doctor_name: str
    may_start: bool
    may_message: bool


def initial_status(appointment: Appointment, held: bool, now=None) -> Status:
    status = appointment.status(now)
    if status == Appointment.Status.CANCELLED:
        return Status.CANCELLED
    if status == Appointment.Status.EXPIRED:
        return Status.EXPIRED
    return Status.ENDED if held else Status.SCHEDULED


def entries(user, now=None) -> list[BoardEntry]:
    appointments = board_appointments(user, now)
    held = held_ids(appointments)
    result = []
    for appointment in appointments:
        status = initial_status(appointment, str(appointment.pk) in held, now)
        valid = status not in (Status.CANCELLED, Status.EXPIRED)
        result.append(
            BoardEntry(
                appointment,
                status,
                services.display_name_of(appointment.doctor),
                valid and appointment.doctor_id == user.pk,
                valid,
            )
        )
    return result


def start_call(response: HttpResponse, user, appointment: Appointment) -> None:
    """The doctor's join, as the doctor code gives it, bound to the doctor's login."""
    joinsession.issue_doctor_join_cookie(response, appointment=appointment, user=user)
