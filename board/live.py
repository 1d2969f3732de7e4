"""The board's side of the call consumer: where it reports, what it answers.

The call consumer (`signaling.consumers.CallConsumer`) calls exactly these, nothing else:

    await live.report(self)            # after connect, admission, bye (its state changed)
    await live.report_left(self)       # on disconnect
    await live.answer_query(self, e)   # handler `call_board_query`: a board asks who is here
    live.notice_for(self, e)           # handler `call_notice`: text if this one waits, else None

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


def participant_event(consumer, present: bool = True) -> dict:
    """What a call connection tells the board about itself (doctor: presence only)."""
    role = consumer.role
    return {
        "type": "board.participant",
        "appointment": str(consumer.appointment.pk),
        "channel": consumer.channel_name,
        "present": present,
        "role": role,
        "name": consumer.name,
        "since": consumer.since,
        # A doctor's consumer keeps the patient's admission; only non-doctors report theirs.
        "admitted": bool(getattr(consumer, "admitted", False)) and role != DOCTOR,
    }


def participant_of(event: dict) -> Participant | None:
    if not event.get("present"):
        return None
    return Participant(
        str(event.get("role", "")),
        str(event.get("name", "")),
        float(event.get("since") or 0),
        bool(event.get("admitted")),
    )


async def report(consumer) -> None:
    """The connection's state changed: tell the practice's boards (best effort)."""
    event = participant_event(consumer)
    if event["admitted"]:
        await _mark_held(consumer.appointment)
    await _send_to_boards(consumer, event)


async def report_left(consumer) -> None:
    await _send_to_boards(consumer, participant_event(consumer, present=False))


async def answer_query(consumer, event: dict) -> None:
    reply_to = event.get("reply_to")
    if not isinstance(reply_to, str) or consumer.role is None or consumer.superseded:
        return
    try:
        await consumer.channel_layer.send(reply_to, participant_event(consumer))
    except Exception:
        logger.warning("could not answer a board's query")


def notice_for(consumer, event: dict) -> str | None:
    """The notice text to show, if this connection is waiting (not admitted, not doctor)."""
    if consumer.role in (None, DOCTOR) or getattr(consumer, "admitted", False):
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
