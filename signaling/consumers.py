"""The call WebSocket `/ws/call/` (contract: shared/CONTRACT.md; rules: signaling.protocol).

One consumer per participant connection. Each appointment has a channel-layer group
(`presence.group_name`) through which its connections find each other:

- `call.hello`  a new connection announces itself (role, name, start time) to the group;
                an older connection of the same role closes (4009, superseded), the
                peer answers directly with `call.here`.
- `call.here`   the answer: the peer's name and, from a patient, whether it is admitted.
- `call.admit`  doctor → patient consumer.
- `call.relay`  an offer/answer/candidate, already validated and encoded, to the peer.
- `call.bye`, `call.left`  the sender hung up / its connection closed.
- `call.ping`   heartbeat between the two consumers: a peer whose process died stops
                pinging and is dropped after PEER_TIMEOUT.
- `appointment.closed`  the appointment was cancelled (close 4001).

Admission: the doctor's `admit` is also stored in the cache, bound to the random join id
of the patient's cookie (`presence.admit`). A patient connection of that join which comes
back after its previous connection closed resumes the admission (`admitted` to both, the
doctor sends a fresh offer); a connection that supersedes an open one, a new join (a new
`POST /`) and anybody after a `bye` must be admitted again.

The relay path (frame → checks → `channel_layer.send` to the peer) uses only what the
consumer holds in memory: no database, no cache. Nothing of a message is stored or logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone, translation
from redis.exceptions import RedisError

from board import live as board_live
from consultations import joinsession, services
from consultations.models import Membership
from signaling import ice, presence, protocol
from signaling.protocol import ProtocolError

logger = logging.getLogger("redconnect")

DOCTOR = Membership.Role.DOCTOR.value
PATIENT = services.PATIENT
OTHER_ROLE = {DOCTOR: PATIENT, PATIENT: DOCTOR}
# Redis unreachable (channels_redis and the cache both raise redis-py errors).
LAYER_DOWN: tuple[type[BaseException], ...] = (RedisError,)
# Like HTTP 503: a temporary condition, the page reconnects (not a final code). Daphne
# lets an application send only 1000 or 3000-4999, so 1011/1013 are not available.
CLOSE_TRY_AGAIN = 4503


@dataclass
class Peer:
    """The other participant's connection as this consumer knows it."""

    channel: str
    name: str
    since: float  # when it connected: the newest connection of a role wins
    seen: float  # monotonic time of its last event (heartbeat)
    join: str = ""  # the join id of its cookie: what an admission is bound to
    said_bye: bool = False


