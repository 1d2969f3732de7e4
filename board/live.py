"""The board's side of the call consumer: where it reports, what it answers.

The call consumer (`signaling.consumers.CallConsumer`, a thin adapter around its
`signaling.room.Room`) calls exactly these, nothing else; each reads the connection's own
member of the room (`consumer.room.me`: role, seat, name, since, admitted):

    await live.report(self, intro=True)  # connected (the only report with the name)
    await live.report(self)            # its state changed: admitted, back to waiting
                                       # (removed, bye, the doctor hung up)
    await live.report_left(self)       # on disconnect
    await live.answer_query(self, e)   # handler `call_board_query`: a board asks who is here
    live.notice_for(me, e)             # handler `call_notice`: text if `me` waits, else None

Every connection speaks only for itself — doctor, patient and each guest seat — so the
board sees all N participants of a call without the room telling it about the others.

A report is one `group_send` to the practice's board group (`board_group`); only the
board connections of that practice's doctors and staff are in that group, so a waiting
person's name reaches members of that practice only. Nothing is written anywhere: a
board that connects asks the appointment's call group (`call.board_query`) and every
live connection answers it directly. That a call was held today is kept only as a
cache flag without content (`held_key`), so "ended" survives a reload of the board.
"""

from __future__ import annotations

import logging
import uuid

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.utils import timezone

from board.status import DOCTOR, Participant
from signaling import presence

logger = logging.getLogger("redconnect")

NOTICE_MAX_LENGTH = 200


def board_group(practice_id) -> str:
    """The channel-layer group of one practice's open boards."""
    return f"board.{int(practice_id)}"


def held_key(appointment_id) -> str:
    return f"rc:board:held:{uuid.UUID(str(appointment_id)).hex}"


def participant_event(consumer, present: bool = True, intro: bool = False) -> dict:
    """What a call connection tells the board about itself (doctor: presence only).

    The name travels only in the board's introduction (`intro`: the first report of a
    connection and its answer to a board's query), as names on /ws/call/ travel only in
    introductions: state changes and departures carry none, the board keeps it by channel.
    """
    me = consumer.room.me
    event = {
        "type": "board.participant",
        "appointment": str(consumer.appointment.pk),
        "channel": consumer.channel_name,
        "present": present,
        "intro": intro,
        "role": me.role,
        "since": me.since,
        # The room counts the doctor as admitted while in the call; only the others'
        # admission says whether a consultation is going on.
        "admitted": bool(me.admitted) and me.role != DOCTOR,
    }
    if intro:
        event["name"] = me.name
    return event


def state_of(consumer) -> tuple | None:
    """What the board shows of a connection; a change of it is worth a report."""
    if consumer.room is None or consumer.room.closing:
        return None  # refused, superseded or closing: its departure reports it
    me = consumer.room.me
    return (me.role, bool(me.admitted) and me.role != DOCTOR)


def participant_of(event: dict) -> Participant | None:
    if not event.get("present"):
        return None
    name = event.get("name")
    return Participant(
        str(event.get("role", "")),
        str(name) if name is not None else None,
        float(event.get("since") or 0),
        bool(event.get("admitted")),
    )


async def report(consumer, intro: bool = False) -> None:
    """The connection's state changed: tell the practice's boards (best effort)."""
    event = participant_event(consumer, intro=intro)
    if event["admitted"]:
        await _mark_held(consumer.appointment)
    await _send_to_boards(consumer, event)


async def report_left(consumer) -> None:
    await _send_to_boards(consumer, participant_event(consumer, present=False))


async def answer_query(consumer, event: dict) -> None:
    reply_to = event.get("reply_to")
    if not isinstance(reply_to, str) or state_of(consumer) is None:
        return
    try:
        await consumer.channel_layer.send(reply_to, participant_event(consumer, intro=True))
    except Exception:
        logger.warning("could not answer a board's query")


def notice_for(me, event: dict) -> str | None:
    """The notice text to show, if the member `me` is waiting (not admitted, not doctor)."""
    if me is None or me.role == DOCTOR or me.admitted:
        return None
    text = event.get("text")
    if not isinstance(text, str) or not text.strip():
        return None
    return text[:NOTICE_MAX_LENGTH]


def query_event(reply_to: str) -> dict:
    return {"type": "call.board_query", "reply_to": reply_to}


def send_notice(appointment_id, text: str) -> bool:
    """Relay a text to the appointment's waiting participants; never stored or logged."""
    try:
        async_to_sync(get_channel_layer().group_send)(
            presence.group_name(appointment_id), {"type": "call.notice", "text": text}
        )
    except Exception:
        logger.warning("could not relay a message to a waiting room")
        return False
    return True


async def _send_to_boards(consumer, event: dict) -> None:
    try:
        await consumer.channel_layer.group_send(
            board_group(consumer.appointment.practice_id), event
        )
    except Exception:
        logger.warning("could not reach the practice's board group")


async def _mark_held(appointment) -> None:
    seconds = max(1, int((appointment.expires_at - timezone.now()).total_seconds()))
    try:
        await sync_to_async(cache.set, thread_sensitive=False)(
            held_key(appointment.pk), 1, timeout=seconds
        )
    except Exception:
        logger.warning("could not mark a call as held")
