"""A/B run: a Redis deployment with channels_redis' pub/sub layer instead of the project's.

.venv/bin/python bench/signaling.py --only redis_pubsub,pubsub_2p_spread
(the signaling benchmark selects this module itself for those targets)

Same encryption as production, so that the comparison includes its cost.
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
