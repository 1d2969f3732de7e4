"""Django's Redis cache backend, with one redis-py client per connection pool.

Django's `RedisCacheClient.get_client()` builds a new `redis.Redis` for every cache
call. The connection pool is shared, so no connection is opened, but redis-py's
constructor copies its table of response callbacks each time: about 140 µs of CPU on the
development machine, several times more than the command's own round trip. A call
set-up makes about ten cache calls (presence, admission, the appointment state, the
join's rate limit), so this was a tenth of a set-up's CPU on Redis (bench/README.md).

A `redis.Redis` holds no per-command state of its own and takes a connection from the
pool for every command, so one instance per pool serves every thread (redis-py
documents its clients as thread-safe). Everything else is Django's.
"""

from __future__ import annotations

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, servers, **options):
        super().__init__(servers, **options)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            # Two threads may both build one here; either is fine, the pool is the same.
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient
