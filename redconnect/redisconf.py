"""Redis configuration for the channel layer and the cache (production profile).

Why the layer is a `RedisChannelLayer` (signaling.layers.LocalFirstRedisChannelLayer) and
why these numbers: docs/architecture.md, "Channel layer". Kept out of settings.py so that
tests can build the exact layer and cache a production process uses.

After a Redis restart every pooled connection in every server process is dead, and
redis-py does not retry by default: the first command on each stale connection would
fail, so a reconnecting call could be refused several times in a row and the browser's
back-off would grow. One quick retry on a fresh connection hides stale connections;
a Redis that is really down still fails within a fraction of a second (the consumer
then closes with 4503, `/healthz` answers 503).
"""

from __future__ import annotations

import hashlib
import hmac

from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

CAPACITY = 200  # per connection: above the consumer's flood limit (100 frames / 10 s)
PROCESS_CAPACITY = 1000  # one server process' Redis queue, shared by its connections
EXPIRY = 30  # seconds an undelivered signaling message is kept
GROUP_EXPIRY = 24 * 3600  # seconds; a connection joins its appointment's group once
CONNECT_TIMEOUT = 2.0  # seconds; an unreachable Redis host must not hang a request


def connection_options(*, asynchronous: bool) -> dict:
    retry_class = AsyncRetry if asynchronous else Retry
    return {
        "retry": retry_class(ExponentialBackoff(cap=0.2, base=0.02), 2),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "socket_connect_timeout": CONNECT_TIMEOUT,
    }


def channel_layer_key(secret_key: str, explicit: str | None = None) -> str:
    """The channel layer's encryption key: CHANNEL_LAYER_KEY, else derived from
    SECRET_KEY (a one-way derivation under its own label, so the layer key reveals
    nothing about the key that signs sessions and join cookies)."""
    if explicit:
        return explicit
    return hmac.new(secret_key.encode(), b"redconnect:channel-layer", hashlib.sha256).hexdigest()


def channel_layer_config(url: str, encryption_key: str | None = None) -> dict:
    """`CHANNEL_LAYERS["default"]["CONFIG"]` for a Redis URL.

    Every message is encrypted and authenticated (Fernet: AES-128-CBC + HMAC-SHA256,
    channels_redis' `symmetric_encryption_keys`): names, SDP and candidates (with client
    addresses) sit in Redis for up to EXPIRY seconds and must not be readable there.
    Without an explicit key the one of the running settings is used.
    """
    if encryption_key is None:
        from django.conf import settings

        encryption_key = settings.CHANNEL_LAYER_KEY
    return {
        "hosts": [{"address": url, **connection_options(asynchronous=True)}],
        "capacity": CAPACITY,
        "channel_capacity": {"specific.*": PROCESS_CAPACITY},
        "expiry": EXPIRY,
        "group_expiry": GROUP_EXPIRY,
        "symmetric_encryption_keys": [encryption_key],
    }


def cache_config(url: str) -> dict:
    """`CACHES["default"]` for a Redis URL (presence, rate limits): Django's Redis
    backend, reusing its redis-py client (redconnect.rediscache)."""
    return {
        "BACKEND": "redconnect.rediscache.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": "redconnect",
        "OPTIONS": connection_options(asynchronous=False),
    }
