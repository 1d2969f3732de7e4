"""The WebSocket auth stack (redconnect.wsauth): without a session cookie the connection is
anonymous without Channels' two thread hops; with one, the login is resolved in one hop
with Django's `get_user`, and the server's `send` reaches the consumer unwrapped."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.test import Client

from redconnect.wsauth import auth_stack

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    """An inner ASGI app that keeps the scope it got."""

    scope: dict | None = None

    async def __call__(self, scope, receive, send):
        self.scope = scope


class Sending(Recorder):
    sent_with = None

    async def __call__(self, scope, receive, send):
        self.scope, self.sent_with = scope, send


async def _server_send(message):
    pass


async def _scope_for(cookie: str) -> dict:
    inner = Sending()
    headers = [(b"cookie", cookie.encode())] if cookie else []
    scope = {"type": "websocket", "path": "/ws/call/", "headers": headers}
    await auth_stack(inner)(scope, None, _server_send)
    assert inner.sent_with is _server_send, "the server's send was wrapped"
    return inner.scope


async def test_no_session_cookie_is_anonymous_with_an_empty_session():
    scope = await _scope_for("rc_join=x; csrftoken=y")
    assert scope["user"].is_authenticated is False
    assert scope["session"].session_key is None and scope["cookies"]["rc_join"] == "x"
    # Set directly (Channels' path would leave its lazy wrappers, resolved in threads).
    assert type(scope["session"]).__name__ == "SessionStore"
    assert type(scope["user"]) is AnonymousUser


async def test_a_session_cookie_brings_its_login(doctor):
    client = Client()
    await sync_to_async(client.force_login)(doctor)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    scope = await _scope_for(f"{settings.SESSION_COOKIE_NAME}={key}")
    assert scope["user"].pk == doctor.pk  # resolved: no lazy object, no thread needed
    assert scope["session"].session_key == key


async def test_a_session_whose_password_changed_is_anonymous(doctor):
    """Django's session hash check: a password change ends the other logins."""
    client = Client()
    await sync_to_async(client.force_login)(doctor)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    doctor.set_password("ein-ganz-neues-Passwort-2026")
    await sync_to_async(doctor.save)()
    scope = await _scope_for(f"{settings.SESSION_COOKIE_NAME}={key}")
    assert scope["user"].is_authenticated is False


async def test_an_unknown_session_cookie_is_anonymous():
    scope = await _scope_for(f"{settings.SESSION_COOKIE_NAME}=not-a-session")
    assert scope["user"].is_authenticated is False


def test_a_patients_join_sets_no_session_cookie(issued):
    """The shortcut applies to the patients' connects: their join leaves no session."""
    client = Client()
    client.get("/")
    client.post("/", {"code": issued.patient_code, "name": "Erika", "consent": "on"})
    assert settings.JOIN_COOKIE_NAME in client.cookies
    assert settings.SESSION_COOKIE_NAME not in client.cookies
