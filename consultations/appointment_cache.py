"""What a patient's or guest's connect needs to know of its appointment, from the cache.

Why: every WebSocket connect re-checked its appointment in the database — a new database
connection (`CONN_MAX_AGE` 0) and an ORM query, 37 % of the server CPU spent opening a
waiting patient's connection (`bench/connections.py --profile`). The four fields that
check reads (practice, expiry, cancellation, codes version) change rarely, so they are
kept in the shared cache (Redis in production, the process's memory in the embedded
profile) for `TTL` seconds: the join that issued the cookie leaves them there (`remember`),
and a connect that misses reads the database once and leaves them for the next.

Why this is as safe as the database read: every save or delete of an appointment
(cancellation, re-issued codes, an admin edit) overwrites its entry with a `STALE`
marker for `TTL` seconds, before and again after the transaction commits
(`invalidate`). A connect that finds the marker reads the database and stores nothing;
an entry is only ever added where none is (`cache.add`), so a reader that loaded the
appointment before a change can never put the old state back over the marker. The
window in which a connect may still pass a cancellation it did not see is the one the
database read had as well: between the read and `group_add`, closed by the
cancellation's `appointment.closed` event to the group. The doctor's connect still reads
the database (the login and the membership are checked there too).

Nothing personal is stored: the appointment id (as in the presence keys), the practice's
id, two times and a counter. Changes made with `QuerySet.update()` bypass the signals;
the project makes none (`services` saves the instance).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from consultations.models import Appointment

logger = logging.getLogger("redconnect")

TTL = 600  # seconds an entry (or a STALE marker) lives: a waiting room's reconnects too
STALE = "stale"
# A database read older than this is not stored: a marker set meanwhile may have expired.
MAX_READ_AGE = 1.0


@dataclass(frozen=True)
class AppointmentState:
    """The part of an appointment a connection uses (same attribute names as the model)."""

    pk: uuid.UUID
    practice_id: int
    expires_at: datetime
    codes_version: int
    cancelled: bool

    @classmethod
    def of(cls, appointment: Appointment) -> AppointmentState:
        return cls(
            appointment.pk,
            appointment.practice_id,
            appointment.expires_at,
            appointment.codes_version,
            appointment.cancelled_at is not None,
        )

    def valid(self, now: datetime | None = None) -> bool:
        """Like `Appointment.objects.valid()`: not cancelled and not expired."""
        return not self.cancelled and (now or timezone.now()) < self.expires_at

    def stored(self) -> tuple:
        return (self.practice_id, self.expires_at, self.codes_version, self.cancelled)


def state_key(appointment_id) -> str:
    return f"rc:appt:{uuid.UUID(str(appointment_id)).hex}"


def state_of(appointment_id) -> AppointmentState | None:
    """The appointment's state (cache, else database), or None if there is none."""
    try:
        pk = uuid.UUID(str(appointment_id))
    except ValueError:
        return None
    found = cache.get(state_key(pk))
    if isinstance(found, tuple):
        return AppointmentState(pk, *found)
    read_at = time.monotonic()
    appointment = Appointment.objects.filter(pk=pk).first()
    if appointment is None:
        return None
    state = AppointmentState.of(appointment)
    if found is None and time.monotonic() - read_at < MAX_READ_AGE:
        cache.add(state_key(pk), state.stored(), timeout=TTL)
    return state


def remember(appointment: Appointment) -> None:
    """Leave a just-read appointment for the connect that follows (best effort)."""
    try:
        cache.add(state_key(appointment.pk), AppointmentState.of(appointment).stored(), TTL)
    except Exception:
        logger.warning("could not cache an appointment's state")


def invalidate(appointment_id) -> None:
    """Mark the entry stale now and once the change is committed (see the module doc)."""
    _mark_stale(appointment_id)
    transaction.on_commit(lambda: _mark_stale(appointment_id))


def _mark_stale(appointment_id) -> None:
    try:
        cache.set(state_key(appointment_id), STALE, timeout=TTL)
    except Exception:
        # Never block a cancellation. Redis down: no connect passes meanwhile (presence
        # needs it too), and the live connections were not told either (the channel
        # layer is down as well); an entry left over expires at most TTL seconds later.
        logger.warning("could not mark an appointment's cached state stale")


def on_appointment_changed(sender, instance, created: bool = False, **kwargs) -> None:
    """Receiver of post_save/post_delete of Appointment (see ConsultationsConfig.ready).

    A new appointment has no entry to protect (a missing appointment is never cached)."""
    if not created:
        invalidate(instance.pk)
