"""redconnect.handler: Django's middleware chain and view run in one thread hop under ASGI.

The project's middleware and views are synchronous. Django's stock ASGI handler runs
them in a thread, hops back to the event loop at the innermost middleware
(`async_to_sync`) and into a thread once more for the view.
"""

from __future__ import annotations

import pytest
from asgiref import sync

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
