"""Which browser origins may open `/ws/call/`.

On an https `PUBLIC_URL` exactly that origin (scheme, host and port) plus the optional
`ALLOWED_ORIGINS` list: a page on another port or scheme of the same host, or on
loopback, is a different origin and could ride a patient's join cookie. On the
embedded http default (a development or single-host set-up) any origin whose host is
in `ALLOWED_HOSTS` is accepted, as channels' `AllowedHostsOriginValidator` does.
Settings are read per connection, so tests can switch the profile. settings.py imports
this module to parse ALLOWED_ORIGINS, so channels is imported only when it is needed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise(origin: str) -> tuple[str, str, int] | None:
    """`https://Host:443` → ("https", "host", 443); None for anything not an origin."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    return parts.scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[parts.scheme]


def parse_allowed_origins(raw: str | None) -> list[str]:
    """ALLOWED_ORIGINS: comma-separated `scheme://host[:port]`; bad entries stop start-up."""
    origins = [entry.strip() for entry in (raw or "").split(",") if entry.strip()]
    for origin in origins:
        if normalise(origin) is None:
            raise ImproperlyConfigured(
                f"ALLOWED_ORIGINS: {origin!r} is not an origin like https://host[:port]."
            )
    return origins


def exact_origins() -> set[tuple[str, str, int]]:
    allowed = [settings.PUBLIC_URL, *getattr(settings, "ALLOWED_ORIGINS", [])]
    return {origin for origin in map(normalise, allowed) if origin is not None}


def origin_header(scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"origin":
            try:
                return value.decode("latin1")
            except UnicodeDecodeError:
                return None
    return None


def origin_allowed(origin: str | None) -> bool:
    """The https profile's rule: the exact public origin or a listed one."""
    normalised = normalise(origin) if origin else None
    return normalised is not None and normalised in exact_origins()


class PublicOriginValidator:
    def __init__(self, application):
        from channels.security.websocket import AllowedHostsOriginValidator

        self.application = application
        self.by_host = AllowedHostsOriginValidator(application)

    async def __call__(self, scope, receive, send):
        from channels.security.websocket import WebsocketDenier

        if not settings.PUBLIC_HTTPS:
            return await self.by_host(scope, receive, send)
        if origin_allowed(origin_header(scope)):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
