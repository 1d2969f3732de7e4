"""The WebSocket auth stack: Channels' `AuthMiddlewareStack`, minus two thread hops for
connections without a login.

Why: Channels resolves the session (`SessionMiddleware`: the session store built in a
worker thread) and then the user (`AuthMiddleware`: another worker thread) for every
WebSocket connect, also when there is no session cookie at all — a waiting patient's or
guest's connect, which never has a login. Without the cookie both can only come out
empty (an unsaved session, the anonymous user), so this stack sets exactly that directly
and sends only connections with a session cookie through Channels' middleware.
"""

from __future__ import annotations

from importlib import import_module

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser


class AnonymousWithoutSessionCookie:
    """Inside CookieMiddleware: no session cookie → anonymous, without a thread hop."""

    def __init__(self, inner):
        self.inner = inner
        self.with_login = SessionMiddleware(AuthMiddleware(inner))

    async def __call__(self, scope, receive, send):
        if scope.get("cookies", {}).get(settings.SESSION_COOKIE_NAME):
            return await self.with_login(scope, receive, send)
        store = import_module(settings.SESSION_ENGINE).SessionStore
        scope = {**scope, "session": store(None), "user": AnonymousUser()}
        return await self.inner(scope, receive, send)


def auth_stack(inner):
    """Drop-in for `channels.auth.AuthMiddlewareStack`."""
    return CookieMiddleware(AnonymousWithoutSessionCookie(inner))
