"""A/B run: the production layer with Fernet instead of AES-GCM (bench/layers_unbatched.py).

.venv/bin/python bench/signaling.py --only redis_2p_spread_fernet,redis_2p_spread
"""

from redconnect.settings import *  # noqa: F403

if REDIS_URL:  # noqa: F405
    CHANNEL_LAYERS["default"]["BACKEND"] = (  # noqa: F405
        "bench.layers_unbatched.FernetLocalFirstRedisChannelLayer"
    )
