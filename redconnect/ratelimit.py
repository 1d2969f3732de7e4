"""The one rate limiter: named policies, one pseudonymising key, one algorithm.

Policies (`POLICIES`): `join` (failed access codes on `POST /`) and `api-key` (wrong
practice API keys). Admin logins are locked out by django-axes (settings `AXES_*`), which
tells clients apart with the same `client_key`.

Clients are told apart by `client_key(request)`: an HMAC of the client's network under
one key derived from `SECRET_KEY` — never the address itself. The network is the IPv4
address, or the /64 of an IPv6 address: one subscriber line gets a whole /64 and could
otherwise rotate through 2^64 addresses. `X-Forwarded-For` is believed only with
`PROXY_HEADERS=true` and only from a direct peer in `TRUSTED_PROXIES` (default:
loopback); the entries are read from the right, skipping trusted proxies, so a client
cannot escape its limit by sending its own header.

The window is exact and sliding: each failure writes its time into one of LIMIT slots
(a failure sequence number modulo LIMIT picks the slot). A subject is blocked while all
slots hold a time within the last WINDOW seconds, that is while its last LIMIT failures
all happened within the window. The atomic `incr` of the sequence keeps concurrent
processes from overwriting each other's slots, the check is one `get_many` round trip,
and every key expires by itself shortly after the window. Counters live in the Django
cache (Redis in production, so every server process sees the same counts).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

PREFIX = "rc:rl"


@dataclass(frozen=True)
class Policy:
    name: str
    limit: int  # failures …
    window: int  # … within this many seconds block the subject


def policy(name: str) -> Policy:
    """The named policy, read from settings each time (tests change them)."""
    limits = {
        "join": (settings.JOIN_FAILURE_LIMIT, settings.JOIN_FAILURE_WINDOW),
        "api-key": (settings.API_KEY_FAILURE_LIMIT, settings.API_KEY_FAILURE_WINDOW),
    }
    limit, window = limits[name]
    return Policy(name, limit, window)


POLICIES = ("join", "api-key")


# --- Who the client is ------------------------------------------------------------------


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address) -> bool:
    return address is not None and any(
        address in ipaddress.ip_network(proxy, strict=False) for proxy in settings.TRUSTED_PROXIES
    )


def from_trusted_proxy(request: HttpRequest) -> bool:
    """Whether the direct peer is a proxy whose forwarded headers we believe."""
    return settings.PROXY_HEADERS and _trusted(_address(request.META.get("REMOTE_ADDR") or ""))


def client_address(request: HttpRequest) -> str:
    """The client's address: the direct peer, or behind a trusted proxy the right-most
    `X-Forwarded-For` entry that is not itself a trusted proxy."""
    remote = request.META.get("REMOTE_ADDR") or ""
    peer = _address(remote)
    if not from_trusted_proxy(request):
        return str(peer) if peer else remote or "unknown"
    for entry in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        forwarded = _address(entry)
        if forwarded is None:
            break  # not set by our proxy: count the request against the proxy itself
        peer = forwarded
        if not _trusted(forwarded):
            break
    return str(peer)


def client_network(request: HttpRequest) -> str:
    """What tells clients apart: the IPv4 address, or the IPv6 /64."""
    text = client_address(request)
    address = _address(text)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return text


def _pseudonym(kind: str, value: str) -> str:
    key = hmac.new(settings.SECRET_KEY.encode(), b"redconnect:pseudonym", hashlib.sha256)
    return hmac.new(key.digest(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def client_key(request: HttpRequest) -> str:
    """A keyed hash of the client's network: tells clients apart, reveals nothing."""
    return _pseudonym("client", client_network(request))


def subject_key(value: str) -> str:
    """A keyed hash for any other subject, e.g. a username (case-insensitive)."""
    return _pseudonym("subject", value.strip().lower())


def axes_client(request: HttpRequest) -> str:
    """`AXES_CLIENT_IP_CALLABLE`: axes keys its lock-outs by this pseudonym, never by
    the address."""
    return client_key(request)


# --- Counting -----------------------------------------------------------------------


def _slot_keys(rule: Policy, key: str) -> list[str]:
    return [f"{PREFIX}:{rule.name}:{key}:{slot}" for slot in range(rule.limit)]


def is_blocked(name: str, key: str) -> bool:
    """True while the subject's last LIMIT failures all lie within the window."""
    rule = policy(name)
    keys = _slot_keys(rule, key)
    since = time.time() - rule.window
    recent = [at for at in cache.get_many(keys).values() if isinstance(at, float) and at > since]
    return len(recent) >= len(keys)


def record_failure(name: str, key: str) -> None:
    rule = policy(name)
    if rule.limit <= 0:
        return  # blocked anyway
    sequence_key = f"{PREFIX}:{rule.name}:{key}:seq"
    cache.add(sequence_key, 0, timeout=rule.window)
    try:
        number = cache.incr(sequence_key)
    except ValueError:  # expired between add and incr
        cache.set(sequence_key, 1, timeout=rule.window)
        number = 1
    cache.touch(sequence_key, rule.window)
    slot = number % rule.limit
    cache.set(f"{PREFIX}:{rule.name}:{key}:{slot}", time.time(), timeout=rule.window + 1)


def reset(name: str, key: str) -> None:
    rule = policy(name)
    cache.delete_many([*_slot_keys(rule, key), f"{PREFIX}:{rule.name}:{key}:seq"])


def client_blocked(name: str, request: HttpRequest) -> bool:
    return is_blocked(name, client_key(request))


def record_client_failure(name: str, request: HttpRequest) -> None:
    record_failure(name, client_key(request))
