"""Failure counters in the cache (Redis in production, so all processes share them).

Used for API key attempts and admin logins. Keys are keyed hashes: neither a client
address nor a username is ever written to the cache in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from consultations import ratelimit


def _digest(kind: str, value: str) -> str:
    key = settings.CODE_HMAC_KEY.encode()
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def client_key(request: HttpRequest) -> str:
    """A keyed hash that tells clients apart: the join rate limit's, so both agree."""
    return ratelimit.client_id(request)


def subject_key(value: str) -> str:
    """A keyed hash for any other subject, e.g. a username (case-insensitive)."""
    return _digest("subject", value.strip().lower())


def _cache_keys(scope: str, key: str) -> tuple[str, str]:
    return f"rc:fail:{scope}:{key}:n", f"rc:fail:{scope}:{key}:t"


def _window_open(started: float | None, window: int | None) -> bool:
    # The window is checked against the application's clock as well as expired by the
    # cache: Redis expires keys by its own clock, which frozen-time tests cannot move.
    return started is not None and (window is None or time.time() - started < window)


def failures(scope: str, key: str, window: int | None = None) -> int:
    count_key, start_key = _cache_keys(scope, key)
    if not _window_open(cache.get(start_key), window):
        return 0
    return int(cache.get(count_key, 0))


def is_blocked(scope: str, key: str, limit: int, window: int | None = None) -> bool:
    return failures(scope, key, window) >= limit


def record_failure(scope: str, key: str, window: int) -> int:
    """Count a failure; the window starts at the first failure and is not extended."""
    count_key, start_key = _cache_keys(scope, key)
    if not _window_open(cache.get(start_key), window):
        cache.set(start_key, time.time(), timeout=window)
        cache.set(count_key, 0, timeout=window)
    cache.add(count_key, 0, timeout=window)
    try:
        return cache.incr(count_key)
    except ValueError:  # expired between add and incr
        cache.set(count_key, 1, timeout=window)
        return 1


def reset(scope: str, key: str) -> None:
    cache.delete_many(list(_cache_keys(scope, key)))
