"""A/B run: the project's settings with the presence heartbeat practically off.

.venv/bin/python bench/signaling.py --only project --settings bench.settings_no_heartbeat
"""

from redconnect.settings import *  # noqa: F403

SIGNALING_HEARTBEAT_INTERVAL = 3600
