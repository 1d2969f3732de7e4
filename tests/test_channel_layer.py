"""The production channel layer (Redis) against the consumer's flood limit.

DESIGN "Signaling": the channel layer's per-channel capacity sits above the flood limit,
and a full or vanished peer channel is handled, never an internal error. The settings
are loaded exactly as a production process loads them (REDIS_URL set), then exercised
against a real redis-server.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer

from redconnect import redisconf
from signaling import presence, protocol
from tests.helpers import run_manage

pytestmark = pytest.mark.redis

SHOW_SETTINGS = (
    "from django.conf import settings as s; import json; "
    "print(json.dumps([s.CHANNEL_LAYERS['default']['BACKEND'], s.CACHES['default']['BACKEND'], "
    "s.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0]['address']]))"
)


def test_redis_url_switches_layer_and_cache_to_redis(redis_server):
    """What a production process loads: the layer and cache of redconnect.redisconf."""
    result = run_manage(
        ["shell", "-v0", "-c", SHOW_SETTINGS],
        REDIS_URL=redis_server.url,
        SECRET_KEY="test-secret-key-for-the-layer-config-0123456789",
    )
    assert result.returncode == 0, result.stderr
    layer, cache, address = json.loads(result.stdout.strip().splitlines()[-1])
    assert layer == "channels_redis.core.RedisChannelLayer"
    assert cache == "django.core.cache.backends.redis.RedisCache"
    assert address == redis_server.url


@pytest.fixture
def layer_config(redis_server) -> dict:
    return {"CONFIG": redisconf.channel_layer_config(redis_server.url)}


def test_layer_capacity_sits_above_the_flood_limit(layer_config):
    config = layer_config["CONFIG"]
    # A flooding peer's relays plus the control events of a flood window fit.
    assert config["capacity"] > protocol.FLOOD_LIMIT + 10
    assert config["channel_capacity"]["specific.*"] >= config["capacity"]
    # Undelivered messages outlive a heartbeat round, never minutes.
    assert presence.HEARTBEAT_INTERVAL < config["expiry"] <= 60
    # Group membership (joined once per connection) outlives any call.
    assert config["group_expiry"] >= 12 * 3600


async def test_a_busy_peer_receives_a_whole_flood_window_in_order(layer_config):
    config = layer_config["CONFIG"]
    receiver, sender = RedisChannelLayer(**config), RedisChannelLayer(**config)
    try:
        channel = await receiver.new_channel()
        burst = protocol.FLOOD_LIMIT + 10  # relays of one window + pings, hello, bye …
        for number in range(burst):
            await sender.send(channel, {"type": "call.relay", "n": number})
        # The receiving consumer was busy the whole time; nothing was lost.
        received = [await asyncio.wait_for(receiver.receive(channel), 5) for _ in range(burst)]
        assert [message["n"] for message in received] == list(range(burst))
    finally:
        await receiver.flush()
        await sender.close_pools()


async def test_a_process_that_stopped_reading_makes_senders_see_channel_full(layer_config):
    """The bound exists (no unbounded Redis memory); the consumer turns ChannelFull into a
    dropped event for that peer, never an error for the sender (signaling.consumers)."""
    config = layer_config["CONFIG"]
    receiver, sender = RedisChannelLayer(**config), RedisChannelLayer(**config)
    try:
        channels = [await receiver.new_channel() for _ in range(2)]
        limit = config["channel_capacity"]["specific.*"]
        for number in range(limit):  # two connections of one process share the queue
            await sender.send(channels[number % 2], {"type": "call.ping"})
        with pytest.raises(ChannelFull):
            await sender.send(channels[0], {"type": "call.ping"})
    finally:
        await receiver.flush()
        await sender.close_pools()


async def test_stale_connections_after_a_redis_restart_are_retried(redis_server):
    """Redis restarted: the pooled connections are dead. The next send and receive
    succeed anyway (one quick retry), so a reconnecting call is not refused again."""
    config = redisconf.channel_layer_config(redis_server.url)
    receiver, sender = RedisChannelLayer(**config), RedisChannelLayer(**config)
    try:
        channel = await receiver.new_channel()
        await sender.send(channel, {"type": "call.ping", "n": 1})
        assert (await asyncio.wait_for(receiver.receive(channel), 5))["n"] == 1
        redis_server.stop()
        redis_server.start()  # same port, empty
        await sender.send(channel, {"type": "call.ping", "n": 2})
        assert (await asyncio.wait_for(receiver.receive(channel), 5))["n"] == 2
    finally:
        await receiver.flush()
        await sender.close_pools()


def test_the_cache_recovers_after_a_redis_restart(redis_server):
    """Presence and rate limits: usable at once after a restart (redis-py's sync pool
    also re-checks connections on checkout; the retry covers drops mid-command)."""
    from django.core.cache.backends.redis import RedisCache

    options = redisconf.cache_config(redis_server.url)
    cache = RedisCache(options["LOCATION"], {"OPTIONS": options["OPTIONS"]})
    cache.set("rc:test", "before", 30)
    redis_server.stop()
    redis_server.start()
    assert cache.get("rc:test") is None  # emptied, and the stale connection replaced
    cache.set("rc:test", "after", 30)
    assert cache.get("rc:test") == "after"
