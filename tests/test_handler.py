"""redconnect.handler: one thread hop per page, into a pool of long-lived threads.

The project's middleware and views are synchronous. Django's stock ASGI handler starts a
thread per request (so a database connection per request), runs the middleware in it,
hops back to the event loop at the innermost middleware (`async_to_sync`) and into the
thread once more for the view.
"""

from __future__ import annotations

import threading

import pytest
from asgiref import sync
from django.core.signals import request_finished, request_started
from django.db import connection

from redconnect.asgi import django_asgi_app
from redconnect.handler import SyncChainASGIHandler
from tests.support.asgi import asgi_get

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hops(monkeypatch):
    """Counts the hops from a thread back to the event loop (`async_to_sync`)."""
    counted = {"async_to_sync": 0}
    original = sync.AsyncToSync.__call__

    def counting(self, *args, **kwargs):
        counted["async_to_sync"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(sync.AsyncToSync, "__call__", counting)
    return counted


def test_the_application_serves_pages_with_the_sync_chain_handler():
    assert isinstance(django_asgi_app, SyncChainASGIHandler)


async def test_a_page_is_served_without_a_hop_back_to_the_event_loop(hops):
    status, headers, body = await asgi_get("/", [(b"accept-language", b"de")])
    assert status == 200
    assert "Videosprechstunde" in body.decode()
    assert "Content-Security-Policy" in headers  # the middleware ran
    assert hops["async_to_sync"] == 0


async def test_the_stock_handler_would_hop(hops, monkeypatch):
    """The counter sees the stock handler's hop: the test above can fail."""
    from django.core.handlers.asgi import ASGIHandler

    import redconnect.asgi

    stock = ASGIHandler()
    monkeypatch.setattr(
        redconnect.asgi.application.application_mapping["http"], "application", stock
    )
    status, _, _ = await asgi_get("/", [(b"accept-language", b"de")])
    assert status == 200
    assert hops["async_to_sync"] >= 1


async def test_an_async_view_still_answers():
    """/healthz is an async view; inside the sync chain Django adapts it."""
    status, _, body = await asgi_get("/healthz")
    assert status == 200, body


@pytest.fixture
def served():
    """Per request: the thread that ran `request_started`, the one that ran
    `request_finished`, and the database connection (DB-API object) the latter holds."""
    seen: list[dict] = []

    def started(**_kwargs):
        seen.append({"started": threading.current_thread()})

    def finished(**_kwargs):
        connection.ensure_connection()
        seen[-1].update(finished=threading.current_thread(), db=connection.connection)

    request_started.connect(started, dispatch_uid="test-served-started")
    request_finished.connect(finished, dispatch_uid="test-served-finished")
    yield seen
    request_started.disconnect(dispatch_uid="test-served-started")
    request_finished.disconnect(dispatch_uid="test-served-finished")


async def test_pages_run_in_long_lived_threads_that_keep_their_database_connection(served):
    """One request after another: the same pool thread from `request_started` to
    `request_finished`, and the same database connection (CONN_MAX_AGE), none opened per
    request."""
    for _request in range(4):
        status, _, _ = await asgi_get("/", [(b"accept-language", b"de")])
        assert status == 200
    assert len(served) == 4
    for request in served:
        assert request["started"] is request["finished"]
        assert request["started"].name.startswith("http")
    assert len({request["started"] for request in served}) <= 2  # a free thread is reused
    assert len({id(request["db"]) for request in served}) <= 2


async def test_the_stock_handler_would_open_a_thread_and_connection_per_request(
    served, monkeypatch
):
    """The fixture sees Django's thread per request: the test above can fail."""
    from django.core.handlers.asgi import ASGIHandler

    import redconnect.asgi

    stock = ASGIHandler()
    monkeypatch.setattr(
        redconnect.asgi.application.application_mapping["http"], "application", stock
    )
    for _request in range(4):
        status, _, _ = await asgi_get("/", [(b"accept-language", b"de")])
        assert status == 200
    assert len({request["started"] for request in served}) == 4
