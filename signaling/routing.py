"""WebSocket routes; `redconnect.asgi` wraps them in origin validation and auth."""

from django.urls import path

from board.routing import websocket_urlpatterns as board_patterns
from signaling.consumers import CallConsumer

websocket_urlpatterns = [
    path("ws/call/", CallConsumer.as_asgi(), name="ws-call"),
    *board_patterns,
]
