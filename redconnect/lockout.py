"""django-axes' lock-out check as the first authentication backend (settings
`AUTHENTICATION_BACKENDS`, policy in redconnect.twofactor)."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend


class LockoutBackend(AxesStandaloneBackend):
    """Refuses a locked-out (account, client) before the password is checked.

    Without a request (the test client's `login()`, a shell) there is no client to
    lock out: it stands aside instead of raising, and the password backend decides.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
