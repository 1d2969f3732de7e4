"""Django's ASGI handler, with one thread hop per page into a pool of long-lived threads.

Every middleware and view of the project is synchronous. For each request Django's stock
ASGI handler

- starts a thread of its own (asgiref's `ThreadSensitiveContext`: a new one-thread
  executor per request), so each request also opens a new database connection: a
  connection belongs to a thread;
- hops from the event loop into that thread three times: for `request_started`, for
  the middleware chain, and for the response's `close()` (`request_finished`);
- builds the middleware chain for async code: it runs the synchronous middleware in the
  thread, hops back to the event loop at the innermost middleware (`async_to_sync`) only
  to hop into the thread once more for the view.

Here the chain is built for synchronous code, and one hop into a pool of long-lived
threads runs `request_started`, the chain and the view, and closes the response
(`request_finished`) once its content is complete, as a threaded WSGI server does. Each
thread keeps its database connection for `CONN_MAX_AGE`; Django's
`close_old_connections` checks it at the start and end of every request
(`CONN_HEALTH_CHECKS`), so a database restart costs no server restart. Reading the body
and sending the response stay Django's own, on the event loop. `bench/asgi_handler.py`
measures the difference.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse
from django.urls import set_script_prefix

# Page requests served at once by one process; more wait for a free thread. Each thread
# holds at most one database connection, so this also bounds a process' page-request
# connections (PostgreSQL: max_connections, docs/deployment.md). Slow pages (the
# compliance PDF, a login's password hash) take one thread each, not the process.
THREADS = 16


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self):
        super().__init__()
        self.executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="http")

    def load_middleware(self, is_async: bool = False) -> None:
        # An async-only middleware or view would still work: Django adapts it with
        # async_to_sync inside the chain (back on the event loop).
        super().load_middleware(is_async=False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        # No ThreadSensitiveContext: the pool's threads stand in for its thread per request.
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            response = await self.in_thread(self.respond)(scope, body_file)
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:  # its content was produced while sending
                    await self.in_thread(response.close)()
        finally:
            body_file.close()

    def in_thread(self, function):
        return sync_to_async(function, thread_sensitive=False, executor=self.executor)

    def respond(self, scope, body_file):
        """In a pool thread: the request from `request_started` to `request_finished`."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size  # daphne chunks the body itself
        if not response.streaming:
            # Complete content: close here (request_finished), in the thread that served
            # the request and owns its database connection, before sending.
            response.close()
        return response
