"""Channel-layer group names and server-initiated events for an appointment's call."""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from dataclasses import dataclass

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
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
# after PRESENCE_TTL unless the process's PresenceRefresher refreshes them, so a crashed
# process leaves no stale participant. Besides, it keeps which join (a random id from the
# join cookie) the doctor has admitted, so that this join's patient can drop and resume
# the call, even across processes. Consumers learn everything else — names, arrivals,
# departures — from channel-layer events, and none of this is touched on the relay path.

PRESENCE_TTL = 15  # seconds; three heartbeats
HEARTBEAT_INTERVAL = 5.0  # seconds between presence refreshes, and between peer pings
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


# --- Keeping the process's entries alive -----------------------------------------------
#
# Why one refresher per process and not a refresh per connection: each refresh is a
# blocking cache call, i.e. a thread hop (`sync_to_async`). One per connection per
# interval was 200 hops/s with 1,000 sockets, a fifth of the event loop and most of the
# relay latency tail (bench/README.md, "What limits the figures", item 3). The refresher
# writes all of this process's live entries with one `set_many` — one hop per interval,
# whatever the number of connections. It is keyed by the running event loop (tests run a
# loop per test; a task belongs to one loop), starts with the first registration and
# stops with the last.


class PresenceRefresher:
    """Refreshes the presence entries of the connections registered on one event loop."""

    def __init__(self) -> None:
        # channel name → its presence key; insertion order: the newest connection
        # of a role comes last and wins if an older one of this process is still closing.
        self.entries: dict[str, str] = {}
        self.task: asyncio.Task | None = None

    def register(self, appointment_id, role: str, channel: str) -> None:
        self.entries.pop(channel, None)
        self.entries[channel] = presence_key(appointment_id, role)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def unregister(self, channel: str) -> None:
        self.entries.pop(channel, None)
        if not self.entries and self.task is not None:
            # Nothing left to refresh: end now rather than after a (possibly long) sleep.
            self.task.cancel()
            self.task = None

    def mapping(self) -> dict[str, str]:
        """presence key → channel, the newest registration of a key winning."""
        return {key: channel for channel, key in self.entries.items()}

    async def _run(self) -> None:
        while self.entries:
            await asyncio.sleep(refresh_interval())
            values = self.mapping()
            if not values:
                break
            try:
                await sync_to_async(cache.set_many, thread_sensitive=False)(
                    values, timeout=PRESENCE_TTL
                )
            except Exception as exc:
                # Redis down: the entries expire after PRESENCE_TTL; retried next interval.
                logger.warning(
                    "could not refresh call presence (%d entries): %s",
                    len(values),
                    type(exc).__name__,
                )


def refresh_interval() -> float:
    """HEARTBEAT_INTERVAL, or the SIGNALING_HEARTBEAT_INTERVAL setting (tests)."""
    return float(getattr(settings, "SIGNALING_HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL))


_refreshers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PresenceRefresher] = (
    weakref.WeakKeyDictionary()
)


def refresher() -> PresenceRefresher:
    """The refresher of the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    found = _refreshers.get(loop)
    if found is None:
        found = _refreshers[loop] = PresenceRefresher()
    return found


def keep_alive(appointment_id, role: str, channel: str) -> None:
    """Refresh this connection's entry every interval until `let_expire` (after `announce`)."""
    refresher().register(appointment_id, role, channel)


def let_expire(channel: str) -> None:
    """Stop refreshing the connection's entry (closed or superseded); idempotent."""
    refresher().unregister(channel)
