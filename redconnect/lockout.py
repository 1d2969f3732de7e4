"""django-axes glue: the lock-out check as the first authentication backend (settings
`AUTHENTICATION_BACKENDS`) and the cache handler (`AXES_HANDLER`); policy in
redconnect.twofactor and the `AXES_*` settings."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from axes.handlers.cache import AxesCacheHandler
from axes.helpers import get_cache


class LockoutBackend(AxesStandaloneBackend):
    """Refuses a locked-out (account, client) before the password is checked.

    Without a request (the test client's `login()`, a shell) there is no client to
    lock out: it stands aside instead of raising, and the password backend decides.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class CacheHandler(AxesCacheHandler):
    """axes' cache handler, looking the cache up on every use.

    axes keeps one handler per process, and the stock handler binds the cache it found
    at start: a process (or a test) whose cache configuration changes would go on
    counting in the old one.
    """

    def __init__(self):  # no bound cache (see `cache`)
        pass

    @property
    def cache(self):
        return get_cache()
