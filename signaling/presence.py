"""Channel-layer group names and server-initiated events for an appointment's call."""

from __future__ import annotations

import asyncio
import logging
import time
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


def codes_reissued(appointment_id, codes_version: int) -> None:
    """End the live patient and guest connections made with older codes (close 4001).

    Best effort like `close_appointment`: the new version is stored, and every connect
    and every `GET /call/` re-checks it.
    """
    try:
        async_to_sync(get_channel_layer().group_send)(
            group_name(appointment_id), {"type": "appointment.reissued", "version": codes_version}
        )
    except Exception:
        logger.warning("could not notify live connections of re-issued codes")


def on_appointment_closed(sender, appointment_id, **kwargs) -> None:
    """Receiver of consultations.signals.appointment_closed (see SignalingConfig.ready)."""
    close_appointment(appointment_id)


def on_codes_reissued(sender, appointment_id, codes_version, **kwargs) -> None:
    """Receiver of consultations.signals.codes_reissued (see SignalingConfig.ready)."""
    codes_reissued(appointment_id, codes_version)


# --- Who is connected -----------------------------------------------------------------
#
# The cache (Redis in production, shared by all server processes) holds, per appointment
# and seat (doctor, patient, guest-0 … guest-6), only the channel name of the live
# connection: no participant name (names exist only in the cookies and in the messages
# between the consumers). Entries expire after PRESENCE_TTL unless the process's
# PresenceRefresher refreshes them, so a crashed process leaves no stale participant.
# Besides, it keeps per seat which join (a random id from the join cookie) is admitted,
# so that this join can drop and resume the call, even across processes — but only within
# RESUME_WINDOW after the server last saw its connection: the entry is refreshed with that
# lifetime while the admitted connection is open, and written once more when it closes.
# Consumers learn everything else — names, arrivals, departures — from channel-layer
# events, and none of this is touched on the relay path.

PRESENCE_TTL = 15  # seconds; three heartbeats
HEARTBEAT_INTERVAL = 5.0  # seconds between presence refreshes, and between peer pings
PEER_TIMEOUT = 15.0  # a peer silent this long (no ping) has gone: its process died
PEER_REPLY_GRACE = 1.5  # how long a new connection waits for the known peers' replies
RESUME_WINDOW = 60  # seconds after its connection was last seen that a join may resume
SEATS = ("doctor", "patient", *(f"guest-{slot}" for slot in range(7)))


@dataclass(frozen=True)
class Snapshot:
    """What a new connection finds: live channels per seat, its seat's admitted join."""

    channels: dict[str, str]
    admitted_join: str | None


def presence_key(appointment_id, seat: str) -> str:
    return f"rc:presence:{uuid.UUID(str(appointment_id)).hex}:{seat}"


def admission_key(appointment_id, seat: str = "patient") -> str:
    return f"rc:admitted:{uuid.UUID(str(appointment_id)).hex}:{seat}"


def _admission_value(join_id: str) -> str:
    """The admitted join and when it was last seen: the window is checked against that
    time, not only left to the cache's expiry (which a Redis server keeps on its own clock)."""
    return f"{join_id} {time.time():.0f}"


def _admitted_join(value) -> str | None:
    if not isinstance(value, str) or " " not in value:
        return None
    join_id, seen = value.rsplit(" ", 1)
    try:
        fresh = time.time() - int(seen) <= RESUME_WINDOW
    except ValueError:
        return None
    return join_id if join_id and fresh else None


def snapshot(appointment_id, seat: str, seats: tuple[str, ...] = SEATS) -> Snapshot:
    """The live connections of all seats and the seat's admitted join, in one round trip."""
    keys = {presence_key(appointment_id, name): name for name in seats}
    found = cache.get_many([*keys, admission_key(appointment_id, seat)])
    channels = {name: found[key] for key, name in keys.items() if isinstance(found.get(key), str)}
    return Snapshot(channels, _admitted_join(found.get(admission_key(appointment_id, seat))))


