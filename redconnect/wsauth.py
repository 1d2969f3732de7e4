"""The WebSocket auth stack: Channels' `AuthMiddlewareStack`, without its lazy wrappers.

Why: Channels resolves the session (`SessionMiddleware`: the session store built in a
worker thread) and then the user (`AuthMiddleware`: another worker thread) for every
WebSocket connect, also when there is no session cookie at all — a waiting patient's or
guest's connect, which never has a login. And its `SessionMiddleware` wraps the
connection's `send`: every frame to a logged-in doctor passed a check whether the
session had changed (it never does on a WebSocket; bench/README.md, "Issue 14,
inboxes"). Here a connection without a session cookie gets exactly what Channels'
stack would give it (an unsaved session, the anonymous user) directly; one with a
session cookie gets its session and user loaded in one thread hop, with Django's own
`get_user` (session hash check included), and the server's `send` unwrapped.
"""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace

from channels.db import database_sync_to_async
from channels.sessions import CookieMiddleware
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import AnonymousUser


def _session_store():
    return import_module(settings.SESSION_ENGINE).SessionStore


def _login_of(session_key: str):
    """The session of the cookie and its user (anonymous if the login is gone or invalid)."""
    session = _session_store()(session_key)
    return session, auth.get_user(SimpleNamespace(session=session))


_load_login = database_sync_to_async(_login_of)


class SessionAndUser:
    """Inside CookieMiddleware: `scope["session"]` and `scope["user"]`, resolved."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        key = scope.get("cookies", {}).get(settings.SESSION_COOKIE_NAME)
        if key:
            session, user = await _load_login(key)
        else:
            session, user = _session_store()(None), AnonymousUser()
        return await self.inner({**scope, "session": session, "user": user}, receive, send)


def auth_stack(inner):
    """Drop-in for `channels.auth.AuthMiddlewareStack`."""
    return CookieMiddleware(SessionAndUser(inner))
