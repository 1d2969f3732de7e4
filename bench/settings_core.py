"""A/B run: channels_redis' own `RedisChannelLayer` (the layer before issue 14's fix).

.venv/bin/python bench/signaling.py --only redis_core,core_2p_spread
(the signaling benchmark selects this module itself for those targets)

Same configuration as production (capacities, expiry, retries, encryption), only the
backend differs from `signaling.layers.LocalFirstRedisChannelLayer`.
"""

from redconnect.settings import *  # noqa: F403

if REDIS_URL:  # noqa: F405
    CHANNEL_LAYERS["default"]["BACKEND"] = "channels_redis.core.RedisChannelLayer"  # noqa: F405
