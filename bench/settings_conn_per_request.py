"""A/B run: a new database connection per request (`CONN_MAX_AGE` 0, before issue 14's
set-up work).

.venv/bin/python bench/signaling.py --only project,project_conn0,project_redis,project_redis_conn0
(the signaling benchmark selects this module itself for the `*_conn0` targets)
"""

from redconnect.settings import *  # noqa: F403

DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
