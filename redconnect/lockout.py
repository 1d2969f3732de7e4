"""django-axes glue: the lock-out check as the first authentication backend (settings
`AUTHENTICATION_BACKENDS`) and the cache handler (`AXES_HANDLER`); policy in
redconnect.twofactor and the `AXES_*` settings."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from axes.handlers.cache import AxesCacheHandler
from axes.helpers import get_cache
from django.contrib.auth.backends import ModelBackend


class LockoutBackend(AxesStandaloneBackend, ModelBackend):
    """Refuses a locked-out (account, client) before the password is checked.

    Otherwise it stands aside (returns None) and ModelBackend, next in the list, checks
    the password. Without a request (the test client's `login()`, a shell) there is no
    client to lock out. It loads session users like ModelBackend, so a session created
    with the first backend of AUTHENTICATION_BACKENDS keeps working.
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
