"""Django's ASGI handler with its middleware chain built for synchronous code.

Every middleware and view of the project is synchronous. Django's stock ASGI handler
builds the chain for async code all the same: it runs the synchronous middleware in a
thread, hops back to the event loop at the innermost middleware (`async_to_sync`) only
to hop into a thread once more for the synchronous view. Built for synchronous code, the
whole chain (middleware and view) runs in one hop, as under WSGI; reading the body,
sending the response and the disconnect watch stay Django's own, on the event loop.
`bench/asgi_handler.py`: 10 % less CPU per page than the stock handler.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class SyncChainASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        # An async-only middleware or view would still work: Django adapts it with
        # async_to_sync inside the chain.
        super().load_middleware(is_async=False)

    async def get_response_async(self, request):
        # Thread-sensitive: the same thread as Django's request_started/finished receivers
        # (close_old_connections), so the database connection is that thread's.
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
