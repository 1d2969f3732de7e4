"""Issue 11 item 9: on an https PUBLIC_URL the WebSocket accepts only that exact origin
(scheme, host, port) plus ALLOWED_ORIGINS; loopback is not implicitly allowed there."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured

from redconnect import origins
from tests.test_signaling import communicator, disconnect, patient_cookie, receive

pytestmark = pytest.mark.django_db(transaction=True)

PUBLIC = "https://praxis.example.org"


@pytest.fixture
def https_profile(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    settings.PUBLIC_URL = PUBLIC
    settings.PUBLIC_HTTPS = True
    settings.ALLOWED_HOSTS = ["praxis.example.org", "127.0.0.1", "localhost", "testserver"]
    settings.ALLOWED_ORIGINS = ["https://termine.example.org:8443"]
    return settings


async def handshake(origin: bytes | None, cookie: bytes) -> bool:
    socket = communicator(cookie, origin=origin)
    try:
        connected, _ = await socket.connect(timeout=5)
        if connected:
            assert (await receive(socket))["type"] == "welcome"
        return connected
    finally:
        await disconnect(socket)


@pytest.mark.parametrize(
    "origin",
    [
        b"https://praxis.example.org",
        b"https://PRAXIS.example.org:443",
        b"https://termine.example.org:8443",
    ],
)
async def test_the_public_and_listed_origins_are_accepted(https_profile, issued, origin):
    assert await handshake(origin, await patient_cookie(issued.patient_code))


@pytest.mark.parametrize(
    "origin",
    [
        b"http://praxis.example.org",  # other scheme
        b"https://praxis.example.org:8443",  # other port
        b"https://termine.example.org",  # listed host, but on another port
        b"https://127.0.0.1:8000",  # loopback: not implicit on https
        b"http://127.0.0.1:8000",
        b"https://localhost",
        b"https://evil.praxis.example.org",
        b"https://praxis.example.org.evil.example",
        b"null",
        None,
    ],
)
async def test_other_origins_are_refused(https_profile, issued, origin):
    assert not await handshake(origin, await patient_cookie(issued.patient_code))


def test_allowed_origins_are_validated_at_start_up():
    assert origins.parse_allowed_origins(" https://a.example , http://b.example:81 ") == [
        "https://a.example",
        "http://b.example:81",
    ]
    for bad in ("a.example", "https://a.example/path", "ftp://a.example", "https://"):
        with pytest.raises(ImproperlyConfigured):
            origins.parse_allowed_origins(bad)
