from django.urls import path

from board.consumers import BoardConsumer

WS_PATH = "/ws/praxis/"

websocket_urlpatterns = [
    path(WS_PATH.lstrip("/"), BoardConsumer.as_asgi(), name="ws-board"),
]
