"""Channel-layer group names and server-initiated events for an appointment's call."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache

logger = logging.getLogger("redconnect")


def group_name(appointment_id) -> str:
    """The channel-layer group of one appointment's participants (ASCII, < 100 chars)."""
    return f"appt.{uuid.UUID(str(appointment_id)).hex}"


def close_appointment(appointment_id) -> None:
    """Close every live connection of the appointment (cancelled: close code 4001).

    Best effort: the cancellation itself is already stored, and every connect re-checks
    the appointment, so an unreachable channel layer must not undo or block it.
    """
    try:
        async_to_sync(get_channel_layer().group_send)(
            group_name(appointment_id), {"type": "appointment.closed"}
        )
    except Exception:
        logger.warning("could not notify live connections of a cancelled appointment")


# --- Who is connected -----------------------------------------------------------------
#
# The cache (Redis in production, shared by all server processes) holds, per appointment
# and role, only the channel name of the live connection: no participant name (the
# patient's name exists only in the cookie and in relayed messages). Entries expire
# after PRESENCE_TTL unless the connection's heartbeat refreshes them, so a crashed
# process leaves no stale participant. Besides, it keeps which join (a random id from the
# join cookie) the doctor has admitted, so that this join's patient can drop and resume
# the call, even across processes. Consumers learn everything else — names, arrivals,
# departures — from channel-layer events, and none of this is touched on the relay path.

PRESENCE_TTL = 15  # seconds; three heartbeats
HEARTBEAT_INTERVAL = 5.0  # seconds between a connection's presence refresh and peer ping
PEER_TIMEOUT = 15.0  # a peer silent this long (no ping) has gone: its process died
PEER_REPLY_GRACE = 1.5  # how long a new connection waits for a known peer's reply
ADMISSION_TTL = 12 * 3600  # an admission outlives dropped connections, not the day


@dataclass(frozen=True)
class Snapshot:
    """What a new connection finds: live channels per role, the admitted join id."""

    channels: dict[str, str]
    admitted_join: str | None


def presence_key(appointment_id, role: str) -> str:
    return f"rc:presence:{uuid.UUID(str(appointment_id)).hex}:{role}"


def admission_key(appointment_id) -> str:
    return f"rc:admitted:{uuid.UUID(str(appointment_id)).hex}"


def snapshot(appointment_id, roles: tuple[str, ...]) -> Snapshot:
    """The live connections of the roles and the admitted join, in one cache round trip."""
    keys = {presence_key(appointment_id, role): role for role in roles}
    found = cache.get_many([*keys, admission_key(appointment_id)])
    channels = {role: found[key] for key, role in keys.items() if isinstance(found.get(key), str)}
    admitted = found.get(admission_key(appointment_id))
    return Snapshot(channels, admitted if isinstance(admitted, str) and admitted else None)


def connected_channels(appointment_id, roles: tuple[str, ...]) -> dict[str, str]:
    """role → channel name of the live connection, for the roles that have one."""
    return snapshot(appointment_id, roles).channels


def admit(appointment_id, join_id: str) -> None:
    """Remember that the doctor admitted the patient of this join."""
    if join_id:
        cache.set(admission_key(appointment_id), join_id, timeout=ADMISSION_TTL)


def revoke(appointment_id) -> None:
    """The admission ends (bye, supersede, a new join): the patient must be admitted again."""
    cache.delete(admission_key(appointment_id))


def announce(appointment_id, role: str, channel: str) -> None:
    """Record (or refresh) the connection of a role; the newest connection wins."""
    cache.set(presence_key(appointment_id, role), channel, timeout=PRESENCE_TTL)


def withdraw(appointment_id, role: str, channel: str) -> None:
    """Forget the connection, unless a newer one of the same role has replaced it."""
    key = presence_key(appointment_id, role)
    if cache.get(key) == channel:
        cache.delete(key)
