"""A/B run: a Redis deployment with channels_redis' pub/sub layer instead of the core one.

.venv/bin/python bench/signaling.py --only project_redis --settings bench.settings_pubsub
"""

from redconnect.settings import *  # noqa: F403

if REDIS_URL:  # noqa: F405
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],  # noqa: F405
                # As in production: nothing readable in Redis.
                "symmetric_encryption_keys": [CHANNEL_LAYER_KEY],  # noqa: F405
            },
        }
    }
