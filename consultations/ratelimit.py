"""Join rate limit: at most JOIN_FAILURE_LIMIT failed code attempts per client and window.

Clients are told apart by an HMAC (keyed with SECRET_KEY) of their address; the address
itself is never stored. Counters live in the Django cache (Redis in production, so every
server process sees the same counts) and expire by themselves after the window.

The window is exact and sliding: each failure writes its time into one of LIMIT slots
(a failure sequence number modulo LIMIT picks the slot). A client is blocked while all
slots hold a time within the last WINDOW seconds, that is while its last LIMIT failures
all happened within the window. The atomic `incr` of the sequence keeps concurrent
processes from overwriting each other's slots, the check is one `get_many` round trip,
and every key expires by itself shortly after the window.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

PREFIX = "rc:join"


def client_address(request: HttpRequest) -> str:
    """The client's address; behind nginx (PROXY_HEADERS) the last X-Forwarded-For entry.

    The right-most entry is the one our own proxy appended; entries to its left come
    from the client and could be forged to escape the limit.
    """
    if settings.PROXY_HEADERS:
        last = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        if last:
            return last
    return request.META.get("REMOTE_ADDR") or "unknown"


def client_id(request: HttpRequest) -> str:
    """A keyed hash of the client's address: tells clients apart, reveals nothing."""
    key = settings.SECRET_KEY.encode()
    address = client_address(request).encode()
    return hmac.new(key, b"join-client:" + address, hashlib.sha256).hexdigest()[:32]


def _slot_keys(client: str) -> list[str]:
    return [f"{PREFIX}:{client}:{slot}" for slot in range(settings.JOIN_FAILURE_LIMIT)]


def is_blocked(request: HttpRequest) -> bool:
    """True while the client's last LIMIT failures all lie within the window."""
    keys = _slot_keys(client_id(request))
    since = time.time() - settings.JOIN_FAILURE_WINDOW
    recent = [at for at in cache.get_many(keys).values() if isinstance(at, float) and at > since]
    return len(recent) >= len(keys)


def record_failure(request: HttpRequest) -> None:
    """Count one failed code attempt of this client."""
    client = client_id(request)
    window = settings.JOIN_FAILURE_WINDOW
    sequence_key = f"{PREFIX}:{client}:seq"
    cache.add(sequence_key, 0, timeout=window)
    try:
        number = cache.incr(sequence_key)
    except ValueError:  # expired between add and incr
        cache.set(sequence_key, 1, timeout=window)
        number = 1
    cache.touch(sequence_key, window)
    slot = number % settings.JOIN_FAILURE_LIMIT
    cache.set(f"{PREFIX}:{client}:{slot}", time.time(), timeout=window + 1)