def connected_channels(appointment_id, seats: tuple[str, ...] = SEATS) -> dict[str, str]:
    """seat → channel name of the live connection, for the seats that have one."""
    return snapshot(appointment_id, seats[0] if seats else "patient", seats).channels


def admit(appointment_id, seat: str, join_id: str) -> None:
    """Remember that the join on this seat is admitted (for RESUME_WINDOW from now)."""
    if join_id:
        cache.set(
            admission_key(appointment_id, seat), _admission_value(join_id), timeout=RESUME_WINDOW
        )


def revoke(appointment_id, seat: str) -> None:
    """The admission ends (bye, remove, supersede, a new join): admit again."""
    cache.delete(admission_key(appointment_id, seat))


def announce(appointment_id, seat: str, channel: str) -> None:
    """Record (or refresh) the connection of a seat; the newest connection wins."""
    cache.set(presence_key(appointment_id, seat), channel, timeout=PRESENCE_TTL)


def withdraw(appointment_id, seat: str, channel: str) -> None:
    """Forget the connection, unless a newer one of the same seat has replaced it."""
    key = presence_key(appointment_id, seat)
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
        # of a seat comes last and wins if an older one of this process is still closing.
        self.entries: dict[str, str] = {}
        # channel name → (admission key, join id) of the admitted connections.
        self.admissions: dict[str, tuple[str, str]] = {}
        self.task: asyncio.Task | None = None

    def register(self, appointment_id, seat: str, channel: str) -> None:
        self.entries.pop(channel, None)
        self.entries[channel] = presence_key(appointment_id, seat)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def register_admission(self, appointment_id, seat: str, join_id: str, channel: str) -> None:
        if join_id and channel in self.entries:
            self.admissions[channel] = (admission_key(appointment_id, seat), join_id)

    def unregister_admission(self, channel: str) -> None:
        self.admissions.pop(channel, None)

    def unregister(self, channel: str) -> None:
        self.entries.pop(channel, None)
        self.admissions.pop(channel, None)
        if not self.entries and self.task is not None:
            # Nothing left to refresh: end now rather than after a (possibly long) sleep.
            self.task.cancel()
            self.task = None

    def mapping(self) -> dict[str, str]:
        """presence key → channel, the newest registration of a key winning."""
        return {key: channel for channel, key in self.entries.items()}

    def admission_mapping(self) -> dict[str, str]:
        """admission key → admitted join id, for the admitted connections."""
        return dict(self.admissions.values())

    async def _run(self) -> None:
        while self.entries:
            await asyncio.sleep(refresh_interval())
            values = self.mapping()
            if not values:
                break
            admissions = self.admission_mapping()
            try:
                await sync_to_async(_refresh, thread_sensitive=False)(values, admissions)
            except Exception as exc:
                # Redis down: the entries expire after PRESENCE_TTL; retried next interval.
                logger.warning(
                    "could not refresh call presence (%d entries): %s",
                    len(values),
                    type(exc).__name__,
                )


def _refresh(values: dict[str, str], admissions: dict[str, str]) -> None:
    """One thread hop: the presence entries, and the admissions (if any) with their lifetime."""
    cache.set_many(values, timeout=PRESENCE_TTL)
    if admissions:
        stamped = {key: _admission_value(join_id) for key, join_id in admissions.items()}
        cache.set_many(stamped, timeout=RESUME_WINDOW)


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


def keep_alive(appointment_id, seat: str, channel: str) -> None:
    """Refresh this connection's entry every interval until `let_expire` (after `announce`)."""
    refresher().register(appointment_id, seat, channel)


def keep_admitted(appointment_id, seat: str, join_id: str, channel: str) -> None:
    """Refresh the seat's admission with this connection's presence (in memory only)."""
    refresher().register_admission(appointment_id, seat, join_id, channel)


def stop_admitted(channel: str) -> None:
    refresher().unregister_admission(channel)


def let_expire(channel: str) -> None:
    """Stop refreshing the connection's entry (closed or superseded); idempotent."""
    refresher().unregister(channel)
