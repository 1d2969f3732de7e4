"""Settings fail loudly: bad values stop start-up with a clear message."""

import pytest

from tests.support.helpers import run_manage


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ICE_SERVERS": "not json"}, "ICE_SERVERS"),
        ({"ICE_SERVERS": '{"urls": "stun:x"}'}, "ICE_SERVERS"),
        ({"ICE_SERVERS": '[{"urls": "http://x"}]'}, "ICE_SERVERS"),
        ({"ICE_SERVERS": '[{"urls": "stun:x", "country": "Germany"}]'}, "country"),
        ({"METADATA_RETENTION_DAYS": "seven"}, "METADATA_RETENTION_DAYS"),
        ({"METADATA_RETENTION_DAYS": "-1"}, "METADATA_RETENTION_DAYS"),
        ({"DB_CONN_MAX_AGE": "forever"}, "DB_CONN_MAX_AGE"),
        ({"DB_CONN_MAX_AGE": "-1"}, "DB_CONN_MAX_AGE"),
        ({"PUBLIC_URL": "ftp://example.org"}, "PUBLIC_URL"),
        ({"PROXY_HEADERS": "maybe"}, "PROXY_HEADERS"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0", "SECRET_KEY": ""}, "SECRET_KEY"),
        ({"DATABASE_URL": "postgres://u@127.0.0.1:1/x", "SECRET_KEY": ""}, "SECRET_KEY"),
    ],
)
def test_invalid_configuration_stops_start_up(env, message):
    result = run_manage(["check"], **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_empty_values_count_as_unset():
    result = run_manage(
        ["check"],
        ICE_SERVERS="",
        METADATA_RETENTION_DAYS="",
        DB_CONN_MAX_AGE="",
        PUBLIC_URL="",
        DATABASE_URL="",
        REDIS_URL="",
        SECRET_KEY="",
    )
    assert result.returncode == 0, result.stderr


def test_ice_servers_are_parsed_with_country():
    from redconnect.settings import parse_ice_servers

    servers = parse_ice_servers('[{"urls": "stun:stun.example.de:3478", "country": "de"}]')
    assert servers == [{"urls": ["stun:stun.example.de:3478"], "country": "DE"}]
    assert parse_ice_servers("[]") == []
