"""The call WebSocket `/ws/call/` (contract: shared/CONTRACT.md; rules: signaling.room).

One consumer per participant connection: a thin adapter around `signaling.room.Room`,
the connection's view of its call. The consumer re-checks the join session at connect,
feeds the room the client's frames (parsed by `signaling.protocol`) and the other
connections' channel-layer events, and carries out the actions the room returns: send
to the client, deliver to one connection, broadcast to the appointment's group
(`presence.group_name`), close, and the admission bookkeeping in the cache.

Admission: an admitted connection's seat keeps the admitted join id in the cache,
refreshed with the process's presence refresher while the connection is open and kept
`presence.RESUME_WINDOW` seconds after it was last seen. A connection of that join which
comes back within the window resumes the admission; a connection that supersedes an open
one, a new join (a new `POST /`), anybody after a `bye` or `remove`, and anybody later
must be admitted again.

The relay path (frame → checks → `channel_layer.send` to the addressed connection) uses
only what the room holds in memory: no database, no cache. Nothing of a message is
stored or logged.

The practice's board (`board.live`): whenever this connection's own state as the board
shows it changes — connected, admitted, back to waiting (removed, its bye, the doctor's
bye) — and when it leaves, the consumer reports it to the practice's board group; it
answers a board's query (`call.board_query`) and shows a board's notice
(`call.notice`) to its client only while it waits. Relays never touch the board.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull, StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.utils import translation
from redis.exceptions import RedisError

from board import live as board_live
from consultations import joinsession, services
from redconnect import callcodes
from signaling import ice, presence, protocol, room
from signaling.protocol import ProtocolError

logger = logging.getLogger("redconnect")

# Redis unreachable (channels_redis and the cache both raise redis-py errors).
LAYER_DOWN: tuple[type[BaseException], ...] = (RedisError,)
# Like HTTP 503: a temporary condition, the page reconnects (not a final code). Daphne
# lets an application send only 1000 or 3000-4999, so 1011/1013 are not available.
CLOSE_TRY_AGAIN = protocol.CLOSE_TRY_AGAIN
ALONE_BEATS = 12  # a connection alone in its room beats every 12 intervals (60 s)


def _timing(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def _off_loop(function):
    return sync_to_async(function, thread_sensitive=False)


@dataclass(frozen=True)
class Admission:
    """Who a connection is, once its join session has been re-checked."""

    check: joinsession.JoinCheck
    join: joinsession.JoinData | None = None
    name: str = ""
    found: presence.Snapshot | None = None  # who else is connected, read with the check


def server_queue(receive) -> asyncio.Queue | None:
    """The queue behind an ASGI receive that is a bound `asyncio.Queue.get`, else None."""
    queue = getattr(receive, "__self__", None)
    if isinstance(queue, asyncio.Queue) and getattr(receive, "__func__", None) is asyncio.Queue.get:
        return queue
    return None


def _check_join_now(cookie_value: str | None, user, channel: str) -> Admission:
    """The join check, the presence snapshot and this connection's presence entry in one
    thread hop (a connect's set-up cost is mostly hops and round trips). The snapshot is
    read before the entry is written: it shows who was there before this connection.

    Not thread-sensitive: Django runs every sync HTTP view of the process in its one
    thread-sensitive thread, and a connect queued behind the joins there made call
    set-up wait for HTTP. This touches only its own database connection (closed again
    before and after, as channels' `database_sync_to_async` does) and the cache.
    """
    join = joinsession.read_join(cookie_value)
    check = joinsession.check_connect(join, user)
    if not check.ok:
        return Admission(check)
    # A doctor is shown under the current account name, the others under the typed one.
    name = services.display_name_of(user) if join.is_doctor else join.display_name
    found = presence.snapshot(check.appointment.pk, join.seat)
    presence.announce(check.appointment.pk, join.seat, channel)
    return Admission(check, join, name, found)


_check_join = database_sync_to_async(_check_join_now, thread_sensitive=False)


class CallConsumer(AsyncWebsocketConsumer):
    appointment = None
    join: joinsession.JoinData | None = None
    room: room.Room | None = None
    group = ""
    language = settings.LANGUAGE_CODE
    board_state: tuple | None = None  # what the practice's boards last heard of us

    async def __call__(self, scope, receive, send):
        self.frames: deque[float] = deque()
        # Running tasks and the heartbeat's timer: cancelled when the connection ends.
        self.tasks: set[asyncio.Task | asyncio.TimerHandle] = set()
        try:
            await self._serve(scope, receive, send)
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
            for task in list(self.tasks):
                task.cancel()
            presence.let_expire(getattr(self, "channel_name", ""))

    async def _serve(self, scope, receive, send) -> None:
        """Channels' `AsyncConsumer.__call__`, reading one inbox (`signaling.layers.Inboxes`).

        Where the ASGI server's receive is an `asyncio.Queue`'s `get` (daphne, and asgiref's
        test communicator), the layer puts this channel's events into that same queue, and
        one await at a time serves client frames and peer events in arrival order. Any
        other server or layer: Channels' own two receivers.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        inbox = server_queue(receive)
        try:
            if inbox is None or not hasattr(self.channel_layer, "attach"):
                await await_many_dispatch([receive, self.channel_receive], self.dispatch)
                return
            self.channel_layer.attach(self.channel_name, inbox)
            try:
                while True:
                    message = await receive()
                    if isinstance(message, BaseException):
                        raise message  # the layer failed (Redis gone): see __call__
                    await self.dispatch(message)
            finally:
                self.channel_layer.detach(self.channel_name)
        except StopConsumer:
            pass

    async def dispatch(self, message: dict) -> None:
        # Channels' AsyncConsumer.dispatch runs `sync_to_async(close_old_connections)` before
        # every handler: a thread hop per frame and per peer event, twice per relayed
        # message (bench/README.md, "Performance"). The relay path touches no database;
        # the only ORM call (`_check_join`) goes through database_sync_to_async, which
        # closes stale connections itself, and websocket_disconnect still does it once.
        kind = message.get("type")
        if kind == "websocket.receive":  # half of all messages: skip websocket_receive
            await self.receive(message.get("text"), message.get("bytes"))
            return
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- Connect and disconnect ----------------------------------------------------------

    async def connect(self) -> None:
        await self.accept()
        cookies = self.scope.get("cookies", {})
        admission = await _check_join(
            cookies.get(settings.JOIN_COOKIE_NAME), self.scope.get("user"), self.channel_name
        )
        if not admission.check.ok:
            await self.close(code=admission.check.close_code)
            return
        self.language = self._language(cookies)
        self.appointment = admission.check.appointment
        self.join = join = admission.join
        self.group = presence.group_name(self.appointment.pk)
        found = admission.found
        resumed = await self._resume_or_revoke(found)
        appointment_id = self.appointment.pk
        me = room.Member(
            id=secrets.token_urlsafe(9),  # 12 characters, random: no personal data
            channel=self.channel_name,
            role=join.role,
            seat=join.seat,
            name=admission.name,
            since=time.time(),
            join=join.join_id,
            admitted=join.is_doctor or resumed,
        )
        self.room = room.Room(
            me,
            ice=lambda turn: ice.ice_servers(appointment_id=appointment_id, turn=turn),
            codes_version=join.codes_version,
        )
        presence.keep_alive(appointment_id, join.seat, self.channel_name)
        await self.channel_layer.group_add(self.group, self.channel_name)
        others = {channel for seat, channel in found.channels.items() if seat != join.seat}
        self._start_heartbeat()
        if others:
            # The known connections answer our hello; welcome once they have (or soon).
            self._spawn(self._welcome_after_grace())
        await self._carry_out(self.room.hello(others))
        await self._report_to_board()

    async def disconnect(self, code) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.room is None:
            return  # refused at connect: never joined anything
        presence.let_expire(self.channel_name)
        await self._carry_out(self.room.leave())
        await self.channel_layer.group_discard(self.group, self.channel_name)
        await board_live.report_left(self)
        try:
            await _off_loop(self._withdraw)()
        except Exception:
            logger.warning("could not withdraw a call connection's presence")

    def _withdraw(self) -> None:
        me = self.room.me
        if me.admitted and not self.room.superseded and me.role != room.DOCTOR:
            # The server last saw this admitted connection now: resumable for a minute.
            presence.admit(self.appointment.pk, me.seat, me.join)
        presence.withdraw(self.appointment.pk, me.seat, self.channel_name)

    async def _resume_or_revoke(self, found: presence.Snapshot) -> bool:
        """A join whose admitted connection dropped less than a minute ago resumes; a
        superseding connection or another join must be admitted again (contract)."""
        if self.join.is_doctor or found.admitted_join is None:
            return False
        if self.join.seat not in found.channels and found.admitted_join == self.join.join_id:
            return True
        await self._revoke()
        return False

    async def _revoke(self) -> None:
        try:
            await _off_loop(presence.revoke)(self.appointment.pk, self.join.seat)
        except Exception:
            logger.warning("could not end a call's stored admission")

    def _language(self, cookies: dict) -> str:
        wanted = cookies.get(settings.LANGUAGE_COOKIE_NAME)
        return wanted if wanted in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE

    async def _welcome_after_grace(self) -> None:
        await asyncio.sleep(_timing("SIGNALING_PEER_REPLY_GRACE", presence.PEER_REPLY_GRACE))
        await self._carry_out(self.room.welcome())

    # --- Carrying out what the room decided ----------------------------------------------

    async def _carry_out(self, actions: list[room.Action]) -> None:
        for action in actions:
            # Frames to the client go to the server's send directly: what channels'
            # `send(text_data=…)` does, minus two coroutine layers per relayed message.
            if isinstance(action, room.SendText):
                await self.base_send({"type": "websocket.send", "text": action.text})
            elif isinstance(action, room.Deliver):
                await self._send_to(action.channel, action.event)
            elif isinstance(action, room.Send):
                text = protocol.encode(action.message)
                await self.base_send({"type": "websocket.send", "text": text})
            elif isinstance(action, room.Broadcast):
                await self._group_send(action.event)
            elif isinstance(action, room.Close):
                await self._close(action.code)
            else:
                await self._admission(action)

    async def _admission(self, action) -> None:
        me, appointment_id = self.room.me, self.appointment.pk
        try:
            if isinstance(action, room.StoreAdmission):
                await _off_loop(presence.admit)(appointment_id, action.seat, action.join)
            elif isinstance(action, room.KeepAdmission):
                presence.keep_admitted(appointment_id, me.seat, me.join, self.channel_name)
            elif isinstance(action, room.EndAdmission):
                presence.stop_admitted(self.channel_name)
                await _off_loop(presence.revoke)(appointment_id, me.seat)
        except Exception:
            logger.warning("could not update a call's stored admission")

    async def _report_to_board(self) -> None:
        """Tell the practice's boards if what they show of this connection changed."""
        state = board_live.state_of(self)
        if state is not None and state != self.board_state:
            first, self.board_state = self.board_state is None, state
            await board_live.report(self, intro=first)

    async def _close(self, code: int) -> None:
        presence.let_expire(self.channel_name)
        for task in list(self.tasks):
            if task is not asyncio.current_task():
                task.cancel()
        await self.close(code=code)

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

    async def _send_error(self, code: str) -> None:
        with translation.override(self.language):
            await self.send(text_data=protocol.error(code))

    # --- Frames from the client ----------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self._flooded():
            await self.close(code=protocol.CLOSE_RATE_LIMIT)
            return
        if self.room is None or self.room.closing:
            return  # refused, superseded or ended connection that is closing
        if not self.room.welcomed:
            await self._carry_out(self.room.welcome())
        try:
            if text_data is None:
                raise ProtocolError(callcodes.BAD_MESSAGE)  # binary frames: no media via the server
            message = protocol.parse(text_data)
            actions = self.room.on_frame(message)
        except ProtocolError as refused:
            await self._send_error(refused.code)
            return
        await self._carry_out(actions)
        if message.type not in protocol.RELAYED_TYPES:
            await self._report_to_board()  # a bye: back to waiting (or leaving)

    def _flooded(self) -> bool:
        """More than FLOOD_LIMIT frames within FLOOD_WINDOW seconds, refused ones included."""
        now = time.monotonic()
        self.frames.append(now)
        while self.frames and self.frames[0] <= now - protocol.FLOOD_WINDOW:
            self.frames.popleft()
        return len(self.frames) > protocol.FLOOD_LIMIT

    # --- Events from the other connections (see signaling.room) --------------------------

    async def call_hello(self, event: dict) -> None:
        if self.room is not None:
            await self._carry_out(self.room.on_hello(event, time.monotonic()))
            self._beat_with_others()

    async def call_here(self, event: dict) -> None:
        if self.room is not None:
            await self._carry_out(self.room.on_here(event, time.monotonic()))
            self._beat_with_others()

    async def call_admit(self, event: dict) -> None:
        if self.room is not None:
            await self._carry_out(self.room.on_admit(event, time.monotonic()))
            self._beat_with_others()
            await self._report_to_board()  # in consultation

    async def call_joined(self, event: dict) -> None:
        if self.room is not None:
            await self._carry_out(self.room.on_joined(event))

    async def call_remove(self, event: dict) -> None:
        if self.room is not None:
            await self._carry_out(self.room.on_remove(event))
            await self._report_to_board()  # back to the waiting room

    async def call_waiting(self, event: dict) -> None:
        if self.room is not None:
            await self._carry_out(self.room.on_waiting(event))

    async def call_relay(self, event: dict) -> None:
        if self.room is not None:
            await self._carry_out(self.room.on_relay(event))

    async def call_bye(self, event: dict) -> None:
        if self.room is not None:
            await self._carry_out(self.room.on_bye(event))
            await self._report_to_board()  # the doctor hung up: waiting again

    async def call_left(self, event: dict) -> None:
        if self.room is not None:
            await self._carry_out(self.room.on_left(event))

    async def call_ping(self, event: dict) -> None:
        if self.room is not None:
            self.room.on_ping(event, time.monotonic())

    # --- The practice's board (board.live) ---------------------------------------------

    async def call_board_query(self, event: dict) -> None:
        if self.room is not None:
            await board_live.answer_query(self, event)

    async def call_notice(self, event: dict) -> None:
        # Only a waiting participant (patient or guest) sees it; nothing is stored.
        text = board_live.notice_for(self.room.me if self.room else None, event)
        if text is not None and not self.room.closing:
            await self.send(text_data=protocol.encode({"type": "notice", "text": text}))

    async def appointment_closed(self, event: dict) -> None:
        await self.close(code=protocol.CLOSE_NO_SESSION)

    async def appointment_reissued(self, event: dict) -> None:
        if self.room is not None and isinstance(event.get("version"), int):
            await self._carry_out(self.room.on_reissued(event["version"]))

    # --- Heartbeat -----------------------------------------------------------------------
    #
    # Why a timer callback and not a task per connection: a waiting patient alone in its
    # room has nothing to do at a beat but compare two numbers. A sleeping task costs a
    # coroutine frame, a future and a task step per beat; `call_later` only a timer
    # handle, and a task is spawned only for a beat that sends something (a ping, a
    # dropped peer, the appointment's end). Timers keep each connection's own phase, so
    # the pings of many calls stay spread over the interval instead of arriving in bursts.
    # A connection alone in its room has nobody to ping or to drop: it beats only every
    # ALONE_BEATS intervals (or at the appointment's end, if sooner) until somebody comes
    # (`_beat_with_others`); 5,000 waiting patients then cost 83 timers a second, not
    # 1,000. No cache call here: the presence entry is refreshed by the process's
    # `presence.PresenceRefresher`, one `set_many` for all connections.

    def _start_heartbeat(self) -> None:
        self.beat_interval = _timing("SIGNALING_HEARTBEAT_INTERVAL", presence.HEARTBEAT_INTERVAL)
        self.peer_timeout = _timing("SIGNALING_PEER_TIMEOUT", presence.PEER_TIMEOUT)
        self.ends_at = self.appointment.expires_at.timestamp()
        self._schedule_beat()

    def _schedule_beat(self) -> None:
        self.beating_with_others = bool(self.room.others)
        delay = self.beat_interval
        if not self.beating_with_others:
            delay = min(ALONE_BEATS * delay, max(0.0, self.ends_at - time.time()))
        timer = asyncio.get_running_loop().call_later(delay, self._beat)
        old = getattr(self, "beat_timer", None)
        if old is not None:
            old.cancel()  # harmless for the timer that is firing now
            self.tasks.discard(old)
        self.beat_timer = timer
        self.tasks.add(timer)

    def _beat_with_others(self) -> None:
        """Somebody joined a lone connection's room: ping and watch from the next interval."""
        if self.room is not None and self.room.others and not self.beating_with_others:
            self._schedule_beat()

    def _beat(self) -> None:
        """Ping the others, drop silent ones, end with the appointment."""
        self.tasks.discard(self.beat_timer)
        if time.time() >= self.ends_at:
            self._spawn(self.close(code=protocol.CLOSE_NO_SESSION))
            return
        actions = self.room.on_tick(time.monotonic(), self.peer_timeout) if self.room.others else []
        ping = self.room.wants_ping()
        if actions or ping:
            self._spawn(self._beat_work(actions, ping))
        self._schedule_beat()

    async def _beat_work(self, actions: list[room.Action], ping: bool) -> None:
        await self._carry_out(actions)
        if ping and self.room.wants_ping():
            await self._group_send(self.room.ping_event())

    def _spawn(self, work) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