def _timing(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


@dataclass(frozen=True)
class Admission:
    """Who a connection is, once its join session has been re-checked."""

    check: joinsession.JoinCheck
    role: str | None = None
    name: str = ""
    join_id: str = ""


@database_sync_to_async
def _check_join(cookie_value: str | None, user) -> Admission:
    join = joinsession.read_join(cookie_value)
    check = joinsession.check_join(join, user)
    if not check.ok:
        return Admission(check)
    # A doctor is shown under the current account name, a patient under the typed one.
    name = services.display_name_of(user) if join.is_doctor else join.display_name
    return Admission(check, join.role, name, join.join_id)


class CallConsumer(AsyncWebsocketConsumer):
    appointment = None
    role: str | None = None
    name = ""
    join_id = ""
    group = ""
    since = 0.0
    peer: Peer | None = None
    admitted = False  # the patient of this appointment is admitted (both sides keep it)
    superseded = False
    welcomed = False
    language = settings.LANGUAGE_CODE

    async def __call__(self, scope, receive, send):
        self.frames: deque[float] = deque()
        self.tasks: list[asyncio.Task] = []
        try:
            await super().__call__(scope, receive, send)
        except LAYER_DOWN as exc:
            # Redis (channel layer, presence) went away: end this connection cleanly with
            # "try again later" instead of a traceback per call; the page reconnects.
            logger.warning(
                "call connection closed: channel layer unavailable (%s)", type(exc).__name__
            )
            try:
                await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN})
            except Exception:  # noqa: S110  (the client is already gone)
                pass
        finally:
            # Also when the server cancels the connection without a disconnect event.
            for task in self.tasks:
                task.cancel()
            presence.let_expire(getattr(self, "channel_name", ""))

    async def dispatch(self, message: dict) -> None:
        # Channels' AsyncConsumer.dispatch runs `sync_to_async(close_old_connections)` before
        # every handler: a thread hop per frame and per peer event, twice per relayed
        # message (bench/README.md, "Performance"). The relay path touches no database;
        # the only ORM call (`_check_join`) goes through database_sync_to_async, which
        # closes stale connections itself, and websocket_disconnect still does it once.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- Connect and disconnect ----------------------------------------------------------

    async def connect(self) -> None:
        await self.accept()
        cookies = self.scope.get("cookies", {})
        admission = await _check_join(
            cookies.get(settings.JOIN_COOKIE_NAME), self.scope.get("user")
        )
        if not admission.check.ok:
            await self.close(code=admission.check.close_code)
            return
        self.language = self._language(cookies)
        self.appointment = admission.check.appointment
        self.role, self.name = admission.role, admission.name
        self.join_id = admission.join_id
        self.group = presence.group_name(self.appointment.pk)
        self.since = time.time()
        found = await sync_to_async(presence.snapshot, thread_sensitive=False)(
            self.appointment.pk, (self.role, OTHER_ROLE[self.role])
        )
        known = found.channels
        if self.role == PATIENT:
            await self._resume_or_revoke(found)
        await self._announce()
        presence.keep_alive(self.appointment.pk, self.role, self.channel_name)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.channel_layer.group_send(self.group, self._event("call.hello"))
        await board_live.report(self)  # board hook: the practice's boards see the arrival
        self.tasks.append(asyncio.create_task(self._heartbeat()))
        if OTHER_ROLE[self.role] in known:
            # The peer answers our hello with its name; welcome once it has (or soon).
            self.tasks.append(asyncio.create_task(self._welcome_after_grace()))
        else:
            await self._welcome()

    async def disconnect(self, code) -> None:
        for task in self.tasks:
            task.cancel()
        if self.role is None:
            return  # refused at connect: never joined anything
        presence.let_expire(self.channel_name)
        await self.channel_layer.group_discard(self.group, self.channel_name)
        if not self.superseded:
            await self._group_send(self._event("call.left"))
        await board_live.report_left(self)  # board hook: the departure
        try:
            await sync_to_async(presence.withdraw, thread_sensitive=False)(
                self.appointment.pk, self.role, self.channel_name
            )
        except Exception:
            logger.warning("could not withdraw a call connection's presence")

    async def _resume_or_revoke(self, found: presence.Snapshot) -> None:
        """A patient of the admitted join whose connection dropped resumes the admission;
        a superseding connection or another join must be admitted again (contract)."""
        if found.admitted_join is None:
            return
        if PATIENT not in found.channels and found.admitted_join == self.join_id:
            self.admitted = True
        else:
            await self._revoke()

    async def _revoke(self) -> None:
        try:
            await sync_to_async(presence.revoke, thread_sensitive=False)(self.appointment.pk)
        except Exception:
            logger.warning("could not end a call's stored admission")

    def _language(self, cookies: dict) -> str:
        wanted = cookies.get(settings.LANGUAGE_COOKIE_NAME)
        return wanted if wanted in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE

    async def _announce(self) -> None:
        await sync_to_async(presence.announce, thread_sensitive=False)(
            self.appointment.pk, self.role, self.channel_name
        )

    # --- Welcome and state messages to this connection's client -------------------------

    async def _welcome(self) -> None:
        if self.welcomed:
            return
        self.welcomed = True
        peer = self.peer
        await self._send(
            {
                "type": "welcome",
                "role": self.role,
                "ice_servers": ice.ice_servers(),
                "peer": {"role": OTHER_ROLE[self.role], "name": peer.name} if peer else None,
            }
        )
        if self.role == PATIENT:
            await self._send({"type": "admitted" if self.admitted else "waiting"})
        elif peer is not None:
            await self._send_doctor_state()

    async def _welcome_after_grace(self) -> None:
        await asyncio.sleep(_timing("SIGNALING_PEER_REPLY_GRACE", presence.PEER_REPLY_GRACE))
        await self._welcome()

    async def _send_doctor_state(self) -> None:
        if self.admitted:
            await self._send({"type": "admitted"})
        else:
            await self._send({"type": "peer-waiting", "name": self.peer.name})

    async def _send(self, message: dict) -> None:
        await self.send(text_data=protocol.encode(message))

    async def _send_error(self, code: str) -> None:
        with translation.override(self.language):
            await self.send(text_data=protocol.error(code))

    # --- Frames from the client ----------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self._flooded():
            await self.close(code=protocol.CLOSE_RATE_LIMIT)
            return
        if self.role is None or self.superseded:
            return  # refused or superseded connection that is closing
        if not self.welcomed:
            await self._welcome()
        try:
            if text_data is None:
                raise ProtocolError("bad-message")  # binary frames: no media via the server
            message = protocol.parse(text_data)
            await self._handle(message)
        except ProtocolError as refused:
            await self._send_error(refused.code)

    def _flooded(self) -> bool:
        """More than FLOOD_LIMIT frames within FLOOD_WINDOW seconds, refused ones included."""
        now = time.monotonic()
        self.frames.append(now)
        while self.frames and self.frames[0] <= now - protocol.FLOOD_WINDOW:
            self.frames.popleft()
        return len(self.frames) > protocol.FLOOD_LIMIT

    async def _handle(self, message: protocol.Message) -> None:
        if message.type == "admit":
            await self._admit()
        elif message.type == "bye":
            await self._bye()
        else:
            await self._relay(message)

    async def _admit(self) -> None:
        if self.role != DOCTOR:
            raise ProtocolError("forbidden")
        if self.peer is None:
            raise ProtocolError("nobody-waiting")
        self.admitted = True
        self.peer.said_bye = False
        peer = self.peer
        try:
            # Stored before either side hears `admitted`: whoever acts on it (or reconnects)
            # finds the admission already there.
            await sync_to_async(presence.admit, thread_sensitive=False)(
                self.appointment.pk, peer.join
            )
        except Exception:
            logger.warning("could not store a call's admission")
        await self._send_to(peer.channel, self._event("call.admit"))
        await self._send({"type": "admitted"})

    async def _bye(self) -> None:
        # A hang-up ends the admission: a bye-saying patient must be admitted again.
        self.admitted = False
        await self._group_send(self._event("call.bye"))
        await self._revoke()
        await board_live.report(self)  # board hook: back to waiting (or leaving)

    async def _relay(self, message: protocol.Message) -> None:
        if not self.admitted:
            raise ProtocolError("not-admitted")
        protocol.check_content(message)
        if self.peer is None or self.peer.said_bye:
            return  # the peer is gone: nobody to relay to, nothing to complain about
        event = {"type": "call.relay", "from": self.channel_name}
        event["text"] = protocol.encode(message.data)
        await self._send_to_peer(event)

    # --- Sending events ------------------------------------------------------------------

    def _event(self, kind: str, **extra) -> dict:
        return {
            "type": kind,
            "from": self.channel_name,
            "role": self.role,
            "name": self.name,
            "since": self.since,
            "join": self.join_id,
            "admitted": self.admitted,
            **extra,
        }

    async def _send_to_peer(self, event: dict) -> None:
        await self._send_to(self.peer.channel, event)

    async def _send_to(self, channel: str, event: dict) -> None:
        """Send to one consumer; a full or vanished channel drops the event, never the sender."""
        try:
            await self.channel_layer.send(channel, event)
        except ChannelFull:
            pass
        except Exception:
            logger.warning("could not reach a call peer's channel")

    async def _group_send(self, event: dict) -> None:
        try:
            await self.channel_layer.group_send(self.group, event)
        except Exception:
            logger.warning("could not reach the call's channel-layer group")

    # --- Events from the other connections -----------------------------------------------

    def _from_peer(self, event: dict) -> bool:
        if self.peer is None or event.get("from") != self.peer.channel:
            return False
        self.peer.seen = time.monotonic()
        return True

    async def call_hello(self, event: dict) -> None:
        if event["from"] == self.channel_name or self.role is None:
            return
        if event["role"] == self.role:
            if (event["since"], event["from"]) > (self.since, self.channel_name):
                await self._supersede()
            return
        if not await self._meet(event):
            return
        await self._send_to(event["from"], self._event("call.here"))
        if not self.welcomed:
            return
        if self.role == DOCTOR:
            await self._send_doctor_state()
        elif self.admitted:
            # The doctor reconnected while this patient is admitted: both hear it again.
            await self._send({"type": "admitted"})

    async def call_here(self, event: dict) -> None:
        if self.role is None or not await self._meet(event):
            return
        if self.role == DOCTOR:
            self.admitted = bool(event.get("admitted"))
        if not self.welcomed:
            await self._welcome()
        elif self.role == DOCTOR:
            await self._send_doctor_state()

    async def _meet(self, event: dict) -> bool:
        """Take the sender as peer if it is newer than the known one (False if older)."""
        if event["role"] != OTHER_ROLE.get(self.role):
            return False
        if self.peer is not None:
            if event["from"] == self.peer.channel:
                self.peer.seen = time.monotonic()
                return True
            if (event["since"], event["from"]) < (self.peer.since, self.peer.channel):
                return False  # a late message of a connection that was superseded
            await self._peer_gone()
        self.peer = Peer(
            event["from"], event["name"], event["since"], time.monotonic(), event.get("join", "")
        )
        if self.role == DOCTOR:
            # A new patient connection is admitted only if it resumed its join's admission.
            self.admitted = bool(event.get("admitted"))
        return True

    async def _peer_gone(self) -> None:
        """The known peer closed, was superseded or died: tell the client once."""
        peer, self.peer = self.peer, None
        if self.role == DOCTOR:
            self.admitted = False  # the admission belongs to that patient connection
        if peer is not None and not peer.said_bye and self.welcomed:
            await self._send({"type": "peer-left"})

    async def call_admit(self, event: dict) -> None:
        if self.role != PATIENT:
            return
        if self.peer is None and event.get("role") == DOCTOR:
            await self._meet(event)
        if not self._from_peer(event):
            return
        self.peer.said_bye = False
        self.admitted = True
        await self._send({"type": "admitted"})
        await board_live.report(self)  # board hook: in consultation

    async def call_relay(self, event: dict) -> None:
        if self.admitted and self._from_peer(event):
            await self.send(text_data=event["text"])

    async def call_bye(self, event: dict) -> None:
        if not self._from_peer(event):
            return
        if self.admitted and self.role != DOCTOR:
            self.admitted = False
            await board_live.report(self)  # board hook: the doctor hung up, back to waiting
        self.admitted = False
        if not self.peer.said_bye:
            self.peer.said_bye = True
            await self._send({"type": "peer-left"})

    async def call_left(self, event: dict) -> None:
        if self._from_peer(event):
            await self._peer_gone()

    async def call_ping(self, event: dict) -> None:
        self._from_peer(event)

    # --- The practice's board (board.live; nothing else of the consumer is involved) ---

    async def call_board_query(self, event: dict) -> None:
        await board_live.answer_query(self, event)

    async def call_notice(self, event: dict) -> None:
        text = board_live.notice_for(self, event)  # None unless this connection waits
        if text is not None:
            await self._send({"type": "notice", "text": text})

    async def appointment_closed(self, event: dict) -> None:
        await self.close(code=protocol.CLOSE_NO_SESSION)

    async def _supersede(self) -> None:
        self.superseded = True
        presence.let_expire(self.channel_name)
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        await self.close(code=protocol.CLOSE_SUPERSEDED)

    # --- Heartbeat -----------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Ping the peer, drop a silent peer, end with the appointment.

        No cache call here: the presence entry is refreshed by the process's
        `presence.PresenceRefresher`, one `set_many` for all connections.
        """
        interval = _timing("SIGNALING_HEARTBEAT_INTERVAL", presence.HEARTBEAT_INTERVAL)
        timeout = _timing("SIGNALING_PEER_TIMEOUT", presence.PEER_TIMEOUT)
        while True:
            await asyncio.sleep(interval)
            if timezone.now() >= self.appointment.expires_at:
                await self.close(code=protocol.CLOSE_NO_SESSION)
                return
            if self.peer is None:
                continue
            if time.monotonic() - self.peer.seen > timeout:
                await self._peer_gone()
            else:
                await self._send_to_peer(self._event("call.ping"))
