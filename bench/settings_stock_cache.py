"""A/B run: Django's own Redis cache backend (a new redis-py client per cache call).

.venv/bin/python bench/signaling.py --only project_redis --settings bench.settings_stock_cache

Same configuration as production, only the backend differs from
`redconnect.rediscache.RedisCache`.
"""

from redconnect.settings import *  # noqa: F403

if REDIS_URL:  # noqa: F405
    CACHES["default"]["BACKEND"] = "django.core.cache.backends.redis.RedisCache"  # noqa: F405
