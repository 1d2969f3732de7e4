"""WebSocket routes; `redconnect.asgi` wraps them in origin validation and auth."""

from django.urls import path

from signaling.consumers import CallConsumer

websocket_urlpatterns = [
    path("ws/call/", CallConsumer.as_asgi(), name="ws-call"),
]
