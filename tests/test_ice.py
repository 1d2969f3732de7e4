"""ICE servers for the call's `welcome`: STUN as configured, TURN with coturn REST credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import time_machine

from signaling import ice

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SECRET = "coturn-shared-secret"


def test_no_servers_configured_means_host_candidates_only(settings):
    settings.ICE_SERVERS = []
    assert ice.ice_servers() == []


def test_stun_servers_are_passed_without_credentials_or_country(settings):
    settings.ICE_SERVERS = [{"urls": ["stun:stun.example.de:3478"], "country": "DE"}]
    assert ice.ice_servers() == [{"urls": ["stun:stun.example.de:3478"]}]


@time_machine.travel(NOW, tick=False)
def test_turn_servers_get_time_limited_rest_credentials(settings):
    settings.ICE_SERVERS = [
        {"urls": ["turn:turn.example.de:3478", "turns:turn.example.de:5349"], "country": "DE"}
    ]
    settings.TURN_SECRET = SECRET
    settings.TURN_CREDENTIAL_TTL = 600
    (server,) = ice.ice_servers()
    assert set(server) == {"urls", "username", "credential"}  # no country for the browser
    expiry, random_part = server["username"].split(":")
    assert int(expiry) == int(NOW.timestamp()) + 600 and len(random_part) >= 8
    digest = hmac.new(SECRET.encode(), server["username"].encode(), hashlib.sha1).digest()
    assert server["credential"] == base64.b64encode(digest).decode()
    # fresh credentials for every welcome
    assert ice.ice_servers()[0]["username"] != server["username"]


@time_machine.travel(NOW, tick=False)
def test_turn_credentials_live_at_most_one_hour(settings):
    settings.ICE_SERVERS = [{"urls": ["turn:turn.example.de"], "country": "DE"}]
    settings.TURN_SECRET = SECRET
    settings.TURN_CREDENTIAL_TTL = 24 * 3600
    expiry = int(ice.ice_servers()[0]["username"].split(":")[0])
    assert expiry - int(NOW.timestamp()) == 3600


def test_turn_urls_without_secret_are_left_out(settings):
    # A browser refuses a TURN server without credentials, breaking the whole connection.
    settings.ICE_SERVERS = [
        {"urls": ["stun:stun.example.de", "turn:turn.example.de"], "country": "DE"},
        {"urls": ["turns:turn.example.de:5349"], "country": "DE"},
    ]
    settings.TURN_SECRET = None
    assert ice.ice_servers() == [{"urls": ["stun:stun.example.de"]}]
