"""Channel-layer group names and server-initiated events for an appointment's call."""

from __future__ import annotations

import logging
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

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
