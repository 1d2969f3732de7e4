"""`/healthz`: 200 when the database and the channel layer answer, else 503."""

from __future__ import annotations

import logging
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

logger = logging.getLogger("redconnect")


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:  # any driver error means "not healthy"
        logger.warning("health: database unavailable")
        return False


async def _layer_roundtrip() -> bool:
    layer = get_channel_layer()
    channel = await layer.new_channel("healthz.")
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "healthz", "token": token})
    message = await layer.receive(channel)
    return message.get("token") == token


def channel_layer_ok() -> bool:
    try:
        return async_to_sync(_layer_roundtrip)()
    except Exception:
        logger.warning("health: channel layer unavailable")
        return False


@never_cache
def healthz(request):
    healthy = database_ok() and channel_layer_ok()
    if healthy:
        return JsonResponse({"status": "ok"})
    return JsonResponse({"status": "unavailable"}, status=503)
