"""ASGI entry point: HTTP through Django (static files included), WebSocket to signaling."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "redconnect.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does

from redconnect.handler import SyncChainASGIHandler  # noqa: E402

django_asgi_app = SyncChainASGIHandler()  # middleware and view in one thread hop

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from redconnect.origins import PublicOriginValidator  # noqa: E402
from redconnect.static import SecureStaticFilesHandler  # noqa: E402
from redconnect.wsauth import auth_stack  # noqa: E402  (needs configured Django)
from signaling.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Static files come from the same process (no CDN, no second origin).
        "http": SecureStaticFilesHandler(django_asgi_app),  # with the pages' security headers
        # https: only the exact public origin (+ ALLOWED_ORIGINS); redconnect/origins.py
        "websocket": PublicOriginValidator(auth_stack(URLRouter(websocket_urlpatterns))),
    }
)
