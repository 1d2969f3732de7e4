"""A/B run: the production layer without batched cross-process sends (bench/layers_unbatched.py).

.venv/bin/python bench/signaling.py --only redis_2p_spread_unbatched,redis_2p_spread
(the signaling benchmark selects this module itself for the *_unbatched targets)
"""

from redconnect.settings import *  # noqa: F403

if REDIS_URL:  # noqa: F405
    CHANNEL_LAYERS["default"]["BACKEND"] = (  # noqa: F405
        "bench.layers_unbatched.UnbatchedLocalFirstRedisChannelLayer"
    )
