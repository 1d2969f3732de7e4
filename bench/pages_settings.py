"""The project's settings plus one bare view, for `bench/pages.py` only.

The bare view runs in the same process, through the same middleware, as the join page:
the difference between the two is what the join page itself costs (form, template,
CSRF token, translations).
"""

from redconnect.settings import *  # noqa: F403

ROOT_URLCONF = "bench.pages_urls"
